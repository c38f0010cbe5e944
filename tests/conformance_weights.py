"""Deterministic weights of the conformance vectors, regenerated from their documented rule.

The reference vectors in ``../shared/conformance`` were produced with weights that follow a
fixed, implementation-independent rule (documented in that folder's README, "Weight rule"):
entry ``index`` of the ordered state-dict listing (buffers counted) draws from its own
``torch.Generator`` seeded with ``seed * 1000003 + index``; values are computed in float64 and
cast to float32. Regenerating them here keeps the test fixtures small; ``fingerprint`` checks
that this torch version produces the same random stream.
"""

from __future__ import annotations

import math

import torch

__all__ = ["gen_weights", "fingerprint", "state_dict_for"]


def _gain(key: str) -> float:
    if key.endswith("conv_offset.10.weight"):
        return 0.3  # RVRT's last offset layer (zero in the official init)
    if key.startswith("spynet."):
        return 1.0 if key.endswith("basic_module.8.weight") else math.sqrt(6.0)
    return math.sqrt(3.0)


def _entry(key: str, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    numel = math.prod(shape)
    if key.endswith("relative_position_bias_table"):
        u = torch.rand(2 * numel, dtype=torch.float64, generator=g)
        radius = torch.sqrt(-2.0 * torch.log1p(-u[:numel]))
        z = radius * torch.cos(2.0 * math.pi * u[numel:])  # Box-Muller
        return (0.02 * z).reshape(shape).float()
    u = torch.rand(numel, dtype=torch.float64, generator=g)
    sym = 2 * u - 1  # U(-1, 1)
    if key.endswith(".bias"):
        return (0.02 * sym).reshape(shape).float()
    if key.endswith(".weight") and len(shape) == 1:
        return (1 + 0.1 * sym).reshape(shape).float()
    if key.endswith(".weight"):
        bound = _gain(key) / math.sqrt(math.prod(shape[1:]))
        return (bound * sym).reshape(shape).float()
    raise ValueError(f"the conformance weight rule has no case for {key} {shape}")


def gen_weights(listing, seed: int) -> dict[str, torch.Tensor]:
    """Parameters for an ordered listing of ``(key, shape, is_buffer)``; buffers are skipped."""
    out = {}
    for index, (key, shape, *rest) in enumerate(listing):
        if rest and rest[0]:
            continue
        g = torch.Generator().manual_seed(int(seed) * 1000003 + index)
        out[key] = _entry(key, tuple(int(s) for s in shape), g)
    return out


def fingerprint(tensors: dict[str, torch.Tensor]) -> dict[str, float]:
    """Float64 sum and sum of absolute values over all tensors (order independent)."""
    total = 0.0
    absolute = 0.0
    for k in sorted(tensors):
        t = tensors[k].double()
        total += float(t.sum())
        absolute += float(t.abs().sum())
    return {"sum": total, "abs_sum": absolute}


def state_dict_for(model: torch.nn.Module, listing, seed: int) -> dict[str, torch.Tensor]:
    """Generated parameters plus the model's own buffers, in the listing's order."""
    params = gen_weights(listing, seed)
    buffers = dict(model.named_buffers())
    return {key: (buffers[key] if (rest and rest[0]) else params[key]) for key, _, *rest in listing}
