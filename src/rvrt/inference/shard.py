"""Sharded runs: ``torchrun --nproc-per-node N -m rvrt restore ...`` shares the work among N
processes (on one machine or several), each on its own device.

Each process reads its place from the environment torchrun sets (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``); with ``--device auto`` process ``r`` runs on ``cuda:LOCAL_RANK`` (or the CPU).

* **Many inputs** (a batch): input ``i`` goes to rank ``i % N``; each output is written by one
  rank and nothing is shared, so no process waits for another.
* **One input**: its output frames are split into parts of whole segments (``--segment-frames``,
  the units an interrupted run keeps), a contiguous run of them per rank. Rank 0 claims the output,
  plans the tiles, finds the scene cuts and writes the run log's header; it sends all of that to
  the other ranks (``torch.distributed``, gloo), so every rank computes with the same tiles and
  cuts. A rank starts reading where the window schedule of the whole video needs it to compute
  its first frame exactly (:meth:`rvrt.inference.stages.Stage.input_for`: at most a window
  before it, never across a scene cut), so every frame equals the one-process run's. Each
  finished segment (or frame) is recorded in the run log. When every rank is done, rank 0 joins
  the segments (stream copy) with the audio and subtitles muxed once.
* **Resume**: ``--resume`` keeps every finished segment or frame, whichever rank wrote it, and
  deals out the rest; a rank that dies loses only the segment it was writing.

GIF and AVI outputs are not written in segments: one rank writes them.
"""

from __future__ import annotations

import datetime
import logging
import os
import time
from dataclasses import dataclass

import torch

from rvrt.errors import OutputError, RVRTError
from rvrt.inference.options import JobOptions
from rvrt.inference.outputs import RunLog, kept_segments, log_path
from rvrt.inference.runner import (
    Interrupted,
    Models,
    RunSummary,
    claim_output,
    job_summary,
    open_part_writer,
    prepare_job,
    stream_part,
)
from rvrt.media.segments import written_in_segments

__all__ = ["World", "world", "split_parts", "run_sharded"]

log = logging.getLogger(__name__)

#: how long a rank waits for the others (a part of a long video can take hours)
WAIT = datetime.timedelta(days=7)


@dataclass(frozen=True)
class World:
    """This process's place among the processes of a sharded run."""

    rank: int
    size: int
    local_rank: int

    def device(self, asked) -> str:
        """The device of this rank: ``cuda:LOCAL_RANK`` for ``auto``/``cuda`` on a machine with GPUs."""
        if asked in ("auto", "cuda") and torch.cuda.is_available():
            return f"cuda:{self.local_rank % torch.cuda.device_count()}"
        return "cpu" if asked == "auto" else asked


