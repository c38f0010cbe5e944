"""Network architectures (pure computation, no I/O)."""

from rvrt.models.rvrt import RVRT, RVRTConfig

__all__ = ["RVRT", "RVRTConfig"]
