"""Seamless spatial and temporal tiling.

A video is restored window by window (``tile[0]`` frames) and each window tile by tile
(``tile[1] x tile[2]`` input pixels); neighbouring tiles overlap and are blended with smooth
weights (a raised-cosine cross-fade over the overlap, so the weights of two tiles sum to one).

The blend is a running weighted mean: for each contribution ``(v, w)`` the accumulated value moves
towards ``v`` by ``w / (sum of weights so far)``. When every tile produces the same value at a
pixel (a per-pixel model) the result is that value bit for bit, and float32 accumulators suffice.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["tile_starts", "crossfade", "TileGrid", "BlendBuffer", "restore_window"]


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start indices of tiles of length ``tile`` covering ``[0, size)``, ``overlap`` apart.

    Like the official test scripts: a regular stride ``tile - overlap`` and a last tile flush with
    the end. ``tile <= 0`` or ``tile >= size`` gives one tile.
    """
    if tile <= 0 or tile >= size:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap must be in [0, tile); got overlap {overlap} for tile {tile}")
    stride = tile - overlap
    return list(range(0, size - tile, stride)) + [size - tile]


def crossfade(length: int, fade_in: int, fade_out: int, *, dtype=torch.float32, device=None) -> torch.Tensor:
    """``(length,)`` weights: a raised-cosine rise over the first ``fade_in`` samples and a fall
    over the last ``fade_out`` samples, 1 in between. Rises and falls of the same length sum to 1."""
    w = torch.ones(length, dtype=torch.float64)
    if fade_in > 0:
        i = torch.arange(fade_in, dtype=torch.float64)
        w[:fade_in] = torch.sin(0.5 * math.pi * (i + 0.5) / fade_in) ** 2
    if fade_out > 0:
        i = torch.arange(fade_out, dtype=torch.float64)
        w[length - fade_out :] *= torch.cos(0.5 * math.pi * (i + 0.5) / fade_out) ** 2
    return w.to(dtype=dtype, device=device)


@dataclass(frozen=True)
class Tile:
    """One spatial tile: input slice ``[h0, h1) x [w0, w1)`` and the fades at its four sides."""

    h0: int
    h1: int
    w0: int
    w1: int
    fade_top: int
    fade_bottom: int
    fade_left: int
    fade_right: int


def _axis(size: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    starts = tile_starts(size, tile, overlap)
    length = size if len(starts) == 1 else tile
    spans = [(s, s + length) for s in starts]
    out = []
    for i, (a, b) in enumerate(spans):
        before = spans[i - 1][1] - a if i > 0 else 0
        after = b - spans[i + 1][0] if i + 1 < len(spans) else 0
        out.append((a, b, max(before, 0), max(after, 0)))
    return out


class TileGrid:
    """Spatial tiles of an ``h x w`` frame (``tile``/``overlap`` in input pixels; 0 = whole)."""

    def __init__(self, h: int, w: int, tile: tuple[int, int], overlap: tuple[int, int]) -> None:
        rows = _axis(h, tile[0], min(overlap[0], max(tile[0] - 1, 0)))
        cols = _axis(w, tile[1], min(overlap[1], max(tile[1] - 1, 0)))
        self.tiles = [Tile(a, b, c, d, fa, fb, fc, fd) for a, b, fa, fb in rows for c, d, fc, fd in cols]

    def __iter__(self):
        return iter(self.tiles)

    def __len__(self) -> int:
        return len(self.tiles)


class BlendBuffer:
    """Running weighted mean of overlapping contributions to a block of output frames.

    Args:
        frames, channels, height, width: output block size.
        device: where the accumulators live.
    """

    def __init__(self, frames: int, channels: int, height: int, width: int, device: torch.device | str) -> None:
        self.value = torch.zeros(frames, channels, height, width, dtype=torch.float32, device=device)
        self.weight = torch.zeros(frames, 1, height, width, dtype=torch.float32, device=device)

    def add(self, v: torch.Tensor, w: torch.Tensor, t: slice, h: slice, x: slice) -> None:
        """Blend ``v`` ``(t, C, h, w)`` with weights ``w`` (broadcastable to ``(t, 1, h, w)``) into a region."""
        v = v.to(self.value.device, torch.float32)
        acc = self.value[t, :, h, x]
        wsum = self.weight[t, :, h, x]
        wsum += w.to(wsum.device)
        acc += (v - acc) * (w.to(wsum.device) / wsum)


def restore_window(
    run: Callable[[torch.Tensor], torch.Tensor],
    clip: torch.Tensor,
    *,
    scale: int,
    tile: tuple[int, int],
    overlap: tuple[int, int],
    time_weights: torch.Tensor | None = None,
    out: BlendBuffer | None = None,
    out_offset: int = 0,
) -> BlendBuffer:
    """Restore one temporal window tile by tile and blend the tiles into ``out``.

    Args:
        run: the model call, ``(1, T, C, h, w) -> (1, T, 3, s*h, s*w)``.
        clip: ``(T, C, H, W)`` input window (on the model's device and dtype).
        scale: output scale ``s``.
        tile, overlap: spatial tile and overlap in input pixels (0 = whole frame).
        time_weights: ``(T,)`` weights of this window's frames (temporal cross-fade), default ones.
        out: accumulators to blend into (created for this window when None).
        out_offset: frame index in ``out`` of the window's first frame.

    Returns:
        The blend buffer.
    """
    t, _, h, w = clip.shape
    if out is None:
        out = BlendBuffer(t, 3, h * scale, w * scale, clip.device)
    tw = torch.ones(t) if time_weights is None else time_weights
    dev = out.value.device
    tw = tw.to(device=dev, dtype=torch.float32).view(t, 1, 1, 1)
    for tl in TileGrid(h, w, tile, overlap):
        y = run(clip[None, :, :, tl.h0 : tl.h1, tl.w0 : tl.w1])[0]
        wy = crossfade((tl.h1 - tl.h0) * scale, tl.fade_top * scale, tl.fade_bottom * scale, device=dev)
        wx = crossfade((tl.w1 - tl.w0) * scale, tl.fade_left * scale, tl.fade_right * scale, device=dev)
        weight = tw * wy.view(1, 1, -1, 1) * wx.view(1, 1, 1, -1)
        out.add(
            y,
            weight,
            slice(out_offset, out_offset + t),
            slice(tl.h0 * scale, tl.h1 * scale),
            slice(tl.w0 * scale, tl.w1 * scale),
        )
    return out
