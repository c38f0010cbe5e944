"""The runner: decode -> plan -> model stage(s) -> blend -> encode, for every job that turns frames into frames.

``rvrt restore``, ``rvrt interpolate``, space-time super-resolution (restore, then interpolate)
and every input of a batch are configurations of :func:`run_job`; ``restore_iter`` and
``interpolate_iter`` are :func:`iter_job` (the same stages without a writer).

What a run does, in order:

1. select the models (once, at the top; a batch selects them once for all its inputs);
2. probe the input and count its frames (a truncated or damaged video is refused unless
   ``allow_truncated``), take the asked range (``start``, ``frames``);
3. plan each stage's tiles from the memory model and the memory available;
4. claim and prepare the output (:mod:`rvrt.inference.outputs`): refuse, overwrite or resume;
5. stream: read from where the stages must restart, run the stages, write each final frame
   (PNG frames or video segments), recording it in the run log;
6. finish the output (join the segments with the audio and subtitles), release the claim.

Memory is bounded by the tiles, not by the length of the video.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch import nn

import rvrt
from rvrt import zoo
from rvrt.api import select_model
from rvrt.compute import available_memory, dtype_name, peak_host_memory_mb, resolve_device, resolve_dtype
from rvrt.errors import InputError
from rvrt.inference.options import JobOptions, flag
from rvrt.inference.outputs import OutputSession, open_output, workdir_of
from rvrt.inference.progress import Progress
from rvrt.inference.stages import Stage, build_stage
from rvrt.inference.vfi import output_fps
from rvrt.media import MediaInfo, check_length, open_reader, output_kind, probe
from rvrt.media.pixels import frame_to_tensor, tensor_to_frame
from rvrt.media.segments import SegmentedVideoWriter
from rvrt.media.writers import _FramesWriter, _refuse_own_input

__all__ = ["RunSummary", "Interrupted", "run_job", "iter_job", "select_models", "input_identity"]

log = logging.getLogger(__name__)

Models = list[tuple[nn.Module, zoo.ModelSpec]]


class Interrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C or SIGTERM; what it finished stays and ``--resume`` continues it."""

    def __init__(self, output: str, done: int, signal_name: str = "SIGINT") -> None:
        super().__init__(output, done)
        self.output = output
        self.done = done
        self.signal_name = signal_name


