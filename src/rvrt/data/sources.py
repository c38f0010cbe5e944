"""Where training frames come from: folders of images, LMDB databases, video files, procedural videos.

A *frame source* maps sequence names to ordered frame lists and reads frames as ``(H, W, 3)``
uint8 RGB arrays. Sources are opened lazily inside each DataLoader worker (file handles and
LMDB environments must not cross a ``fork``).
"""

from __future__ import annotations

import copy
import io
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rvrt.data import frames as _frames
from rvrt.errors import InputError
from rvrt.media.images import IMAGE_EXTENSIONS, natural_key
from rvrt.media.info import VIDEO_EXTENSIONS

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "FrameSource",
    "FolderFrames",
    "LmdbFrames",
    "VideoFileFrames",
    "MultiSource",
    "SyntheticFrames",
    "natural_key",
    "read_image",
    "open_source",
    "discover_sequences",
]

log = logging.getLogger(__name__)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    # training runs on 8-bit frames, as the published datasets are; deeper sources are rounded
    if img.dtype == np.uint8:
        return img
    return np.rint(img.astype(np.float32) / np.float32(257.0)).astype(np.uint8)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as ``(H, W, 3)`` uint8 RGB (16-bit files are rounded to 8 bits).

    Raises:
        InputError: missing or unreadable file.
    """
    return _to_uint8(_frames.read_image(path))


def _decode_bytes(data: bytes, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise InputError(f"cannot read image {where}: {err}") from err


class FrameSource:
    """Sequences of frames. Subclasses fill ``self.frames`` (sequence -> frame names) and read."""

    root: Path
    frames: dict[str, list[str]]

    def read(self, seq: str, ids: Sequence[int]) -> list[np.ndarray]:
        """Frames ``ids`` (positions in ``self.frames[seq]``) as ``(H, W, 3)`` uint8 arrays."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.frames)

    def subset(self, sequences: Sequence[str]) -> FrameSource:
        """The same source restricted to ``sequences`` (in that order)."""
        missing = [s for s in sequences if s not in self.frames]
        if missing:
            raise InputError(f"{self.root} has no sequence(s) {missing[:5]}")
        out = copy.copy(self)
        out.frames = {s: self.frames[s] for s in sequences}
        return out


def _images_in(folder: Path) -> list[str]:
    return [p.name for p in _frames.list_frames(folder)]


