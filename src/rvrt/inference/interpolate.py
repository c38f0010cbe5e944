"""``rvrt.interpolate``: double the frame rate of a video with a frame-interpolation model
(VRT ``vrt.vfi_vimeo``), streaming; ``rvrt.interpolate_iter``, a generator over the output frames;
and :func:`interpolate_frames`, the streaming core that space-time super-resolution shares.

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

import dataclasses
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rvrt import zoo
from rvrt.api import create_model, load_model, resolve_spec
from rvrt.errors import InputError
from rvrt.inference.pipeline import model_runner, peak_host_memory_mb
from rvrt.inference.tiling import BlendBuffer, TileGrid, crossfade

__all__ = [
    "DEFAULT_VFI_MODEL",
    "interpolate",
    "interpolate_iter",
    "interpolate_frames",
    "interpolate_window",
    "prepare_vfi_model",
    "plan_vfi_tiles",
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


def prepare_vfi_model(
    model: str | os.PathLike | zoo.ModelSpec | nn.Module | None = None,
    weights: str | os.PathLike | None = None,
) -> tuple[nn.Module, zoo.ModelSpec]:
    """The frame-interpolation model and its spec.

    The published weights are licensed for non-commercial use only (CC-BY-NC-4.0), so they are never
    fetched implicitly: ``weights`` must be ``"official"`` (download into the cache) or a file.

    Args:
        model: registered name (default :data:`DEFAULT_VFI_MODEL`), config file, or a model from
            :func:`rvrt.create_model`. With ``model=None`` and a weights file carrying rvrt metadata (or
            the official file), the file says which model it is.
        weights: ``"official"`` or a ``.pth``/``.safetensors`` file.

    Raises:
        InputError: not a frame-interpolation model; no weights given.
        WeightsError, DownloadError: the weights cannot be loaded or fetched (offline: the message says
            where to download them by hand).
    """
    if isinstance(model, nn.Module):
        spec = getattr(model, "rvrt_spec", None)
        if spec is None:
            raise InputError("pass a model created by rvrt.create_model / rvrt.load_model (it carries its spec)")
        vfi_window(spec)
        return model, spec
    if model is None and weights is not None and os.fspath(weights) != "official":
        net = load_model(weights)
        vfi_window(net.rvrt_spec)
        return net, net.rvrt_spec
    spec = resolve_spec(model if model is not None else DEFAULT_VFI_MODEL)
    vfi_window(spec)
    if weights is None:
        if spec.weights is not None:
            raise InputError(
                f"{spec.name} needs weights: pass --weights official to download the published ones "
                f"({spec.weights.license}, non-commercial use only; {spec.weights.url}) or --weights PATH"
            )
        raise InputError(f"{spec.name} has no published weights: pass --weights PATH")
    net = create_model(spec, weights=weights)
    return net, spec


def plan_vfi_tiles(
    spec: zoo.ModelSpec,
    tile: Any,
    overlap: Any,
    *,
    height: int,
    width: int,
    frames: int,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Spatial tile and overlap ``(height, width)`` for interpolating ``height x width`` frames.

    ``tile`` None or ``"auto"``: the whole frame when a ``frames``-frame window fits in half the free
    memory of ``device`` (the official Vimeo-90K/UCF101 protocol runs whole frames), else the largest
    square tile that fits (a multiple of 8, at least 64). ``(0, 0)`` forces whole frames. The
    default overlap is the model's (vrt.vfi_vimeo: 20 pixels, the official DAVIS setting). Any
    size works: VRT mirror-pads a tile to a multiple of 8 that holds 8 attention windows (64
    pixels for vrt.vfi_vimeo) and crops the result, so tiles much smaller than that waste work.
    """
    from rvrt.inference.restore import free_memory

    ov = tuple(spec.tile_overlap[1:]) if overlap is None else tuple(int(v) for v in overlap)
    if len(ov) != 2 or min(ov) < 0:
        raise InputError(f"--tile-overlap needs two non-negative numbers (height, width); got {overlap}")
    if tile is None or tile == "auto":
        per_px = float(spec.extras.get("bytes_per_pixel_frame", 4096 * spec.scale**2 + 16384))
        per_px *= 0.6 if dtype != torch.float32 else 1.0
        fits = 0.5 * free_memory(device) / (per_px * frames)  # pixels of one tile
        if height * width <= fits:
            t = (0, 0)
        else:
            side = max(64, int(math.sqrt(max(fits, 1.0))) // 8 * 8)
            t = (0 if side >= height else side, 0 if side >= width else side)
    else:
        t = tuple(int(v) for v in tile)
        if len(t) != 2 or min(t) < 0:
            raise InputError(f"--tile needs two non-negative numbers (height, width) or 'auto'; got {tile}")
    for i, name in enumerate(("height", "width")):
        if t[i] and ov[i] >= t[i]:
            raise InputError(f"tile overlap ({name}) {ov[i]} must be smaller than the tile {t[i]}")
    return t, ov  # type: ignore[return-value]


def interpolate_window(
    run: Callable[[torch.Tensor], torch.Tensor], clip: torch.Tensor, *, tile: tuple[int, int], overlap: tuple[int, int]
) -> torch.Tensor:
    """The frame a window predicts, computed tile by tile and blended.

    Args:
        run: the model call ``(1, T, 3, h, w) -> (1, 1, 3, h, w)``.
        clip: ``(T, 3, H, W)`` input window.
        tile, overlap: spatial tile and overlap in pixels (0 = whole frame).

    Returns:
        ``(3, H, W)`` float32 on ``clip``'s device, unclamped.
    """
    _, _, h, w = clip.shape
    out = BlendBuffer(1, 3, h, w, clip.device)
    for tl in TileGrid(h, w, tile, overlap):
        y = run(clip[None, :, :, tl.h0 : tl.h1, tl.w0 : tl.w1])[0]
        if y.shape[0] != 1:
            raise InputError(f"the interpolation model returned {y.shape[0]} frames per window; expected one")
        wy = crossfade(tl.h1 - tl.h0, tl.fade_top, tl.fade_bottom, device=clip.device)
        wx = crossfade(tl.w1 - tl.w0, tl.fade_left, tl.fade_right, device=clip.device)
        out.add(y, wy.view(1, 1, -1, 1) * wx.view(1, 1, 1, -1), slice(0, 1), slice(tl.h0, tl.h1), slice(tl.w0, tl.w1))
    return out.value[0]


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

    Yields:
        ``(index, frame)``: ``(3, H, W)`` float32 on ``device`` (in-between frames unclamped).

    Raises:
        InputError: fewer than two input frames.
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
        if end is not None and end < 2 and first_frame == 0:
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
            yield 2 * gap + 1, interpolate_window(run, clip, tile=tile, overlap=overlap)
            del clip
        gap += 1
        while buf and buf_start < gap - half + 1:
            buf.popleft()
            buf_start += 1


def interpolate_iter(
    source: str | os.PathLike | Iterable[np.ndarray | torch.Tensor],
    *,
    model: str | os.PathLike | zoo.ModelSpec | nn.Module | None = None,
    weights: str | os.PathLike | None = None,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = "fp32",
    tile: Any = None,
    tile_overlap: Any = None,
    hold_last: bool = True,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Double the frame rate of frames one by one (see the module doc for which frames come out).

    Args:
        source: a video file, a folder of frames or a glob; or an iterable of frames
            (``(H, W, 3)`` uint8/uint16 arrays or ``(3, H, W)`` float tensors in [0, 1]), e.g. the
            frames of :func:`rvrt.restore_iter` for space-time super-resolution.
        model, weights: see :func:`prepare_vfi_model` (weights are required).
        device, dtype, tile, tile_overlap, hold_last: as for :func:`interpolate`.

    Yields:
        ``(index, frame)`` with ``frame`` a ``(3, H, W)`` float32 CPU tensor in [0, 1].
    """
    from rvrt.inference.restore import open_frames, resolve_device, resolve_dtype

    net, spec = prepare_vfi_model(model, weights)
    window = vfi_window(spec)
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    frames, h, w = open_frames(source)
    if frames is None:
        raise InputError("frame interpolation needs at least 2 frames; the input has none")
    t, ov = plan_vfi_tiles(spec, tile, tile_overlap, height=h, width=w, frames=window, device=dev, dtype=dt)
    net.to(dev)
    run = model_runner(net, device=dev, dtype=dt)
    for i, frame in interpolate_frames(run, frames, window=window, tile=t, overlap=ov, device=dev, hold_last=hold_last):
        yield i, frame.clamp_(0, 1).cpu()


def output_fps(info_fps: Fraction | None, fps: Fraction | float | None) -> Fraction | float:
    """Frame rate of a doubled video: ``fps`` if given, else exactly twice the input's (25 for frames)."""
    from rvrt.inference.video_io import DEFAULT_FPS

    if fps is not None:
        return fps
    if info_fps is None:
        log.info("frames input: taken as %s fps, written at %s fps", DEFAULT_FPS, 2 * DEFAULT_FPS)
    return 2 * Fraction(info_fps or DEFAULT_FPS)


def interpolate(
    input: str | os.PathLike,
    output: str | os.PathLike,
    *,
    model: str | os.PathLike | zoo.ModelSpec | nn.Module | None = None,
    weights: str | os.PathLike | None = None,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = "fp32",
    tile: Any = None,
    tile_overlap: Any = None,
    hold_last: bool = True,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    codec: str | None = None,
    crf: int | None = None,
    preset: str | None = None,
    bit_depth: int | None = None,
    fps: float | Fraction | None = None,
):
    """Double the frame rate of a video (file, frames folder or glob) into a video file or a frames folder.

    ``n`` input frames give ``2n`` output frames at exactly twice the frame rate (``2n - 1`` with
    ``hold_last=False``); see the module doc. Streams: decodes, interpolates and encodes as it goes.

    Args:
        input: video file, folder of frames, or glob.
        output: video file (audio/subtitle streams copied, colour tags kept) or a folder of PNG
            frames named ``00000000.png``, ``00000001.png``, ...
        model: frame-interpolation model (default ``vrt.vfi_vimeo``): name, config file or model.
        weights: ``"official"`` (download the published CC-BY-NC-4.0 weights) or a file; required.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        dtype: ``fp32``, ``fp16`` or ``bf16`` (half precision runs under autocast).
        tile: spatial tile ``(height, width)`` in pixels (0 = whole), or ``"auto"`` / None (default:
            whole frames when they fit in memory, see :func:`plan_vfi_tiles`).
        tile_overlap: ``(height, width)`` overlap of neighbouring tiles (default 20).
        hold_last: end with the last frame repeated, so the duration is kept exactly (default).
        overwrite: replace an existing output.
        resume: continue an interrupted run into a frames folder.
        progress: progress bar on stderr.
        codec, crf, preset, bit_depth: output encoding (bit_depth 8 or 16 for PNG frames).
        fps: output frame rate (default: exactly twice the input's; a frames folder counts as 25 fps).

    Returns:
        A :class:`~rvrt.inference.restore.RestoreSummary` (``frames``: output frames written).

    Raises:
        InputError: bad input or options, a model that does not interpolate, missing weights,
            fewer than 2 frames (one clear message).
    """
    from rvrt.inference.restore import RestoreSummary, resolve_device, resolve_dtype, to_float, write_stream
    from rvrt.inference.video_io import VIDEO_EXTENSIONS, open_writer, probe

    t0 = time.perf_counter()
    net, spec = prepare_vfi_model(model, weights)
    window = vfi_window(spec)
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    info = probe(input)
    if info.frame_count is not None and info.frame_count < 2:
        raise InputError(f"frame interpolation needs at least 2 frames; {input} has {info.frame_count}")
    out_is_video = Path(output).suffix.lower() in VIDEO_EXTENSIONS
    if bit_depth is None:
        bit_depth = 8 if out_is_video else info.bit_depth
    if bit_depth not in (8, 16):
        raise InputError(f"--bit-depth must be 8 or 16; got {bit_depth}")
    if resume and out_is_video:
        raise InputError("--resume needs a folder of frames as output (a video file is only complete at the end)")
    t, ov = plan_vfi_tiles(
        spec, tile, tile_overlap, height=info.height, width=info.width, frames=window, device=dev, dtype=dt
    )
    rate = output_fps(info.fps, fps)
    # output frames are numbered afresh: the input's names do not describe the in-between frames
    writer = open_writer(
        output,
        like=dataclasses.replace(info, names=None),
        width=info.width,
        height=info.height,
        fps=rate,
        codec=codec,
        crf=crf,
        preset=preset,
        bit_depth=bit_depth,
        overwrite=overwrite,
        resume=resume,
    )
    done = writer.completed if resume else 0
    first = resume_input_frame(done, window)
    log.info(
        "model %s (frame interpolation, %d-frame windows) on %s %s; tile %s overlap %s",
        spec.name,
        window,
        dev,
        str(dt).replace("torch.", ""),
        t,
        ov,
    )
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    net.to(dev)
    run = model_runner(net, device=dev, dtype=dt)
    total = None
    if info.frame_count:
        total = 2 * info.frame_count - (0 if hold_last else 1)
    count = write_stream(
        writer,
        input,
        lambda reader: interpolate_frames(
            run,
            (to_float(f.data) for f in reader),
            window=window,
            tile=t,
            overlap=ov,
            device=dev,
            first_frame=first,
            skip_until=done,
            hold_last=hold_last,
        ),
        start=first,
        bit_depth=bit_depth,
        total=(total - done) if total else None,
        progress=progress,
        desc="interpolate",
    )
    if done and count == 0:
        log.info("nothing left to do: all %d frames were already written", done)
    peak_dev = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
    return RestoreSummary(
        output=str(output),
        model=spec.name,
        frames=count,
        seconds=time.perf_counter() - t0,
        peak_host_mb=peak_host_memory_mb(),
        peak_device_mb=peak_dev,
        resumed_from=done,
        tile=(window, *t),
        frame_rate=getattr(writer, "fps", None),
    )
