"""Safe reading and writing of weights.

* ``.pth`` / ``.pt`` files are read with ``torch.load(..., weights_only=True)``: no pickle code runs.
* ``.safetensors`` files are read with safetensors; files written by rvrt carry the model's
  architecture and config in their metadata, so they can be loaded without naming the model.
* MindSpore ``.ckpt`` files are parsed without MindSpore and renamed (:mod:`rvrt.formats.mindspore`).
* Wrappers are removed (``{'params': ...}``, ``{'params_ema': ...}``, ``{'state_dict': ...}``)
  and so is a DistributedDataParallel ``module.`` prefix.
* Loading into a model is strict; a mismatch raises :class:`rvrt.errors.WeightsError` listing the
  missing, unexpected and mis-shaped keys.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rvrt.errors import WeightsError
from rvrt.files import atomic_write

__all__ = [
    "load_state_dict_file",
    "read_metadata",
    "save_safetensors",
    "load_into",
    "state_dict_mismatch",
    "average_state_dicts",
    "METADATA_ARCH",
    "METADATA_CONFIG",
    "METADATA_NAME",
]

METADATA_ARCH = "rvrt.arch"
METADATA_CONFIG = "rvrt.config"
METADATA_NAME = "rvrt.name"

_WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model")


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(f"{path} does not contain a state dict (a mapping of parameter names to tensors)")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"{path} is not a plain state dict: entries {bad[:5]} are not tensors")
    sd = dict(obj)
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def load_state_dict_file(path: str | os.PathLike, *, arch: str | None = None) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.pth``/``.pt`` (safely, ``weights_only``), ``.safetensors``, or a
    MindSpore ``.ckpt`` (mindediting's RVRT / RVRT Light, names mapped to ours).

    Args:
        path: the file.
        arch: architecture the weights are for; used to map MindSpore names (detected from the
            names when ``None``). A ``.ckpt`` that is a PyTorch file is read as one.

    Raises:
        WeightsError: the file is missing, unreadable, corrupt or holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if path.suffix == ".ckpt":
        from rvrt.formats import mindspore

        if mindspore.looks_like_ckpt(path):
            return mindspore.mindspore_to_torch(mindspore.read_ckpt(path), arch)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return _unwrap(load_file(str(path), device="cpu"), path)
        except (SafetensorError, OSError, ValueError) as err:
            raise WeightsError(f"cannot read {path} as safetensors: {err}") from err
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt / non-weights files
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WeightsError(f"cannot read {path} as PyTorch weights (torch.load weights_only): {msg}") from err
    return _unwrap(obj, path)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """Metadata of a ``.safetensors`` file (empty for other formats or when there is none)."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return {}
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError) as err:
        raise WeightsError(f"cannot read {path} as safetensors: {err}") from err


