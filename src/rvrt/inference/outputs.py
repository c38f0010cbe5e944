"""Outputs that are safe to write, to interrupt, to resume and to overwrite.

Every output has a *run log* that says what determines its pixels and what has been written:

* a folder of frames keeps it inside, as ``OUT/.rvrt-run.jsonl``;
* a video keeps it in a work folder next to it, ``.OUT.rvrt/run.jsonl``, beside the finished
  segments (:mod:`rvrt.media.segments`); the folder is removed once the video is complete.

The log is JSON lines, appended as the run goes: a header (the fingerprint: model, weights
digest, every option that changes the output, the input's identity; and the tiles the run
planned), then one line per frame file or video segment finished, then a line when the output is
complete. A torn last line (a crash while appending) is ignored.

With the log a run can:

* refuse to start over an output it did not write, or one an interrupted run left (``--resume``
  continues it, ``--overwrite`` starts again);
* resume only what it resumes exactly: the fingerprint must match (the message names what
  differs), the frames it keeps are checked (readable, right size and depth) and so are the
  segments (size, frame count); the first bad one is where the resumed run starts;
* overwrite only what rvrt wrote: ``--overwrite`` on a frames folder removes the frames its log
  lists, never other files;
* skip outputs that are complete (batch reruns).

The output is claimed for the run's lifetime (:class:`rvrt.files.OutputClaim`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rvrt.errors import OutputError
from rvrt.files import OutputClaim, atomic_write, os_error
from rvrt.media.segments import Segment, verify_segment

__all__ = [
    "RunLog",
    "OutputSession",
    "open_output",
    "describe_difference",
    "frame_is_complete",
    "kept_segments",
    "log_path",
    "workdir_of",
    "LOG_NAME",
]

log = logging.getLogger(__name__)

LOG_FORMAT = "rvrt.run/1"
#: the run log of a frames folder, inside it
LOG_NAME = ".rvrt-run.jsonl"


def workdir_of(dest: Path) -> Path:
    """The work folder of a video output: segments and run log."""
    return dest.with_name(f".{dest.name}.rvrt")


def log_path(dest: Path, kind: str) -> Path:
    return dest / LOG_NAME if kind == "frames" else workdir_of(dest) / "run.jsonl"


class RunLog:
    """An append-only record of a run into one output (see the module doc)."""

    def __init__(self, path: Path, header: dict, records: list[dict]) -> None:
        self.path = path
        self.header = header
        self.records = records

    @classmethod
    def read(cls, path: Path) -> RunLog | None:
        """The log at ``path``, or None if there is none (or it is not an rvrt run log)."""
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise os_error(err, "read", path) from err
        lines = text.splitlines()
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except ValueError:
                break  # a torn last line: the record after it was never finished
        if not records or records[0].get("format") != LOG_FORMAT:
            return None
        return cls(path, records[0], records[1:])

    @classmethod
    def create(cls, path: Path, header: dict) -> RunLog:
        header = {"format": LOG_FORMAT, **header}
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(header) + "\n"))
        return cls(path, header, [])

    def append(self, record: dict) -> None:
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as err:
            raise os_error(err, "write", self.path) from err
        self.records.append(record)

    @property
    def frames(self) -> list[str]:
        return [r["frame"] for r in self.records if "frame" in r]

    @property
    def segments(self) -> list[Segment]:
        return [Segment(**r["segment"]) for r in self.records if "segment" in r]

    @property
    def complete(self) -> bool:
        return any(r.get("complete") for r in self.records)

    @property
    def fingerprint(self) -> dict:
        return self.header.get("fingerprint", {})


def describe_difference(before: dict, now: dict) -> str | None:
    """``"tile: 10 0 0 before, 30 0 0 now"`` for the first keys that differ (None if equal)."""

    def show(v: Any) -> str:
        if v is None:
            return "none"
        if isinstance(v, (list, tuple)):
            return " ".join(str(x) for x in v)
        return str(v)

    keys = [k for k in dict.fromkeys([*before, *now]) if before.get(k) != now.get(k)]
    if not keys:
        return None
    parts = [f"{k}: {show(before.get(k))} before, {show(now.get(k))} now" for k in keys[:3]]
    more = f" (and {len(keys) - 3} more)" if len(keys) > 3 else ""
    return "; ".join(parts) + more


def frame_is_complete(path: Path, width: int, height: int, bit_depth: int) -> str | None:
    """Why a PNG frame cannot be kept (missing, truncated, another size or depth), or None if it can."""
    from rvrt.media.images import read_image_header

    try:
        with open(path, "rb") as f:
            f.seek(-12, os.SEEK_END)
            tail = f.read(12)
    except FileNotFoundError:
        return "missing"
    except OSError as err:
        return f"unreadable ({err.strerror or err})"
    if tail[4:8] != b"IEND":
        return "truncated"
    try:
        header = read_image_header(path)
    except Exception as err:  # noqa: BLE001 - any failure means the frame cannot be kept
        return f"unreadable ({err})"
    if (header.width, header.height, header.bit_depth) != (width, height, bit_depth):
        return f"{header.width}x{header.height} {header.bit_depth}-bit instead of {width}x{height} {bit_depth}-bit"
    return None


@dataclass
class OutputSession:
    """A claimed output, prepared for a run: where it starts (``done``) and what it records.

    Attributes:
        dest: the output path.
        kind: ``"frames"`` or ``"video"``.
        done: output frames already complete from the first on (a resumed run starts there).
        plan: the tiles an interrupted run planned (a resumed run uses them), or None.
        segments: finished video segments kept from an interrupted run (a sharded run's may
            leave gaps: those after ``done`` are kept too).
        kept: frames outputs: which output frames are complete (a sharded run's may leave gaps).
        complete: the output is complete already (nothing to do).
    """

    dest: Path
    kind: str
    claim: OutputClaim | None  # None for stdout
    runlog: RunLog | None = None
    done: int = 0
    plan: dict | None = None
    segments: list[Segment] = field(default_factory=list)
    kept: list[bool] = field(default_factory=list)
    complete: bool = False
    resumed: bool = False

    @property
    def workdir(self) -> Path:
        return workdir_of(self.dest)

    def start(self, header: dict) -> None:
        """Write the log's header for a run that starts from scratch (kept as is when resuming)."""
        if self.kind == "pipe":
            return
        if self.runlog is None:
            path = log_path(self.dest, self.kind)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise os_error(err, "create the folder", path.parent) from err
            self.runlog = RunLog.create(path, header)
        else:
            self.runlog.append({"resumed_at": self.done})

    def record_frame(self, name: str) -> None:
        self.runlog.append({"frame": name})

    def record_segment(self, seg: Segment) -> None:
        self.runlog.append({"segment": seg.to_dict()})

    def finish(self, frames: int) -> None:
        """The output is complete: frames folders note it; a video's work folder goes."""
        if self.kind == "frames":
            self.runlog.append({"complete": True, "frames": frames})
        elif self.kind == "video":
            shutil.rmtree(self.workdir, ignore_errors=True)

    def release(self) -> None:
        if self.claim is not None:
            self.claim.release()


def _nonhidden(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if not p.name.startswith(".")] if folder.is_dir() else []


def _remove_frames_of(runlog: RunLog, folder: Path) -> int:
    removed = 0
    for name in dict.fromkeys(runlog.frames):
        try:
            (folder / name).unlink()
            removed += 1
        except FileNotFoundError:
            pass
        except OSError as err:
            raise os_error(err, "remove", folder / name) from err
    runlog.path.unlink(missing_ok=True)
    return removed


def open_output(
    dest: Path,
    kind: str,
    fingerprint: dict,
    *,
    overwrite: bool,
    resume: bool,
    expected_names: Iterable[str] | None = None,
    frame_format: tuple[int, int, int] | None = None,
    skip_complete: bool = False,
) -> OutputSession:
    """Claim ``dest`` and prepare it for a run with this ``fingerprint``.

    Args:
        dest: the output (a folder for ``kind="frames"``, a file for ``"video"``).
        kind: ``"frames"``, ``"video"`` or ``"pipe"`` (stdout: a session that records nothing).
        fingerprint: what determines the output's pixels (compared with an interrupted run's).
        overwrite: start again: remove what an earlier run of rvrt wrote there (and only that).
        resume: continue an interrupted run (or start, if there is none).
        expected_names: frames outputs: the file names of output frames 0, 1, ... in order.
        frame_format: frames outputs: ``(width, height, bit_depth)`` each kept frame must have.
        skip_complete: a complete output is reported (``session.complete``), not refused.

    Raises:
        OutputError: the output exists (or an interrupted run of it) and neither ``overwrite``
            nor ``resume`` says what to do; a resume that does not match; another run holds it.
    """
    if kind == "pipe":  # stdout: nothing to claim, to log or to resume (written once, as it goes)
        return OutputSession(dest, kind, None)
    claim = OutputClaim(dest).acquire()
    try:
        return _prepare(dest, kind, fingerprint, claim, overwrite, resume, expected_names, frame_format, skip_complete)
    except BaseException:
        claim.release()
        raise


def _prepare(dest, kind, fingerprint, claim, overwrite, resume, expected_names, frame_format, skip_complete):
    session = OutputSession(dest, kind, claim)
    runlog = RunLog.read(log_path(dest, kind))
    if kind == "frames" and dest.exists() and not dest.is_dir():
        raise OutputError(f"output {dest} exists and is not a folder")
    if kind == "video" and dest.is_dir():
        raise OutputError(f"output {dest} is a folder, not a video file")

    if skip_complete and not overwrite:
        done = (kind == "video" and dest.is_file() and runlog is None) or (
            kind == "frames" and runlog is not None and runlog.complete
        )
        if done:
            session.complete = True
            return session

    if overwrite:
        if kind == "frames":
            if runlog is not None:
                removed = _remove_frames_of(runlog, dest)
                log.info("%s: removed the %d frames an earlier run wrote (overwrite)", dest, removed)
            others = _nonhidden(dest)
            if others:
                log.warning(
                    "%s: %d file(s) rvrt did not write are left in place; frames of the same name are replaced",
                    dest,
                    len(others),
                )
        elif session.workdir.exists():
            shutil.rmtree(session.workdir, ignore_errors=True)
        return session

    if runlog is None:
        if kind == "frames" and _nonhidden(dest):
            raise OutputError(
                f"output folder {dest} is not empty and was not written by rvrt; choose another output, or pass "
                "--overwrite to write into it (files with the names of the frames are then replaced)"
            )
        if kind == "video" and dest.exists():
            raise OutputError(f"output {dest} already exists; pass --overwrite to replace it")
        if kind == "video" and session.workdir.exists():
            shutil.rmtree(session.workdir, ignore_errors=True)  # no log: nothing there can be resumed
        return session

    # an earlier run of rvrt wrote (part of) this output
    if not resume:
        if runlog.complete or (kind == "video" and dest.exists()):
            raise OutputError(f"output {dest} already exists; pass --overwrite to replace it")
        raise OutputError(
            f"{dest} holds an interrupted run: pass --resume to continue it, or --overwrite to start again"
        )
    diff = describe_difference(runlog.fingerprint, fingerprint)
    if diff is not None:
        raise OutputError(
            f"cannot resume {dest}: it was started with other settings ({diff}); rerun with the same "
            "settings, or pass --overwrite to start again"
        )
    session.runlog = runlog
    session.plan = runlog.header.get("plan")
    session.resumed = True
    if runlog.complete:
        total = int(next(r["frames"] for r in runlog.records if r.get("complete")))
        if kind == "video" or all(_kept_frames(dest, runlog, expected_names, frame_format)[:total]):
            session.complete = True
            session.done = total
            return session
        # a complete folder that lost frames since: resumed from the first one missing
    if kind == "frames":
        session.kept = _kept_frames(dest, runlog, expected_names, frame_format)
        session.done = session.kept.index(False) if False in session.kept else len(session.kept)
    else:
        session.segments = kept_segments(session.workdir, runlog)
        done = 0
        for seg in session.segments:
            if seg.first != done:
                break
            done += seg.frames
        session.done = done
    return session


def _kept_frames(folder: Path, runlog: RunLog, expected: Iterable[str] | None, fmt) -> list[bool]:
    """For each expected output frame: recorded in the log and complete on disk."""
    written = set(runlog.frames)
    kept = []
    for name in expected or ():
        why = "not written" if name not in written else frame_is_complete(folder / name, *fmt) if fmt else None
        if why is not None and why != "not written":
            log.warning("%s: %s is %s; it is written again", folder, name, why)
        kept.append(why is None)
    return kept


def kept_segments(workdir: Path, runlog: RunLog) -> list[Segment]:
    """The recorded segments that are still whole (the last record of each index), by index."""
    latest = {seg.index: seg for seg in runlog.segments}
    kept: list[Segment] = []
    for index in sorted(latest):
        seg = latest[index]
        why = verify_segment(workdir / seg.file, seg)
        if why is not None:
            log.warning("%s: segment %s is %s; it is written again", workdir, seg.file, why)
            continue
        kept.append(seg)
    return kept
