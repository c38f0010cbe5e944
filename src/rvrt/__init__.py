"""rvrt: RVRT, VRT and RVRT Light video restoration that runs anywhere PyTorch runs.

>>> import rvrt
>>> model = rvrt.create_model("rvrt.sr_bi_reds", weights="official")  # doctest: +SKIP
>>> out = model(lq)          # (N, T, 3, H, W) in [0, 1] -> (N, T, 3, 4H, 4W)  # doctest: +SKIP
"""

from rvrt.api import create_model, fetch_weights, load_model
from rvrt.inference.interpolate import interpolate, interpolate_iter
from rvrt.inference.restore import restore, restore_iter
from rvrt.models import RVRT, VRT, RVRTConfig, RVRTLight, RVRTLightConfig, VRTConfig
from rvrt.zoo import get_spec, list_models

__version__ = "0.1.0"
__all__ = [
    "RVRT",
    "RVRTConfig",
    "RVRTLight",
    "RVRTLightConfig",
    "VRT",
    "VRTConfig",
    "__version__",
    "create_model",
    "fetch_weights",
    "get_spec",
    "interpolate",
    "interpolate_iter",
    "list_models",
    "load_model",
    "restore",
    "restore_iter",
]
