"""What the web page of ``rvrt ui`` works on, without the HTTP: the uploaded input and weights, and
one job at a time (a preview or a whole run) on a background thread, through the same runner as
``rvrt restore`` (:func:`rvrt.restore`).

Everything lives in one work folder (removed by :meth:`UIApp.close`). The page polls
:meth:`UIApp.status` for the job's progress, which the runner reports through its progress
callback; a cancelled job stops at the next progress report.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from rvrt.errors import InputError, RVRTError

__all__ = [
    "UIApp",
    "Busy",
    "TooLarge",
    "safe_name",
    "one_line",
    "WEIGHTS_EXTENSIONS",
    "OUTPUT_FORMATS",
    "PREVIEW_FRAMES",
]

log = logging.getLogger(__name__)

WEIGHTS_EXTENSIONS = (".pth", ".pt", ".safetensors", ".ckpt")
#: what the page offers to write: file extension -> label
OUTPUT_FORMATS = {"mp4": "MP4 video (H.264)", "mkv": "MKV video (H.264)", "zip": "PNG frames (zip)"}
#: frames a preview restores around the chosen one (its neighbours give the model motion to use)
PREVIEW_FRAMES = 3
_CHUNK = 1 << 20


class Busy(RVRTError):
    """A job is running: the page asks again when it ends (HTTP 409)."""


class TooLarge(InputError):
    """An upload over the limit (HTTP 413)."""


class Cancelled(KeyboardInterrupt):
    """Raised from the progress callback to stop a job (the runner cleans up as on Ctrl-C)."""


def safe_name(name: str, extensions: tuple[str, ...] | None = None, what: str = "file") -> str:
    """``name`` if it is a plain file name (no folder part, not hidden); else :class:`InputError`.

    Names come from the browser, so anything that could reach outside the work folder (``..``,
    ``/``, ``\\``, a drive, NUL) is refused rather than cleaned up.
    """
    if not isinstance(name, str) or not name or len(name) > 255:
        raise InputError(f"refused {what} name {name!r}: give a plain file name")
    bad = any(c in name for c in "/\\\0:") or name.startswith(".") or name.strip() != name
    if bad or name in (".", ".."):
        raise InputError(f"refused {what} name {name!r}: a plain file name is needed (no folders, no leading dot)")
    if extensions is not None and not name.lower().endswith(extensions):
        raise InputError(f"{what} {name!r} is not one of {', '.join(extensions)}")
    return name


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line, as the command line prints it."""
    if isinstance(err, RVRTError):
        text = str(err).strip()
        return text.splitlines()[0] if text else type(err).__name__
    if isinstance(err, OSError):
        where = f"{err.filename}: " if getattr(err, "filename", None) else ""
        return f"{where}{err.strerror or str(err).strip() or type(err).__name__}"
    if isinstance(err, MemoryError) or "can't allocate memory" in str(err):
        return f"out of memory ({type(err).__name__}); try a smaller input or another model"
    text = str(err).strip()
    first = text.splitlines()[0] if text else ""
    return f"internal error: {type(err).__name__}: {first} (the terminal running rvrt ui has the traceback)"


@dataclass
class Job:
    """A preview or a run, as the page sees it."""

    id: int
    kind: str  # "preview" or "run"
    state: str = "running"  # running, done, error, cancelled
    stage: str = "starting"  # what the runner reports: "restore", "scene cuts", ...
    done: float = 0.0
    total: int | None = None
    error: str | None = None
    summary: str | None = None
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    cancel: bool = False

    def view(self) -> dict[str, Any]:
        end = self.ended if self.ended is not None else time.monotonic()
        return dict(id=self.id, kind=self.kind, state=self.state, stage=self.stage, done=round(self.done, 2),
                    total=self.total, error=self.error, summary=self.summary,
                    seconds=round(end - self.started, 1))  # fmt: skip


