"""The records shared by frame readers and writers: :class:`MediaInfo`, :class:`Frame`, the reader
and writer base classes, and FFmpeg's colour tag names."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from rvrt.errors import InputError

__all__ = ["MediaInfo", "Frame", "FrameReader", "FrameWriter", "VIDEO_EXTENSIONS", "DEFAULT_FPS"]

#: destination endings written as video files, with their FFmpeg muxer
MUXERS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov", ".avi": "avi", ".webm": "webm", ".gif": "gif"}
VIDEO_EXTENSIONS = tuple(MUXERS)
#: frame rate of a video made from a frames folder when none is given
DEFAULT_FPS = Fraction(25)

# FFmpeg's colour enums (AVColorPrimaries, AVColorTransferCharacteristic, AVColorSpace,
# AVColorRange) <-> the names ffmpeg/ffprobe print; "unspecified" and "reserved" are left out
PRIMARIES_NAMES = {
    1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film", 9: "bt2020",
    10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "ebu3213",
}  # fmt: skip
TRC_NAMES = {
    1: "bt709", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m", 8: "linear", 9: "log100",
    10: "log316", 11: "iec61966-2-4", 12: "bt1361e", 13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12",
    16: "smpte2084", 17: "smpte428", 18: "arib-std-b67",
}  # fmt: skip
SPACE_NAMES = {
    0: "gbr", 1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "ycgco", 9: "bt2020nc",
    10: "bt2020c", 11: "smpte2085", 12: "chroma-derived-nc", 13: "chroma-derived-c", 14: "ictcp",
}  # fmt: skip
RANGE_NAMES = {1: "tv", 2: "pc"}
COLOR_TABLES = {"primaries": PRIMARIES_NAMES, "trc": TRC_NAMES, "space": SPACE_NAMES, "range": RANGE_NAMES}
#: YUV matrices swscale converts with (its SWS_CS_* numbers), by colour-space name
SWS_MATRIX = {"bt709": 1, "fcc": 4, "bt470bg": 5, "smpte170m": 5, "smpte240m": 7, "bt2020nc": 9, "bt2020c": 9}

# swscale flags, chosen by measuring against exact BT.709 arithmetic (FFmpeg 8 / PyAV 18). The
# default fast YUV -> RGB path is biased (about -1.5 levels in every channel); accurate rounding
# with full chroma interpolation is exact up to rounding (mean error 0.2 on flat chroma).
_Flags = av.video.reformatter.Interpolation
READ_SWS_FLAGS = _Flags.BICUBIC | _Flags.ACCURATE_RND | _Flags.FULL_CHR_H_INT
WRITE_SWS_FLAGS = _Flags.BICUBIC | _Flags.ACCURATE_RND | _Flags.FULL_CHR_H_INP

_PLANAR_YUV = re.compile(r"yuvj?(4[0-4][0-4]|41[01])p(\d+)?(le|be)?$")


def to_rgb_float(frame: av.VideoFrame, src_colorspace: int | None = None) -> np.ndarray:
    """Any frame -> ``(H, W, 3)`` float32 RGB (1.0: swscale's white, see :func:`rgb48_gain`).

    Deep frames go through swscale's float output: its 16-bit integer RGB output is corrupted by
    some flag combinations (bilinear + full chroma interpolation errs by ~80 levels).
    """
    planar = frame.reformat(format="gbrpf32le", src_colorspace=src_colorspace, interpolation=READ_SWS_FLAGS)
    g, b, r = (
        np.frombuffer(p, dtype="<f4").reshape(planar.height, p.line_size // 4)[:, : planar.width]
        for p in planar.planes[:3]
    )
    return np.dstack([r, g, b])


@functools.lru_cache(maxsize=64)
def rgb48_gain(pix_fmt: str, full_range: bool) -> float:
    """True white over swscale's white for 16-bit RGB <-> the planar YUV format ``pix_fmt``.

    swscale maps YUV white to 65283 (limited range) or ``(2**n - 1) << (16 - n)`` (full range)
    rather than 65535 in 16-bit RGB (and 0.99616... in float). The other direction has a scale of
    its own (:func:`rgb48_write_gain`). Measured on a synthetic white frame, so an FFmpeg that gets
    it right yields 1.0. Other layouts (nv12, p010, RGB) return 1.0.
    """
    if not _PLANAR_YUV.match(pix_fmt):
        return 1.0
    bits = av.VideoFormat(pix_fmt).components[0].bits
    white = (1 << bits) - 1 if full_range else 235 << (bits - 8)
    dtype = np.dtype(np.uint8) if bits <= 8 else np.dtype(">u2" if pix_fmt.endswith("be") else "<u2")
    frame = av.VideoFrame(16, 16, pix_fmt)
    for i, plane in enumerate(frame.planes):
        value = white if i == 0 else 1 << (bits - 1)  # luma white, neutral chroma
        plane.update(np.full((plane.height, plane.line_size // dtype.itemsize), value, dtype).tobytes())
    frame.color_range = 2 if full_range else 1
    measured = float(to_rgb_float(frame)[8, 8].mean())
    return 1.0 / measured if measured > 0.5 else 1.0


@functools.lru_cache(maxsize=64)
def rgb48_write_gain(pix_fmt: str) -> float:
    """swscale's white over true white for 16-bit RGB -> the planar YUV format ``pix_fmt``.

    swscale takes 16-bit RGB white to be 65280 (``255 << 8``) when it converts to YUV, in either
    range and at every depth (measured at 10, 12 and 16 bits), so 16-bit RGB is divided by this
    before the conversion. It is not the reading scale (:func:`rgb48_gain`): for full range the two
    differ, and without its own scale a full-range 10-bit output is 0.4 % too bright and clips
    everything above 65280. Measured on a synthetic grey frame (written as 16-bit YUV, where the
    rounding is finest), so an FFmpeg that gets it right yields 1.0. Other layouts return 1.0.
    """
    if not _PLANAR_YUV.match(pix_fmt):
        return 1.0
    grey = 0xF000
    frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), grey, dtype=np.uint16), format="rgb48le")
    yuv = frame.reformat(format="yuv444p16le", dst_colorspace=1, dst_color_range=2, interpolation=WRITE_SWS_FLAGS)
    measured = float(np.frombuffer(yuv.planes[0], dtype="<u2")[0])
    return measured / grey if 0.9 < measured / grey < 1.1 else 1.0


@dataclass(frozen=True)
class MediaInfo:
    """What a source holds; from :func:`probe` (headers and at most one decoded frame)."""

    kind: str  # "video", "frames" or "pipe" (a y4m stream on stdin)
    width: int
    height: int
    fps: Fraction | None  # None for frame folders
    frame_count: int | None  # exact for folders; estimate for videos (None if unknown)
    bit_depth: int  # 8 or 16
    names: tuple[str, ...] | None  # frame file stems in order (folders/globs); None for videos
    color: dict  # known colour tags of a video stream: primaries, trc, space, range (ffmpeg names)
    channels_note: str | None  # "grayscale converted to RGB", "alpha channel dropped", or None
    path: str
    start_time: float = 0.0  # presentation time of the first video frame, seconds
    rotation: int = 0  # display rotation applied while reading (degrees, counter-clockwise)
    pix_fmt: str | None = None  # pixel format of the video stream
    codec: str | None = None  # codec of the video stream
    files: tuple[str, ...] | None = field(default=None, repr=False)  # frame files, in order


@dataclass
class Frame:
    """One decoded frame: ``data`` is ``(H, W, 3)`` RGB, uint8 or uint16 (the source's bit depth)."""

    index: int
    name: str  # file stem for folders; f"{index:08d}" for videos
    data: np.ndarray


def color_names(frame: av.VideoFrame) -> dict:
    """The known colour tags of a decoded frame, as ffmpeg names (``{"space": "bt709", ...}``)."""
    values = {
        "primaries": frame.color_primaries,
        "trc": frame.color_trc,
        "space": frame.colorspace,
        "range": frame.color_range,
    }
    return {key: COLOR_TABLES[key][int(v)] for key, v in values.items() if int(v) in COLOR_TABLES[key]}


def assumed_matrix(width: int, height: int) -> str:
    """Matrix of an untagged YUV stream, as players guess it: BT.709 for HD sizes, else BT.601."""
    return "bt709" if max(width, height) >= 1280 or min(width, height) > 576 else "smpte170m"


def open_input(path: Path) -> av.container.InputContainer:
    """``av.open`` for reading, with a failure reported as :class:`InputError`."""
    try:
        return av.open(str(path), "r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot open {path} as a video: {err}") from err


class FrameReader:
    """Iterable of :class:`Frame` that decodes one frame at a time; also a context manager.

    Attributes:
        info: what the source holds.
        start: index of the first frame the iteration yields.
    """

    info: MediaInfo

    def __init__(self, info: MediaInfo, start: int = 0) -> None:
        if start < 0:
            raise InputError(f"start must be >= 0, got {start}")
        self.info = info
        self.start = start
        self._iterators: list = []

    @property
    def remaining(self) -> int | None:
        """Frames the iteration will yield (an estimate for videos; None if unknown)."""
        if self.info.frame_count is None:
            return None
        return max(self.info.frame_count - self.start, 0)

    def __iter__(self) -> Iterator[Frame]:
        gen = self._frames()
        self._iterators.append(gen)
        return gen

    def _frames(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        """Stop every iteration in progress and release the open files."""
        for gen in self._iterators:
            gen.close()
        self._iterators.clear()

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FrameWriter:
    """Destination of restored frames; a context manager (``close()`` on success, ``abort()`` on error).

    Attributes:
        completed: frames already present and complete when resuming into a frames folder, else 0.
        written: frames written by this writer.
        path: the destination.
    """

    completed: int = 0

    def __init__(self, path: Path, width: int, height: int) -> None:
        self.path = path
        self.width = width
        self.height = height
        self.written = 0
        self._finished = False

    def _check(self, data: np.ndarray) -> None:
        if not isinstance(data, np.ndarray) or data.dtype not in (np.uint8, np.uint16):
            kind = f"{type(data).__name__} {getattr(data, 'dtype', '')}"
            raise ValueError(f"frames must be uint8 or uint16 numpy arrays, got {kind}")
        if data.shape != (self.height, self.width, 3):
            raise ValueError(f"expected a ({self.height}, {self.width}, 3) RGB frame, got {data.shape}")
        if self._finished:
            raise RuntimeError(f"writer for {self.path} is already closed")

    def write(self, data: np.ndarray, name: str | None = None) -> None:
        """Append one ``(H, W, 3)`` uint8 or uint16 RGB frame (``name``: file stem, frames folders only)."""
        raise NotImplementedError

    def close(self) -> None:
        """Finish the output (video: flush, mux, rename into place)."""
        raise NotImplementedError

    def abort(self) -> None:
        """Drop unfinished output; nothing that looks complete is left behind."""
        raise NotImplementedError

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
