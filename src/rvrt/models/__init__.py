"""Network architectures (pure computation, no I/O)."""

from rvrt.models.rvrt import RVRT, RVRTConfig
from rvrt.models.rvrt_light import RVRTLight, RVRTLightConfig
from rvrt.models.vrt import VRT, VRTConfig

__all__ = ["RVRT", "RVRTConfig", "RVRTLight", "RVRTLightConfig", "VRT", "VRTConfig"]
