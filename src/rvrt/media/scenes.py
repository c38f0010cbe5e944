"""Scene cuts: the frames where a new shot begins.

A *cut* is the index of the first frame of a shot (0-based, in the frame numbering of the whole
input); frame 0 is never a cut. The runner restores each shot on its own (the recurrence starts
afresh at a cut and no blend mixes two shots), so a missed cut costs ghosting across it and a
false cut only a little context.

Detection (:class:`CutDetector`, :func:`detect_cuts`) looks for *hard* cuts on small thumbnails
(about 96 pixels wide, YCbCr) of consecutive frames. Frame ``i`` starts a new shot when

* its thumbnail differs from the previous one by at least :attr:`CutDetector.min_change` levels
  (mean absolute difference, 0..255), and by at least :attr:`CutDetector.ratio` times the mean
  difference of its neighbours (two frames either side): camera and subject motion change
  every frame about as much, a cut changes one frame far more than its neighbours;
* the colour histograms differ by at least :attr:`CutDetector.min_histogram` (half the L1
  distance of 16-bin histograms per channel, 0..1): motion moves pixels but keeps the colours.
  A cut to a shot of similar colours (the same place, later: a jump cut) passes with a quarter of
  that when its change is twice the ratio above its neighbours';
* it is not a flash: a frame unlike both neighbours that are alike (a one-frame flash or
  glitch) starts no shot.

Gradual transitions (fades, dissolves, wipes) are not cuts: each of their frames changes a
little. The decision on frame ``i`` waits for frames ``i + 1`` and ``i + 2`` (a look-ahead of two
frames); memory is a few thumbnails and one number per frame.

A cut list can be given instead (:func:`read_cut_list`): a text file with one frame index per
line, or the CSV scene list PySceneDetect writes (``scenedetect -i IN list-scenes``).
"""

from __future__ import annotations

import csv
import io
import itertools
import os
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from rvrt.errors import InputError
from rvrt.files import os_error

__all__ = ["CutDetector", "detect_cuts", "detects", "find_cuts", "given_cuts", "read_cut_list", "thumbnail", "shots_of"]

#: thumbnails are about this wide (block means of the frame)
THUMB_WIDTH = 96
_BINS = 16
# full-range BT.601 RGB -> YCbCr (the thumbnail's colour space; any fixed one would do)
_YCBCR = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=np.float32)