class UIApp:
    """State and jobs of one ``rvrt ui`` session (one user: one input, one job at a time).

    Args:
        workdir: folder for uploads and results (created; None: a new temporary folder).
        max_upload_bytes: the most one upload may hold; also the most a zip of frames may unpack to,
            and the most a folder of frames may hold in all.
        device: where the models run (as ``rvrt restore --device``).
    """

    def __init__(self, workdir: str | os.PathLike | None = None, *, max_upload_bytes: int = 2 << 30,
                 device: str = "auto") -> None:  # fmt: skip
        self.root = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="rvrt-ui-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_upload_bytes = int(max_upload_bytes)
        self.device = device
        self._lock = threading.Lock()
        self._job: Job | None = None
        self._thread: threading.Thread | None = None
        self._ids = 0
        self.input: Path | None = None
        self.info: dict[str, Any] | None = None
        self.weights: Path | None = None
        self.preview: dict[str, Any] | None = None
        self.result: dict[str, Any] | None = None
        self._frames_bytes = 0
        self._result_path: Path | None = None

    # --- what the page reads -------------------------------------------------------------------

    def models(self) -> dict[str, Any]:
        """The restoration models to choose from: the default first, then every registered one."""
        from rvrt import zoo

        out = []
        for name in zoo.list_models():
            spec = zoo.get_spec(name)
            if spec.task == "vfi":  # frame interpolation is a job of its own (rvrt interpolate)
                continue
            w = spec.weights
            weights = "built in" if w and w.bundled else f"download, {w.license}" if w else "needs a weights file"
            out.append(dict(name=name, task=spec.task, scale=spec.scale, description=spec.description,
                            weights=weights, default=name == zoo.DEFAULT_MODEL))  # fmt: skip
        out.sort(key=lambda m: not m["default"])
        return dict(models=out, formats=OUTPUT_FORMATS, default=zoo.DEFAULT_MODEL)

    def status(self) -> dict[str, Any]:
        with self._lock:
            return dict(
                input=self.info,
                weights=self.weights.name if self.weights else None,
                job=self._job.view() if self._job else None,
                preview=self.preview,
                result=self.result,
                max_upload_bytes=self.max_upload_bytes,
            )

    # --- uploads ---------------------------------------------------------------------------------

    def _idle(self) -> None:
        if self._job is not None and self._job.state == "running":
            raise Busy(f"a {self._job.kind} is running: wait for it to end or cancel it")

    def _receive(self, body: IO[bytes], length: int, dest: Path, limit: int | None = None) -> None:
        limit = self.max_upload_bytes if limit is None else limit
        if length > limit:
            raise TooLarge(f"upload too large: {_mb(length)}; the limit is {_mb(limit)} (rvrt ui --max-upload-mb)")
        dest.parent.mkdir(parents=True, exist_ok=True)
        left = length
        with open(dest, "wb") as f:
            while left > 0:
                chunk = body.read(min(_CHUNK, left))
                if not chunk:
                    raise InputError(f"upload of {dest.name} ended after {length - left} of {length} bytes")
                f.write(chunk)
                left -= len(chunk)

    def upload_input(self, name: str, body: IO[bytes], length: int) -> dict[str, Any]:
        """A video, or a zip of frames, becomes the input (replacing the one before)."""
        name = safe_name(name, what="input")
        with self._lock:
            self._idle()
            self._reset_input()
        incoming = self.root / "incoming" / name
        self._receive(body, length, incoming)
        if name.lower().endswith(".zip"):
            folder = self.root / "input" / Path(name).stem
            try:
                _unzip_frames(incoming, folder, self.max_upload_bytes)
            finally:
                incoming.unlink(missing_ok=True)
            return self._set_input(folder, name)
        dest = self.root / "input" / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(incoming, dest)
        return self._set_input(dest, name)

    def upload_frame(self, name: str, body: IO[bytes], length: int, index: int, count: int) -> dict[str, Any]:
        """Frame ``index`` of ``count`` of a folder of frames; the last one makes the folder the input."""
        from rvrt.media import IMAGE_EXTENSIONS

        name = safe_name(name, IMAGE_EXTENSIONS, what="frame")
        if not (0 <= index < count):
            raise InputError(f"frame index {index} is not within 0..{count - 1}")
        folder = self.root / "input" / "frames"
        with self._lock:
            self._idle()
            if index == 0:
                self._reset_input()
                self._frames_bytes = 0
            elif not folder.is_dir():
                raise InputError("frames must be sent from index 0 on")
        dest = folder / name
        if dest.exists():
            raise InputError(f"two frames are named {name!r}: names must differ")
        self._receive(body, length, dest, limit=self.max_upload_bytes - self._frames_bytes)
        self._frames_bytes += length
        if index < count - 1:
            return dict(received=index + 1, count=count)
        return self._set_input(folder, "folder")

    def upload_weights(self, name: str, body: IO[bytes], length: int) -> dict[str, Any]:
        name = safe_name(name, WEIGHTS_EXTENSIONS, what="weights file")
        with self._lock:
            self._idle()
        folder = self.root / "weights"
        shutil.rmtree(folder, ignore_errors=True)
        self.weights = None
        self._receive(body, length, folder / name)
        self.weights = folder / name
        return dict(weights=name)

    def _reset_input(self) -> None:
        shutil.rmtree(self.root / "input", ignore_errors=True)
        self.input = self.info = self.preview = self.result = None

    def _set_input(self, path: Path, label: str) -> dict[str, Any]:
        from rvrt.media import probe

        info = probe(path)
        self.input = path
        self.info = dict(name=label, kind=info.kind, width=info.width, height=info.height,
                         frames=info.frame_count, fps=float(info.fps) if info.fps else None)  # fmt: skip
        return self.info

    # --- jobs ----------------------------------------------------------------------------------

    def _options(self, request: dict[str, Any]) -> dict[str, Any]:
        """Runner options from what the page sent: ``model`` (a name; "" for the default or what the
        weights file says), ``use_weights`` (the uploaded weights file), ``sigma``."""
        if self.input is None:
            raise InputError("no input yet: drop a video, a zip of frames or a folder of frames first")
        model = request.get("model") or None
        if model is not None:
            from rvrt import zoo

            if not isinstance(model, str):
                raise InputError(f"model must be a name; got {model!r}")
            zoo.get_spec(model)  # an unknown name: one line listing the known ones
        opts: dict[str, Any] = dict(model=model, device=self.device)
        if request.get("use_weights"):
            if self.weights is None:
                raise InputError("no weights file uploaded")
            opts["weights"] = str(self.weights)
        sigma = request.get("sigma")
        if sigma not in (None, ""):
            try:
                opts["sigma"] = float(sigma)
            except (TypeError, ValueError):
                raise InputError(f"noise level must be a number 0..255; got {sigma!r}") from None
        return opts

    def start_preview(self, request: dict[str, Any]) -> dict[str, Any]:
        """Restore the frame ``request["frame"]`` (with up to :data:`PREVIEW_FRAMES` around it)."""
        with self._lock:
            self._idle()
            opts = self._options(request)
            n = self.info["frames"] or 1
            frame = request.get("frame", n // 2)
            if not isinstance(frame, int) or isinstance(frame, bool) or not 0 <= frame < n:
                raise InputError(f"preview frame must be a whole number 0..{n - 1}; got {frame!r}")
            return self._start("preview", lambda job: self._preview(job, opts, frame, n))

    def start_run(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._idle()
            opts = self._options(request)
            fmt = request.get("format") or ("zip" if self.info["kind"] == "frames" else "mp4")
            if fmt not in OUTPUT_FORMATS:
                raise InputError(f"output format must be one of {', '.join(OUTPUT_FORMATS)}; got {fmt!r}")
            self.result = None
            return self._start("run", lambda job: self._run(job, opts, fmt))

    def cancel(self) -> dict[str, Any]:
        with self._lock:
            if self._job is None or self._job.state != "running":
                raise InputError("nothing is running")
            self._job.cancel = True
            return self._job.view()

    def wait(self, timeout: float | None = None) -> None:
        """Until the running job ends (tests and shutdown)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def close(self) -> None:
        """Stop the job (at its next progress report) and remove the work folder."""
        with self._lock:
            if self._job is not None:
                self._job.cancel = True
        self.wait(30)
        shutil.rmtree(self.root, ignore_errors=True)

    def _start(self, kind: str, work: Callable[[Job], None]) -> dict[str, Any]:
        self._ids += 1
        job = self._job = Job(self._ids, kind)
        self._thread = threading.Thread(target=self._work, args=(job, work), name=f"rvrt-ui-{kind}", daemon=True)
        self._thread.start()
        return job.view()

    def _work(self, job: Job, work: Callable[[Job], None]) -> None:
        try:
            work(job)
            state = "done"
        except KeyboardInterrupt:  # Cancelled, or the runner's Interrupted made of it
            state = "cancelled"
        except Exception as err:  # shown on the page as one line; a bug also gets its traceback logged
            if not isinstance(err, (RVRTError, OSError, MemoryError)):
                log.exception("rvrt ui: %s failed", job.kind)
            job.error = one_line(err)
            state = "error"
        with self._lock:
            job.state, job.ended = state, time.monotonic()

    def _reporter(self, job: Job) -> Callable[[str, float, int | None], None]:
        def report(stage: str, done: float, total: int | None) -> None:
            if job.cancel:
                raise Cancelled()
            job.stage, job.done, job.total = stage, done, total

        return report

    def _preview(self, job: Job, opts: dict[str, Any], frame: int, n: int) -> None:
        import rvrt

        width = min(PREVIEW_FRAMES, n)
        start = min(max(frame - width // 2, 0), n - width)
        folder = self.root / "preview"
        shutil.rmtree(folder, ignore_errors=True)
        summary = rvrt.restore(self.input, folder / "after", start=start, frames=width, bit_depth=8,
                               scene_cuts="off", overwrite=True, progress=self._reporter(job), **opts)  # fmt: skip
        from rvrt.media import natural_key

        outputs = sorted((folder / "after").glob("*.png"), key=lambda p: natural_key(p.name))
        if len(outputs) <= frame - start:
            raise InputError(f"the input ended before frame {frame}")
        after = folder / f"after-{job.id}.png"
        os.replace(outputs[frame - start], after)
        size = _png_size(after)
        before = folder / f"before-{job.id}.png"
        _save_upscaled_input(self.input, frame, before, size)
        with self._lock:
            self.preview = dict(frame=frame, before=before.name, after=after.name, size=size,
                                window=[start, start + width - 1], model=summary.model)  # fmt: skip
            job.summary = f"frame {frame} restored with frames {start}..{start + width - 1} by {summary.model}"

    def _run(self, job: Job, opts: dict[str, Any], fmt: str) -> None:
        import rvrt

        out_dir = self.root / "output"
        shutil.rmtree(out_dir, ignore_errors=True)
        name = self.info["name"]  # the uploaded file's name, or "folder"
        stem = f"{Path(name).stem if name != 'folder' else 'frames'}_rvrt"
        target = out_dir / (stem if fmt == "zip" else f"{stem}.{fmt}")
        summary = rvrt.restore(self.input, target, overwrite=True, progress=self._reporter(job), **opts)
        if fmt == "zip":
            job.stage = "zip"
            packed = out_dir / f"{stem}.zip"
            with zipfile.ZipFile(packed, "w", zipfile.ZIP_STORED) as z:  # PNG is compressed already
                from rvrt.media import natural_key

                frames = [f for f in target.iterdir() if not f.name.startswith(".")]  # not the run log
                for f in sorted(frames, key=lambda f: natural_key(f.name)):
                    if job.cancel:
                        raise Cancelled()
                    z.write(f, f"{stem}/{f.name}")
            shutil.rmtree(target)
            target = packed
        with self._lock:
            self.result = dict(name=target.name, size=target.stat().st_size, frames=summary.frames,
                               summary=summary.line().replace(str(summary.output), target.name))  # fmt: skip
            self._result_path = target
            job.summary = self.result["summary"]

    # --- files the page downloads --------------------------------------------------------------

    def preview_file(self, name: str) -> Path:
        name = safe_name(name, (".png",))
        with self._lock:
            if self.preview is None or name not in (self.preview["before"], self.preview["after"]):
                raise FileNotFoundError(f"no preview image {name}")
        return self.root / "preview" / name

    def result_file(self) -> Path:
        with self._lock:
            if self.result is None:
                raise FileNotFoundError("no result yet")
            return self._result_path


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def _unzip_frames(archive: Path, folder: Path, limit: int) -> None:
    """The image files of ``archive`` into ``folder`` (flat; folders inside the zip are dropped).

    Refused, as one line: a member named with ``..`` or an absolute path (whatever its extension),
    two frames of the same name, more than ``limit`` bytes unpacked, or no frames at all.
    """
    from rvrt.media import IMAGE_EXTENSIONS

    try:
        z = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise InputError(f"{archive.name} is not a zip file") from None
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    with z:
        for member in z.infolist():
            parts = member.filename.replace("\\", "/").split("/")
            if member.filename.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
                raise InputError(f"refused {archive.name}: member {member.filename!r} points outside the archive")
            base = parts[-1]
            if member.is_dir() or base.startswith(".") or not base.lower().endswith(IMAGE_EXTENSIONS):
                continue  # folders, __MACOSX/._ files, notes
            if "__MACOSX" in parts:
                continue
            dest = folder / base
            if dest.exists():
                raise InputError(f"refused {archive.name}: two frames are named {base!r}")
            with z.open(member) as src, open(dest, "wb") as out:
                while chunk := src.read(_CHUNK):
                    total += len(chunk)
                    if total > limit:
                        raise TooLarge(f"refused {archive.name}: it unpacks to more than {_mb(limit)}")
                    out.write(chunk)
    if not any(folder.iterdir()):
        raise InputError(f"{archive.name} holds no frames ({'/'.join(IMAGE_EXTENSIONS)} files)")


def _save_upscaled_input(input: Path, frame: int, dest: Path, size: tuple[int, int]) -> None:
    """Input frame ``frame`` upscaled to ``size`` (width, height) with bicubic interpolation, as an
    8-bit PNG: the 'before' of the preview."""
    import numpy as np
    from PIL import Image

    from rvrt.media import open_reader

    with open_reader(input, start=frame) as reader:
        first = next(iter(reader), None)
    if first is None:
        raise InputError(f"the input ended before frame {frame}")
    data = first.data
    if data.dtype != np.uint8:
        data = (data.astype(np.float64) / 257).round().astype(np.uint8)
    image = Image.fromarray(data)
    if image.size != tuple(size):
        image = image.resize(tuple(size), Image.Resampling.BICUBIC)
    image.save(dest)


def _png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.size
