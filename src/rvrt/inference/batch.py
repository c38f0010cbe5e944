"""Many inputs in one command: videos, frame folders, folders of them, and glob patterns.

``rvrt restore IN1 IN2 DIR/ 'clips/*.mp4' -o OUTDIR/ --name '{stem}_x4.{ext}'`` restores every
input into ``OUTDIR``; outputs that are complete are skipped on a rerun, a bad input is reported
and the others still run, and a table at the end lists every input.

What counts as one input:

* a video file;
* a folder that holds image frames (one clip);
* a folder without frames of its own: each video file and each frames folder in it;
* a glob pattern: one clip if it matches only images (``'shot/*.png'``), else each video file or
  frames folder it matches.
"""

from __future__ import annotations

import glob
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from rvrt.errors import InputError, OutputError, RVRTError
from rvrt.inference.options import JobOptions
from rvrt.inference.runner import RunSummary, run_job, select_models
from rvrt.media import VIDEO_EXTENSIONS, natural_key
from rvrt.media.images import IMAGE_EXTENSIONS

__all__ = ["BatchItem", "BatchReport", "expand_inputs", "output_name", "run_batch", "DEFAULT_NAME"]

log = logging.getLogger(__name__)

#: video files found in folders and globs (anything FFmpeg decodes can still be named directly)
READ_VIDEO_EXTENSIONS = tuple(sorted({*VIDEO_EXTENSIONS, ".m4v", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".flv",
                                      ".wmv", ".3gp", ".ogv", ".y4m"}))  # fmt: skip
#: output name of each input: its stem, and for videos its extension (mp4 when it cannot be written)
DEFAULT_NAME = "{stem}.{ext}"


@dataclass
class BatchItem:
    """One input of a batch and what happened to it."""

    input: str
    output: str = ""
    status: str = "pending"
    summary: RunSummary | None = None
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None


@dataclass
class BatchReport:
    items: list[BatchItem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return sum(1 for i in self.items if i.failed)

    def table(self) -> str:
        rows = [("input", "frames", "time", "frames/s", "status")]
        for it in self.items:
            s = it.summary
            frames = str(s.frames) if s is not None and s.status == "done" else "-"
            secs = f"{s.seconds:.1f} s" if s is not None and s.status == "done" else "-"
            fps = f"{s.fps:.2f}" if s is not None and s.status == "done" else "-"
            rows.append((it.input, frames, secs, fps, it.status))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  ".join(c.ljust(w) if j in (0, 4) else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths)))
                 for r in rows]  # fmt: skip
        done = sum(1 for i in self.items if i.status == "done")
        skipped = sum(1 for i in self.items if i.status.startswith("skipped"))
        lines.append(f"{len(self.items)} inputs: {done} restored, {skipped} skipped, {self.failed} failed "
                     f"in {self.seconds:.1f} s")  # fmt: skip
        return "\n".join(lines)


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _holds_images(folder: Path) -> bool:
    return any(p.is_file() and _is_image(p) for p in folder.iterdir())


