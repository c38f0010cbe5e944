"""``rvrt.restore``: restore a video file, a folder of frames or a glob, streaming, into a video
or a folder of frames; and ``rvrt.restore_iter``, a generator over restored frames.

With ``interpolate=True`` both do space-time super-resolution: the restored frames stream on
into a frame-interpolation model (:mod:`rvrt.inference.interpolate`) that doubles the frame rate.
Restoration comes first, as in the VRT paper's space-time results (its Table 7: "VSR+VFI" beats
"VFI+VSR" on Vid4 and all Vimeo-90K splits, e.g. 27.46 vs 26.59 dB on Vid4): the
interpolation model was trained on high-resolution Vimeo-90K frames, and it then sees sharp
frames instead of low-resolution ones whose errors the SR model would magnify.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rvrt import zoo
from rvrt.api import create_model, load_model, resolve_spec
from rvrt.errors import InputError
from rvrt.inference.pipeline import WindowSchedule, model_runner, peak_host_memory_mb, restore_frames

__all__ = [
    "restore",
    "restore_iter",
    "RestoreSummary",
    "resolve_device",
    "resolve_dtype",
    "prepare_model",
    "plan_tiles",
    "open_frames",
]

log = logging.getLogger(__name__)

DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}

#: temporal tile used when a model's official setting is "whole video" (memory must stay bounded)
STREAM_FRAMES = 30


@dataclass
class RestoreSummary:
    """What :func:`restore` did."""

    output: str
    model: str
    frames: int
    seconds: float
    peak_host_mb: float
    peak_device_mb: float | None
    resumed_from: int = 0
    tile: tuple[int, int, int] = (0, 0, 0)
    frame_rate: Fraction | None = None  # of a video output

    @property
    def fps(self) -> float:
        """Processing speed (output frames per second)."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        dev = f", peak device memory {self.peak_device_mb:.0f} MB" if self.peak_device_mb is not None else ""
        resumed = f" (resumed at frame {self.resumed_from})" if self.resumed_from else ""
        rate = f" at {_rate_text(self.frame_rate)} fps" if self.frame_rate is not None else ""
        return (
            f"{self.frames} frames{rate} in {self.seconds:.1f} s ({self.fps:.2f} frames/s){resumed}, "
            f"peak host memory {self.peak_host_mb:.0f} MB{dev} -> {self.output}"
        )


