"""Seamless spatial and temporal tiling.

A video is restored window by window (``tile[0]`` frames) and each window tile by tile
(``tile[1] x tile[2]`` input pixels); neighbouring tiles overlap and are blended with smooth
weights (a raised-cosine cross-fade over the overlap, so the weights of two tiles sum to one).

The blend (:class:`FrameBlend`) is a running weighted mean: for each contribution ``(v, w)`` the
accumulated value moves towards ``v`` by ``w / (sum of weights so far)``. When every tile produces
the same value at a pixel (a per-pixel model) the result is that value bit for bit, and float32
accumulators suffice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

__all__ = ["tile_starts", "crossfade", "Tile", "TileGrid", "FrameBlend"]


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


class FrameBlend:
    """Running weighted means of the overlapping contributions to the output frames in flight.

    For each contribution ``(v, w)`` a frame's value moves towards ``v`` by ``w / (weights so
    far)``: where every contribution has the same value the result is that value bit for bit. A
    frame whose first contribution covers it whole with weight 1 (no tile or window overlaps it)
    is kept as given, without an accumulator.
    """

    def __init__(self, channels: int, height: int, width: int, device: torch.device | str) -> None:
        self.shape = (channels, height, width)
        self.device = device
        self._value: dict[int, torch.Tensor] = {}
        self._weight: dict[int, torch.Tensor | None] = {}  # None: weight 1 everywhere, value given as is

    def __contains__(self, index: int) -> bool:
        return index in self._value

    def add(self, index: int, v: torch.Tensor, w: torch.Tensor | float, h: slice, x: slice, whole: bool) -> None:
        """Blend ``v`` ``(C, h, w)`` with weights ``w`` (a scalar or broadcastable to ``(1, h, w)``)
        into rows ``h`` and columns ``x`` of frame ``index``; ``whole``: the region is the whole frame."""
        if index not in self._value:
            if whole and isinstance(w, float) and w == 1.0:
                self._value[index] = v  # a view into the model's output, dropped when yielded
                self._weight[index] = None
                return
            c, hh, ww = self.shape
            self._value[index] = torch.zeros(c, hh, ww, dtype=torch.float32, device=self.device)
            self._weight[index] = torch.zeros(1, hh, ww, dtype=torch.float32, device=self.device)
        elif self._weight[index] is None:  # a second contribution: give the frame an accumulator
            self._value[index] = self._value[index].to(self.device, torch.float32, copy=True)
            self._weight[index] = torch.ones(1, *self.shape[1:], dtype=torch.float32, device=self.device)
        acc = self._value[index][:, h, x]
        wsum = self._weight[index][:, h, x]
        # a tensor, also for a scalar weight: `scalar / tensor` is computed as a reciprocal and a
        # product, and w / w would then not be exactly 1
        w = wsum.new_tensor(w) if isinstance(w, float) else w.to(wsum.device)
        wsum += w
        acc += (v.to(acc.device, torch.float32) - acc) * (w / wsum)

    def pop(self, index: int) -> torch.Tensor:
        self._weight.pop(index)
        return self._value.pop(index)

    def indices(self) -> list[int]:
        return sorted(self._value)

    def snapshot(self, indices: Iterable[int]) -> dict[int, tuple[torch.Tensor, torch.Tensor | None]]:
        """Copies of the accumulators of ``indices`` (to undo a window that failed halfway)."""
        out = {}
        for i in indices:
            if i in self._value:
                w = self._weight[i]
                out[i] = (self._value[i].clone(), None if w is None else w.clone())
        return out

    def restore(self, indices: Iterable[int], saved: dict[int, tuple[torch.Tensor, torch.Tensor | None]]) -> None:
        for i in indices:
            self._value.pop(i, None)
            self._weight.pop(i, None)
        for i, (v, w) in saved.items():
            self._value[i], self._weight[i] = v, w
