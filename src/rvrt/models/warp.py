"""Backward warping of images and features by optical flow."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["flow_warp", "flow_warp_nearest4"]


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


def flow_warp_nearest4(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """The four whole-pixel neighbours of ``pixel + flow`` (VRT's image alignment, ``'nearest4'``).

    Args:
        x: ``(N, C, H, W)``.
        flow: ``(N, 2, H, W)`` in pixels, channel 0 = dx, channel 1 = dy.

    Returns:
        ``(N, 4C, H, W)``: ``x`` sampled at (floor x, floor y), (floor x, ceil y), (ceil x, floor y)
        and (ceil x, ceil y) of ``grid + flow``, zero where that pixel lies outside the image.

    The positions are ``grid + flow`` in the flow's precision (at least float32) like the published
    model, then rounded down/up and looked up directly (the published model's nearest-neighbour
    ``grid_sample`` round trip picks the same pixels). Where ``grid + flow`` is within rounding
    noise of an integer, floor and ceil can flip between implementations: the output is not a
    continuous function of the flow, and no gradient reaches the flow.
    """
    n, c, h, w = x.shape
    if flow.shape != (n, 2, h, w):
        raise ValueError(f"flow must be (N, 2, H, W) = {(n, 2, h, w)}; got {tuple(flow.shape)}")
    cdtype = torch.promote_types(flow.dtype, torch.float32)
    gy, gx = torch.meshgrid(
        torch.arange(h, device=x.device, dtype=cdtype), torch.arange(w, device=x.device, dtype=cdtype), indexing="ij"
    )
    with torch.no_grad():
        vx = gx + flow[:, 0].to(cdtype)
        vy = gy + flow[:, 1].to(cdtype)
        xs = (torch.floor(vx), torch.ceil(vx))
        ys = (torch.floor(vy), torch.ceil(vy))
    flat = x.reshape(n, c, h * w)
    outs = []
    for px in xs:
        for py in ys:
            inside = (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)
            idx = torch.where(inside, py * w + px, torch.zeros_like(px)).long().view(n, 1, h * w)
            picked = flat.gather(2, idx.expand(n, c, h * w)).view(n, c, h, w)
            outs.append(torch.where(inside.unsqueeze(1), picked, picked.new_zeros(())))
    return torch.cat(outs, 1)