def _rate_text(rate: Fraction | float) -> str:
    rate = Fraction(rate)
    return str(rate.numerator) if rate.denominator == 1 else f"{rate} (= {float(rate):.3f})"


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InputError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {device} requested but CUDA is not available here; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {device} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif dev.type != "cpu":
        raise InputError(f"device {device} is not supported: use auto, cpu, cuda or cuda:N")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """``fp32`` / ``fp16`` / ``bf16`` (or the torch dtype)."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise InputError(f"unsupported dtype {dtype}: use fp32, fp16 or bf16")
        return dtype
    if str(dtype).lower() not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r}: use fp32, fp16 or bf16")
    return DTYPES[str(dtype).lower()]


def prepare_model(
    model: str | os.PathLike | zoo.ModelSpec | nn.Module | None = None, weights: str | os.PathLike | None = None
) -> tuple[nn.Module, zoo.ModelSpec]:
    """The model to restore with, and its spec.

    ``weights`` alone: the file says which model it is. ``model`` alone: a registered model with
    published weights uses them (``"official"``: downloaded, or shipped with the package). Neither:
    the default model (``zoo.DEFAULT_MODEL``), whose weights ship with the package.
    """
    if isinstance(model, nn.Module):
        spec = getattr(model, "rvrt_spec", None)
        if spec is None:
            raise InputError("pass a model created by rvrt.create_model / rvrt.load_model (it carries its spec)")
        _check_restoration(spec)
        return model, spec
    if model is None and weights is None:
        model = zoo.DEFAULT_MODEL
        if model is None:
            raise InputError("no model given: pass -m NAME (see `rvrt weights list`) and/or --weights FILE")
        log.info(
            "no model given: using %s, %s. For the official RVRT models see `rvrt weights list` "
            "(e.g. -m rvrt.sr_bi_reds --weights official; their weights are CC-BY-NC-4.0).",
            model,
            zoo.get_spec(model).description,
        )
    if model is None:
        net = load_model(weights)
        _check_restoration(net.rvrt_spec)
        return net, net.rvrt_spec
    spec = resolve_spec(model)
    _check_restoration(spec)
    if weights is None:
        if spec.weights is None:
            raise InputError(f"{spec.name} has no published weights: pass --weights FILE")
        weights = "official"
        if not spec.weights.bundled:
            log.info("using the published weights of %s (%s)", spec.name, spec.weights.url)
    net = create_model(spec, weights=weights)
    return net, spec


def _check_restoration(spec: zoo.ModelSpec) -> None:
    if spec.task == "vfi":
        raise InputError(
            f"{spec.name} interpolates frames: use `rvrt interpolate` (rvrt.interpolate), or "
            "`rvrt restore --interpolate` after a restoration model for space-time super-resolution"
        )


def free_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def plan_tiles(
    spec: zoo.ModelSpec, tile: Any, overlap: Any, *, height: int, width: int, device: torch.device, dtype: torch.dtype
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Tile and overlap to use: explicit values, the model's defaults, or ``"auto"`` from free memory.

    The official defaults restore some models whole; for streaming the temporal tile is then
    :data:`STREAM_FRAMES` frames so that memory stays bounded.
    """
    ov = tuple(spec.tile_overlap) if overlap is None else tuple(int(v) for v in overlap)
    if len(ov) != 3 or min(ov) < 0:
        raise InputError(f"--tile-overlap needs three non-negative numbers (frames, height, width); got {overlap}")
    if tile is None or tile == "auto":
        frames = spec.tile[0] or STREAM_FRAMES
        if tile is None:
            t = (frames, spec.tile[1], spec.tile[2])
        else:
            # bytes per input pixel and frame for a forward pass, a deliberately generous estimate
            per_px = float(spec.extras.get("bytes_per_pixel_frame", 4096 * spec.scale**2 + 16384))
            per_px *= 0.6 if dtype != torch.float32 else 1.0
            budget = 0.5 * free_memory(device)
            side = int(math.sqrt(max(budget / (per_px * frames), 1.0)))
            side = max(64, side // 8 * 8)
            t = (frames, 0 if side >= height else side, 0 if side >= width else side)
    else:
        t = tuple(int(v) for v in tile)
        if len(t) != 3 or min(t) < 0:
            raise InputError(f"--tile needs three non-negative numbers (frames, height, width) or 'auto'; got {tile}")
    for i, name in enumerate(("frames", "height", "width")):
        if t[i] and ov[i] >= t[i]:
            raise InputError(f"tile overlap ({name}) {ov[i]} must be smaller than the tile {t[i]}")
    return t, ov  # type: ignore[return-value]


def to_float(data: np.ndarray) -> torch.Tensor:
    scale = 65535.0 if data.dtype == np.uint16 else 255.0
    # decoded frames may be read-only views: copy those (torch cannot wrap them safely)
    return torch.from_numpy(np.require(data, requirements=("C", "W"))).permute(2, 0, 1).float().div_(scale)


def to_uint(frame: torch.Tensor, bit_depth: int) -> np.ndarray:
    top = 65535.0 if bit_depth == 16 else 255.0
    q = frame.clamp(0, 1).mul(top).round_()
    q = q.to(torch.int32 if bit_depth == 16 else torch.uint8).permute(1, 2, 0).cpu().numpy()
    return q.astype(np.uint16) if bit_depth == 16 else q


def _noisy(frames: Iterable[torch.Tensor], sigma: float, seed: int, first: int) -> Iterator[torch.Tensor]:
    # one generator per frame index: the same noise whatever the tiling, and on resume
    for i, f in enumerate(frames, start=first):
        g = torch.Generator().manual_seed(seed * 1_000_003 + i)
        yield f + torch.randn(f.shape, generator=g) * (sigma / 255.0)


def _check_options(spec: zoo.ModelSpec, sigma: float | None, add_noise: bool) -> float | None:
    needs_sigma = spec.in_channels == 4
    if sigma is not None and not 0 <= sigma <= 255:
        raise InputError(f"--sigma is on the 0..255 scale; got {sigma}")
    if needs_sigma and sigma is None:
        raise InputError(f"{spec.name} is a non-blind denoiser: pass --sigma (noise level, 0..255)")
    if add_noise and sigma is None:
        raise InputError("--add-noise needs --sigma (the noise level to add)")
    if sigma is not None and not needs_sigma and not add_noise:
        raise InputError(
            f"--sigma only applies to denoising models or with --add-noise; {spec.name} is a {spec.task} model"
        )
    return sigma / 255.0 if needs_sigma else None


def open_frames(
    source: str | os.PathLike | Iterable[np.ndarray | torch.Tensor],
) -> tuple[Iterator[torch.Tensor] | None, int, int]:
    """Frames of a video/folder/glob, or of an iterable of arrays or tensors, as ``(3, H, W)`` float tensors.

    Returns:
        ``(frames, height, width)``; ``frames`` is None for an empty iterable (height and width 0).
    """
    if isinstance(source, (str, os.PathLike)):
        from rvrt.inference.video_io import open_reader

        reader = open_reader(source)
        return (to_float(f.data) for f in reader), reader.info.height, reader.info.width
    it = iter(source)
    first = next(it, None)
    if first is None:
        return None, 0, 0

    def conv(f: np.ndarray | torch.Tensor) -> torch.Tensor:
        return to_float(f) if isinstance(f, np.ndarray) else f.float()

    first = conv(first)
    h, w = first.shape[-2:]
    return (f for chunk in ([first], (conv(f) for f in it)) for f in chunk), int(h), int(w)


@dataclass(frozen=True)
class _Interpolation:
    """The frame-interpolation stage of space-time super-resolution."""

    run: Any
    window: int
    tile: tuple[int, int]
    overlap: tuple[int, int]
    name: str


def _interpolation(
    vfi_model: Any,
    vfi_weights: Any,
    vfi_tile: Any,
    vfi_tile_overlap: Any,
    *,
    height: int,
    width: int,
    device: torch.device,
    dtype: torch.dtype,
) -> _Interpolation:
    from rvrt.inference.interpolate import plan_vfi_tiles, prepare_vfi_model, vfi_window

    net, spec = prepare_vfi_model(vfi_model, vfi_weights)
    window = vfi_window(spec)
    t, ov = plan_vfi_tiles(
        spec, vfi_tile, vfi_tile_overlap, height=height, width=width, frames=window, device=device, dtype=dtype
    )
    net.to(device)
    return _Interpolation(model_runner(net, device=device, dtype=dtype), window, t, ov, spec.name)


def _check_vfi_options(interpolate: bool, **options: Any) -> None:
    given = [k for k, v in options.items() if v is not None]
    if given and not interpolate:
        raise InputError(
            f"{', '.join(given)} only appl{'ies' if len(given) == 1 else 'y'} with interpolate (--interpolate)"
        )
    # checked before any weights are fetched; a model object brings its own weights
    if interpolate and options["vfi_weights"] is None and not isinstance(options["vfi_model"], nn.Module):
        raise InputError(
            "interpolate needs the frame-interpolation weights: pass --vfi-weights official (downloads "
            "the published ones, CC-BY-NC-4.0, non-commercial use only) or --vfi-weights PATH"
        )


def write_stream(
    writer,
    source: str | os.PathLike,
    produce: Callable[[Any], Iterable[tuple[int, torch.Tensor]]],
    *,
    start: int,
    bit_depth: int,
    total: int | None,
    progress: bool,
    desc: str,
) -> int:
    """Open ``source`` at frame ``start``, write every frame ``produce(reader)`` yields (quantised to
    ``bit_depth``), with a progress bar; close the writer at the end, or abort it (nothing
    half-written left under the output name) on any exception, Ctrl-C included.

    Returns:
        The number of frames written.
    """
    from rvrt.inference.video_io import open_reader

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="frame", desc=desc, dynamic_ncols=True, leave=False)
    count = 0
    try:
        with open_reader(source, start=start) as reader:
            for _, frame in produce(reader):
                writer.write(to_uint(frame, bit_depth))
                count += 1
                if bar is not None:
                    bar.update(1)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    return count