def _is_video(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in READ_VIDEO_EXTENSIONS and not p.name.startswith(".")


def expand_inputs(items: list[str]) -> list[tuple[str, str | None]]:
    """Inputs as ``(input, None)``, or ``(item, error)`` for an item that names nothing usable."""
    out: list[tuple[str, str | None]] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            if _holds_images(path):
                out.append((str(path), None))
                continue
            found = sorted(
                (p for p in path.iterdir() if _is_video(p) or (p.is_dir() and not p.name.startswith(".") and
                                                              _holds_images(p))),
                key=lambda p: natural_key(p.name),
            )  # fmt: skip
            if not found:
                out.append((item, f"folder {path} holds no frames, videos or folders of frames"))
            out += [(str(p), None) for p in found]
        elif path.exists():
            out.append((str(path), None))
        elif glob.has_magic(item):
            matches = [Path(m) for m in glob.glob(os.path.expanduser(item))]
            images = [m for m in matches if m.is_file() and _is_image(m)]
            others = [m for m in matches if _is_video(m) or (m.is_dir() and _holds_images(m))]
            if images and not others:
                out.append((item, None))  # one clip of frames
            elif others and not images:
                out += [(str(m), None) for m in sorted(others, key=lambda p: natural_key(str(p)))]
            elif images:
                out.append((item, f"the pattern {item!r} matches both frames and videos; give them separately"))
            else:
                out.append((item, f"nothing matches the pattern {item!r}"))
        else:
            out.append((item, f"input not found: {item}"))
    return out


def output_name(input: str, template: str = DEFAULT_NAME) -> str:
    """The output name of ``input`` from ``template`` (``{stem}``, ``{ext}``, ``{name}``).

    A video's ``{ext}`` is its extension (``mp4`` when rvrt cannot write that container); a frames
    input has none, so ``{stem}.{ext}`` names a folder.
    """
    path = Path(input)
    if glob.has_magic(input):
        path = Path(input).parent
    video = path.is_file() and path.suffix.lower() not in IMAGE_EXTENSIONS
    ext = path.suffix.lower()[1:] if video else ""
    if video and f".{ext}" not in VIDEO_EXTENSIONS:
        ext = "mp4"
    stem = path.stem if video else path.name
    try:
        name = template.format(stem=stem, ext=ext, name=path.name)
    except (KeyError, IndexError, ValueError) as err:
        raise InputError(f"--name {template!r}: use the fields {{stem}}, {{ext}} and {{name}} ({err})") from None
    name = name.rstrip(".")
    if not name or "/" in name or os.sep in name or name in (".", ".."):
        raise InputError(f"--name {template!r} gives the output name {name!r} for {input}")
    return name


def run_batch(
    inputs: list[str], out_dir: str | os.PathLike, options: JobOptions, *, name: str = DEFAULT_NAME,
    on_item=None, where=None,
) -> BatchReport:  # fmt: skip
    """Restore every input into ``out_dir`` (see the module doc).

    Args:
        inputs: what the user named (files, folders, patterns); expanded by :func:`expand_inputs`.
        out_dir: the output folder.
        options: the job for each input.
        name: output name template.
        on_item: called with each :class:`BatchItem` when it is finished.
        where: this process's place in a sharded run (:class:`rvrt.inference.shard.World`): it
            takes inputs ``rank, rank + size, ...`` of the expanded list, and reports only those.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"with several inputs -o must be a folder; {out_dir} is a file")
    report = BatchReport()
    seen: dict[str, str] = {}
    for inp, error in expand_inputs(inputs):
        item = BatchItem(inp)
        report.items.append(item)
        if error is not None:
            item.status, item.error = f"failed: {error}", error
            continue
        try:
            item.output = str(out_dir / output_name(inp, name))
        except InputError as err:
            item.status, item.error = f"failed: {err}", str(err)
            continue
        if item.output in seen:
            item.error = f"{seen[item.output]} is written to the same output {item.output}; use --name"
            item.status = f"failed: {item.error}"
            continue
        seen[item.output] = inp
    if where is not None:
        report.items = report.items[where.rank :: where.size]
    models = None
    for item in report.items:
        if item.failed:
            if on_item is not None:
                on_item(item)
            continue
        try:
            if models is None:
                models = select_models(options)  # once, for every input
            item.summary = run_job(item.input, item.output, options, models=models, skip_complete=True)
            item.status = item.summary.status
        except RVRTError as err:
            item.error = str(err)
            item.status = f"failed: {err}"
        except KeyboardInterrupt:
            item.status = "interrupted"
            item.error = "interrupted"
            raise
        except Exception as err:  # noqa: BLE001 - a bug on one input must not lose the others
            if os.environ.get("RVRT_DEBUG"):
                raise
            item.error = f"internal error: {type(err).__name__}: {err}"
            item.status = f"failed: {item.error}"
            log.error("%s: %s (run with RVRT_DEBUG=1 for the traceback)", item.input, item.error)
        finally:
            if on_item is not None:
                on_item(item)
    report.seconds = time.perf_counter() - t0
    return report