@dataclass
class RunSummary:
    """What a run did."""

    input: str
    output: str
    model: str
    frames: int = 0  # output frames written by this run
    seconds: float = 0.0
    peak_host_mb: float = 0.0
    peak_device_mb: float | None = None
    resumed_from: int = 0
    tiles: list[str] = field(default_factory=list)
    frame_rate: Fraction | None = None
    status: str = "done"
    notes: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        """Processing speed (output frames per second)."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def tile(self) -> str:
        return "; ".join(self.tiles)

    def line(self) -> str:
        if self.status != "done":
            return f"{self.status} -> {self.output}"
        dev = f", peak device memory {self.peak_device_mb:.0f} MB" if self.peak_device_mb is not None else ""
        resumed = f" (resumed at frame {self.resumed_from})" if self.resumed_from else ""
        rate = f" at {_rate_text(self.frame_rate)} fps" if self.frame_rate is not None else ""
        notes = "".join(f"; {n}" for n in self.notes)
        return (
            f"{self.frames} frames{rate} in {self.seconds:.1f} s ({self.fps:.2f} frames/s){resumed}, "
            f"tile {self.tile}, peak host memory {self.peak_host_mb:.0f} MB{dev}{notes} -> {self.output}"
        )


def _rate_text(rate: Fraction | float) -> str:
    rate = Fraction(rate)
    return str(rate.numerator) if rate.denominator == 1 else f"{rate} (= {float(rate):.3f})"


def select_models(options: JobOptions) -> Models:
    """The model of every stage (checked for the stage's kind)."""
    return [select_model(s.model, s.weights, kind=s.kind) for s in options.stages]


def input_identity(info: MediaInfo) -> dict:
    """What identifies an input for a resume: its path, and the size and modification time of its
    file(s); a frames folder also by its frame names."""
    files = [Path(f) for f in info.files] if info.files else [Path(info.path)]
    stats = []
    for f in files:
        try:
            st = f.stat()
            stats.append([f.name, st.st_size, st.st_mtime_ns])
        except OSError:
            stats.append([f.name, None, None])
    import hashlib

    digest = hashlib.sha256(repr(stats).encode()).hexdigest()[:16]
    return {"input": str(Path(info.path).resolve()), "input_files": digest}


def _build_stages(options, models, height, width, device, dtype, total, plans=None) -> list[Stage]:
    budget = int(options.memory_fraction * available_memory(device))
    stages: list[Stage] = []
    h, w = height, width
    n = total
    for i, (opts, (net, spec)) in enumerate(zip(options.stages, models, strict=True)):
        net.to(device)
        stage = build_stage(
            opts, net, spec, height=h, width=w, device=device, dtype=dtype, budget=budget,
            compile=options.compile, index=i, plan=plans[i] if plans else None, total=n,
        )  # fmt: skip
        stages.append(stage)
        h, w = h * stage.scale, w * stage.scale
        n = stage.output_count(n) if n is not None else None
    return stages


def _chain(stages: list[Stage], frames: Iterable[torch.Tensor], firsts, skips, totals, progress):
    """The stages one after the other; each sees the previous one's frames as saved (in [0, 1])."""
    out: Iterable = frames
    for k, stage in enumerate(stages):
        later = 1
        for s in stages[k + 1 :]:
            later *= s.time_factor
        report = None
        if progress is not None and k == 0:

            def report(fraction, frames_, factor=later):
                progress.inside(fraction, frames_ * factor)

        if k > 0:
            out = (f.clamp(0, 1) for _, f in out)
        out = stage.process(out, first=firsts[k], skip_until=skips[k], total=totals[k], progress=report)
    return out


def _resume_points(stages: list[Stage], done: int) -> tuple[list[int], list[int]]:
    """Per stage: the input frame to start reading at and the output frame to start yielding at."""
    firsts, skips = [0] * len(stages), [0] * len(stages)
    need = done
    for k in range(len(stages) - 1, -1, -1):
        skips[k] = need
        firsts[k] = stages[k].input_for(need)
        need = firsts[k]
    return firsts, skips


def _count(info: MediaInfo, allow_truncated: bool) -> tuple[int | None, list[str]]:
    """Frames the input holds (counted for videos) and notes; refuses a truncated video unless allowed."""
    notes: list[str] = []
    if info.kind != "video":
        return info.frame_count, notes
    length = check_length(info)
    if length.truncated:
        what = length.describe(info.path)
        if not allow_truncated:
            raise InputError(
                f"{what}: it is truncated or damaged; pass --allow-truncated (allow_truncated=True) to restore "
                f"the {length.present} frames it holds"
            )
        log.warning("%s: restoring the %d frames it holds", what, length.present)
        notes.append(f"input truncated: {length.present} of {length.stated} frames")
    return length.present, notes


def run_job(
    input: str | os.PathLike,
    output: str | os.PathLike,
    options: JobOptions,
    *,
    models: Models | None = None,
    skip_complete: bool = False,
) -> RunSummary:
    """Run ``options`` on one input into one output (see the module doc).

    Args:
        input: video file, folder of frames or glob.
        output: video file or frames folder (:func:`rvrt.media.output_kind`).
        options: the job.
        models: the stages' models, already selected (a batch selects them once).
        skip_complete: report a complete output as ``status="skipped"`` instead of refusing it.

    Raises:
        InputError, OutputError, WeightsError, DownloadError, InsufficientMemoryError: one clear message.
        Interrupted: Ctrl-C or SIGTERM (what is finished stays; ``resume`` continues).
    """
    t0 = time.perf_counter()
    device, dtype = resolve_device(options.device), resolve_dtype(options.dtype)
    dest = Path(output).expanduser()
    kind = output_kind(dest)
    models = models if models is not None else select_models(options)
    info = probe(input)
    _refuse_own_input(dest, info)
    if info.channels_note:
        log.warning("%s: %s", input, info.channels_note)
    count, notes = _count(info, options.allow_truncated)
    start = options.start
    if count is not None and start >= count:
        raise InputError(f"{flag('start')} {start} is past the end of {input} ({count} frames)")
    n_in = None if count is None else count - start
    if options.frames is not None:
        n_in = options.frames if n_in is None else min(n_in, options.frames)
    if any(s.kind == "interpolate" for s in options.stages) and n_in is not None and n_in < 2:
        raise InputError(f"frame interpolation needs at least 2 frames; {input} has {n_in}")

    stages = _build_stages(options, models, info.height, info.width, device, dtype, n_in)
    totals = [n_in]
    for s in stages:
        totals.append(s.output_count(totals[-1]) if totals[-1] is not None else None)
    n_out = totals[-1]
    scale = 1
    factor = 1
    for s in stages:
        scale *= s.scale
        factor *= s.time_factor
    bit_depth = options.bit_depth or (8 if kind == "video" else info.bit_depth)
    fps = options.fps
    if factor == 2:
        fps = output_fps(info.fps, options.fps)
    renamed = factor != 1 or info.names is None
    names = [f"{start + i:08d}" if factor == 1 else f"{i:08d}" for i in range(n_out or 0)] if renamed else None
    like = replace(info, names=tuple(names) if names else info.names[start:])
    expected = [f"{n}.png" for n in (like.names or ())][: n_out if n_out is not None else None]

    fingerprint = {
        "rvrt": rvrt.__version__,
        **input_identity(info),
        "start": start,
        "frames": options.frames,
        "device": device.type,
        "dtype": dtype_name(dtype),
        "compile": options.compile,
        "output": kind,
        "bit_depth": bit_depth,
        **(
            {"codec": options.codec, "crf": options.crf, "preset": options.preset, "fps": str(fps) if fps else None,
             "segment_frames": options.segment_frames}
            if kind == "video" else {}
        ),
    }  # fmt: skip
    for s in stages:
        fingerprint.update(s.fingerprint())
    session = open_output(
        dest, kind, fingerprint, overwrite=options.overwrite, resume=options.resume, expected_names=expected,
        frame_format=(info.width * scale, info.height * scale, bit_depth), skip_complete=skip_complete,
    )  # fmt: skip
    try:
        if session.complete:
            status = "skipped: complete" if skip_complete else "nothing to do: complete"
            return RunSummary(str(input), str(dest), " + ".join(s.name for s in stages), status=status)
        if session.plan:  # a resumed run keeps the tiles it started with
            plans = session.plan.get("stages", [])
            stages = _build_stages(options, models, info.height, info.width, device, dtype, n_in, plans)
        for s in stages:
            s.on_plan_change = lambda _s: session.runlog.append({"plan": _plan_of(stages)})
        done = session.done
        session.start({"fingerprint": fingerprint, "plan": _plan_of(stages), "output_frames": n_out})
        return _stream(input, dest, options, info, like, stages, session, totals, start, done, bit_depth, fps,
                       kind, notes, device, t0)  # fmt: skip
    finally:
        session.release()


def _plan_of(stages: list[Stage]) -> dict:
    return {"stages": [s.plan.to_dict() for s in stages]}


def _stream(input, dest, options, info, like, stages, session: OutputSession, totals, start, done, bit_depth, fps,
            kind, notes, device, t0) -> RunSummary:  # fmt: skip
    n_in, n_out = totals[0], totals[-1]
    firsts, skips = _resume_points(stages, done)
    for s in stages:
        log.info("%s on %s %s: tile %s", s.name, device, dtype_name(s.dtype), s.plan.describe())
    if done:
        log.info("%s: resuming after %d finished frames", dest, done)
    if kind == "frames":
        size = (info.width * _scale(stages), info.height * _scale(stages))
        writer = _FramesWriter(dest, like, *size, bit_depth, overwrite=options.overwrite or session.resumed,
                               compress_level=3, first=done)  # fmt: skip
    else:
        writer = SegmentedVideoWriter(
            dest, workdir_of(dest), like, info.width * _scale(stages), info.height * _scale(stages), fps=fps,
            codec=options.codec, crf=options.crf, preset=options.preset, bit_depth=bit_depth,
            overwrite=options.overwrite, first_frame=start, segment_frames=options.segment_frames,
            done=session.segments, on_segment=session.record_segment, total=n_out,
        )  # fmt: skip
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    progress = Progress(n_out, " + ".join(s.options.kind for s in stages), enabled=options.progress, initial=done)
    reader = open_reader(input, start=start + firsts[0], info=info,
                         on_damage="stop" if options.allow_truncated else "raise")  # fmt: skip
    count = 0
    read = [0]

    def frames_in() -> Iterator[torch.Tensor]:
        limit = None if n_in is None else n_in - firsts[0]
        for f in itertools.islice(reader, limit):
            read[0] += 1
            yield frame_to_tensor(f.data)

    try:
        with reader:
            for _, frame in _chain(stages, frames_in(), firsts, skips, totals[:-1], progress):
                path = writer.write(tensor_to_frame(frame, bit_depth))
                if kind == "frames":
                    session.record_frame(path.name)
                count += 1
                progress.advance(1)
        got = firsts[0] + read[0]
        damaged = getattr(reader, "damaged", None)
        if damaged is not None:
            notes.append(f"input damaged at frame {start + damaged[0]}: restored the {got} frames before it")
        elif n_in is not None and got < n_in:
            msg = f"{input} ended after {start + got} frames; it was counted {start + n_in}"
            if not options.allow_truncated:
                raise InputError(f"{msg}: the file is damaged; --allow-truncated --resume keeps what was restored")
            notes.append(msg)
        writer.close()
        session.finish(done + count)
    except KeyboardInterrupt as err:
        writer.abort()
        progress.close()
        raise Interrupted(str(dest), done + count, getattr(err, "signal_name", "SIGINT")) from err
    except BaseException:
        writer.abort()
        raise
    finally:
        progress.close()
    peak_dev = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return RunSummary(
        str(input), str(dest), " + ".join(s.name for s in stages), frames=count,
        seconds=time.perf_counter() - t0, peak_host_mb=peak_host_memory_mb(), peak_device_mb=peak_dev,
        resumed_from=done, tiles=[s.plan.describe() for s in stages],
        frame_rate=getattr(writer, "fps", None), notes=notes,
    )  # fmt: skip


def _scale(stages: list[Stage]) -> int:
    s = 1
    for st in stages:
        s *= st.scale
    return s


def _open_source(source) -> tuple[Iterator[torch.Tensor] | None, int, int, int | None]:
    """Frames of a path or of an iterable of arrays/tensors, as float tensors; height, width, count."""
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
    return itertools.chain([first], (conv(f) for f in it)), int(h), int(w), None


def iter_job(
    source: str | os.PathLike | Iterable[np.ndarray | torch.Tensor],
    options: JobOptions,
    *,
    models: Models | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """The stages of ``options`` over ``source``, yielding ``(index, frame)`` as each output frame is
    final: ``(3, H, W)`` float32 CPU tensors in [0, 1]. Nothing is written."""
    device, dtype = resolve_device(options.device), resolve_dtype(options.dtype)
    models = models if models is not None else select_models(options)
    frames, h, w, total = _open_source(source)
    if frames is None:
        if any(s.kind == "interpolate" for s in options.stages):
            raise InputError("frame interpolation needs at least 2 frames; the input has none")
        return
    stages = _build_stages(options, models, h, w, device, dtype, total)
    totals = [total]
    for s in stages[:-1]:
        totals.append(s.output_count(totals[-1]) if totals[-1] is not None else None)
    progress = Progress(None, "frames", enabled=False)
    n = len(stages)
    for i, frame in _chain(stages, frames, [0] * n, [0] * n, totals, progress if options.progress else None):
        yield i, frame.clamp(0, 1).cpu()
