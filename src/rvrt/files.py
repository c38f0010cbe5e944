"""Files written safely: temporary names, atomic placement that never replaces what appeared
meanwhile, output claims (one run per output), operating-system errors as one-line messages,
and reading TOML.

Every file rvrt writes is written under a hidden temporary name in its destination folder
(``.NAME.PID-XXXXXXXX.part``) and moved into place when complete, so nothing half-written ever
carries the final name. Without ``overwrite`` the move never replaces a file: a file that appeared
at the destination while the run was going is kept, and the run fails with a clear message.

A run that writes an output first *claims* it (:class:`OutputClaim`): a lock file next to the
output, held with an operating-system lock for the run's lifetime. A second run to the same
output refuses while the first is alive; a claim whose process died (killed, power loss) is
stale, and the next run takes it over and removes the dead run's temporary files.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rvrt.errors import InputError, OutputError

__all__ = [
    "OutputClaim",
    "make_folder",
    "atomic_write",
    "default_file_mode",
    "loads_toml",
    "os_error",
    "place",
    "remove_leftovers",
    "temp_path_for",
]

try:  # POSIX advisory locks; elsewhere a claim is checked by process id
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def default_file_mode() -> int:
    """The permissions ``open(path, "w")`` gives a new file: 0o666 less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def temp_path_for(path: str | os.PathLike) -> Path:
    """A unique hidden name next to ``path`` (``.NAME.PID-XXXXXXXX.part``) for writing it before the
    final rename. Nothing is created: whoever writes the file creates it, so it gets the permissions
    of any new file (the umask's), not ``mkstemp``'s 0600."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.part")


def remove_leftovers(path: str | os.PathLike) -> int:
    """Delete the temporary files of ``path`` left by runs that died (the caller holds its claim).

    Returns:
        how many were removed.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return 0
    count = 0
    for leftover in path.parent.glob(f".{_glob_escape(path.name)}.*.part"):
        try:
            if leftover.is_dir():
                continue
            leftover.unlink()
            count += 1
        except FileNotFoundError:
            pass
    return count


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def make_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` (and its parents) if needed.

    Raises:
        OutputError: a part of the path is a file, or the system refuses (one line saying which).
    """
    folder = Path(folder)
    for part in (folder, *folder.parents):
        if part.exists():
            if not part.is_dir():
                raise OutputError(f"cannot write into {folder}: {part} is a file, not a folder")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise os_error(err, "create the folder", folder) from err
    return folder


def os_error(err: OSError, action: str, path: str | os.PathLike) -> OutputError:
    """An :class:`OutputError` saying in one line what failed: ``cannot write out.mp4: No space left on device``."""
    reason = err.strerror or str(err) or type(err).__name__
    if err.errno == errno.ENOSPC:
        reason += " (free some space or write elsewhere)"
    elif err.errno in (errno.EACCES, errno.EPERM):
        reason += " (check the folder's permissions)"
    elif err.errno == errno.EROFS:
        reason += " (write elsewhere)"
    where = getattr(err, "filename", None) or path
    return OutputError(f"cannot {action} {where}: {reason}")


def place(tmp: str | os.PathLike, dest: str | os.PathLike, *, overwrite: bool) -> None:
    """Move a finished temporary file to its final name.

    Without ``overwrite`` an existing ``dest`` is never replaced, not even one that appeared a
    moment ago: the file is linked to its name (which fails if the name is taken), then the
    temporary name is removed. Filesystems without hard links fall back to a check and a rename.

    Raises:
        OutputError: ``dest`` exists and ``overwrite`` is false (the temporary file is removed).
    """
    tmp, dest = Path(tmp), Path(dest)
    if overwrite:
        os.replace(tmp, dest)
        return
    try:
        os.link(tmp, dest)
    except FileExistsError:
        tmp.unlink(missing_ok=True)
        raise OutputError(
            f"{dest} appeared while this run was writing it; it was left as it is (pass --overwrite to replace it)"
        ) from None
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
            raise
        if dest.exists():  # no hard links here (FAT, some network shares): a check, then a rename
            tmp.unlink(missing_ok=True)
            raise OutputError(
                f"{dest} appeared while this run was writing it; it was left as it is (pass --overwrite to replace it)"
            ) from None
        os.replace(tmp, dest)
        return
    tmp.unlink()


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any], *, overwrite: bool = True) -> Path:
    """Write a file through ``write(tmp_path)`` into a temporary file next to ``path``, then move it
    into place (:func:`place`), so a crash never leaves a half-written file under the final name.

    Raises:
        OutputError: ``path`` exists and ``overwrite`` is false; the folder cannot be written.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputError(f"{path} exists; pass --overwrite (overwrite=True) to replace it")
    tmp = temp_path_for(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(str(tmp))
        os.chmod(tmp, default_file_mode())  # some writers (safetensors) create their files 0600
        place(tmp, path, overwrite=overwrite)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise os_error(err, "write", path) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputClaim:
    """The claim of one run on one output path: ``.NAME.rvrt-lock`` next to it, locked while held.

    Use as a context manager. ``stale`` tells whether a dead run's claim was taken over (its
    temporary files are then removed by :meth:`acquire`).

    Raises (on acquire):
        OutputError: another live run holds the claim, or the folder cannot be written.
    """

    def __init__(self, output: str | os.PathLike) -> None:
        self.output = Path(output)
        self.path = self.output.with_name(f".{self.output.name}.rvrt-lock")
        self.stale = False
        self._fd: int | None = None

    def acquire(self) -> OutputClaim:
        make_folder(self.output.parent)
        try:
            while True:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                if not self._lock(fd):
                    holder = self._holder(fd)
                    os.close(fd)
                    raise OutputError(
                        f"{self.output} is being written by another rvrt run ({holder}); wait for it to finish, "
                        "or choose another output"
                    )
                # the file may have been removed and re-created by a run that just finished: the
                # claim holds only if the name still refers to the file we locked
                try:
                    same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
                if same:
                    break
                os.close(fd)
            self.stale = os.fstat(fd).st_size > 0  # a claim left by a run that did not release it
            os.ftruncate(fd, 0)
            info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
            os.write(fd, json.dumps(info).encode())
            self._fd = fd
        except OSError as err:
            raise os_error(err, "write to", self.output.parent) from err
        if self.stale:
            removed = remove_leftovers(self.output)
            if removed:
                import logging

                logging.getLogger(__name__).info(
                    "%s: removed %d temporary file(s) of an earlier run that did not finish", self.output, removed
                )
        return self

    def _lock(self, fd: int) -> bool:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False
        # no advisory locks: the claim is free unless it names a live process on this host
        info = self._read(fd)
        return not (info.get("host") == socket.gethostname() and _alive(int(info.get("pid", 0) or 0)))

    @staticmethod
    def _read(fd: int) -> dict:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            return json.loads(os.read(fd, 4096).decode() or "{}")
        except (OSError, ValueError):
            return {}

    def _holder(self, fd: int) -> str:
        info = self._read(fd)
        if not info:
            return "a process that is starting"
        return f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}"

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing releases the lock
            self._fd = None

    def __enter__(self) -> OutputClaim:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def loads_toml(text: str, where: str = "recipe") -> dict[str, Any]:
    """Parse TOML (``tomllib``, or ``tomli`` on Python 3.10).

    Raises:
        InputError: not valid TOML (the message names ``where``).
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError as err:
            raise InputError("reading TOML files on Python 3.10 needs 'tomli' (pip install tomli)") from err
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"{where} is not valid TOML: {err}") from err
