"""rvrt: RVRT, VRT and RVRT Light video restoration that runs anywhere PyTorch runs.

>>> import rvrt
>>> model = rvrt.create_model("rvrt.sr_bi_reds", weights="official")  # doctest: +SKIP
>>> out = model(lq)          # (N, T, 3, H, W) in [0, 1] -> (N, T, 3, 4H, 4W)  # doctest: +SKIP

The names below are imported on first use, so ``import rvrt`` (and ``rvrt --help``) does not
load PyTorch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "create_model": "rvrt.api",
    "fetch_weights": "rvrt.api",
    "load_model": "rvrt.api",
    "restore": "rvrt.inference.jobs",
    "restore_iter": "rvrt.inference.jobs",
    "interpolate": "rvrt.inference.jobs",
    "interpolate_iter": "rvrt.inference.jobs",
    "RunSummary": "rvrt.inference.jobs",
    "RVRT": "rvrt.models",
    "RVRTConfig": "rvrt.models",
    "RVRTLight": "rvrt.models",
    "RVRTLightConfig": "rvrt.models",
    "VRT": "rvrt.models",
    "VRTConfig": "rvrt.models",
    "get_spec": "rvrt.zoo",
    "list_models": "rvrt.zoo",
}

__all__ = [
    "RVRT",
    "RVRTConfig",
    "RVRTLight",
    "RVRTLightConfig",
    "RunSummary",
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

if TYPE_CHECKING:  # pragma: no cover
    from rvrt.api import create_model, fetch_weights, load_model
    from rvrt.inference.jobs import RunSummary, interpolate, interpolate_iter, restore, restore_iter
    from rvrt.models import RVRT, VRT, RVRTConfig, RVRTLight, RVRTLightConfig, VRTConfig
    from rvrt.zoo import get_spec, list_models


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rvrt' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
