"""Streaming restoration in temporal windows: frames in -> windows -> spatial tiles -> model -> blend -> frames out.

Only the frames in flight are held: at most ``tile[0] + stride`` input frames, the model output of
one window and the accumulators of the frames it shares with the next window. Memory is
therefore bounded by the tile sizes, not by the length of the video.

The schedule of temporal windows is that of the official test scripts (a regular stride
``tile[0] - overlap[0]`` and a last window flush with the end) but is worked out while reading,
so the number of frames need not be known in advance. A resumed run replays the same schedule
from a window that ends before the first missing frame (:meth:`WindowSchedule.replay_from`),
without computing the windows whose frames all exist, so it writes exactly the frames an
uninterrupted run writes.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch

from rvrt.fastpath import is_out_of_memory
from rvrt.inference.tiling import FrameBlend, TileGrid, crossfade

__all__ = [
    "ModelTracker",
    "OOMHandler",
    "ProgressFn",
    "WindowSchedule",
    "restore_frames",
]

log = logging.getLogger(__name__)

#: ``on_oom(spatial_tile, height, width, error) -> smaller spatial tile`` (or raise): what to do when a
#: window runs out of memory; the window is then computed again with the tile it returns
OOMHandler = Callable[[tuple[int, int], int, int, BaseException], tuple[int, int]]
#: ``tracker(callback)``: a context manager during which the model reports the fraction of a call done
ModelTracker = Callable[[Callable[[float], None]], contextlib.AbstractContextManager]
#: ``progress(fraction, frames)``: ``fraction`` of the work that makes ``frames`` more output frames final
ProgressFn = Callable[[float, int], None]


@dataclass(frozen=True)
class WindowSchedule:
    """Temporal windows of ``length`` frames, ``overlap`` frames apart (``length <= 0``: one window)."""

    length: int
    overlap: int

    def __post_init__(self) -> None:
        if self.length > 0 and not 0 <= self.overlap < self.length:
            raise ValueError(f"temporal overlap must be in [0, {self.length}); got {self.overlap}")

    @property
    def stride(self) -> int:
        return self.length - self.overlap

    def next_start(self, start: int, total: int | None) -> int | None:
        """Start of the window after the one at ``start``; ``total`` = frame count if known.

        ``None`` when the window at ``start`` reaches the end. With ``total`` unknown the caller
        must have established that at least ``start + stride + length`` frames exist.
        """
        if self.length <= 0:
            return None
        if total is None:
            return start + self.stride
        if start + self.length >= total:
            return None
        nxt = start + self.stride
        return nxt if nxt < total - self.length else total - self.length

    def first_window_for(self, frame: int) -> int:
        """Start of the earliest regular window containing ``frame``."""
        if self.length <= 0 or frame <= 0:
            return 0
        k = max(0, math.ceil((frame - self.length + 1) / self.stride))
        return k * self.stride

    def replay_from(self, frame: int) -> int:
        """Where a run that must produce frames ``frame, frame + 1, ...`` starts reading.

        The regular window before the earliest one containing ``frame``: it is a window of every
        run however long the video (it ends at or before ``frame``, so it is not the last one), so
        the schedule replayed from there is the uninterrupted run's, including a last window flush
        with the end that starts before any regular window containing ``frame``.
        """
        if self.length <= 0 or frame <= 0:
            return 0
        return max(0, self.first_window_for(frame) - self.stride)

    def lookahead(self) -> int:
        """Frames needed after a window's start to know where the next one starts."""
        return self.length + self.stride


def _blend_window(
    run: Callable[[torch.Tensor], torch.Tensor],
    window: torch.Tensor,
    first: int,
    time_weights: torch.Tensor,
    blend: FrameBlend,
    *,
    scale: int,
    tile: tuple[int, int],
    overlap: tuple[int, int],
    progress: Callable[[float], None] | None,
    tracker: ModelTracker | None,
) -> None:
    t, _, h, w = window.shape
    grid = TileGrid(h, w, tile, overlap)
    dev = blend.device
    whole = len(grid) == 1
    k = 0

    def inside(fraction: float) -> None:  # progress within the model call of tile k
        progress((k + fraction) / len(grid))

    with tracker(inside) if (tracker is not None and progress is not None) else contextlib.nullcontext():
        for k, tl in enumerate(grid):  # noqa: B007 (read by inside())
            y = run(window[None, :, :, tl.h0 : tl.h1, tl.w0 : tl.w1])[0]
            wy = crossfade((tl.h1 - tl.h0) * scale, tl.fade_top * scale, tl.fade_bottom * scale, device=dev)
            wx = crossfade((tl.w1 - tl.w0) * scale, tl.fade_left * scale, tl.fade_right * scale, device=dev)
            spatial = None if whole else wy.view(1, -1, 1) * wx.view(1, 1, -1)
            hs, xs = slice(tl.h0 * scale, tl.h1 * scale), slice(tl.w0 * scale, tl.w1 * scale)
            for j in range(t):
                tw = float(time_weights[j])
                blend.add(first + j, y[j], tw if spatial is None else spatial * tw, hs, xs, whole)
            del y
            if progress is not None:
                progress((k + 1) / len(grid))


