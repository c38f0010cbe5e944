"""Optimiser pieces: parameter groups with learning-rate multipliers, the schedule, gradient norms."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from rvrt.train.model import matches

__all__ = ["build_optimizer", "lr_at", "grad_norm", "clip_grads"]


def build_optimizer(module: nn.Module, optim: dict[str, Any]) -> torch.optim.Optimizer:
    """Adam/AdamW over all parameters (frozen ones included: they get no gradient, so no update
    and no state), one group per ``lr_mul`` prefix plus a ``default`` group. Each group records
    its peak rate as ``base_lr`` and its name as ``group``."""
    lr_mul = optim["lr_mul"]
    buckets: dict[str, list[nn.Parameter]] = {}
    for name, p in module.named_parameters():
        buckets.setdefault(matches(name, sorted(lr_mul)) or "", []).append(p)
    groups = [
        {
            "params": ps,
            "lr": optim["lr"] * lr_mul.get(k, 1.0),
            "base_lr": optim["lr"] * lr_mul.get(k, 1.0),
            "group": k or "default",
        }
        for k, ps in buckets.items()
    ]
    cls = torch.optim.AdamW if optim["type"] == "adamw" else torch.optim.Adam
    return cls(
        groups, lr=optim["lr"], betas=tuple(optim["betas"]), eps=optim["eps"], weight_decay=optim["weight_decay"]
    )


def lr_at(step: int, base: float, schedule: dict[str, Any]) -> float:
    """Learning rate of the (0-based) ``step`` for a group whose peak rate is ``base``.

    ``cosine_restarts``: cycle ``i`` lasts ``periods[i]`` steps and falls from
    ``base * restart_weights[i]`` to ``eta_min`` along half a cosine (the last cycle's end is kept
    afterwards). ``warmup`` steps ramp the rate up linearly first.
    """
    warm = min(1.0, (step + 1) / schedule["warmup"]) if schedule.get("warmup", 0) > 0 else 1.0
    if schedule["type"] == "constant":
        return base * warm
    eta_min, start = schedule["eta_min"], 0
    for period, weight in zip(schedule["periods"], schedule["restart_weights"]):
        if step < start + period:
            t = (step - start) / period
            return warm * (eta_min + (base * weight - eta_min) * 0.5 * (1.0 + math.cos(math.pi * t)))
        start += period
    return warm * eta_min


def grad_norm(params: list[torch.Tensor]) -> torch.Tensor:
    """Global L2 norm of the gradients of ``params`` (a 0-d float32 tensor)."""
    if not params:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad.float()) for p in params]))


def clip_grads(params: list[torch.Tensor], max_norm: float, norm: torch.Tensor) -> None:
    """Scale the gradients so that their global norm (``norm``) is at most ``max_norm``."""
    coef = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    for p in params:
        p.grad.mul_(coef.to(p.grad.device))
