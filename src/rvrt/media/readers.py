"""Reading video files, folders of frames and glob patterns as a stream of RGB frames."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from rvrt.errors import InputError
from rvrt.media.images import (
    ALPHA_NOTE,
    GRAY_NOTE,
    IMAGE_EXTENSIONS,
    natural_key,
    read_image,
    read_image_header,
    to_rgb,
)
from rvrt.media.info import (
    READ_SWS_FLAGS,
    SWS_MATRIX,
    Frame,
    FrameReader,
    MediaInfo,
    assumed_matrix,
    color_names,
    open_input,
    rgb48_gain,
    to_rgb_float,
)

__all__ = ["probe", "open_reader", "check_length", "VideoLength"]

logger = logging.getLogger(__name__)


# gray formats read straight from their plane (integer samples, one plane, optional alpha)
_GRAY_PLANE = re.compile(r"gray$|gray(9|10|12|14|16)(le|be)$|ya8$|ya16(le|be)$")


def _is_gray(fmt: av.VideoFormat) -> bool:
    return fmt.name.startswith(("gray", "ya", "mono"))


def _has_alpha(fmt: av.VideoFormat) -> bool:
    return any(c.is_alpha for c in fmt.components)


def _format_bits(fmt: av.VideoFormat) -> int:
    return max((c.bits for c in fmt.components), default=8)


def _rotation_steps(degrees: float, path: Path) -> int:
    if not degrees:
        return 0
    steps = round(degrees / 90)
    if abs(degrees - 90 * steps) > 1:
        logger.warning("%s: display rotation of %s degrees is not a multiple of 90; ignored", path, degrees)
        return 0
    return steps % 4


def _channels_note(notes: set[str]) -> str | None:
    ordered = [n for n in (GRAY_NOTE, ALPHA_NOTE) if n in notes]
    return "; ".join(ordered) if ordered else None


def _probe_video(path: Path) -> MediaInfo:
    with open_input(path) as container:
        if not container.streams.video:
            raise InputError(f"{path} has no video stream (not a video)")
        stream = container.streams.video[0]
        try:
            first = next(container.decode(stream))
        except StopIteration:
            raise InputError(f"{path}: the video stream holds no decodable frame") from None
        except av.FFmpegError as err:
            raise InputError(f"cannot decode {path}: {err}") from err
        fmt = first.format
        rotation = first.rotation or 0
        steps = _rotation_steps(rotation, path)
        width, height = (first.height, first.width) if steps % 2 else (first.width, first.height)
        fps = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = Fraction(fps) if fps else None
        start_time = float(first.time or 0.0)
        count = stream.frames or None
        if count is None and fps:
            seconds = _stream_seconds(stream, container, start_time)
            count = round(seconds * fps) if seconds else None
        notes = set()
        if _is_gray(fmt):
            notes.add(GRAY_NOTE)
        # GIF decodes as bgra even when nothing is transparent: only mention alpha that is used
        if _has_alpha(fmt) and first.to_ndarray(format="rgba")[..., 3].min() < 255:
            notes.add(ALPHA_NOTE)
        return MediaInfo(
            kind="video",
            width=width,
            height=height,
            fps=fps,
            frame_count=count,
            bit_depth=16 if _format_bits(fmt) > 8 else 8,
            names=None,
            color=color_names(first),
            channels_note=_channels_note(notes),
            path=str(path),
            start_time=start_time,
            rotation=90 * steps,
            pix_fmt=fmt.name,
            codec=stream.codec_context.codec.name,
        )


def _stream_seconds(stream, container, start_time: float) -> float | None:
    """Duration of a video stream from the headers (for a frame count estimate)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")  # Matroska: end time
    if tag:
        try:
            h, m, sec = tag.split(":")
            return int(h) * 3600 + int(m) * 60 + float(sec) - start_time
        except ValueError:
            pass
    return container.duration / av.time_base if container.duration else None


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _probe_frames(files: list[Path], where: str) -> MediaInfo:
    first = read_image_header(files[0])
    notes: set[str] = set()
    bit_depths = set()
    seen: dict[str, Path] = {}
    for f in files:
        header = read_image_header(f)
        if (header.width, header.height) != (first.width, first.height):
            raise InputError(
                f"frames in {where} differ in size: {files[0].name} is {first.width}x{first.height} "
                f"but {f.name} is {header.width}x{header.height}"
            )
        if header.gray:
            notes.add(GRAY_NOTE)
        if header.alpha:
            notes.add(ALPHA_NOTE)
        bit_depths.add(header.bit_depth)
        if f.stem in seen:
            raise InputError(f"two frames in {where} have the same name: {seen[f.stem].name} and {f.name}")
        seen[f.stem] = f
    if len(bit_depths) > 1:
        logger.warning("%s mixes 8 and 16-bit frames; all are read as 16-bit", where)
    return MediaInfo(
        kind="frames",
        width=first.width,
        height=first.height,
        fps=None,
        frame_count=len(files),
        bit_depth=max(bit_depths),
        names=tuple(f.stem for f in files),
        color={},
        channels_note=_channels_note(notes),
        path=where,
        files=tuple(str(f) for f in files),
    )


