"""Downloading published weights into a local cache, verified and renamed into place atomically.

The cache is ``$RVRT_HOME`` if set, else ``$XDG_CACHE_HOME/rvrt``, else ``~/.cache/rvrt``;
weights go to its ``weights/`` folder. ``RVRT_OFFLINE=1`` forbids network access (the cache and
``file://`` URLs still work).
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from rvrt.errors import DownloadError
from rvrt.files import temp_path_for

__all__ = ["cache_dir", "download", "sha256_file"]

log = logging.getLogger(__name__)
_CHUNK = 1 << 20


def cache_dir() -> Path:
    """Root of rvrt's cache (``$RVRT_HOME``, ``$XDG_CACHE_HOME/rvrt`` or ``~/.cache/rvrt``)."""
    if os.environ.get("RVRT_HOME"):
        return Path(os.environ["RVRT_HOME"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rvrt"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def download(
    url: str, dest: str | os.PathLike, *, sha256: str | None = None, progress: bool = True, timeout: float = 60.0
) -> Path:
    """Fetch ``url`` to ``dest`` unless it is already there (and matches ``sha256``).

    The data goes to a temporary ``.part`` file next to ``dest`` first; only a complete file whose sha256 matches (when
    known) is renamed to ``dest``. A mismatching file is deleted.

    Raises:
        DownloadError: offline, unreachable, interrupted, or checksum mismatch. The message
            names the URL, the expected file and how to use a local copy instead.
    """
    dest = Path(dest)
    hint = (
        f"Download it yourself from {url} (expected file name: {dest.name}) and pass the local path, "
        f"e.g. `--weights /path/to/{dest.name}`, or place it at {dest}."
    )
    if dest.is_file():
        if sha256 is None or sha256_file(dest) == sha256:
            return dest
        log.warning("cached %s does not match its sha256; downloading it again", dest)
    is_local = url.startswith("file://")
    if not is_local and os.environ.get("RVRT_OFFLINE", "") not in ("", "0"):
        raise DownloadError(f"RVRT_OFFLINE is set, so {url} cannot be downloaded. {hint}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = temp_path_for(dest)
    log.info("downloading %s to %s", url, dest)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(part, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, leave=False)
            h = hashlib.sha256()
            for block in iter(lambda: resp.read(_CHUNK), b""):
                out.write(block)
                h.update(block)
                if bar is not None:
                    bar.update(len(block))
            if bar is not None:
                bar.close()
            if total is not None and out.tell() != total:
                raise DownloadError(f"download of {url} stopped after {out.tell()} of {total} bytes. {hint}")
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        part.unlink(missing_ok=True)
        if isinstance(err, urllib.error.HTTPError):
            reason = f"HTTP {err.code} {err.reason}"
        else:
            reason = getattr(err, "reason", err)
        raise DownloadError(f"cannot download {url}: {reason}. {hint}") from err
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    digest = h.hexdigest()
    if sha256 is not None and digest != sha256:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"{url} downloaded but its sha256 is {digest}, expected {sha256}: the file is corrupt or was "
            f"replaced; it was deleted. {hint}"
        )
    if sha256 is None:
        log.info("sha256 of %s: %s (no published checksum to compare with)", dest.name, digest)
    os.replace(part, dest)
    return dest