class FolderFrames(FrameSource):
    """``<root>/<sequence>/<frame>.png`` (any image extension; sequences may be nested, e.g.
    Vimeo-90K's ``00001/0001``).

    Args:
        root: the folder of sequence folders.
        sequences: sequence names (relative paths) to use; all sub-folders with images if None.
        frame_names: fixed frame file names for every sequence (e.g. ``im1.png`` ... ``im7.png``);
            listed from each folder if None.
    """

    def __init__(
        self, root: str | os.PathLike, sequences: Sequence[str] | None = None, frame_names: Sequence[str] | None = None
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"dataset folder not found: {self.root}")
        if sequences is None:
            sequences = sorted((p.name for p in self.root.iterdir() if p.is_dir()), key=natural_key)
            if not sequences:
                raise InputError(f"{self.root} holds no sequence folders (expected <root>/<sequence>/<frame>.png)")
        self.frames = {}
        for seq in sequences:
            folder = self.root / seq
            if not folder.is_dir():
                raise InputError(f"sequence folder {folder} is missing")
            names = list(frame_names) if frame_names is not None else _images_in(folder)
            if not names:
                raise InputError(f"sequence folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            self.frames[seq] = names

    def read(self, seq: str, ids: Sequence[int]) -> list[np.ndarray]:
        names = self.frames[seq]
        return [read_image(self.root / seq / names[i]) for i in ids]

    def check_files(self) -> None:
        """Raise :class:`InputError` naming the first frame file that does not exist."""
        for seq, names in self.frames.items():
            for name in names:
                if not (self.root / seq / name).is_file():
                    raise InputError(f"frame {self.root / seq / name} is missing")


class LmdbFrames(FrameSource):
    """An LMDB database as written by the BasicSR/KAIR ``create_lmdb`` tools: keys
    ``<sequence>/<frame>`` hold encoded images; ``meta_info.txt`` lists ``<key>.png (h,w,c) level``.
    Needs the optional ``lmdb`` package.
    """

    def __init__(self, root: str | os.PathLike, sequences: Sequence[str] | None = None) -> None:
        self.root = Path(root)
        meta = self.root / "meta_info.txt"
        if not meta.is_file():
            raise InputError(f"{self.root} is not an LMDB dataset: {meta} is missing")
        try:
            import lmdb  # noqa: F401
        except ImportError as err:
            raise InputError(f"reading {self.root} needs the 'lmdb' package (pip install lmdb)") from err
        frames: dict[str, list[str]] = {}
        for line in meta.read_text().splitlines():
            if not line.strip():
                continue
            key = line.split(" ")[0].rsplit(".", 1)[0]
            seq, _, frame = key.rpartition("/")
            frames.setdefault(seq, []).append(frame)
        if sequences is not None:
            missing = [s for s in sequences if s not in frames]
            if missing:
                raise InputError(f"{self.root} has no sequence(s) {missing[:5]} (from its meta_info.txt)")
            frames = {s: frames[s] for s in sequences}
        self.frames = {s: sorted(f, key=natural_key) for s, f in frames.items()}
        self._env = None

    def read(self, seq: str, ids: Sequence[int]) -> list[np.ndarray]:
        if self._env is None:
            import lmdb

            self._env = lmdb.open(str(self.root), readonly=True, lock=False, readahead=False, meminit=False)
        out = []
        with self._env.begin(write=False) as txn:
            for i in ids:
                key = f"{seq}/{self.frames[seq][i]}"
                data = txn.get(key.encode("ascii"))
                if data is None:
                    raise InputError(f"key {key} is missing from {self.root}")
                out.append(_decode_bytes(data, f"{self.root}:{key}"))
        return out

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_env"] = None
        return state


class VideoFileFrames(FrameSource):
    """Video files, one sequence each (read with :mod:`rvrt.media`).

    Each file is decoded once, when the source is built (its frames are counted then anyway), and
    with ``cache`` (the default) its frames are kept as raw uint8 in rvrt's cache folder
    (``<cache>/frames``, keyed by the file's path, size and modification time; about
    ``H * W * 3`` bytes a frame): clips are then read from a memory map, shared by every DataLoader
    worker through the page cache, instead of decoding the video from its start for every clip.
    Without ``cache`` a clip is decoded from the start of the file up to its last frame.
    """

    def __init__(self, files: Sequence[str | os.PathLike], *, cache: bool = True) -> None:
        self.root = Path(os.path.commonpath([str(Path(f).parent) for f in files])) if files else Path(".")
        self.paths: dict[str, Path] = {}
        self.cached: dict[str, tuple[Path, tuple[int, int, int, int]]] = {}
        self._maps: dict[str, np.ndarray] = {}
        self.frames = {}
        for f in files:
            path = Path(f)
            if not path.is_file():
                raise InputError(f"video file not found: {path}")
            n = self._cache(path) if cache else self._count(path)
            if n == 0:
                raise InputError(f"video {path} has no frames")
            self.paths[str(path)] = path
            self.frames[str(path)] = [f"{i:08d}" for i in range(n)]

    @staticmethod
    def _count(path: Path) -> int:
        from rvrt.media import open_reader

        with open_reader(path) as reader:
            return sum(1 for _ in reader)

    def _cache(self, path: Path) -> int:
        """Decode ``path`` into the frame cache (unless there already); returns its frame count."""
        import hashlib

        from rvrt.hub import cache_dir
        from rvrt.media import open_reader

        st = path.stat()
        # one slot per video path; the stamp (size, modification time) tells a changed file, whose
        # old decoding is removed once the new one is in place
        slot = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
        key = f"{slot}-{hashlib.sha256(f'{st.st_size}|{st.st_mtime_ns}'.encode()).hexdigest()[:8]}"
        folder = cache_dir() / "frames"
        found = sorted(folder.glob(f"{key}.*.u8"))
        if not found:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{key}.{os.getpid()}.tmp"
            n, hw = 0, (0, 0)
            try:
                with open_reader(path) as reader, open(tmp, "wb") as out:
                    for frame in reader:
                        data = _to_uint8(frame.data)
                        hw = data.shape[:2]
                        out.write(np.ascontiguousarray(data).tobytes())
                        n += 1
                target = folder / f"{key}.{n}x{hw[0]}x{hw[1]}.u8"
                os.replace(tmp, target)  # atomic: a half-written cache is never found
            finally:
                tmp.unlink(missing_ok=True)
            for stale in folder.glob(f"{slot}-*.u8"):
                if stale != target:  # a reader still mapping it keeps its pages until it closes
                    stale.unlink(missing_ok=True)
            log.info("decoded %d frames of %s into the frame cache %s", n, path, target)
            found = [target]
        n, h, w = (int(v) for v in found[0].name.split(".")[1].split("x"))
        self.cached[str(path)] = (found[0], (n, h, w, 3))
        return n

    def read(self, seq: str, ids: Sequence[int]) -> list[np.ndarray]:
        if seq in self.cached:
            if seq not in self._maps:  # opened in each process (workers), never pickled
                file, shape = self.cached[seq]
                self._maps[seq] = np.memmap(file, dtype=np.uint8, mode="r", shape=shape)
            frames = self._maps[seq]
            return [np.array(frames[i]) for i in ids]
        from rvrt.media import open_reader

        first, last = min(ids), max(ids)
        got: dict[int, np.ndarray] = {}
        with open_reader(self.paths[seq], start=first) as reader:
            for frame in reader:
                if frame.index in ids:
                    got[frame.index] = _to_uint8(frame.data)
                if frame.index >= last:
                    break
        missing = sorted(set(ids) - set(got))
        if missing:
            raise InputError(f"video {seq} ended before frame {missing[0]}")
        return [got[i] for i in ids]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_maps"] = {}
        return state


class MultiSource(FrameSource):
    """Several sources seen as one (sequence names must be unique)."""

    def __init__(self, sources: Sequence[FrameSource]) -> None:
        self.sources = list(sources)
        self.root = self.sources[0].root if self.sources else Path(".")
        self.frames = {}
        self._owner: dict[str, tuple[FrameSource, str]] = {}
        for src in self.sources:
            for seq, names in src.frames.items():
                key = seq if seq not in self.frames else f"{src.root}/{seq}"
                if key in self.frames:
                    raise InputError(f"sequence {seq} appears twice in the dataset roots")
                self.frames[key] = names
                self._owner[key] = (src, seq)

    def read(self, seq: str, ids: Sequence[int]) -> list[np.ndarray]:
        src, name = self._owner[seq]
        return src.read(name, ids)


class SyntheticFrames(FrameSource):
    """Procedural videos (smooth colour texture moving at a constant random velocity), for
    smoke tests and benchmarks that need no files. Deterministic in ``seed``."""

    def __init__(
        self, *, count: int = 4, frames: int = 8, size: Sequence[int] = (128, 128), speed: int = 3, seed: int = 0
    ) -> None:
        if count < 1 or frames < 1 or len(size) != 2 or min(size) < 1:
            raise InputError(f"synthetic data needs count, frames and size >= 1; got {count}, {frames}, {list(size)}")
        self.root = Path("<synthetic>")
        self.size, self.speed, self.seed = (int(size[0]), int(size[1])), int(speed), int(seed)
        self.frames = {f"synthetic_{i:03d}": [f"{t:05d}" for t in range(frames)] for i in range(count)}
        self._names = list(self.frames)

    def read(self, seq: str, ids: Sequence[int]) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed % 2**32, self._names.index(seq)])
        h, w = self.size
        n = len(self.frames[seq])
        pad = self.speed * n
        yy, xx = np.mgrid[0 : h + 2 * pad, 0 : w + 2 * pad].astype(np.float32)
        canvas = np.zeros((h + 2 * pad, w + 2 * pad, 3), np.float32)
        for c in range(3):
            for _ in range(4):
                fy, fx = rng.uniform(0.01, 0.15, 2)
                canvas[..., c] += np.sin(fy * yy + fx * xx + rng.uniform(0, 2 * np.pi)) * rng.uniform(10, 40)
        for _ in range(6):  # a few flat rectangles give sharp edges to restore
            y, x = rng.integers(0, h + pad, 2)
            canvas[y : y + rng.integers(4, h // 2 + 5), x : x + rng.integers(4, w // 2 + 5)] = rng.uniform(-60, 60, 3)
        canvas = np.clip(canvas + 128, 0, 255).astype(np.uint8)
        vy, vx = rng.integers(-self.speed, self.speed + 1, 2)
        return [canvas[pad + vy * t : pad + vy * t + h, pad + vx * t : pad + vx * t + w] for t in ids]


def discover_sequences(root: str | os.PathLike, *, video_cache: bool = True) -> FrameSource:
    """A source for a GT-only root of any of these kinds (``video_cache``: see
    :class:`VideoFileFrames`):

    * a video file (one sequence);
    * a folder of images (one sequence);
    * a folder of video files (one sequence each);
    * a folder of sequence folders of images.
    """
    root = Path(root)
    if root.is_file():
        if root.suffix.lower() not in VIDEO_EXTENSIONS:
            raise InputError(f"{root} is not a video file ({', '.join(VIDEO_EXTENSIONS)})")
        return VideoFileFrames([root], cache=video_cache)
    if not root.is_dir():
        raise InputError(f"dataset path not found: {root}")
    entries = sorted(root.iterdir(), key=lambda p: natural_key(p.name))
    if any(p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS for p in entries):
        src = FolderFrames(root.parent, [root.name])
        return src
    videos = [p for p in entries if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS]
    folders = [p for p in entries if p.is_dir()]
    sources: list[FrameSource] = []
    if folders:
        sources.append(FolderFrames(root, [p.name for p in folders if _images_in(p)] or None))
    if videos:
        sources.append(VideoFileFrames(videos, cache=video_cache))
    if not sources:
        raise InputError(f"{root} holds no images, videos or sequence folders")
    return sources[0] if len(sources) == 1 else MultiSource(sources)


def open_source(
    root: str | os.PathLike, *, io_backend: str = "folder", sequences: Sequence[str] | None = None
) -> FrameSource:
    """``io_backend``: ``"folder"`` (sequence folders of images) or ``"lmdb"``."""
    if io_backend == "folder":
        return FolderFrames(root, sequences)
    if io_backend == "lmdb":
        return LmdbFrames(root, sequences)
    raise InputError(f"unknown io backend {io_backend!r}; use 'folder' or 'lmdb'")
