"""Frame interpolation in a stream: doubling the frame rate with a frame-interpolation model
(VRT ``vrt.vfi_vimeo``); the stage behind ``rvrt interpolate`` and ``rvrt restore --interpolate``.

Output frames, for ``n`` input frames ``f0 .. f(n-1)``:

* frame ``2i`` is input frame ``i`` unchanged (8/16-bit values come back exactly);
* frame ``2i + 1`` is predicted halfway between input frames ``i`` and ``i + 1`` from the
  ``T`` input frames ``i - T/2 + 1 .. i + T/2`` (``T = 4`` for vrt.vfi_vimeo: frames
  ``i-1, i, i+1, i+2``, the way the published model was trained), the first and last frames
  repeating at the ends as in the official Vid4 protocol;
* the last input frame is then held for one more output frame (``hold_last=True``, the default):
  ``2n`` frames at exactly twice the frame rate, so the output lasts exactly as long as the input,
  every input frame keeps its timestamp and the copied audio stays in sync up to the end.
  ``hold_last=False`` gives ``2n - 1`` frames, ending on the last input frame (half an input frame
  interval shorter than the input).

Only the ``T``-frame window (plus the frame coming in) is held, and each window is run tile by
tile (raised-cosine blending, as :mod:`rvrt.inference.tiling`), so memory depends on the frame or
tile size, not on the length of the video.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction

import torch

from rvrt import zoo
from rvrt.errors import InputError
from rvrt.inference.tiling import FrameBlend, TileGrid, crossfade

__all__ = [
    "DEFAULT_VFI_MODEL",
    "interpolate_frames",
    "interpolate_window",
    "output_fps",
    "resume_input_frame",
    "vfi_window",
]

log = logging.getLogger(__name__)

#: the model ``rvrt interpolate`` uses when none is named
DEFAULT_VFI_MODEL = "vrt.vfi_vimeo"


def vfi_window(spec: zoo.ModelSpec) -> int:
    """Input frames ``T`` of a frame-interpolation model (even; it predicts between frames ``T/2 - 1`` and ``T/2``).

    Raises:
        InputError: not a frame-interpolation model, or one this pipeline cannot drive.
    """
    if spec.task != "vfi":
        raise InputError(
            f"{spec.name} is a {spec.task} model; frame interpolation needs a frame-interpolation model "
            f"such as {DEFAULT_VFI_MODEL} (use `rvrt restore` for {spec.task})"
        )
    cfg = spec.build_config()
    frames = int(cfg.img_size[0])
    if frames < 2 or frames % 2 or getattr(cfg, "out_chans", 3) != 3:
        raise InputError(
            f"{spec.name}: doubling a frame rate needs a model that takes an even number of frames and "
            f"returns one RGB frame; this one takes {frames} and returns {getattr(cfg, 'out_chans', 3) // 3}"
        )
    return frames


def interpolate_window(
    run: Callable[[torch.Tensor], torch.Tensor],
    clip: torch.Tensor,
    *,
    tile: tuple[int, int],
    overlap: tuple[int, int],
    progress: Callable[[float], None] | None = None,
) -> torch.Tensor:
    """The frame a window predicts, computed tile by tile and blended.

    Args:
        run: the model call ``(1, T, 3, h, w) -> (1, 1, 3, h, w)``.
        clip: ``(T, 3, H, W)`` input window.
        tile, overlap: spatial tile and overlap in pixels (0 = whole frame).
        progress: told the fraction of the tiles done.

    Returns:
        ``(3, H, W)`` float32 on ``clip``'s device, unclamped.
    """
    _, _, h, w = clip.shape
    grid = TileGrid(h, w, tile, overlap)
    out = FrameBlend(3, h, w, clip.device)
    for k, tl in enumerate(grid):
        y = run(clip[None, :, :, tl.h0 : tl.h1, tl.w0 : tl.w1])[0]
        if y.shape[0] != 1:
            raise InputError(f"the interpolation model returned {y.shape[0]} frames per window; expected one")
        whole = len(grid) == 1
        wy = crossfade(tl.h1 - tl.h0, tl.fade_top, tl.fade_bottom, device=clip.device)
        wx = crossfade(tl.w1 - tl.w0, tl.fade_left, tl.fade_right, device=clip.device)
        weight = 1.0 if whole else wy.view(1, -1, 1) * wx.view(1, 1, -1)
        out.add(0, y[0], weight, slice(tl.h0, tl.h1), slice(tl.w0, tl.w1), whole)
        if progress is not None:
            progress((k + 1) / len(grid))
    return out.pop(0)


def resume_input_frame(done: int, window: int) -> int:
    """First input frame to read to continue after ``done`` output frames (see :func:`interpolate_frames`)."""
    return max(0, done // 2 - window // 2 + 1)


def interpolate_frames(
    run: Callable[[torch.Tensor], torch.Tensor],
    frames: Iterable[torch.Tensor],
    *,
    window: int = 4,
    tile: tuple[int, int] = (0, 0),
    overlap: tuple[int, int] = (0, 0),
    device: torch.device | str = "cpu",
    first_frame: int = 0,
    skip_until: int = 0,
    hold_last: bool = True,
    single: bool = False,
    progress: Callable[[float, int], None] | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Double the frame rate of a stream of frames; yield ``(index, frame)`` in order as each is ready.

    Output ``2i`` is input frame ``i``; output ``2i + 1`` comes from input frames
    ``i - window/2 + 1 .. i + window/2`` (clamped to the video); with ``hold_last`` the last input
    frame is yielded twice (``2n`` outputs, else ``2n - 1``). At most ``window + 1`` input frames are held.

    Args:
        run: the model call ``(1, window, 3, h, w) -> (1, 1, 3, h, w)``.
        frames: input frames ``(3, H, W)`` float in [0, 1], starting at frame ``first_frame``.
        window: frames the model takes (even).
        tile, overlap: spatial tiling (0 = whole frame).
        device: where windows are assembled and blended.
        first_frame: index of the first frame of ``frames``; to resume after ``k`` output frames pass
            :func:`resume_input_frame` ``(k, window)`` here and ``k`` as ``skip_until``.
        skip_until: do not yield (nor compute) outputs with a smaller index.
        hold_last: end with the last input frame repeated (keeps the duration exactly).
        single: accept a stream of one frame (a one-frame shot between two scene cuts).
        progress: told the fraction of an in-between frame done (``progress(fraction, 1)``).

    Yields:
        ``(index, frame)``: ``(3, H, W)`` float32 on ``device`` (in-between frames unclamped).

    Raises:
        InputError: fewer than two input frames (one is fine with ``single``).
    """
    if window < 2 or window % 2:
        raise ValueError(f"window must be even and >= 2; got {window}")
    half = window // 2
    it = iter(frames)
    buf: deque[torch.Tensor] = deque()  # input frames buf_start, buf_start + 1, ...
    buf_start = first_frame
    end: int | None = None  # number of input frames, once the stream is exhausted
    # a resumed run starts at the first gap whose window lies inside the frames given
    gap = 0 if first_frame == 0 else first_frame + half - 1

    while True:
        while end is None and buf_start + len(buf) <= gap + half:
            try:
                buf.append(next(it).to(device))
            except StopIteration:
                end = buf_start + len(buf)
        if end is not None and end < (1 if single else 2) and first_frame == 0:
            raise InputError(f"frame interpolation needs at least 2 frames; the input has {end}")
        if end is not None and gap >= end:
            return
        if 2 * gap >= skip_until:
            yield 2 * gap, buf[gap - buf_start].clone()  # a copy: the caller may change it in place
        if end is not None and gap == end - 1:
            if hold_last and 2 * gap + 1 >= skip_until:
                yield 2 * gap + 1, buf[gap - buf_start].clone()
            return
        if 2 * gap + 1 >= skip_until:
            last = end - 1 if end is not None else gap + half
            picks = [min(max(j, 0), last) for j in range(gap - half + 1, gap + half + 1)]
            clip = torch.stack([buf[j - buf_start] for j in picks])
            report = None if progress is None else (lambda f: progress(f, 1))  # noqa: E731
            yield 2 * gap + 1, interpolate_window(run, clip, tile=tile, overlap=overlap, progress=report)
            del clip
        gap += 1
        while buf and buf_start < gap - half + 1:
            buf.popleft()
            buf_start += 1


def output_fps(info_fps: Fraction | None, fps: Fraction | float | None) -> Fraction | float:
    """Frame rate of a doubled video: ``fps`` if given, else exactly twice the input's (25 for frames)."""
    from rvrt.media import DEFAULT_FPS

    if fps is not None:
        return fps
    if info_fps is None:
        log.info("frames input: taken as %s fps, written at %s fps", DEFAULT_FPS, 2 * DEFAULT_FPS)
    return 2 * Fraction(info_fps or DEFAULT_FPS)
