"""Backward warping of images and features by optical flow."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["flow_warp"]


def flow_warp(x: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear", padding_mode: str = "zeros") -> torch.Tensor:
    """Sample ``x`` at ``pixel + flow``.

    Args:
        x: ``(N, C, H, W)``.
        flow: ``(N, 2, H, W)`` in pixels, channel 0 = dx, channel 1 = dy.
        mode: ``"bilinear"`` or ``"nearest"`` (``grid_sample`` modes).
        padding_mode: ``"zeros"``, ``"border"`` or ``"reflection"``.

    Returns:
        ``(N, C, H, W)``: ``out[y, x] = x[y + dy, x + dx]``, sampled with ``align_corners=True``.

    The pixel grid is normalised to ``[-1, 1]`` with ``2 * p / max(size - 1, 1) - 1``, the same
    float arithmetic as the published models, so that warps agree with theirs to the last bit
    wherever possible. Coordinates are kept in float32 for half-precision inputs (a bfloat16
    coordinate cannot even address every pixel of a 320-pixel row).
    """
    n, _, h, w = x.shape
    if flow.shape != (n, 2, h, w):
        raise ValueError(f"flow must be (N, 2, H, W) = {(n, 2, h, w)}; got {tuple(flow.shape)}")
    cdtype = torch.promote_types(flow.dtype, torch.float32)
    gy, gx = torch.meshgrid(
        torch.arange(h, device=x.device, dtype=cdtype), torch.arange(w, device=x.device, dtype=cdtype), indexing="ij"
    )
    vx = gx + flow[:, 0].to(cdtype)
    vy = gy + flow[:, 1].to(cdtype)
    grid = torch.stack((2.0 * vx / max(w - 1, 1) - 1.0, 2.0 * vy / max(h - 1, 1) - 1.0), dim=3)
    src = x if x.dtype == cdtype else x.to(cdtype)
    out = F.grid_sample(src, grid, mode=mode, padding_mode=padding_mode, align_corners=True)
    return out if out.dtype == x.dtype else out.to(x.dtype)
