"""YUV4MPEG2 (y4m) on stdin and stdout: ``-`` as an input or an output.

``rvrt restore - -o OUT`` reads a y4m stream from stdin (what ``vspipe SCRIPT - -c y4m`` and
``ffmpeg -i IN -f yuv4mpegpipe -`` write); ``-o -`` writes one to stdout (what ``ffmpeg -i -``
reads). A pipe is another reader (:class:`PipeReader`) and another writer (:class:`PipeWriter`)
of the one runner: frames are read one at a time as the stages ask for them and written as
each one is final, so memory stays bounded by the tiles. A pipe is read or written once: it
has no frame count (progress counts frames without a total), nothing to resume, and no scene
detection ahead of the run.

Reading. The stream header gives the size, frame rate and pixel format: ``C420`` (also
``420jpeg``, ``420mpeg2``, ``420paldv``), ``C422``, ``C444`` and ``Cmono``, 8-bit or deeper
(``C420p10``, ``C444p12``, ``C420p16``, ...; samples little-endian), or ``XYSCSS=`` where
``C`` is missing; ``XCOLORRANGE=FULL|LIMITED`` gives the range (limited when absent). y4m has no
tag for the YUV matrix: the stream is read with the one players assume for its size (BT.709
from 1280 wide or above 576 lines, else BT.601), as an untagged video file is. Deeper than
8 bits is read as 16-bit RGB, exactly as the same stream in a file would be.

Writing. The output keeps the input's chroma layout (4:2:0 unless the input is 4:2:2 or 4:4:4
YUV) and its range; 8-bit output is 8-bit, a deeper one keeps the input's sample depth (10-bit
for 16-bit PNG frames or 8-bit sources asked for ``--bit-depth 16``). The matrix is the input's
when it is tagged, else the one players assume for the output's size. The header is written as
ffmpeg writes it (``C420jpeg XYSCSS=420JPEG``, ``C420p10 XYSCSS=420P10``, ``XCOLORRANGE=``).
While the writer is open, the process's own stdout (file descriptor 1) is pointed at stderr, so
a stray print cannot corrupt the stream.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO

import av
import numpy as np

from rvrt.errors import InputError, OutputError
from rvrt.media import readers
from rvrt.media.images import GRAY_NOTE
from rvrt.media.info import COLOR_TABLES, DEFAULT_FPS, SWS_MATRIX, Frame, FrameWriter, MediaInfo, assumed_matrix
from rvrt.media.readers import _VideoReader

__all__ = ["STDIO", "is_pipe", "Y4MHeader", "Y4MStream", "probe_pipe", "PipeReader", "PipeWriter", "stdin_stream"]

logger = logging.getLogger(__name__)

#: the path that means stdin (as an input) or stdout (as an output)
STDIO = "-"
MAGIC = b"YUV4MPEG2"
_LINE_LIMIT = 4096  # a header or frame line longer than this is not y4m
_CHROMA = re.compile(r"(?P<layout>420|422|444|mono)(?:jpeg|mpeg2|paldv)?(?:p?(?P<bits>\d+))?$")  # mono16: no p
_RANGES = {"FULL": "pc", "LIMITED": "tv"}


def is_pipe(path) -> bool:
    """Whether an input or output path means stdin or stdout (``-``)."""
    return isinstance(path, (str, os.PathLike)) and os.fspath(path) == STDIO


@dataclass(frozen=True)
class Y4MHeader:
    """What a y4m stream header says."""

    width: int
    height: int
    fps: Fraction | None
    pix_fmt: str  # PyAV's name: yuv420p, yuv444p10le, gray, ...
    range: str | None  # "pc", "tv" or None (not said)
    interlace: str = "p"

    @property
    def bits(self) -> int:
        return av.VideoFormat(self.pix_fmt).components[0].bits

    @property
    def frame_bytes(self) -> int:
        fmt = av.VideoFormat(self.pix_fmt)
        size = 1 if self.bits <= 8 else 2
        luma = self.width * self.height
        if self.pix_fmt.startswith("gray"):
            return luma * size
        chroma = fmt.chroma_width(self.width) * fmt.chroma_height(self.height)
        return (luma + 2 * chroma) * size


def _pix_fmt(tag: str, where: str) -> str:
    m = _CHROMA.match(tag.lower())
    if m is None:
        raise InputError(
            f"{where}: y4m colour format C{tag} is not supported (rvrt reads 4:2:0, 4:2:2, 4:4:4 and mono)"
        )
    bits = int(m["bits"] or 8)
    layout = m["layout"]
    name = ("gray" if layout == "mono" else f"yuv{layout}p") + ("" if bits == 8 else f"{bits}le")
    try:
        av.VideoFormat(name)
    except ValueError:
        raise InputError(f"{where}: y4m colour format C{tag} ({bits}-bit samples) is not supported") from None
    return name


def parse_header(line: bytes, where: str = "stdin") -> Y4MHeader:
    """The header of a y4m stream (its first line, without the newline).

    Raises:
        InputError: not y4m, no size, a bad value, a colour format rvrt does not read.
    """
    if not line.startswith(MAGIC + b" "):
        shown = line[:16].decode("latin-1").encode("unicode_escape").decode()
        raise InputError(f"{where} is not a YUV4MPEG2 (y4m) stream: it starts with {shown!r} (pipe y4m, "
                         "e.g. ffmpeg -i IN -f yuv4mpegpipe - or vspipe SCRIPT - -c y4m)")  # fmt: skip
    values: dict[str, str] = {}
    extra: dict[str, str] = {}
    for token in line[len(MAGIC) :].decode("ascii", "replace").split():
        key, value = token[0], token[1:]
        if key == "X":
            name, _, v = value.partition("=")
            extra[name.upper()] = v
        else:
            values[key] = value
    try:
        width, height = int(values["W"]), int(values["H"])
    except (KeyError, ValueError):
        raise InputError(f"{where}: the y4m header has no valid size (W and H): {line.decode('latin-1')!r}") from None
    if width <= 0 or height <= 0:
        raise InputError(f"{where}: the y4m header gives a size of {width}x{height}")
    fps = None
    if "F" in values:
        try:
            num, den = (int(v) for v in values["F"].split(":"))
            fps = Fraction(num, den) if num > 0 and den > 0 else None
        except ValueError:
            raise InputError(f"{where}: the y4m frame rate F{values['F']} is not N:D") from None
    tag = values.get("C") or extra.get("YSCSS", "420")
    pix_fmt = _pix_fmt(tag, where)
    rng = extra.get("COLORRANGE")
    if rng is not None and rng.upper() not in _RANGES:
        raise InputError(f"{where}: y4m XCOLORRANGE={rng} is neither FULL nor LIMITED")
    interlace = values.get("I", "p")[:1] or "p"
    return Y4MHeader(width, height, fps, pix_fmt, _RANGES.get((rng or "").upper()), interlace)


def _read_line(stream: BinaryIO, where: str, what: str) -> bytes:
    """One line without its newline (b"" at the end of the stream)."""
    line = bytearray()
    while len(line) < _LINE_LIMIT:
        c = stream.read(1)
        if not c:
            if line:
                raise InputError(f"{where} ended inside a y4m {what} line")
            return b""
        if c == b"\n":
            return bytes(line)
        line += c
    raise InputError(f"{where}: a y4m {what} line longer than {_LINE_LIMIT} bytes; the stream is not y4m")


class Y4MStream:
    """A y4m stream being read: its header, then its frames, once.

    Args:
        stream: a binary file (stdin's buffer, a pipe, a BytesIO).
        name: what messages call it.
    """

    def __init__(self, stream: BinaryIO, name: str = "stdin") -> None:
        self.stream = stream
        self.name = name
        line = _read_line(stream, name, "header")
        if not line:
            raise InputError(f"{name} is empty: pipe a y4m stream into rvrt (e.g. vspipe SCRIPT - -c y4m | rvrt ...)")
        self.header = parse_header(line, name)
        self._started = False
        #: ``(frame index, message)`` where the stream broke off inside a frame, or None
        self.damaged: tuple[int, str] | None = None

    def frames(self, on_damage: str = "raise") -> Iterator[av.VideoFrame]:
        """The frames, as PyAV frames of the header's pixel format (the stream is read once)."""
        if self._started:
            raise InputError(f"{self.name} can be read only once (a pipe cannot be rewound)")
        self._started = True
        h = self.header
        size = h.frame_bytes
        index = 0
        while True:
            line = _read_line(self.stream, self.name, "frame")
            if not line:
                return
            if not line.startswith(b"FRAME"):
                raise InputError(f"{self.name}: y4m frame {index} does not start with FRAME; the stream is damaged")
            data = self.stream.read(size)
            if len(data) < size:
                msg = f"{self.name} ended inside frame {index} ({len(data)} of {size} bytes)"
                if on_damage == "stop":
                    self.damaged = (index, msg)
                    logger.warning("%s; the input ends there", msg)
                    return
                raise InputError(f"{msg}: the producer stopped early; --allow-truncated restores the frames before it")
            yield _to_av(data, h)
            index += 1


def _to_av(data: bytes, h: Y4MHeader) -> av.VideoFrame:
    frame = av.VideoFrame(h.width, h.height, h.pix_fmt)
    dtype = np.dtype(np.uint8) if h.bits <= 8 else np.dtype("<u2")
    offset = 0
    for plane in frame.planes:
        pw = plane.width
        n = pw * plane.height
        rows = np.frombuffer(data, dtype=dtype, count=n, offset=offset).reshape(plane.height, pw)
        offset += n * dtype.itemsize
        buf = np.zeros((plane.height, plane.line_size // dtype.itemsize), dtype=dtype)
        buf[:, :pw] = rows
        plane.update(buf.tobytes())
    if h.range is not None:
        frame.color_range = 2 if h.range == "pc" else 1
    return frame


_stdin: Y4MStream | None = None


def stdin_stream() -> Y4MStream:
    """The process's stdin as a y4m stream (its header read on the first call)."""
    global _stdin
    if _stdin is None:
        if sys.stdin is None or sys.stdin.isatty():
            raise InputError("the input is '-' (stdin) but stdin is a terminal: pipe a y4m stream into rvrt")
        _stdin = Y4MStream(sys.stdin.buffer, "stdin")
    return _stdin


def probe_pipe(stream: Y4MStream | None = None) -> MediaInfo:
    """What a y4m stream holds (stdin when ``stream`` is None), from its header; nothing decoded."""
    s = stream if stream is not None else stdin_stream()
    h = s.header
    if h.interlace not in ("p", "?"):
        logger.warning("%s: the y4m stream is interlaced (I%s); its frames are restored as progressive", s.name,
                       h.interlace)  # fmt: skip
    return MediaInfo(
        kind="pipe",
        width=h.width,
        height=h.height,
        fps=h.fps,
        frame_count=None,
        bit_depth=16 if h.bits > 8 else 8,
        names=None,
        color={"range": h.range} if h.range else {},
        channels_note=GRAY_NOTE if h.pix_fmt.startswith("gray") else None,
        path=STDIO,
        pix_fmt=h.pix_fmt,
        codec="y4m",
    )


def open_pipe_reader(info: MediaInfo, start: int = 0, on_damage: str = "raise", stream: Y4MStream | None = None):
    """A reader of the y4m frames of ``stream`` (stdin when None), from frame ``start`` on."""
    return PipeReader(info, start, stream if stream is not None else stdin_stream(), on_damage)


class PipeReader(_VideoReader):
    """RGB frames of a y4m stream, converted exactly as a video file's frames are (the video
    reader's conversion: matrix, range, 16-bit scale)."""

    def __init__(self, info: MediaInfo, start: int, stream: Y4MStream, on_damage: str = "raise") -> None:
        super().__init__(info, start)
        self.stream = stream
        self.on_damage = on_damage

    def _frames(self) -> Iterator[Frame]:
        for index, frame in enumerate(self.stream.frames(self.on_damage)):
            if index >= self.start:
                yield Frame(index, f"{index:08d}", self._to_rgb(frame))
        self.damaged = self.stream.damaged


# y4m chroma tags as ffmpeg's muxer writes them, for 8-bit and deeper samples
def _chroma_tag(pix_fmt: str) -> str:
    fmt = av.VideoFormat(pix_fmt)
    bits = fmt.components[0].bits
    layout = pix_fmt[3:6]
    if bits == 8:
        return "420jpeg XYSCSS=420JPEG" if layout == "420" else f"{layout} XYSCSS={layout}"
    return f"{layout}p{bits} XYSCSS={layout}P{bits}"


def output_pix_fmt(like: MediaInfo, bit_depth: int) -> str:
    """The y4m pixel format of an output like ``like`` (see the module doc)."""
    m = re.match(r"yuvj?(420|422|444)p(\d+)?", like.pix_fmt or "")
    layout = m[1] if m else "420"
    if bit_depth == 8:
        return f"yuv{layout}p"
    bits = int(m[2]) if m and m[2] else 10
    return f"yuv{layout}p{bits}le"


class PipeWriter(FrameWriter):
    """Frames as a y4m stream on stdout (or ``stream``); see the module doc.

    Args:
        like: the input (chroma layout, depth, range, matrix, frame rate).
        width, height: size of the frames written.
        fps: frame rate (default: the input's, else 25).
        bit_depth: 8 or 16 (a deeper output, see :func:`output_pix_fmt`).
        stream: a binary file to write to; None: stdout (file descriptor 1).
    """

    def __init__(self, like: MediaInfo, width: int, height: int, *, fps=None, bit_depth: int = 8,
                 stream: BinaryIO | None = None) -> None:  # fmt: skip
        from rvrt.media.writers import _exact_fps

        super().__init__(STDIO, width, height)
        self.fps = _exact_fps(fps if fps is not None else like.fps or DEFAULT_FPS)
        self.pix_fmt = output_pix_fmt(like, bit_depth)
        space = like.color.get("space")
        if space not in SWS_MATRIX:
            space = assumed_matrix(width, height)
        rng = like.color.get("range", "tv")
        reverse = {key: {v: k for k, v in table.items()} for key, table in COLOR_TABLES.items()}
        self._color = {"space": reverse["space"][space], "range": reverse["range"][rng]}
        fps_ = Fraction(self.fps)
        self.header = (
            f"YUV4MPEG2 W{width} H{height} F{fps_.numerator}:{fps_.denominator} Ip A1:1 "
            f"C{_chroma_tag(self.pix_fmt)} XCOLORRANGE={'FULL' if rng == 'pc' else 'LIMITED'}\n"
        ).encode()
        self._saved_fd: int | None = None
        if stream is None:
            sys.stdout.flush()
            # the stream gets its own descriptor; fd 1 goes to stderr meanwhile, so nothing else
            # that prints (a library, a warning) can land in the middle of the frames
            self._saved_fd = os.dup(1)
            os.dup2(2, 1)
            stream = os.fdopen(os.dup(self._saved_fd), "wb", buffering=1 << 20)
        self._out = stream
        self._dtype = np.dtype(np.uint8) if av.VideoFormat(self.pix_fmt).components[0].bits <= 8 else np.dtype("<u2")
        logger.info("stdout: y4m %dx%d %s, %s, %s range", width, height, self.pix_fmt, space, rng)
        self._put(self.header)

    def _put(self, data: bytes) -> None:
        try:
            self._out.write(data)
            self._out.flush()  # each frame as soon as it is final (a player downstream shows it)
        except BrokenPipeError:
            self.abort()
            raise OutputError(f"stdout was closed by the program reading it, after {self.written} frames") from None

    def write(self, data: np.ndarray, name: str | None = None) -> None:
        from rvrt.media.writers import rgb_to_frame

        self._check(data)
        frame = rgb_to_frame(data, self.pix_fmt, self._color)
        parts = [b"FRAME\n"]
        for plane in frame.planes:
            rows = np.frombuffer(plane, dtype=self._dtype).reshape(
                plane.height, plane.line_size // self._dtype.itemsize
            )
            parts.append(np.ascontiguousarray(rows[:, : plane.width]).astype(self._dtype.newbyteorder("<")).tobytes())
        self._put(b"".join(parts))
        self.written += 1

    def close(self) -> None:
        if self._finished:
            return
        try:
            self._out.flush()
        except BrokenPipeError:
            self.abort()
            raise OutputError(f"stdout was closed by the program reading it, after {self.written} frames") from None
        self._release()

    def abort(self) -> None:
        if self._finished:  # after a closed pipe, the runner aborts again
            return
        try:
            self._out.flush()
        except OSError:
            pass
        self._release()

    def _release(self) -> None:
        self._finished = True
        if self._saved_fd is not None:
            try:
                self._out.close()
            except OSError:
                pass
            os.dup2(self._saved_fd, 1)
            os.close(self._saved_fd)
            self._saved_fd = None


readers.STREAMS["-"] = (probe_pipe, open_pipe_reader)  # probe("-") and open_reader read stdin through this module