def world() -> World | None:
    """The sharded run this process is part of (from torchrun's environment), or None."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        return None
    if size <= 1 or not 0 <= rank < size:
        return None
    return World(rank, size, local)


def split_parts(todo: list[tuple[int, int]], ranks: int) -> list[list[tuple[int, int]]]:
    """Units ``(first, frames)`` still to do, dealt to ``ranks`` as contiguous runs of about equal
    frames; returns, per rank, its ranges ``(first, stop)`` of output frames (adjacent units merged)."""
    total = sum(n for _, n in todo)
    parts: list[list[tuple[int, int]]] = [[] for _ in range(ranks)]
    acc = 0
    for first, n in todo:
        r = min(ranks - 1, (2 * acc + n) * ranks // max(2 * total, 1))  # the rank whose share holds its middle
        acc += n
        ranges = parts[r]
        if ranges and ranges[-1][1] == first:
            ranges[-1] = (ranges[-1][0], first + n)
        else:
            ranges.append((first, first + n))
    return parts


def _units(job, session) -> list[tuple[int, int]]:
    """The units ``(first output frame, frames)`` of the output that are not finished."""
    n = job.n_out
    size = job.options.segment_frames
    if job.kind == "video" and not written_in_segments(job.dest):
        return [(0, n)] if n else []
    done_segments = {s.index for s in session.segments} if job.kind == "video" else set()
    todo = []
    for k, first in enumerate(range(0, n, size)):
        frames = min(size, n - first)
        if job.kind == "video":
            finished = k in done_segments
        else:
            finished = len(session.kept) >= first + frames and all(session.kept[first : first + frames])
        if not finished:
            todo.append((first, frames))
    return todo


def _sync(obj, src: int = 0):
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=src)
    return box[0]


def run_sharded(
    input: str | os.PathLike, output: str | os.PathLike, options: JobOptions, where: World, *,
    models: Models | None = None,
) -> RunSummary:  # fmt: skip
    """This rank's share of restoring one input into one output (see the module doc).

    Every rank calls it with the same arguments. Returns this rank's summary (rank 0's also
    counts the whole output's frames once joined).

    Raises:
        RVRTError: a bad input or option (every rank raises it, with rank 0's message), or a part
            that failed on another rank (the output is then left to ``--resume``).
        Interrupted: this rank was stopped.
    """
    import torch.distributed as dist

    t0 = time.perf_counter()
    own_group = not dist.is_initialized()
    if own_group:
        dist.init_process_group("gloo", timeout=WAIT)
    try:
        options = options.replace(device=where.device(options.device), progress=options.progress and where.rank == 0)
        session = None
        job = None
        head: dict = {}
        if where.rank == 0:
            try:
                job = prepare_job(input, output, options, models=models)
                session = claim_output(job)
                head = {"plan": job.plan(), "complete": session.complete, "resumed": session.resumed,
                        "todo": [] if session.complete else _units(job, session)}  # fmt: skip
            except RVRTError as err:
                head = {"error": f"{type(err).__name__}:{err}"}
            except BaseException:
                _sync({"error": "OutputError:rank 0 stopped while preparing the run"})
                raise
        head = _sync(head)
        if "error" in head:
            name, _, msg = head["error"].partition(":")
            raise _rebuild(name, msg)
        try:
            if job is None:
                job = prepare_job(input, output, options, models=models)
                job.use_plan(head["plan"])
            summary = _work(job, session, head, where, t0)
            ok = True
        except (RVRTError, Interrupted) as err:
            ok, summary = False, err
        results = [None] * where.size
        dist.all_gather_object(results, (ok, summary.frames if ok else 0, None if ok else str(summary)))
        if not ok:
            raise summary
        failed = [(r, why) for r, (good, _, why) in enumerate(results) if not good]
        if failed:
            r, why = failed[0]
            raise OutputError(f"rank {r} of {where.size} stopped ({why or 'interrupted'}); what the ranks finished "
                              f"is kept: rerun with --resume to write the rest of {job.dest}")  # fmt: skip
        if where.rank == 0 and not head["complete"]:
            _finish(job, session)
            summary.frames = sum(n for _, n, _ in results)
        return summary
    finally:
        if where.rank == 0 and session is not None:
            session.release()
        if own_group:
            dist.destroy_process_group()


def _rebuild(name: str, msg: str) -> RVRTError:
    import rvrt.errors as errors

    cls = getattr(errors, name, None)
    return (cls if isinstance(cls, type) and issubclass(cls, RVRTError) else OutputError)(msg)


def _work(job, session, head: dict, where: World, t0: float) -> RunSummary:
    """Write this rank's ranges; record each finished segment or frame in the run log."""
    if head["complete"]:
        return RunSummary(job.input, str(job.dest), job.model_name, status="nothing to do: complete")
    runlog = session.runlog if session is not None else RunLog.read(log_path(job.dest, job.kind))
    if runlog is None:
        raise OutputError(f"{job.dest}: the run log rank 0 wrote is missing (is the output on a shared file system?)")
    mine = split_parts([tuple(u) for u in head["todo"]], where.size)[where.rank]
    count = 0
    label = f"rank {where.rank}"
    for first, stop in mine:
        writer = open_part_writer(
            job, first, resumed=head["resumed"], on_segment=lambda seg: runlog.append({"segment": seg.to_dict()}),
            join=False,
        )  # fmt: skip
        n, _ = stream_part(job, writer, first, stop, record_frame=lambda name: runlog.append({"frame": name}),
                           progress=job.options.progress, label=label)  # fmt: skip
        count += n
    log.info("%s: rank %d of %d wrote %d frames in %d parts", job.dest, where.rank, where.size, count, len(mine))
    return job_summary(job, count, t0)


def _finish(job, session) -> None:
    """Rank 0, once every rank is done: join the segments (video) and mark the output complete."""
    runlog = RunLog.read(log_path(job.dest, job.kind))  # with every rank's records
    if job.kind == "video" and written_in_segments(job.dest):
        writer = open_part_writer(job, job.n_out, resumed=True, segments=kept_segments(session.workdir, runlog))
        writer.close()  # nothing more to write: joins the segments
    session.runlog = runlog
    session.finish(job.n_out)