def save_safetensors(
    state: nn.Module | Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    *,
    arch: str | None = None,
    config: Mapping[str, Any] | None = None,
    name: str | None = None,
    metadata: Mapping[str, str] | None = None,
    include_buffers: bool = False,
) -> Path:
    """Write weights as ``.safetensors`` (atomically), with the architecture in the metadata.

    Args:
        state: a model or a state dict.
        arch, config, name: stored as ``rvrt.arch``, ``rvrt.config`` (JSON of the official
            constructor kwargs) and ``rvrt.name`` so that :func:`rvrt.load_model` can rebuild it.
        metadata: further string entries.
        include_buffers: keep a model's buffers (constants the model rebuilds itself, such as the
            relative position index tables; left out by default to keep files small).
    """
    from safetensors.torch import save_file

    sd = state.state_dict() if isinstance(state, nn.Module) else dict(state)
    if isinstance(state, nn.Module) and not include_buffers:
        buffers = {k for k, _ in state.named_buffers()}
        sd = {k: v for k, v in sd.items() if k not in buffers}
    # safetensors refuses shared or non-contiguous storage; weights are small, copy them
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in sd.items()}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    if arch is not None:
        meta[METADATA_ARCH] = arch
    if config is not None:
        meta[METADATA_CONFIG] = json.dumps(dict(config), sort_keys=True)
    if name is not None:
        meta[METADATA_NAME] = name
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def average_state_dicts(
    states: Sequence[Mapping[str, torch.Tensor]], shares: Sequence[float]
) -> dict[str, torch.Tensor]:
    """The weighted mean ``sum(share_i * state_i)`` of state dicts of one model, in float32.

    Checkpoint averaging, or a model between a model and its fine-tuned version (interpolation in
    weight space). ``shares`` are >= 0 and sum to 1; the sum is accumulated in float64.

    Raises:
        ValueError: the shares, or the state dicts' keys and shapes, do not fit.
    """
    if len(shares) != len(states) or not states:
        raise ValueError(f"{len(shares)} shares for {len(states)} state dicts")
    if any(s < 0 for s in shares) or abs(sum(shares) - 1) > 1e-6:
        raise ValueError(f"shares must be >= 0 and sum to 1; got {list(shares)}")
    first = states[0]
    for i, other in enumerate(states[1:], 1):
        diff = state_dict_mismatch(first, other)
        if diff["missing"] or diff["unexpected"] or diff["mismatched"]:
            raise ValueError(f"state dict {i} differs from the first:\n  " + _describe(diff))
    return {k: sum(s * st[k].double() for s, st in zip(shares, states)).float() for k in first}


def state_dict_mismatch(model: nn.Module | Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]) -> dict:
    """Compare a state dict with what a model expects.

    Returns:
        ``{"missing": [...], "unexpected": [...], "mismatched": [(key, expected, got), ...]}``.
    """
    expected = model.state_dict() if isinstance(model, nn.Module) else model
    exp_shapes = {k: tuple(v.shape) for k, v in expected.items()}
    missing = [k for k in exp_shapes if k not in state_dict]
    unexpected = [k for k in state_dict if k not in exp_shapes]
    mismatched = [
        (k, exp_shapes[k], tuple(v.shape))
        for k, v in state_dict.items()
        if k in exp_shapes and tuple(v.shape) != exp_shapes[k]
    ]
    return {"missing": missing, "unexpected": unexpected, "mismatched": mismatched}


def _describe(diff: dict, limit: int = 8) -> str:
    parts = []
    for label in ("missing", "unexpected"):
        keys = diff[label]
        if keys:
            more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
            parts.append(f"{len(keys)} {label} key(s): {', '.join(keys[:limit])}{more}")
    if diff["mismatched"]:
        items = [f"{k} expected {list(e)} got {list(g)}" for k, e, g in diff["mismatched"][:limit]]
        more = f" (+{len(diff['mismatched']) - limit} more)" if len(diff["mismatched"]) > limit else ""
        parts.append(f"{len(diff['mismatched'])} mismatched shape(s): {'; '.join(items)}{more}")
    return "\n  ".join(parts)


def load_into(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str = "weights") -> nn.Module:
    """Load ``state_dict`` into ``model`` strictly (buffers the file leaves out keep the model's values).

    Raises:
        WeightsError: keys or shapes differ, with the list of missing, unexpected and
            mismatched keys (weights for another architecture or config).
    """
    buffers = dict(model.named_buffers())
    missing_buffers = {k: v for k, v in buffers.items() if k not in state_dict and k in model.state_dict()}
    if missing_buffers:
        # buffers of these models are constants of the architecture (position tables, normalisation
        # constants); files written by rvrt leave them out and the model's own values stand in
        state_dict = {**state_dict, **missing_buffers}
    diff = state_dict_mismatch(model, state_dict)
    if diff["missing"] or diff["unexpected"] or diff["mismatched"]:
        raise WeightsError(
            f"{source} do not fit {type(model).__name__}; are they weights of another model or task?\n  "
            + _describe(diff)
        )
    model.load_state_dict(state_dict, strict=True)
    return model
