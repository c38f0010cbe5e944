"""Tile planning: the one place that decides the tiles a stage runs with.

``tile="auto"`` (the default) picks, among the tiles whose predicted peak memory
(:mod:`rvrt.inference.memory`, plus the runner's own buffers) fits the budget, the one that
wastes the least work on overlaps: whole frames when they fit, as many frames per window as the
model's official test uses (20 where the official test takes whole videos, which cannot stream;
spread evenly over a clip of known length, :func:`balanced_frames`),
then fewer frames (down to the clip length the model was trained on) before smaller spatial
tiles, never a tile smaller than needed when a larger one fits. Explicit tiles are checked
(overlap smaller than the tile) and used as given.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import torch

from rvrt import zoo
from rvrt.errors import InputError, InsufficientMemoryError
from rvrt.inference.memory import model_peak_bytes
from rvrt.inference.options import StageOptions, flag

__all__ = ["Plan", "plan_stage", "smaller_tile", "balanced_frames", "STREAM_FRAMES", "MIN_TILE"]

log = logging.getLogger(__name__)

#: temporal tile used when a model's official setting is "whole video" (memory must stay bounded).
#: Measured on a CPU (docs/PERFORMANCE.md): longer windows cost more per frame (cache and memory
#: traffic: 3.6 s per frame at 10 frames, 3.8 at 20, 4.0 at 30, 4.2 at 45 for the built-in model at
#: 320x180) and more memory, while the overlap they save shrinks; 20 is as fast as 30 in 0.6 GB less
STREAM_FRAMES = 20
#: the smallest spatial tile ``auto`` and the out-of-memory back-off go down to (input pixels)
MIN_TILE = 64
_FRAME_STEPS = (100, 60, 40, 30, 24, 20, 16, 12, 10, 8, 6, 4, 2)
_SIDES = (1024, 768, 640, 512, 448, 384, 320, 256, 224, 192, 160, 128, 96, 64)


@dataclass(frozen=True)
class Plan:
    """The tiles of a stage.

    Attributes:
        tile: restoration ``(frames, height, width)``, interpolation ``(height, width)``; 0 = whole.
        overlap: of the same shape.
        predicted_bytes: the memory model's peak for one tile (model and runner buffers).
        budget: bytes the plan was made for (0 for explicit tiles).
        auto: planned from memory (``tile="auto"``), so a smaller tile may be tried after out-of-memory.
        frames: frames per model call (the temporal tile, or an interpolation model's window).
    """

    tile: tuple[int, ...]
    overlap: tuple[int, ...]
    predicted_bytes: int
    budget: int = 0
    auto: bool = False
    frames: int = 0
    arch: str = ""
    config: object = None
    dtype: torch.dtype = torch.float32
    device: torch.device = torch.device("cpu")
    scale: int = 1

    @property
    def spatial(self) -> tuple[int, int]:
        return (self.tile[-2], self.tile[-1])

    def with_spatial(self, spatial: tuple[int, int]) -> Plan:
        return dataclasses.replace(self, tile=(*self.tile[:-2], *spatial))

    def describe(self) -> str:
        t = " ".join(str(v) for v in self.tile)
        o = " ".join(str(v) for v in self.overlap)
        how = "auto" if self.auto else "given"
        mem = f", about {self.predicted_bytes / 2**30:.1f} GB" if self.predicted_bytes else ""
        return f"{t} (overlap {o}; {how}{mem})"

    def to_dict(self) -> dict:
        return {"tile": list(self.tile), "overlap": list(self.overlap)}


def _padded_frames(t: int) -> int:
    return t + t % 2 if t != 3 else t


def runner_bytes(frames: int, overlap: int, h: int, w: int, th: int, tw: int, scale: int, cin: int) -> int:
    """Memory the runner holds besides the model: the input frames in flight, the accumulators of
    the output frames being blended (every frame of a window when tiles are blended, else only the
    frames shared with the next window), and one output frame being converted for writing."""
    stride = max(frames - overlap, 1)
    inputs = (frames + stride) * h * w * cin * 4
    out_frame = h * w * scale * scale * 3 * 4
    tiled = (th and th < h) or (tw and tw < w)
    accumulated = frames if tiled else overlap
    return inputs + accumulated * out_frame * 4 // 3 + 2 * out_frame


def _estimate(spec: zoo.ModelSpec, cfg, frames: int, h: int, w: int, th: int, tw: int, overlap: tuple, dtype,
              device, vfi: bool) -> int:  # fmt: skip
    ph, pw = th or h, tw or w
    model = model_peak_bytes(spec.arch, cfg, frames, ph, pw, dtype=dtype, device=device)
    if vfi:
        return model + (frames + 2) * h * w * 3 * 4 * 2
    return model + runner_bytes(frames, overlap[0], h, w, th, tw, spec.scale, spec.in_channels)


def _sides(size: int) -> list[int]:
    """Spatial tile sizes to try along an axis of ``size`` pixels: whole (0), then smaller ones."""
    return [0] + [s for s in _SIDES if s < size]


def balanced_frames(total: int | None, frames: int, overlap: int) -> int:
    """The window length (at most ``frames``) that covers ``total`` frames with as few windows as
    ``frames`` needs, evenly: the official schedule's last window is flush with the end and can
    overlap the one before by almost a whole window (60 frames in 30-frame windows: 90 computed),
    spread evenly 3 windows of 22 frames compute 66."""
    if total is None or frames <= 0 or frames >= total or frames <= overlap:
        return frames
    n = -(-(total - overlap) // (frames - overlap))
    return -(-(total - overlap) // n) + overlap


def _cost(frames: int, overlap: int, total: int | None, h: int, w: int, th: int, tw: int, ov: tuple) -> float:
    """Work per output frame relative to one untiled pass (overlaps are computed twice)."""
    if frames <= 0 or (total is not None and frames >= total):
        t_cost = 1.0
    elif total is not None:
        n = -(-(total - overlap) // (frames - overlap))
        t_cost = n * frames / total
    else:
        t_cost = frames / max(frames - overlap, 1)

    def axis(size: int, tile: int, o: int) -> float:
        if not tile or tile >= size:
            return 1.0
        n = -(-(size - o) // (tile - o))
        return n * tile / size

    return t_cost * axis(h, th, ov[-2]) * axis(w, tw, ov[-1])


def plan_stage(
    spec: zoo.ModelSpec,
    options: StageOptions,
    *,
    height: int,
    width: int,
    device: torch.device,
    dtype: torch.dtype,
    budget: int,
    total: int | None = None,
    resumed: dict | None = None,
    frames: int | None = None,
) -> Plan:
    """Tiles for a stage on ``height x width`` input frames.

    Args:
        spec: the model.
        options: the stage's tile and overlap options.
        height, width: input frame size.
        device, dtype: where and how the model runs.
        budget: bytes the stage may use.
        total: frames of the input if known (a window never needs to be longer).
        resumed: the tiles an interrupted run used (``{"tile": ..., "overlap": ...}``): kept.
        frames: interpolation: the model's window (the plan is then spatial only).

    Raises:
        InputError: an overlap not smaller than its tile.
        InsufficientMemoryError: ``auto`` and not even the smallest tile fits.
    """
    vfi = frames is not None
    cfg = spec.build_config()
    p = options.prefix
    if options.tile_overlap is not None:
        ov = tuple(options.tile_overlap)
    else:
        ov = tuple(spec.tile_overlap[1:]) if vfi else tuple(spec.tile_overlap)
    base = dict(arch=spec.arch, config=cfg, dtype=dtype, device=device, scale=spec.scale)
    if resumed is not None:
        tile = tuple(resumed["tile"])
        ov = tuple(resumed["overlap"])
    elif options.tile != "auto":
        tile = tuple(options.tile)
    else:
        tile = None
    if tile is not None:
        _check_overlap(tile, ov, p)
        t = frames if vfi else (tile[0] or total or STREAM_FRAMES)
        pred = _estimate(spec, cfg, t, height, width, tile[-2], tile[-1], ov, dtype, device, vfi)
        return Plan(tile, ov, pred, budget, auto=options.tile == "auto", frames=t, **base)

    floor = 0
    shapes = [(th, tw) for th in _sides(height) for tw in _sides(width) if _square(th, tw, height, width)]
    if vfi:
        candidates = [(frames, th, tw) for th, tw in shapes]
    else:
        preferred = spec.tile[0] or STREAM_FRAMES
        if total is not None:
            preferred = min(preferred, total)
        # the recurrence needs context: windows as long as the model was trained on come before smaller tiles
        floor = min(preferred, spec.train_frames or 16)
        steps = [preferred] + [f for f in _FRAME_STEPS if f < preferred and f > ov[0]]
        if total is not None and preferred < total <= 1.25 * preferred:
            steps.insert(0, total)  # a clip a little longer than a window: whole, rather than two windows
        steps = list(dict.fromkeys(balanced_frames(total, f, ov[0]) for f in steps))
        candidates = [(f, th, tw) for f in steps for th, tw in shapes]
    best = None
    smallest = None
    for f, th, tw in candidates:
        pred = _estimate(spec, cfg, f, height, width, th, tw, ov, dtype, device, vfi)
        if smallest is None or pred < smallest[0]:
            smallest = (pred, f, th, tw)
        if pred > budget:
            continue
        spatial_ov = ov if vfi else ov[1:]
        if (th and th <= spatial_ov[0]) or (tw and tw <= spatial_ov[1]):
            continue
        cost = _cost(0 if vfi else f, 0 if vfi else ov[0], total, height, width, th, tw, spatial_ov)
        key = (f < floor, round(cost, 2), -f, -(th or height) * (tw or width))
        if best is None or key < best[0]:
            best = (key, f, th, tw, pred)
    if best is None:
        pred, f, th, tw = smallest
        raise InsufficientMemoryError(
            f"{spec.name} does not fit in the memory available on {device} ({budget / 2**30:.1f} GB planned of "
            f"free memory): even {f}-frame tiles of {th or height}x{tw or width} pixels need about "
            f"{pred / 2**30:.1f} GB. Free memory, raise --memory-fraction, or use --dtype bf16"
        )
    _, f, th, tw, pred = best
    whole_clip = total is not None and f >= total  # one window holds the whole input
    tile = (th, tw) if vfi else (0 if whole_clip else f, th, tw)
    return Plan(tile, ov, pred, budget, auto=True, frames=f, **base)


def _square(th: int, tw: int, h: int, w: int) -> bool:
    """Spatial tiles keep a sensible shape: both axes whole, or both tiled with the same side
    (an axis shorter than the side stays whole)."""
    if th == 0 and tw == 0:
        return True
    side = th or tw
    return (th == side or (th == 0 and h <= side)) and (tw == side or (tw == 0 and w <= side))


def _check_overlap(tile: tuple[int, ...], ov: tuple[int, ...], prefix: str) -> None:
    names = ("height", "width") if len(tile) == 2 else ("frames", "height", "width")
    if len(ov) != len(tile):
        raise InputError(f"{flag('tile_overlap', prefix)} needs {len(tile)} numbers ({', '.join(names)}); got {ov}")
    for i, name in enumerate(names):
        if tile[i] and ov[i] >= tile[i]:
            raise InputError(f"{flag('tile_overlap', prefix)} ({name}) {ov[i]} must be smaller than the tile {tile[i]}")


def smaller_tile(plan: Plan, spatial: tuple[int, int], h: int, w: int) -> tuple[int, int] | None:
    """The next smaller spatial tile after an out-of-memory error: a side about 0.7 of the
    current one, a multiple of 8, at least :data:`MIN_TILE` and more than twice the overlap; None
    when there is no smaller one."""
    th, tw = spatial[0] or h, spatial[1] or w
    side = max(th, tw)
    ov = max(plan.overlap[-2], plan.overlap[-1])
    new = max(MIN_TILE, 2 * ov + 8, int(side * 0.7) // 8 * 8)
    if new >= side:
        return None
    return (0 if new >= h else new, 0 if new >= w else new)
