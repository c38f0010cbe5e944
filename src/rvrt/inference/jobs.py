"""The Python entry points: :func:`restore`, :func:`interpolate` and their ``_iter`` forms.

Each builds a :class:`~rvrt.inference.options.JobOptions` from its keyword arguments (checking
every value once) and hands it to the runner (:mod:`rvrt.inference.runner`); the command line
builds the same objects from its flags.

``restore(..., interpolate=True)`` is space-time super-resolution: the restored frames stream on
into a frame-interpolation model that doubles the frame rate. Restoration comes first, as in the
VRT paper's space-time results (its Table 7: "VSR+VFI" beats "VFI+VSR" on Vid4 and all Vimeo-90K
splits, e.g. 27.46 vs 26.59 dB on Vid4): the interpolation model was trained on high-resolution
frames, and it then sees sharp frames instead of low-resolution ones whose errors the SR model
would magnify.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

from rvrt.errors import InputError
from rvrt.inference.iterate import iter_job
from rvrt.inference.options import JobOptions, StageOptions
from rvrt.inference.runner import RunSummary, run_job

__all__ = ["restore", "restore_iter", "interpolate", "interpolate_iter", "RunSummary", "restore_job", "interpolate_job"]

_JOB_FIELDS = {
    "device", "dtype", "compile", "memory_fraction", "start", "frames", "codec", "crf", "preset", "bit_depth",
    "fps", "segment_frames", "overwrite", "resume", "allow_truncated", "scene_cuts", "progress",
}  # fmt: skip
_RESTORE_FIELDS = {"model", "weights", "tile", "tile_overlap", "sigma", "add_noise", "seed"}
_VFI_FIELDS = ("vfi_model", "vfi_weights", "vfi_tile", "vfi_tile_overlap", "hold_last")


def _unknown(kwargs: dict, allowed: set[str], fn: str) -> None:
    extra = sorted(set(kwargs) - allowed)
    if extra:
        raise InputError(f"{fn}() got unknown argument(s) {', '.join(extra)}; known: {', '.join(sorted(allowed))}")


def restore_job(*, interpolate: bool = False, **kwargs: Any) -> JobOptions:
    """The job of :func:`restore` for these keyword arguments."""
    _unknown(kwargs, _JOB_FIELDS | _RESTORE_FIELDS | set(_VFI_FIELDS), "restore")
    if not isinstance(interpolate, bool):
        raise InputError(f"interpolate (--interpolate) must be True or False; got {interpolate!r}")
    stage = StageOptions("restore", **{k: kwargs.pop(k) for k in list(kwargs) if k in _RESTORE_FIELDS})
    vfi = {k: kwargs.pop(k) for k in _VFI_FIELDS if k in kwargs}
    stages = [stage]
    if interpolate:
        if "vfi_weights" not in vfi and not isinstance(vfi.get("vfi_model"), torch.nn.Module):
            raise InputError(
                "interpolate needs the frame-interpolation weights: pass vfi_weights='official' (--vfi-weights "
                "official; downloads the published ones, CC-BY-NC-4.0, non-commercial use only) or a weights file"
            )
        stages.append(
            StageOptions(
                "interpolate",
                model=vfi.get("vfi_model"),
                weights=vfi.get("vfi_weights"),
                tile=vfi.get("vfi_tile", "auto"),
                tile_overlap=vfi.get("vfi_tile_overlap"),
                hold_last=vfi.get("hold_last", True),
                prefix="vfi-",
            )
        )
    else:
        given = [k for k, v in vfi.items() if v is not None and k != "hold_last"]
        if given:
            raise InputError(f"{', '.join(given)} only appl{'ies' if len(given) == 1 else 'y'} with interpolate")
    return JobOptions(stages=tuple(stages), **kwargs)


def interpolate_job(**kwargs: Any) -> JobOptions:
    """The job of :func:`interpolate` for these keyword arguments."""
    _unknown(kwargs, _JOB_FIELDS | {"model", "weights", "tile", "tile_overlap", "hold_last"}, "interpolate")
    stage = StageOptions(
        "interpolate", **{k: kwargs.pop(k) for k in list(kwargs) if k in {"model", "weights", "tile", "tile_overlap",
                                                                           "hold_last"}}
    )  # fmt: skip
    return JobOptions(stages=(stage,), **kwargs)


def restore(
    input: str | os.PathLike, output: str | os.PathLike, options: JobOptions | None = None, /, **kwargs: Any
) -> RunSummary:
    """Restore a video (file, frames folder or glob) into a video file or a folder of PNG frames.

    Streams: decodes, restores window by window and tile by tile, and encodes as it goes, so memory
    depends on the tile sizes, not on the length of the video.

    Args:
        input: video file (mp4, mkv, mov, avi, webm, gif, ...), folder of frames, or glob.
        output: video file (fps, audio/subtitle streams and colour tags kept) or a folder of PNG
            frames named like the input frames (``00000000.png ...`` with ``interpolate``).
        options: a :class:`~rvrt.inference.options.JobOptions`; or the keyword arguments below.

    Keyword arguments:
        model: registered name, config file, or a model from :func:`rvrt.create_model` (default:
            the built-in model, or the one a weights file names).
        weights: ``.pth``/``.safetensors``/``.ckpt`` file, ``"official"`` (the published file),
            ``"default"`` (the default: the weights that go with the model, see
            :func:`rvrt.api.select_model`) or ``None`` (a randomly initialised model, as in
            :func:`rvrt.create_model`).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``. dtype: ``auto`` (the default: bfloat16 autocast
            where measured to be within 2 levels on a CPU that computes it natively, else float32),
            ``fp32``, ``fp16`` or ``bf16``.
        tile: ``"auto"`` (default: the largest tile that fits ``memory_fraction`` of the free
            memory) or ``(frames, height, width)`` in input pixels (0 = whole). tile_overlap: the
            same three numbers (default: the model's).
        memory_fraction: share of the available memory ``tile="auto"`` plans with (default 0.5).
        sigma: noise level (0..255) for non-blind denoising models (and for ``add_noise``).
        add_noise, seed: add seeded Gaussian noise of ``sigma`` to the input first (synthetic tests).
        interpolate: space-time super-resolution, then double the frame rate (``n`` frames give ``2n``).
        vfi_model, vfi_weights, vfi_tile, vfi_tile_overlap, hold_last: the interpolation stage
            (weights required: ``"official"``, CC-BY-NC-4.0, or a file).
        start, frames: restore ``frames`` input frames from frame ``start`` (a preview of a part).
        codec, crf, preset, bit_depth, fps: output encoding (bit_depth 8 or 16, by default the input's:
            8/16-bit PNG frames, a video 8 or 10-bit; fps: output frame rate, by default the input's,
            twice it with ``interpolate``, 25 for frames).
        segment_frames: video outputs are encoded in segments of this many frames (default 250),
            joined at the end; an interrupted run loses at most one segment.
        overwrite: replace an existing output (only what rvrt wrote is removed from a folder).
        resume: continue an interrupted run into the same output (frames folder or video).
        allow_truncated: restore the frames a truncated or damaged video holds.
        scene_cuts: ``"auto"`` (detect the cuts; the default for videos), ``"off"`` (the default
            for frames), a cut list file or a list of frame numbers: each shot is restored on its
            own (see :mod:`rvrt.media.scenes`); ``restore_iter`` of an iterable takes a list only.
        progress: progress bar on stderr; or a callable ``(desc, done, total)`` told as output frames
            are done instead (``done`` a float, ``total`` None when unknown; what it raises stops the run).
        compile: run the model through ``torch.compile``.

    Returns:
        A :class:`~rvrt.inference.runner.RunSummary`.

    Raises:
        RVRTError: bad input or options, an output that exists, not enough memory (one clear message).
    """
    job = options if options is not None else restore_job(**kwargs)
    if options is not None and kwargs:
        raise InputError("pass either a JobOptions or keyword arguments, not both")
    return run_job(input, output, job)


def interpolate(
    input: str | os.PathLike, output: str | os.PathLike, options: JobOptions | None = None, /, **kwargs: Any
) -> RunSummary:
    """Double the frame rate of a video (file, frames folder or glob) into a video file or a frames folder.

    ``n`` input frames give ``2n`` output frames at exactly twice the frame rate (``2n - 1`` with
    ``hold_last=False``); see :mod:`rvrt.inference.vfi`. Keyword arguments: ``model`` (default
    ``vrt.vfi_vimeo``), ``weights`` (required: ``"official"``, CC-BY-NC-4.0, or a file), ``tile``
    (``"auto"`` or ``(height, width)``), ``tile_overlap``, ``hold_last``, and the run options of
    :func:`restore` (device, dtype, start, frames, encoding, overwrite, resume, progress, ...).
    """
    job = options if options is not None else interpolate_job(**kwargs)
    if options is not None and kwargs:
        raise InputError("pass either a JobOptions or keyword arguments, not both")
    return run_job(input, output, job)


def restore_iter(
    source: str | os.PathLike | Iterable[np.ndarray | torch.Tensor], **kwargs: Any
) -> Iterator[tuple[int, torch.Tensor]]:
    """Restore frames one by one as soon as each is final.

    Args:
        source: a video file, a folder of frames or a glob; or an iterable of frames
            (``(H, W, 3)`` uint8/uint16 arrays or ``(3, H, W)`` float tensors in [0, 1]).
        **kwargs: as for :func:`restore` (those about the output do not apply).

    Yields:
        ``(index, frame)`` with ``frame`` a ``(3, s*H, s*W)`` float32 CPU tensor in [0, 1]; with
        ``interpolate``, ``2n`` frames for ``n`` input frames.
    """
    kwargs.setdefault("progress", False)
    return iter_job(source, restore_job(**kwargs))


def interpolate_iter(
    source: str | os.PathLike | Iterable[np.ndarray | torch.Tensor], **kwargs: Any
) -> Iterator[tuple[int, torch.Tensor]]:
    """Double the frame rate of frames one by one (see :func:`interpolate`); yields ``(index, frame)``."""
    kwargs.setdefault("progress", False)
    return iter_job(source, interpolate_job(**kwargs))
