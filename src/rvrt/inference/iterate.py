"""The stages of a job over frames, without a writer: what :func:`rvrt.restore_iter` and
:func:`rvrt.interpolate_iter` yield. The same stages, plan and scene cuts as the runner
(:mod:`rvrt.inference.runner`), frames handed back as each one is final instead of written."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Sized

import numpy as np
import torch

from rvrt.compute import resolve_device
from rvrt.errors import InputError
from rvrt.inference.options import JobOptions, flag
from rvrt.inference.progress import Progress
from rvrt.inference.runner import (
    Models,
    _build_stages,
    _chain,
    _check_pipes,
    _find_cuts,
    _set_cuts,
    job_dtype,
    select_models,
)
from rvrt.media import open_reader, probe
from rvrt.media.pixels import frame_to_tensor
from rvrt.media.scenes import given_cuts

__all__ = ["iter_job"]


def _open_source(source) -> tuple[Iterator[torch.Tensor] | None, int, int, int | None]:
    """Frames of a path or of an iterable of arrays/tensors, as float tensors; height, width, count (None: unknown)."""
    if isinstance(source, (str, os.PathLike)):
        info = probe(source)
        reader = open_reader(source, info=info)
        return (frame_to_tensor(f.data) for f in reader), info.height, info.width, info.frame_count
    it = iter(source)
    first = next(it, None)
    if first is None:
        return None, 0, 0, 0

    def conv(f):
        if isinstance(f, np.ndarray):
            return frame_to_tensor(f)
        if isinstance(f, torch.Tensor) and f.dim() == 3:
            return f.float()
        raise InputError(f"frames must be (H, W, 3) uint8/uint16 arrays or (3, H, W) float tensors; got {type(f)}")

    first = conv(first)
    h, w = first.shape[-2:]
    total = len(source) if isinstance(source, Sized) else None  # a list: known; a generator: not
    return itertools.chain([first], (conv(f) for f in it)), int(h), int(w), total


def iter_job(
    source: str | os.PathLike | Iterable[np.ndarray | torch.Tensor],
    options: JobOptions,
    *,
    models: Models | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """The stages of ``options`` over ``source``, yielding ``(index, frame)`` as each output frame is
    final: ``(3, H, W)`` float32 CPU tensors in [0, 1]. Nothing is written."""
    device = resolve_device(options.device)
    _check_pipes(source, "frames", options)
    models = models if models is not None else select_models(options)
    dtype = job_dtype(options, models, device)
    frames, h, w, total = _open_source(source)
    if frames is None:
        if any(s.kind == "interpolate" for s in options.stages):
            raise InputError("frame interpolation needs at least 2 frames; the input has none")
        return
    stages = _build_stages(options, models, h, w, device, dtype, total)
    if isinstance(source, (str, os.PathLike)):
        cuts = _find_cuts(options, source, probe(source), 0, total)
    elif options.scene_cuts == "auto":
        raise InputError(
            f"{flag('scene_cuts')} 'auto' reads the input twice: pass a file or folder, or the cuts as a list"
        )
    else:
        cuts = given_cuts(options.scene_cuts) or []
    _set_cuts(stages, cuts)
    totals = [total]
    for s in stages[:-1]:
        totals.append(s.output_count(totals[-1]) if totals[-1] is not None else None)
    n_out = stages[-1].output_count(totals[-1]) if totals[-1] is not None else None
    progress = Progress(n_out, " + ".join(s.options.kind for s in stages), enabled=options.progress)
    n = len(stages)
    try:
        for i, frame in _chain(stages, frames, [0] * n, [0] * n, totals, progress):
            yield i, frame.clamp(0, 1).cpu()
    finally:
        progress.close()
