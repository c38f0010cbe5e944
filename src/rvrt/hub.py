"""Downloading published weights into a local cache, verified and renamed into place atomically.

The cache is ``$RVRT_HOME`` if set, else ``$XDG_CACHE_HOME/rvrt``, else ``~/.cache/rvrt``;
weights go to its ``weights/`` folder. ``RVRT_OFFLINE=1`` forbids network access (the cache and
``file://`` URLs still work).

Every file is checked before use. Where a sha256 is published (our own weights) the download and
the cached file must match it. Where none is (the official releases publish none) the digest of
the first download is pinned next to the file (``NAME.sha256``, trust on first use) and the cached
file must match the pin every time it is used, so a damaged or replaced cache file is refused
instead of loaded; the loader then checks the file's keys and shapes against the model.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from rvrt.errors import DownloadError
from rvrt.files import atomic_write, temp_path_for

__all__ = ["cache_dir", "download", "pin_path", "sha256_file", "weights_path"]

log = logging.getLogger(__name__)
_CHUNK = 1 << 20


def cache_dir() -> Path:
    """Root of rvrt's cache (``$RVRT_HOME``, ``$XDG_CACHE_HOME/rvrt`` or ``~/.cache/rvrt``)."""
    if os.environ.get("RVRT_HOME"):
        return Path(os.environ["RVRT_HOME"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rvrt"


def weights_path(filename: str) -> Path:
    """Where a downloaded weights file called ``filename`` lives in the cache."""
    return cache_dir() / "weights" / filename


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def pin_path(dest: str | os.PathLike) -> Path:
    """Where the digest of a download without a published sha256 is pinned: ``NAME.sha256`` beside it."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".sha256")


def _read_pin(dest: Path) -> str | None:
    try:
        return pin_path(dest).read_text().split()[0]
    except (OSError, IndexError):
        return None


def _write_pin(dest: Path, digest: str) -> None:
    # sha256sum's format, so `sha256sum -c NAME.sha256` checks it too
    atomic_write(pin_path(dest), lambda tmp: Path(tmp).write_text(f"{digest}  {dest.name}\n"))


def download(
    url: str, dest: str | os.PathLike, *, sha256: str | None = None, progress: bool = True, timeout: float = 60.0
) -> Path:
    """Fetch ``url`` to ``dest`` unless it is already there and verified.

    The data goes to a temporary ``.part`` file next to ``dest`` first; only a complete file whose sha256 matches (when
    known) is renamed to ``dest``. A mismatching file is deleted. Without a published ``sha256`` the digest of the
    download is pinned (:func:`pin_path`) and a cached file must match its pin; a cached file without a pin (placed
    there by hand) is pinned as it is.

    Raises:
        DownloadError: offline, unreachable, interrupted, checksum mismatch, or a cached file that no longer matches
            its pin. The message names the URL or file and what to do.
    """
    dest = Path(dest)
    hint = (
        f"Download it yourself from {url} (expected file name: {dest.name}) and pass the local path, "
        f"e.g. `--weights /path/to/{dest.name}`, or place it at {dest}."
    )
    if dest.is_file():
        digest = sha256_file(dest)
        if sha256 is not None:
            if digest == sha256:
                return dest
            log.warning("cached %s does not match its published sha256; downloading it again", dest)
        else:
            pinned = _read_pin(dest)
            if pinned is None:
                log.info("pinning the sha256 of %s (%s): later uses must match it", dest, digest)
                _write_pin(dest, digest)
                return dest
            if digest == pinned:
                return dest
            raise DownloadError(
                f"{dest} has changed since it was downloaded (sha256 {digest}, pinned {pinned} in "
                f"{pin_path(dest).name}): it is damaged or was replaced. Delete it and {pin_path(dest).name} "
                "to download it again."
            )
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
        log.info("sha256 of %s: %s (no published checksum; pinned for later uses)", dest.name, digest)
        _write_pin(dest, digest)
    os.replace(part, dest)
    return dest