#: inputs that are streams, not paths: name -> (probe, open reader). rvrt.media.pipes registers ``"-"``
#: (stdin) when imported, as the rvrt.media package does, so this module imports no stream reader
STREAMS: dict[str, tuple] = {}


def probe(source: str | os.PathLike) -> MediaInfo:
    """Describe a video file, a folder of frames, a glob pattern, or ``-`` (a y4m stream on stdin,
    :mod:`rvrt.media.pipes`) without decoding all frames.

    Raises:
        InputError: missing path, folder without frames, pattern matching nothing, unreadable or
            corrupt file, frames of different sizes, a file that is not a video.
    """
    text = os.fspath(source)
    if text in STREAMS:  # "-": stdin, a y4m stream (rvrt.media.pipes)
        return STREAMS[text][0]()
    path = Path(text).expanduser()
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.is_file() and _is_image(p)), key=lambda p: natural_key(p.name))
        if not files:
            raise InputError(f"folder {path} holds no frames (no {'/'.join(IMAGE_EXTENSIONS)} files)")
        return _probe_frames(files, str(path))
    if path.is_file():
        if _is_image(path):
            return _probe_frames([path], str(path))
        return _probe_video(path)
    if any(c in text for c in "*?["):
        import glob

        files = [Path(p) for p in glob.glob(os.path.expanduser(text))]
        files = sorted((p for p in files if p.is_file() and _is_image(p)), key=lambda p: natural_key(str(p)))
        if not files:
            raise InputError(f"no image frames match the pattern {text!r}")
        return _probe_frames(files, text)
    raise InputError(f"input not found: {path}")


@dataclass(frozen=True)
class VideoLength:
    """How many frames a video holds, against how many its container states (:func:`check_length`).

    Attributes:
        present: video packets in the file (one per frame for every codec rvrt writes or tests).
        stated: the container's frame count (exact in MP4/MOV), else duration x frame rate, or None.
        exact: ``stated`` is the container's frame count, not an estimate from the duration.
        covered: seconds from the first to the end of the last video packet.
        duration: the duration the container states, seconds (None if it states none).
    """

    present: int
    stated: int | None
    exact: bool
    covered: float | None
    duration: float | None

    @property
    def truncated(self) -> bool:
        """Fewer frames than stated: exactly so for a stated count; for a duration, the packets end
        more than two frame intervals (and more than 1 %) before it."""
        if self.stated is None:
            return False
        if self.exact:
            return self.present < self.stated
        if self.covered is None or self.duration is None:
            return False
        gap = self.duration - self.covered
        step = self.duration / max(self.stated, 1)
        return gap > max(2 * step, 0.01 * self.duration)

    def describe(self, path: str) -> str:
        what = (
            f"states {self.stated} frames"
            if self.exact
            else f"lasts {self.duration:.2f} s (about {self.stated} frames)"
        )
        return f"{path} {what} but holds {self.present}"


def check_length(info: MediaInfo) -> VideoLength | None:
    """Count the video packets of ``info``'s file (reads the file without decoding; about a second
    per GB) and compare with what its container states. None for frames folders."""
    if info.kind != "video":
        return None
    path = Path(info.path)
    with open_input(path) as container:
        stream = container.streams.video[0]
        count, first, last_end = 0, None, None
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                count += 1
                stamp = packet.pts if packet.pts is not None else packet.dts
                if stamp is not None:
                    start = float(stamp * packet.time_base)
                    end = start + float((packet.duration or 0) * packet.time_base)
                    first = start if first is None else min(first, start)
                    last_end = end if last_end is None else max(last_end, end)
        except av.FFmpegError:
            pass  # a damaged tail: what was read so far is what the file holds
        exact = bool(stream.frames)
        fps = stream.average_rate or stream.guessed_rate or stream.base_rate
        seconds = _stream_seconds(stream, container, info.start_time)
        stated = int(stream.frames) if exact else (round(seconds * fps) if seconds and fps else None)
    covered = last_end - (first or 0.0) if last_end is not None else None
    return VideoLength(count, stated, exact, covered, seconds)