def thumbnail(frame: np.ndarray) -> np.ndarray:
    """An ``(H, W, 3)`` RGB frame (uint8, uint16 or float in [0, 1]) as a small float32 YCbCr
    image in 0..255 (chroma centred on 128): block means of ``k x k`` pixels, ``k = W // 96``."""
    f = np.asarray(frame)
    if f.ndim != 3 or f.shape[2] < 3:
        raise InputError(f"scene detection needs (H, W, 3) frames; got shape {f.shape}")
    scale = {np.dtype(np.uint8): 1.0, np.dtype(np.uint16): 255.0 / 65535.0}.get(f.dtype, 255.0)
    k = max(1, f.shape[1] // THUMB_WIDTH)
    h, w = f.shape[0] // k * k, f.shape[1] // k * k
    if h == 0:
        k, h, w = 1, f.shape[0], f.shape[1]
    small = f[:h, :w, :3].astype(np.float32).reshape(h // k, k, w // k, k, 3).mean(axis=(1, 3))
    ycc = (small * np.float32(scale)) @ _YCBCR.T
    ycc[..., 1:] += 128.0
    return ycc


def _histogram(thumb: np.ndarray) -> np.ndarray:
    idx = np.clip(thumb.reshape(-1, 3) * (_BINS / 256.0), 0, _BINS - 1).astype(np.int64)
    hist = np.stack([np.bincount(idx[:, c], minlength=_BINS) for c in range(3)]).astype(np.float64)
    return hist / max(1, idx.shape[0])


class CutDetector:
    """Streaming hard-cut detection (see the module doc): :meth:`push` frames in order, then
    :meth:`finish`; :attr:`cuts` lists the cuts found.

    Args:
        min_change: least mean absolute thumbnail difference of a cut (levels, 0..255).
        ratio: least ratio of a cut's difference to the mean difference of its neighbours.
        min_histogram: least histogram distance (0..1) of a cut.
    """

    def __init__(self, min_change: float = 12.0, ratio: float = 3.0, min_histogram: float = 0.15) -> None:
        self.min_change = float(min_change)
        self.ratio = float(ratio)
        self.min_histogram = float(min_histogram)
        self.cuts: list[int] = []
        self._thumbs: deque[np.ndarray] = deque(maxlen=3)  # the last three thumbnails
        self._hist: np.ndarray | None = None
        self._change: list[float] = []  # frame i: difference to frame i - 1 (i >= 1); index 0 unused
        self._hist_change: list[float] = []
        self._skip: list[float] = []  # frame i: difference to frame i - 2 (i >= 2)
        self._decided = 1  # frames before this are decided (frame 0 is never a cut)

    @property
    def frames(self) -> int:
        return len(self._change)

    def push(self, frame: np.ndarray) -> list[int]:
        """Add the next frame; returns the cuts decided by it (frames up to two before it)."""
        t = thumbnail(frame)
        hist = _histogram(t)
        if self._thumbs and t.shape != self._thumbs[-1].shape:
            raise InputError(f"scene detection: frame {self.frames} is {t.shape} where earlier thumbnails were "
                             f"{self._thumbs[-1].shape}: frames of one video must have one size")  # fmt: skip
        if self._thumbs:
            self._change.append(float(np.abs(t - self._thumbs[-1]).mean()))
            self._hist_change.append(float(0.5 * np.abs(hist - self._hist).sum(axis=1).mean()))
        else:
            self._change.append(0.0)
            self._hist_change.append(0.0)
        self._skip.append(float(np.abs(t - self._thumbs[-2]).mean()) if len(self._thumbs) >= 2 else 0.0)
        self._thumbs.append(t)
        self._hist = hist
        return self._decide(self.frames - 2)

    def finish(self) -> list[int]:
        """No more frames: decide the last ones; returns the cuts found among them."""
        return self._decide(self.frames)

    def _decide(self, upto: int) -> list[int]:
        found = []
        n = self.frames
        for i in range(self._decided, upto):
            if self._is_cut(i, n):
                found.append(i)
        self._decided = max(self._decided, upto)
        self.cuts.extend(found)
        return found

    def _is_cut(self, i: int, n: int) -> bool:
        c, hist = self._change[i], self._hist_change[i]
        if c < self.min_change or hist < self.min_histogram / 4:
            return False
        around = [self._change[j] for j in (i - 2, i - 1, i + 1, i + 2) if 1 <= j < n]
        ratio = self.ratio if hist >= self.min_histogram else 2 * self.ratio
        if around and c < ratio * (sum(around) / len(around)):
            return False
        # a flash: the frame after i is like the one before it, or i is like the one two before
        after_back = self._skip[i + 1] if i + 1 < n else None
        if after_back is not None and after_back < c / self.ratio:
            return False
        return not (i >= 2 and self._skip[i] < c / self.ratio)


def detect_cuts(
    frames: Iterable[np.ndarray],
    *,
    first: int = 0,
    progress: Callable[[int], None] | None = None,
    detector: CutDetector | None = None,
) -> list[int]:
    """The cuts of a stream of ``(H, W, 3)`` frames whose first one is frame ``first``.

    ``progress(n)`` is told every frame read. Returns cut indices numbered like the frames.
    """
    det = detector if detector is not None else CutDetector()
    for n, f in enumerate(frames, start=1):
        det.push(f)
        if progress is not None:
            progress(n)
    det.finish()
    return [first + c for c in det.cuts]


def given_cuts(setting) -> list[int] | None:
    """The cuts a ``scene_cuts`` setting gives itself (a cut list file or frame numbers), or None
    for ``"auto"``, ``"off"`` and None (see :class:`rvrt.inference.options.JobOptions`)."""
    if setting is None or setting in ("auto", "off"):
        return None
    if isinstance(setting, (str, os.PathLike)):
        return read_cut_list(setting)
    return sorted({int(c) for c in setting})


def detects(setting, kind: str) -> bool:
    """Whether a ``scene_cuts`` setting asks for detection on an input of this kind
    (``"video"`` or ``"frames"``): ``"auto"``, or None (the default) for a video."""
    return setting == "auto" or (setting is None and kind == "video")


def find_cuts(
    setting,
    source: str | os.PathLike,
    *,
    info=None,
    start: int = 0,
    frames: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[int], str]:
    """The cuts of input frames ``start .. start + frames - 1`` of ``source`` for a ``scene_cuts``
    setting, numbered like the input's frames, and how they were found (``"detected"``,
    ``"given"`` or ``"off"``). Detection reads the frames once (``progress(n)`` is told every
    frame read)."""
    from rvrt.media.readers import open_reader, probe

    info = probe(source) if info is None else info
    end = None if frames is None else start + frames
    if detects(setting, info.kind):
        reader = open_reader(source, start=start, info=info, on_damage="stop")
        with reader:
            stream = (f.data for f in itertools.islice(reader, frames))
            cuts, how = detect_cuts(stream, first=start, progress=progress), "detected"
    else:
        cuts, how = given_cuts(setting), "given"
        if cuts is None:
            return [], "off"
    return [c for c in cuts if c > start and (end is None or c < end)], how


def read_cut_list(path: str | os.PathLike) -> list[int]:
    """Cuts from a file: one frame index (0-based, the first frame of a shot) per line, blank lines
    and ``#`` comments allowed; or PySceneDetect's scene list CSV (its 1-based "Start Frame" of
    every scene after the first).

    Raises:
        InputError: the file cannot be read or holds something else.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"scene cut list {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        if isinstance(err, OSError):
            raise os_error(err, "read", p) from err
        raise InputError(f"scene cut list {p} is not a text file") from err
    if "Start Frame" in text:
        return _pyscenedetect_cuts(text, p)
    cuts = []
    for k, line in enumerate(text.splitlines(), start=1):
        value = line.split("#", 1)[0].strip()
        if not value:
            continue
        try:
            cut = int(value)
        except ValueError:
            raise InputError(f"{p}, line {k}: expected a frame number (the first frame of a shot); "
                             f"got {value!r}") from None  # fmt: skip
        if cut < 0:
            raise InputError(f"{p}, line {k}: frame numbers start at 0; got {cut}")
        cuts.append(cut)
    return sorted(set(cuts))


def _pyscenedetect_cuts(text: str, path: Path) -> list[int]:
    rows = list(csv.reader(io.StringIO(text)))
    head = next((k for k, r in enumerate(rows) if "Start Frame" in r), None)
    col = rows[head].index("Start Frame")
    starts = []
    for r in rows[head + 1 :]:
        if not r or not any(v.strip() for v in r):
            continue
        try:
            starts.append(int(r[col]) - 1)
        except (IndexError, ValueError):
            raise InputError(f"{path}: a scene list row without a Start Frame number: {','.join(r)}") from None
    if any(s < 0 for s in starts):
        raise InputError(f"{path}: a scene list Start Frame below 1")
    return sorted(set(starts[1:])) if starts else []


def shots_of(cuts: Iterable[int], total: int | None) -> list[tuple[int, int | None]]:
    """Shots ``(first, end)`` of frames ``0 .. total - 1`` split at ``cuts`` (``end`` of the last
    shot is None when ``total`` is unknown). Cuts outside ``1 .. total - 1`` are ignored."""
    bounds = sorted({c for c in cuts if c > 0 and (total is None or c < total)})
    starts = [0, *bounds]
    ends: list[int | None] = [*bounds, total]
    return list(zip(starts, ends, strict=True))
