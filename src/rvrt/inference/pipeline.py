"""Streaming restoration: decode -> temporal windows -> spatial tiles -> model -> blend -> encode.

Only the frames in flight are held: at most ``tile[0] + stride`` input frames and the output
accumulators of one window plus its overlap with the next. Memory is therefore bounded by the
tile sizes, not by the length of the video.

The schedule of temporal windows is that of the official test scripts (a regular stride
``tile[0] - overlap[0]`` and a last window flush with the end) but is worked out while reading,
so the number of frames need not be known in advance.
"""

from __future__ import annotations

import logging
import math
import resource
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch

from rvrt.errors import InputError
from rvrt.inference.tiling import BlendBuffer, crossfade, restore_window

__all__ = ["WindowSchedule", "restore_frames", "model_runner", "RunStats", "peak_host_memory_mb"]

log = logging.getLogger(__name__)


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
        """Start of the earliest regular window containing ``frame`` (where a resumed run restarts)."""
        if self.length <= 0 or frame <= 0:
            return 0
        k = max(0, math.ceil((frame - self.length + 1) / self.stride))
        return k * self.stride

    def lookahead(self) -> int:
        """Frames needed after a window's start to know where the next one starts."""
        return self.length + self.stride


@dataclass
class RunStats:
    """What a restoration run did."""

    frames: int = 0
    seconds: float = 0.0
    peak_host_mb: float = 0.0
    peak_device_mb: float | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def peak_host_memory_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _merge(acc: dict[int, list[torch.Tensor]], first: int, block: BlendBuffer) -> None:
    # combine two running weighted means; equal values stay bit-identical
    for i in range(block.value.shape[0]):
        v, w = block.value[i], block.weight[i]
        if first + i not in acc:
            acc[first + i] = [v.clone(), w.clone()]
        else:
            a, wa = acc[first + i]
            wa += w
            a += (v - a) * (w / wa)


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
    backoff: bool = False,
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
        first_frame: index of the first frame of ``frames`` (a resumed run reads from a window start).
        skip_until: do not yield frames with a smaller index (already written by an earlier run).
        backoff: on out-of-memory, halve the spatial tile and retry (``--tile auto``); otherwise
            out-of-memory raises :class:`~rvrt.errors.InputError` advising a smaller tile.

    Yields:
        ``(index, frame)``, frames ``(3, s*H, s*W)`` float32 on ``device``, unclamped, in order.
    """
    sched = WindowSchedule(tile[0], overlap[0] if tile[0] > 0 else 0)
    spatial = tuple(tile[1:])
    it = iter(frames)
    buf: deque[torch.Tensor] = deque()  # input frames from buf_start on
    buf_start = first_frame
    acc: dict[int, list[torch.Tensor]] = {}
    exhausted = False
    start = first_frame
    prev_end = start - sched.stride + sched.length if start > 0 and sched.length > 0 else start

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
        window = torch.stack([buf[i - buf_start] for i in range(start, stop)])
        fade_in = max(0, prev_end - start)
        fade_out = max(0, stop - nxt) if nxt is not None else 0
        tw = crossfade(stop - start, min(fade_in, stop - start), min(fade_out, stop - start))
        while True:
            try:
                block = restore_window(
                    run,
                    window,
                    scale=scale,
                    tile=spatial,
                    overlap=overlap[1:],
                    time_weights=tw,
                    out=BlendBuffer(stop - start, 3, window.shape[2] * scale, window.shape[3] * scale, device),
                )
                break
            except torch.OutOfMemoryError as err:
                block = None
                smaller = _smaller_tile(spatial, window.shape[2], window.shape[3], overlap[1:]) if backoff else None
                if smaller is None:
                    raise InputError(
                        f"out of memory restoring tiles of {spatial[0] or window.shape[2]}x"
                        f"{spatial[1] or window.shape[3]} pixels x {stop - start} frames; use a smaller --tile "
                        "(or --tile auto)"
                    ) from err
                log.warning("out of memory with tiles of %s pixels; retrying with %s", spatial, smaller)
                spatial = smaller
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
        _merge(acc, start, block)
        del block, window
        done_before = nxt if nxt is not None else stop
        for i in sorted(k for k in acc if k < done_before):
            value, weight = acc.pop(i)
            if i >= skip_until:
                yield i, value
        if nxt is None:
            break
        while buf and buf_start < nxt:
            buf.popleft()
            buf_start += 1
        prev_end = stop
        start = nxt


def _smaller_tile(tile: tuple[int, int], h: int, w: int, overlap: tuple[int, int]) -> tuple[int, int] | None:
    """Half the spatial tile (multiples of 8, at least 64 px and more than twice the overlap), or None."""
    th, tw = tile[0] or h, tile[1] or w
    nh = max(64, (th // 2) // 8 * 8, 2 * overlap[0] + 8)
    nw = max(64, (tw // 2) // 8 * 8, 2 * overlap[1] + 8)
    if nh >= th and nw >= tw:
        return None
    return (0 if nh >= h else min(nh, th), 0 if nw >= w else min(nw, tw))


def model_runner(
    model: torch.nn.Module,
    *,
    device: torch.device,
    dtype: torch.dtype,
    extra_channel: float | None = None,
    compile: bool | str = False,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Wrap a model for :func:`restore_frames`: moves a window to ``device``, runs it under
    ``torch.inference_mode`` (with autocast for half precision) and returns float32.

    Args:
        extra_channel: append a constant channel with this value (the sigma map of non-blind
            denoising models, ``sigma / 255``).
        compile: run the model through ``torch.compile`` (``True``, or the name of a backend).
            Tiles of one size share one compiled graph; border tiles of other sizes compile once more.
    """
    autocast = dtype in (torch.float16, torch.bfloat16)
    if compile:
        model = torch.compile(model, backend=compile if isinstance(compile, str) else "inductor", dynamic=False)

    def run(x: torch.Tensor) -> torch.Tensor:
        x = x.to(device, torch.float32)
        if extra_channel is not None:
            x = torch.cat([x, x.new_full((*x.shape[:2], 1, *x.shape[3:]), extra_channel)], 2)
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=autocast):
            y = model(x)
        return y.float()

    return run
