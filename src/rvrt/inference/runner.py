"""The runner: decode -> plan -> model stage(s) -> blend -> encode, for every job that turns frames into frames.

``rvrt restore``, ``rvrt interpolate``, space-time super-resolution (restore, then interpolate)
and every input of a batch are configurations of :func:`run_job`; ``restore_iter`` and
``interpolate_iter`` are :func:`rvrt.inference.iterate.iter_job` (the same stages without a writer).

What a run does, in order:

1. select the models (once, at the top; a batch selects them once for all its inputs);
2. probe the input and count its frames (a truncated or damaged video is refused unless
   ``allow_truncated``), take the asked range (``start``, ``frames``);
3. plan each stage's tiles from the memory model and the memory available;
4. claim and prepare the output (:mod:`rvrt.inference.outputs`): refuse, overwrite or resume;
5. stream: read from where the stages must restart, run the stages, write each final frame
   (PNG frames, video segments, or a y4m stream on stdout), recording it in the run log;
6. finish the output (join the segments with the audio and subtitles), release the claim.

Memory is bounded by the tiles, not by the length of the video. ``-`` as the input reads a y4m
stream from stdin, as the output writes one to stdout (:mod:`rvrt.media.pipes`): the same run,
with no frame count (the stages plan without one), no claim, no run log and no resume.
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

import torch
from torch import nn

import rvrt
from rvrt import zoo
from rvrt.api import select_model
from rvrt.compute import (
    available_memory,
    dtype_name,
    native_bf16,
    peak_host_memory_mb,
    resolve_device,
    resolve_dtype,
)
from rvrt.errors import InputError
from rvrt.export.onnx import is_onnx_file, load_onnx
from rvrt.inference.options import JobOptions, flag
from rvrt.inference.outputs import OutputSession, open_output, workdir_of
from rvrt.inference.progress import Progress
from rvrt.inference.stages import Stage, build_stage
from rvrt.inference.vfi import output_fps
from rvrt.media import MediaInfo, check_length, open_reader, output_kind, probe
from rvrt.media.pipes import STDIO, PipeWriter, is_pipe
from rvrt.media.pixels import frame_to_tensor, tensor_to_frame
from rvrt.media.scenes import detects, find_cuts, given_cuts
from rvrt.media.segments import SegmentedVideoWriter
from rvrt.media.writers import _FramesWriter, _refuse_own_input

__all__ = [
    "RunSummary",
    "Interrupted",
    "PreparedJob",
    "run_job",
    "prepare_job",
    "claim_output",
    "open_part_writer",
    "stream_part",
    "job_summary",
    "select_models",
    "input_identity",
]

log = logging.getLogger(__name__)

Models = list[tuple[nn.Module, zoo.ModelSpec]]


class Interrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C or SIGTERM; what it finished stays and ``--resume`` continues it."""

    def __init__(self, output: str, done: int, signal_name: str = "SIGINT", resumable: bool = True) -> None:
        super().__init__(output, done)
        self.output = output
        self.done = done
        self.signal_name = signal_name
        self.resumable = resumable  # False for a run from stdin or to stdout


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
    cuts: list[int] = field(default_factory=list)  # input frames that start a shot (scene cuts used)

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
        notes = "".join(f"; {n}" for n in [*self.notes, *_cuts_note(self.cuts)])
        return (
            f"{self.frames} frames{rate} in {self.seconds:.1f} s ({self.fps:.2f} frames/s){resumed}, "
            f"tile {self.tile}, peak host memory {self.peak_host_mb:.0f} MB{dev}{notes} -> {self.output}"
        )


def _cuts_note(cuts: list[int]) -> list[str]:
    if not cuts:
        return []
    shown = ", ".join(map(str, cuts[:8])) + (", ..." if len(cuts) > 8 else "")
    return [f"{len(cuts)} scene cut{'s' if len(cuts) > 1 else ''} (frame{'s' if len(cuts) > 1 else ''} {shown})"]


def _rate_text(rate: Fraction | float) -> str:
    rate = Fraction(rate)
    return str(rate.numerator) if rate.denominator == 1 else f"{rate} (= {float(rate):.3f})"


def select_models(options: JobOptions) -> Models:
    """The model of every stage (checked for the stage's kind)."""
    models = []
    for s in options.stages:
        if is_onnx_file(s.weights):  # an exported graph, run by ONNX Runtime (rvrt.export.onnx)
            net = load_onnx(s.weights, model=s.model, kind=s.kind)
            models.append((net, net.rvrt_spec))
        else:
            models.append(select_model(s.model, s.weights, kind=s.kind))
    return models