def restore_iter(
    source: str | os.PathLike | Iterable[np.ndarray | torch.Tensor],
    *,
    model: str | os.PathLike | zoo.ModelSpec | nn.Module | None = None,
    weights: str | os.PathLike | None = None,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = "fp32",
    tile: Any = None,
    tile_overlap: Any = None,
    sigma: float | None = None,
    add_noise: bool = False,
    seed: int = 0,
    interpolate: bool = False,
    vfi_model: str | os.PathLike | zoo.ModelSpec | nn.Module | None = None,
    vfi_weights: str | os.PathLike | None = None,
    vfi_tile: Any = None,
    vfi_tile_overlap: Any = None,
    compile: bool | str = False,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Restore frames one by one as soon as each is final.

    Args:
        source: a video file, a folder of frames or a glob; or an iterable of frames
            (``(H, W, 3)`` uint8/uint16 arrays or ``(3, H, W)`` float tensors in [0, 1]).
        model, weights: see :func:`prepare_model`.
        device, dtype, tile, tile_overlap, sigma, add_noise, seed, compile: as for :func:`restore`.
        interpolate, vfi_model, vfi_weights, vfi_tile, vfi_tile_overlap: space-time super-resolution,
            as for :func:`restore`.

    Yields:
        ``(index, frame)`` with ``frame`` a ``(3, s*H, s*W)`` float32 CPU tensor in [0, 1]; with
        ``interpolate``, ``2n`` frames for ``n`` input frames (see :mod:`rvrt.inference.interpolate`).
    """
    _check_vfi_options(
        interpolate, vfi_model=vfi_model, vfi_weights=vfi_weights, vfi_tile=vfi_tile, vfi_tile_overlap=vfi_tile_overlap
    )
    net, spec = prepare_model(model, weights)
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    extra = _check_options(spec, sigma, add_noise)
    frames, h, w = open_frames(source)
    stage = None
    if interpolate:
        stage = _interpolation(
            vfi_model,
            vfi_weights,
            vfi_tile,
            vfi_tile_overlap,
            height=h * spec.scale,
            width=w * spec.scale,
            device=dev,
            dtype=dt,
        )
    if frames is None:
        if interpolate:
            raise InputError("frame interpolation needs at least 2 frames; the input has none")
        return
    if add_noise:
        frames = _noisy(frames, sigma, seed, 0)
    net.to(dev)
    t, ov = plan_tiles(spec, tile, tile_overlap, height=h, width=w, device=dev, dtype=dt)
    run = model_runner(net, device=dev, dtype=dt, extra_channel=extra, compile=compile)
    out = restore_frames(run, frames, scale=spec.scale, tile=t, overlap=ov, device=dev, backoff=tile == "auto")
    if stage is not None:
        out = _then_interpolate(out, stage, device=dev)
    for i, frame in out:
        yield i, frame.clamp_(0, 1).cpu()


def _then_interpolate(
    restored: Iterator[tuple[int, torch.Tensor]],
    stage: _Interpolation,
    *,
    device: torch.device,
    first_frame: int = 0,
    skip_until: int = 0,
) -> Iterator[tuple[int, torch.Tensor]]:
    from rvrt.inference.interpolate import interpolate_frames

    # the interpolation model sees restored frames as they would be saved: in [0, 1]
    frames = (f.clamp_(0, 1) for _, f in restored)
    return interpolate_frames(
        stage.run,
        frames,
        window=stage.window,
        tile=stage.tile,
        overlap=stage.overlap,
        device=device,
        first_frame=first_frame,
        skip_until=skip_until,
    )


def restore(
    input: str | os.PathLike,
    output: str | os.PathLike,
    *,
    model: str | os.PathLike | zoo.ModelSpec | nn.Module | None = None,
    weights: str | os.PathLike | None = None,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = "fp32",
    tile: Any = None,
    tile_overlap: Any = None,
    sigma: float | None = None,
    add_noise: bool = False,
    seed: int = 0,
    interpolate: bool = False,
    vfi_model: str | os.PathLike | zoo.ModelSpec | nn.Module | None = None,
    vfi_weights: str | os.PathLike | None = None,
    vfi_tile: Any = None,
    vfi_tile_overlap: Any = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    codec: str | None = None,
    crf: int | None = None,
    preset: str | None = None,
    bit_depth: int | None = None,
    fps: float | Fraction | None = None,
    compile: bool | str = False,
) -> RestoreSummary:
    """Restore a video (file, frames folder or glob) into a video file or a folder of PNG frames.

    Streams: decodes, restores window by window and tile by tile, and encodes as it goes, so memory
    depends on the tile sizes, not on the length of the video.

    Args:
        input: video file (mp4, mkv, mov, avi, webm, gif, ...), folder of frames, or glob.
        output: video file (fps, audio/subtitle streams and colour tags kept) or a folder (PNG frames
            named like the input frames; ``00000000.png ...`` with ``interpolate``).
        model: registered name, config file, or a model from :func:`rvrt.create_model`.
        weights: ``.pth``/``.safetensors``/``.ckpt`` file or ``"official"``.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        dtype: ``fp32``, ``fp16`` or ``bf16`` (half precision runs under autocast).
        tile: ``(frames, height, width)`` in input pixels (0 = whole) or ``"auto"``; default: the
            model's official test tile (bounded in time).
        tile_overlap: ``(frames, height, width)``.
        sigma: noise level (0..255) for non-blind denoising models (and for ``add_noise``).
        add_noise: add seeded Gaussian noise of ``sigma`` to the input first (synthetic tests).
        seed: noise seed.
        interpolate: space-time super-resolution: then double the frame rate of the restored frames
            with a frame-interpolation model (``n`` frames give ``2n`` at twice the frame rate, the
            last one held; see :mod:`rvrt.inference.interpolate`).
        vfi_model: the frame-interpolation model (default ``vrt.vfi_vimeo``).
        vfi_weights: its weights, ``"official"`` (CC-BY-NC-4.0) or a file; required with ``interpolate``.
        vfi_tile, vfi_tile_overlap: its spatial tile ``(height, width)`` in output pixels (default: whole
            frames when they fit in memory) and overlap.
        overwrite: replace an existing output.
        resume: continue an interrupted run into a frames folder.
        progress: progress bar on stderr.
        codec, crf, preset, bit_depth, fps: output encoding (bit_depth 8 or 16 for PNG frames; fps:
            output frame rate, by default the input's, twice it with ``interpolate``, 25 for frames).
        compile: run the model through ``torch.compile`` (worth it on a GPU for long videos).

    Raises:
        InputError: bad input, impossible options (one clear message).
    """
    from rvrt.inference.interpolate import output_fps, resume_input_frame
    from rvrt.inference.video_io import VIDEO_EXTENSIONS, open_writer, probe

    t0 = time.perf_counter()
    _check_vfi_options(
        interpolate, vfi_model=vfi_model, vfi_weights=vfi_weights, vfi_tile=vfi_tile, vfi_tile_overlap=vfi_tile_overlap
    )
    net, spec = prepare_model(model, weights)
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    extra = _check_options(spec, sigma, add_noise)
    info = probe(input)
    if info.channels_note:
        log.warning("%s: %s", input, info.channels_note)
    s = spec.scale
    stage = None
    if interpolate:
        if info.frame_count is not None and info.frame_count < 2:
            raise InputError(f"frame interpolation needs at least 2 frames; {input} has {info.frame_count}")
        stage = _interpolation(
            vfi_model,
            vfi_weights,
            vfi_tile,
            vfi_tile_overlap,
            height=info.height * s,
            width=info.width * s,
            device=dev,
            dtype=dt,
        )
    out_is_video = Path(output).suffix.lower() in VIDEO_EXTENSIONS
    if bit_depth is None:
        bit_depth = 8 if out_is_video else info.bit_depth
    if bit_depth not in (8, 16):
        raise InputError(f"--bit-depth must be 8 or 16; got {bit_depth}")
    if resume and out_is_video:
        raise InputError("--resume needs a folder of frames as output (a video file is only complete at the end)")
    t, ov = plan_tiles(spec, tile, tile_overlap, height=info.height, width=info.width, device=dev, dtype=dt)
    # doubled output frames are numbered afresh: the input's frame names do not describe them
    like = replace(info, names=None) if interpolate else info
    rate = output_fps(info.fps, fps) if interpolate else fps
    writer = open_writer(
        output,
        like=like,
        width=info.width * s,
        height=info.height * s,
        fps=rate,
        codec=codec,
        crf=crf,
        preset=preset,
        bit_depth=bit_depth,
        overwrite=overwrite,
        resume=resume,
    )
    done = writer.completed if resume else 0
    restored_from = resume_input_frame(done, stage.window) if stage is not None else done
    sched = WindowSchedule(t[0], ov[0] if t[0] else 0)
    first = sched.first_window_for(restored_from)
    log.info(
        "model %s (%s, x%d) on %s %s; tile %s overlap %s",
        spec.name,
        spec.task,
        s,
        dev,
        str(dt).replace("torch.", ""),
        t,
        ov,
    )
    if stage is not None:
        log.info(
            "then frame interpolation with %s (%d-frame windows); tile %s overlap %s",
            stage.name,
            stage.window,
            stage.tile,
            stage.overlap,
        )
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    net.to(dev)
    run = model_runner(net, device=dev, dtype=dt, extra_channel=extra, compile=compile)
    total = info.frame_count
    if total and stage is not None:
        total *= 2

    def produce(reader) -> Iterator[tuple[int, torch.Tensor]]:
        frames: Iterable[torch.Tensor] = (to_float(f.data) for f in reader)
        if add_noise:
            frames = _noisy(frames, sigma, seed, first)
        out = restore_frames(
            run,
            frames,
            scale=s,
            tile=t,
            overlap=ov,
            device=dev,
            total=info.frame_count if info.kind == "frames" else None,
            first_frame=first,
            skip_until=restored_from,
            backoff=tile == "auto",
        )
        if stage is not None:
            out = _then_interpolate(out, stage, device=dev, first_frame=restored_from, skip_until=done)
        return out

    count = write_stream(
        writer,
        input,
        produce,
        start=first,
        bit_depth=bit_depth,
        total=(total - done) if total else None,
        progress=progress,
        desc="restore + interpolate" if stage is not None else "restore",
    )
    if done and count == 0:
        log.info("nothing left to do: all %d frames were already restored", done)
    peak_dev = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
    return RestoreSummary(
        output=str(output),
        model=spec.name if stage is None else f"{spec.name} + {stage.name}",
        frames=count,
        seconds=time.perf_counter() - t0,
        peak_host_mb=peak_host_memory_mb(),
        peak_device_mb=peak_dev,
        resumed_from=done,
        tile=t,
        frame_rate=getattr(writer, "fps", None),
    )
