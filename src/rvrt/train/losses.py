"""Pixel losses for restoration training."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rvrt.errors import InputError

__all__ = ["CharbonnierLoss", "build_loss"]


class CharbonnierLoss(nn.Module):
    """``mean(sqrt((x - y)^2 + eps))``, a differentiable L1 (RVRT uses ``eps = 1e-9``)."""

    def __init__(self, eps: float = 1e-9) -> None:
        super().__init__()
        self.eps = float(eps)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        diff = x - y
        return torch.sqrt(diff * diff + self.eps).mean()


class _Weighted(nn.Module):
    def __init__(self, loss: nn.Module, weight: float) -> None:
        super().__init__()
        self.loss, self.weight = loss, float(weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # computed in float32 whatever the autocast dtype of the network output
        return self.weight * self.loss(x.float(), y.float())


def build_loss(cfg: dict[str, Any]) -> nn.Module:
    """Loss from a recipe ``[loss]`` table: ``type`` charbonnier (``eps``), l1 or mse; ``weight``."""
    kind = cfg.get("type", "charbonnier")
    if kind == "charbonnier":
        loss: nn.Module = CharbonnierLoss(cfg.get("eps", 1e-9))
    elif kind == "l1":
        loss = nn.L1Loss()
    elif kind == "mse":
        loss = nn.MSELoss()
    else:
        raise InputError(f"unknown loss {kind!r}; use charbonnier, l1 or mse")
    return _Weighted(loss, cfg.get("weight", 1.0))
