"""rvrt: RVRT, VRT and RVRT Light video restoration that runs anywhere PyTorch runs."""

from rvrt.models import RVRT, RVRTConfig

__version__ = "0.1.0"
__all__ = ["RVRT", "RVRTConfig", "__version__"]