class _VideoReader(FrameReader):
    #: on a frame the decoder cannot decode: "raise" (InputError) or "stop" (end the stream there)
    on_damage = "raise"
    #: ``(frame index, message)`` where decoding stopped because of damage, or None
    damaged: tuple[int, str] | None = None

    def __init__(self, info: MediaInfo, start: int) -> None:
        super().__init__(info, start)
        self._steps = (info.rotation // 90) % 4
        # an untagged stream is converted with the matrix players would assume for its size
        space = None if "space" in info.color else assumed_matrix(info.width, info.height)
        self._src_matrix = SWS_MATRIX.get(space) if space else None

    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        fmt = frame.format
        if _GRAY_PLANE.match(fmt.name):
            arr = _gray_plane(frame)
        elif self.info.bit_depth == 16 and fmt.is_rgb:
            arr = frame.to_ndarray(format="rgb48le")  # a repacking; the float path would round
        elif self.info.bit_depth == 16:
            scale = np.float32(65535 * rgb48_gain(fmt.name, frame.color_range == 2))
            arr = to_rgb_float(frame, self._src_matrix) * scale + np.float32(0.5)
            arr = np.clip(arr, 0, 65535).astype(np.uint16)
        else:
            arr = frame.to_ndarray(format="rgb24", src_colorspace=self._src_matrix, interpolation=READ_SWS_FLAGS)
        arr, _ = to_rgb(arr)
        if arr.dtype == np.uint8 and self.info.bit_depth == 16:
            arr = arr.astype(np.uint16) * 257
        if self._steps:
            arr = np.ascontiguousarray(np.rot90(arr, self._steps))
        return arr

    def _frames(self) -> Iterator[Frame]:
        path = Path(self.info.path)
        container = open_input(path)
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            decoder = container.decode(stream)
            index = 0
            while True:
                try:
                    frame = next(decoder)
                except StopIteration:
                    break
                except av.FFmpegError as err:
                    if self.on_damage == "stop":
                        self.damaged = (index, str(err))
                        logger.warning("%s: frame %d cannot be decoded (%s); the input ends there", path, index, err)
                        break
                    raise InputError(
                        f"{path}: frame {index} cannot be decoded ({err}): the file is damaged or truncated; "
                        "--allow-truncated restores the frames before it"
                    ) from err
                if index >= self.start:
                    data = self._to_rgb(frame)
                    if data.shape[:2] != (self.info.height, self.info.width):
                        raise InputError(
                            f"{path}: frame {index} is {data.shape[1]}x{data.shape[0]} but the video "
                            f"started at {self.info.width}x{self.info.height}; size changes are not supported"
                        )
                    yield Frame(index, f"{index:08d}", data)
                index += 1
        finally:
            container.close()


def _gray_plane(frame: av.VideoFrame) -> np.ndarray:
    """Luma (and alpha) of a gray frame as stored, 8-bit or scaled to the full 16-bit range.

    Read from the plane, not through swscale, which maps 8-bit gray to 16 bits as ``v * 256``.
    """
    fmt = frame.format
    bits = fmt.components[0].bits
    channels = len(fmt.components)
    plane = frame.planes[0]
    if bits <= 8:
        rows = np.frombuffer(plane, dtype=np.uint8).reshape(frame.height, plane.line_size)
        return rows[:, : frame.width * channels].reshape(frame.height, frame.width, channels)
    dtype = ">u2" if fmt.name.endswith("be") else "<u2"
    rows = np.frombuffer(plane, dtype=dtype).reshape(frame.height, plane.line_size // 2)
    arr = rows[:, : frame.width * channels].reshape(frame.height, frame.width, channels).astype(np.uint32)
    if bits < 16:  # 10/12-bit samples: stretch to 0..65535 so they compare with 16-bit sources
        top = (1 << bits) - 1
        arr = (arr * 65535 + top // 2) // top
    return arr.astype(np.uint16)


class _FramesReader(FrameReader):
    def _frames(self) -> Iterator[Frame]:
        info = self.info
        for index in range(self.start, len(info.files)):
            path = info.files[index]
            data, header, _ = read_image(path)
            if (header.width, header.height) != (info.width, info.height):
                raise InputError(
                    f"{path} is {header.width}x{header.height}, the other frames are {info.width}x{info.height}"
                )
            if data.dtype == np.uint8 and info.bit_depth == 16:
                data = data.astype(np.uint16) * 257
            yield Frame(index, info.names[index], data)


def open_reader(
    source: str | os.PathLike, *, start: int = 0, info: MediaInfo | None = None, on_damage: str = "raise"
) -> FrameReader:
    """Open a video file, a folder of frames or a glob pattern for streaming reading.

    Args:
        source: video file (anything FFmpeg decodes), folder of png/jpg/tif/bmp/webp frames, or a
            glob pattern such as ``"dir/*.png"``.
        start: skip the first ``start`` frames (to resume); videos still decode the skipped frames,
            since seeking is not frame-exact.
        info: what :func:`probe` said of ``source`` (probed again when None).
        on_damage: a video frame that cannot be decoded ``"raise"`` s an InputError, or ``"stop"`` s
            the stream there (``reader.damaged`` then says where and why).

    Raises:
        InputError: see :func:`probe`; also while iterating, for a frame that cannot be decoded.
    """
    if on_damage not in ("raise", "stop"):
        raise ValueError(f"on_damage must be 'raise' or 'stop'; got {on_damage!r}")
    info = probe(source) if info is None else info
    if info.channels_note:
        logger.warning("%s: %s", info.path, info.channels_note)
    if info.rotation:
        logger.info("%s: rotated by %d degrees, as the video asks", info.path, info.rotation)
    if info.kind == "pipe":
        return STREAMS["-"][1](info, start, on_damage)
    if info.kind != "video":
        return _FramesReader(info, start)
    reader = _VideoReader(info, start)
    reader.on_damage = on_damage
    return reader