def job_dtype(options: JobOptions, models: Models, device: torch.device) -> torch.dtype:
    """The compute precision of a run: ``options.dtype``, where ``"auto"`` (the default) is bfloat16
    autocast on a device that computes bfloat16 natively (:func:`rvrt.compute.native_bf16`: CPUs with
    AMX or AVX512-BF16) when every stage runs a model with its own weights whose record says bfloat16
    changes its saved output by at most 2 of 255 levels (``extras["auto_bf16"]``, measured on real
    frames, docs/PERFORMANCE.md), and float32 otherwise."""
    if options.dtype != "auto":
        return resolve_dtype(options.dtype)
    measured = all(
        spec.extras.get("auto_bf16") and s.weights == zoo.DEFAULT_WEIGHTS and isinstance(net, nn.Module)
        for s, (net, spec) in zip(options.stages, models)
    )
    return torch.bfloat16 if measured and native_bf16(device) else torch.float32


def input_identity(info: MediaInfo) -> dict:
    """What identifies an input for a resume: its path, and the size and modification time of its
    file(s); a frames folder also by its frame names."""
    if info.kind == "pipe":
        return {"input": "stdin", "input_files": None}
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


@dataclass
class PreparedJob:
    """A job made ready for one input and one output: everything a run (or one rank of a sharded
    run, :mod:`rvrt.inference.shard`) needs before it streams."""

    input: str
    dest: Path
    kind: str
    options: JobOptions
    models: Models
    info: MediaInfo
    like: MediaInfo
    stages: list[Stage]
    totals: list[int | None]
    start: int
    bit_depth: int
    fps: Fraction | float | None
    device: torch.device
    dtype: torch.dtype
    fingerprint: dict
    expected: list[str]
    notes: list[str] = field(default_factory=list)
    cuts: list[int] = field(default_factory=list)

    @property
    def n_out(self) -> int | None:
        return self.totals[-1]

    @property
    def scale(self) -> int:
        return _scale(self.stages)

    @property
    def model_name(self) -> str:
        return " + ".join(s.name for s in self.stages)

    def frame_format(self) -> tuple[int, int, int]:
        return (self.info.width * self.scale, self.info.height * self.scale, self.bit_depth)

    def use_plan(self, plan: dict) -> None:
        """Take the tiles and cuts of ``plan`` (a resumed run's, or rank 0's) instead of planning."""
        i = self.info
        self.stages = _build_stages(self.options, self.models, i.height, i.width, self.device, self.dtype,
                                    self.totals[0], plan.get("stages", []))  # fmt: skip
        if "cuts" in plan:
            self.set_cuts([int(c) for c in plan["cuts"]])

    def set_cuts(self, cuts: list[int]) -> None:
        self.cuts = list(cuts)
        _set_cuts(self.stages, [c - self.start for c in cuts])

    def plan(self) -> dict:
        return {"stages": [s.plan.to_dict() for s in self.stages], "cuts": list(self.cuts)}


def prepare_job(
    input: str | os.PathLike, output: str | os.PathLike, options: JobOptions, *, models: Models | None = None
) -> PreparedJob:
    """Probe and count the input, check the range, plan the stages and work out the output's
    names and fingerprint (steps 1 to 3 of the module doc); nothing is claimed or written."""
    device = resolve_device(options.device)
    kind = output_kind(output)
    dest = Path(output) if kind == "pipe" else Path(output).expanduser()
    _check_pipes(input, kind, options)
    models = models if models is not None else select_models(options)
    dtype = job_dtype(options, models, device)
    info = probe(input)
    if kind != "pipe":
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
    factor = 1
    for s in stages:
        factor *= s.time_factor
    bit_depth = options.bit_depth or info.bit_depth  # a 10-bit video stays 10-bit, 16-bit PNGs 16-bit
    fps = options.fps
    if factor == 2:
        fps = output_fps(info.fps, options.fps)
    renamed = factor != 1 or info.names is None
    names = [f"{start + i:08d}" if factor == 1 else f"{i:08d}" for i in range(n_out or 0)] if renamed else None
    like = replace(info, names=tuple(names) if names else info.names[start:] if info.names else None)
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
        "scene_cuts": _cuts_setting(options.scene_cuts, info),
        **(
            {"codec": options.codec, "crf": options.crf, "preset": options.preset, "fps": str(fps) if fps else None,
             "segment_frames": options.segment_frames}
            if kind == "video" else {}
        ),
    }  # fmt: skip
    for s in stages:
        fingerprint.update(s.fingerprint())
    return PreparedJob(str(input), dest, kind, options, models, info, like, stages, totals, start, bit_depth, fps,
                       device, dtype, fingerprint, expected, notes)  # fmt: skip


