"""Network architectures (pure computation, no I/O)."""

from rvrt.models.rvrt import RVRT, RVRTConfig
from rvrt.models.vrt import VRT, VRTConfig

__all__ = ["RVRT", "RVRTConfig", "VRT", "VRTConfig"]