def restore_frames(
    run: Callable[[torch.Tensor], torch.Tensor],
    frames: Iterable[torch.Tensor],
    *,
    scale: int,
    tile: tuple[int, int, int],
    overlap: tuple[int, int, int],
    device: torch.device | str = "cpu",
    total: int | None = None,
    first_frame: int = 0,
    skip_until: int = 0,
    on_oom: OOMHandler | None = None,
    progress: ProgressFn | None = None,
    tracker: ModelTracker | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Restore a stream of frames; yield ``(index, frame)`` as soon as each output frame is final.

    Args:
        run: the model call ``(1, T, C, h, w) -> (1, T, 3, s*h, s*w)`` (device and dtype handled by it).
        frames: input frames ``(C, H, W)`` float in [0, 1], starting at frame ``first_frame``.
        scale: output scale.
        tile: ``(frames, height, width)`` of a tile (0 = whole), in input pixels.
        overlap: ``(frames, height, width)`` overlap between neighbouring tiles.
        device: where input windows are assembled and output accumulators live.
        total: number of frames of the whole video if known (else discovered at the end).
        first_frame: index of the first frame of ``frames``: 0, or for a resumed run
            ``WindowSchedule(...).replay_from(skip_until)``.
        skip_until: do not yield frames with a smaller index, nor compute windows holding only such frames.
        on_oom: called when a window runs out of memory; returns the smaller spatial tile to retry
            with (or raises). Without it, out-of-memory propagates.
        progress: told the fraction of the current window done and how many frames it makes final.
        tracker: reports progress from inside a model call (see :class:`ModelTracker`).

    Yields:
        ``(index, frame)``, frames ``(3, s*H, s*W)`` float32 on ``device``, unclamped, in order
        (views into the model output may be yielded: copy a frame before changing it).
    """
    sched = WindowSchedule(tile[0], overlap[0] if tile[0] > 0 else 0)
    spatial = (tile[1], tile[2])
    it = iter(frames)
    buf: deque[torch.Tensor] = deque()  # input frames from buf_start on
    buf_start = first_frame
    blend: FrameBlend | None = None
    exhausted = False
    start = first_frame
    prev_end = start - sched.stride + sched.length if start > 0 and sched.length > 0 else start
    emitted = skip_until  # frames before this are not wanted

    def fill(upto: int) -> None:
        nonlocal exhausted
        while not exhausted and buf_start + len(buf) < upto:
            try:
                buf.append(next(it).to(device))
            except StopIteration:
                exhausted = True

    while True:
        need = start + (sched.lookahead() if sched.length > 0 else 1 << 62)
        fill(need)
        end_known = buf_start + len(buf) if exhausted else total
        if end_known is not None and end_known <= start:
            return  # no frames (left) to restore
        length = sched.length if sched.length > 0 else len(buf)
        stop = start + length if end_known is None else min(start + length, end_known)
        nxt = sched.next_start(start, end_known)
        done_before = nxt if nxt is not None else stop  # frames final once this window is blended
        if stop > skip_until:
            window = torch.stack([buf[i - buf_start] for i in range(start, stop)])
            if blend is None:
                blend = FrameBlend(3, window.shape[2] * scale, window.shape[3] * scale, device)
            fade_in = max(0, prev_end - start)
            fade_out = max(0, stop - nxt) if nxt is not None else 0
            tw = crossfade(stop - start, min(fade_in, stop - start), min(fade_out, stop - start))
            pending = max(0, done_before - emitted)
            spatial = _run_window(
                run, window, start, tw, blend, scale, spatial, overlap, on_oom, progress, pending, tracker
            )
            del window
        if blend is not None:
            for i in blend.indices():
                if i >= done_before:
                    break
                frame = blend.pop(i)
                if i >= skip_until:
                    emitted = i + 1
                    yield i, frame
                del frame
        if nxt is None:
            break
        while buf and buf_start < nxt:
            buf.popleft()
            buf_start += 1
        prev_end = stop
        start = nxt


def _run_window(run, window, start, tw, blend, scale, spatial, overlap, on_oom, progress, pending, tracker):
    """Blend one window into ``blend``; on out-of-memory undo it and retry with the tile ``on_oom`` gives."""
    t = window.shape[0]
    report = None if progress is None else (lambda f: progress(f, pending))  # noqa: E731
    while True:
        saved = blend.snapshot(range(start, start + t)) if on_oom is not None else {}
        try:
            _blend_window(
                run,
                window,
                start,
                tw,
                blend,
                scale=scale,
                tile=spatial,
                overlap=overlap[1:],
                progress=report,
                tracker=tracker,
            )
            return spatial
        except (torch.OutOfMemoryError, RuntimeError) as err:
            if on_oom is None or not is_out_of_memory(err):
                raise
            blend.restore(range(start, start + t), saved)
            del saved
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            spatial = on_oom(spatial, window.shape[2], window.shape[3], err)