def _check_pipes(input, kind: str, options: JobOptions) -> None:
    """What a run from stdin or to stdout cannot do (checked before stdin is read)."""
    from_stdin = is_pipe(input)
    if not (from_stdin or kind == "pipe"):
        return
    if options.resume:
        raise InputError(
            f"{flag('resume')} cannot continue a run that reads stdin or writes stdout: a pipe is read and written "
            "once (leave it out; --overwrite replaces a file output)"
        )
    if from_stdin and options.scene_cuts == "auto":
        raise InputError(
            f"{flag('scene_cuts')} auto reads the input before the run, and stdin can be read once: give the cuts "
            "as a file, or leave detection off (the default for stdin)"
        )
    if kind == "pipe":
        given = [flag(n) for n in ("codec", "crf", "preset") if getattr(options, n) is not None]
        if given:
            log.warning("%s: y4m on stdout is not encoded; %s ignored", STDIO, ", ".join(given))


def claim_output(job: PreparedJob, *, skip_complete: bool = False) -> OutputSession:
    """Claim the output and prepare it (refuse, overwrite or resume); a resumed run takes the tiles
    and cuts it started with; otherwise the cuts are found now. The run log's header is written."""
    o = job.options
    session = open_output(
        job.dest, job.kind, job.fingerprint, overwrite=o.overwrite, resume=o.resume, expected_names=job.expected,
        frame_format=job.frame_format(), skip_complete=skip_complete,
    )  # fmt: skip
    try:
        if session.complete:
            return session
        if session.plan:  # a resumed run keeps the tiles and the cuts it started with
            job.use_plan(session.plan)
        if not (session.plan and "cuts" in session.plan):
            job.set_cuts(_find_cuts(o, job.input, job.info, job.start, job.totals[0]))
        for s in job.stages:
            if job.kind != "pipe":  # stdout keeps no run log
                s.on_plan_change = lambda _s: session.runlog.append({"plan": job.plan()})
        session.start({"fingerprint": job.fingerprint, "plan": job.plan(), "output_frames": job.n_out})
    except BaseException:
        session.release()
        raise
    return session


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
        input: video file, folder of frames, glob, or ``"-"`` (a y4m stream on stdin).
        output: video file, frames folder or ``"-"`` (y4m on stdout) (:func:`rvrt.media.output_kind`).
        options: the job.
        models: the stages' models, already selected (a batch selects them once).
        skip_complete: report a complete output as ``status="skipped"`` instead of refusing it.

    Raises:
        InputError, OutputError, WeightsError, DownloadError, InsufficientMemoryError: one clear message.
        Interrupted: Ctrl-C or SIGTERM (what is finished stays; ``resume`` continues).
    """
    t0 = time.perf_counter()
    job = prepare_job(input, output, options, models=models)
    session = claim_output(job, skip_complete=skip_complete)
    try:
        if session.complete:
            status = "skipped: complete" if skip_complete else "nothing to do: complete"
            return RunSummary(job.input, str(job.dest), job.model_name, status=status)
        done = session.done
        if done:
            log.info("%s: resuming after %d finished frames", job.dest, done)
        before = [seg for seg in session.segments if seg.first < done]  # the finished ones from frame 0 on
        writer = open_part_writer(job, done, resumed=session.resumed, segments=before,
                                  on_segment=session.record_segment)  # fmt: skip
        count, rate = stream_part(job, writer, done, None, record_frame=session.record_frame,
                                  progress=options.progress)  # fmt: skip
        session.finish(done + count)
        return job_summary(job, count, t0, resumed_from=done, frame_rate=rate)
    finally:
        session.release()


def job_summary(job: PreparedJob, frames: int, t0: float, **kw) -> RunSummary:
    peak_dev = torch.cuda.max_memory_allocated(job.device) / 2**20 if job.device.type == "cuda" else None
    output = "stdout" if job.kind == "pipe" else str(job.dest)
    return RunSummary(
        job.input, output, job.model_name, frames=frames, seconds=time.perf_counter() - t0,
        peak_host_mb=peak_host_memory_mb(), peak_device_mb=peak_dev, tiles=[s.plan.describe() for s in job.stages],
        notes=job.notes, cuts=job.cuts, **kw,
    )  # fmt: skip


def _cuts_setting(setting, info: MediaInfo):
    """What of the scene-cuts setting goes into the fingerprint: the cuts given (a changed file
    must not resume), or whether they are detected."""
    given = given_cuts(setting)
    if given is not None:
        return given
    return "auto" if detects(setting, info.kind) else "off"


def _find_cuts(options: JobOptions, input, info: MediaInfo, start: int, n_in: int | None) -> list[int]:
    """The scene cuts of the frames a run restores (input frame numbers)."""
    bar = Progress(n_in, "scene cuts", enabled=options.progress if detects(options.scene_cuts, info.kind) else False)
    try:
        cuts, how = find_cuts(options.scene_cuts, input, info=info, start=start, frames=n_in, progress=bar.at)
    finally:
        bar.close()
    if cuts:
        log.info("%s: %d scene cuts %s (frames %s)", input, len(cuts), how, ", ".join(map(str, cuts)))
    return cuts


def _set_cuts(stages: list[Stage], cuts: list[int]) -> None:
    """Give each stage the cuts in its own input frame numbers."""
    for s in stages:
        s.cuts = tuple(cuts)
        cuts = [c * s.time_factor for c in cuts]


def open_part_writer(job: PreparedJob, first: int, *, resumed: bool, segments=None, on_segment=None,
                     join: bool = True):  # fmt: skip
    """The writer of output frames ``first, ...``: PNG frames (``resumed``: frames of an earlier run
    may be replaced), or video segments (``segments``: the finished ones before ``first``;
    ``join=False``: a part of a sharded run, joined by rank 0)."""
    o, i = job.options, job.info
    w, h = i.width * job.scale, i.height * job.scale
    if job.kind == "pipe":
        return PipeWriter(job.like, w, h, fps=job.fps, bit_depth=job.bit_depth)
    if job.kind == "frames":
        return _FramesWriter(job.dest, job.like, w, h, job.bit_depth, overwrite=o.overwrite or resumed,
                             compress_level=3, first=first)  # fmt: skip
    return SegmentedVideoWriter(
        job.dest, workdir_of(job.dest), job.like, w, h, fps=job.fps, codec=o.codec, crf=o.crf, preset=o.preset,
        bit_depth=job.bit_depth, overwrite=o.overwrite, first_frame=job.start, segment_frames=o.segment_frames,
        done=segments, on_segment=on_segment, total=job.n_out, first_segment=first // o.segment_frames,
        join=join,
    )  # fmt: skip


def stream_part(job: PreparedJob, writer, first: int, stop: int | None, *, record_frame=None, progress=True,
                label: str = "") -> tuple[int, Fraction | None]:  # fmt: skip
    """Output frames ``first .. stop - 1`` (to the end when ``stop`` is None) into ``writer``,
    exactly as an uninterrupted run computes them; returns the frames written and the frame rate.

    Raises:
        Interrupted: Ctrl-C or SIGTERM (the writer keeps what is finished).
    """
    stages, totals, o = job.stages, job.totals, job.options
    n_in, n_out = totals[0], totals[-1]
    firsts, skips = _resume_points(stages, first)
    for s in stages:
        auto = " (auto: this CPU computes bfloat16 natively; --dtype fp32 for float32)" if (
            o.dtype == "auto" and s.dtype == torch.bfloat16) else ""  # fmt: skip
        log.info("%s on %s %s%s: tile %s", s.name, job.device, dtype_name(s.dtype), auto, s.plan.describe())
    if job.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(job.device)
    what = label or " + ".join(s.options.kind for s in stages)
    if stop is None:
        bar = Progress(n_out, what, enabled=progress, initial=first)
    else:  # a part of a sharded run: its own frames
        bar = Progress(stop - first, what, enabled=progress)
    reader = open_reader(job.input, start=job.start + firsts[0], info=job.info,
                         on_damage="stop" if o.allow_truncated else "raise")  # fmt: skip
    count = 0
    read = [0]

    def frames_in() -> Iterator[torch.Tensor]:
        limit = None if n_in is None else n_in - firsts[0]
        for f in itertools.islice(reader, limit):
            read[0] += 1
            yield frame_to_tensor(f.data)

    try:
        with reader:
            for index, frame in _chain(stages, frames_in(), firsts, skips, totals[:-1], bar):
                if stop is not None and index >= stop:
                    break
                path = writer.write(tensor_to_frame(frame, job.bit_depth))
                if record_frame is not None and job.kind == "frames":
                    record_frame(path.name)
                count += 1
                bar.advance(1)
        if stop is None or (n_out is not None and stop >= n_out):
            _check_ended(job, reader, firsts[0] + read[0])
        writer.close()
    except KeyboardInterrupt as err:
        writer.abort()
        bar.close()
        resumable = job.kind != "pipe" and job.info.kind != "pipe"
        raise Interrupted(str(job.dest), first + count, getattr(err, "signal_name", "SIGINT"), resumable) from err
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    return count, getattr(writer, "fps", None)


def _check_ended(job: PreparedJob, reader, got: int) -> None:
    """After the last frame: a damaged or shorter input than counted is noted, or refused."""
    n_in = job.totals[0]
    damaged = getattr(reader, "damaged", None)
    if damaged is not None:
        job.notes.append(f"input damaged at frame {job.start + damaged[0]}: restored the {got} frames before it")
    elif n_in is not None and got < n_in:
        msg = f"{job.input} ended after {job.start + got} frames; it was counted {job.start + n_in}"
        if not job.options.allow_truncated:
            raise InputError(f"{msg}: the file is damaged; --allow-truncated --resume keeps what was restored")
        job.notes.append(msg)


def _scale(stages: list[Stage]) -> int:
    s = 1
    for st in stages:
        s *= st.scale
    return s
