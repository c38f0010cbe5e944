"""Writing restored frames: a video file (PyAV encoder, copied audio/subtitles) or a folder of PNGs."""

from __future__ import annotations

import logging
import math
import os
import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from rvrt.checkpoint import temp_path_for
from rvrt.errors import InputError
from rvrt.inference.image_io import IMAGE_EXTENSIONS, natural_key, read_image_header, write_png
from rvrt.inference.media import (
    COLOR_TABLES,
    DEFAULT_FPS,
    MUXERS,
    SPACE_NAMES,
    SWS_MATRIX,
    VIDEO_EXTENSIONS,
    WRITE_SWS_FLAGS,
    FrameWriter,
    MediaInfo,
    assumed_matrix,
    open_input,
    rgb48_gain,
)

__all__ = ["open_writer"]

logger = logging.getLogger(__name__)

# video encoders: default pixel formats (8-bit, then deeper) and options
_DEFAULT_CODEC = {".mp4": "libx264", ".mkv": "libx264", ".mov": "libx264", ".avi": "libx264",
                  ".webm": "libvpx-vp9", ".gif": "gif"}  # fmt: skip
_PIX_FMTS = {
    "ffv1": ("bgr0", "gbrp16le"),
    "png": ("rgb24", "rgb48be"),
    "gif": ("pal8", "pal8"),
}
_CRF = {"libx264": 18, "libx265": 18, "libvpx-vp9": 20, "libsvtav1": 24, "libaom-av1": 24}
_EXTRA_OPTIONS = {
    "libvpx-vp9": {"b": "0", "row-mt": "1", "deadline": "good", "cpu-used": "4"},
}
_PRESET_CODECS = ("libx264", "libx265", "libsvtav1")
# encoders worth naming when the one asked for is missing
_KNOWN_ENCODERS = (
    "libx264",
    "libx265",
    "libvpx-vp9",
    "libsvtav1",
    "libaom-av1",
    "ffv1",
    "mpeg4",
    "gif",
    "png",
)


def _convert_depth(data: np.ndarray, bit_depth: int) -> np.ndarray:
    if bit_depth == 16 and data.dtype == np.uint8:
        return data.astype(np.uint16) * 257
    if bit_depth == 8 and data.dtype == np.uint16:
        return ((data.astype(np.uint32) + 128) // 257).astype(np.uint8)
    return data


class _FramesWriter(FrameWriter):
    def __init__(self, dest: Path, like: MediaInfo, width: int, height: int, bit_depth: int,
                 overwrite: bool, resume: bool, compress_level: int) -> None:  # fmt: skip
        super().__init__(dest, width, height)
        self.bit_depth = bit_depth
        self.compress_level = compress_level
        self._names = like.names or ()
        if dest.exists() and not dest.is_dir():
            raise InputError(f"output {dest} exists and is not a folder")
        self._created = not dest.exists()
        dest.mkdir(parents=True, exist_ok=True)
        for leftover in dest.glob(".*.png.part"):  # from an interrupted run
            leftover.unlink()
        entries = [p for p in dest.iterdir() if not p.name.startswith(".")]
        frames = [p for p in entries if p.is_file() and p.suffix == ".png"]
        if resume:
            self.completed = self._check_resume(frames)
        elif entries and overwrite:
            for p in frames:
                p.unlink()
            logger.info("%s: removed %d existing PNG frames (overwrite)", dest, len(frames))
        elif entries:
            raise InputError(
                f"output folder {dest} is not empty ({len(entries)} entries); pass overwrite (--overwrite) "
                "to replace its frames or resume (--resume) to continue an interrupted run"
            )
        if self.completed:
            logger.info("%s: resuming after %d finished frames", dest, self.completed)

    def _check_resume(self, frames: list[Path]) -> int:
        done = len(frames)
        if not done:
            return 0
        stems = {p.stem for p in frames}
        expected = {self._name_of(i) for i in range(done)}
        if stems != expected:
            odd = sorted(stems - expected, key=natural_key)
            raise InputError(
                f"cannot resume into {self.path}: its {done} PNG files are not the first {done} frames of "
                f"the input (unexpected {odd[0]}.png); use overwrite (--overwrite) to start again"
            )
        header = read_image_header(self.path / f"{self._name_of(done - 1)}.png")
        if (header.width, header.height, header.bit_depth) != (self.width, self.height, self.bit_depth):
            raise InputError(
                f"cannot resume into {self.path}: its frames are {header.width}x{header.height} "
                f"{header.bit_depth}-bit but this run writes {self.width}x{self.height} {self.bit_depth}-bit"
            )
        return done

    def _name_of(self, index: int) -> str:
        """Name of frame ``index`` as the reader calls it (input file stem, or ``%08d`` for videos)."""
        return self._names[index] if index < len(self._names) else f"{index:08d}"

    def write(self, data: np.ndarray, name: str | None = None) -> None:
        self._check(data)
        if name is None:
            name = self._name_of(self.completed + self.written)
        if not name or name.startswith(".") or "/" in name or os.sep in name:
            raise ValueError(f"invalid frame name {name!r}")
        write_png(self.path / f"{name}.png", _convert_depth(data, self.bit_depth),
                  compress_level=self.compress_level)  # fmt: skip
        self.written += 1

    def close(self) -> None:
        self._finished = True

    def abort(self) -> None:
        # finished frames stay: each one is complete, and they are what resume=True continues from
        self._finished = True
        if self.path.is_dir():
            for leftover in self.path.glob(".*.png.part"):
                leftover.unlink(missing_ok=True)
            if self._created and not any(self.path.iterdir()):
                self.path.rmdir()


def _exact_fps(fps: Fraction | float | int) -> Fraction:
    if isinstance(fps, float):
        for ntsc in (24000, 30000, 48000, 60000, 120000):  # 29.97 means 30000/1001
            if abs(fps - ntsc / 1001) < 0.005:
                return Fraction(ntsc, 1001)
    fps = Fraction(fps)
    if fps <= 0:
        raise InputError(f"frame rate must be positive, got {fps}")
    return fps if fps.denominator <= 100_000 else fps.limit_denominator(1001)


_COSITED_CODECS = ("h264", "hevc", "mpeg4", "mpeg2video", "mpeg1video")
_SUBSAMPLED_420_422 = re.compile(r"^(yuvj?)42[02]p(?=(\d+(le|be))?$)")


def _subsample_cosited(full: av.VideoFrame, pix_fmt: str) -> av.VideoFrame:
    """4:4:4 frame -> 4:2:0/4:2:2 ``pix_fmt`` with chroma co-sited with the even luma columns
    (filter 1-2-1) and, for 4:2:0, centred between rows (the H.264/MPEG default siting)."""
    out = av.VideoFrame(full.width, full.height, pix_fmt)
    wide = np.dtype(np.uint8) if _format_bits(pix_fmt) <= 8 else np.dtype("<u2" if pix_fmt.endswith("le") else ">u2")
    vertical = "420" in pix_fmt
    for i, (src, dst) in enumerate(zip(full.planes, out.planes, strict=True)):
        rows = np.frombuffer(src, dtype=wide).reshape(full.height, src.line_size // wide.itemsize)
        plane = rows[:, : full.width].astype(np.int32)
        if i > 0:
            padded = np.pad(plane, ((0, 0), (1, 1)), mode="edge")
            plane = padded[:, 0:-2:2] + 2 * padded[:, 1:-1:2] + padded[:, 2::2]
            weight = 4
            if vertical:
                if plane.shape[0] % 2:
                    plane = np.concatenate([plane, plane[-1:]])
                plane = plane[0::2] + plane[1::2]
                weight = 8
            plane = (plane + weight // 2) // weight
        buf = np.zeros((dst.height, dst.line_size // wide.itemsize), dtype=wide)
        buf[:, : plane.shape[1]] = plane
        dst.update(buf.tobytes())
    out.colorspace, out.color_range = full.colorspace, full.color_range
    return out


def _format_bits(pix_fmt: str) -> int:
    return max((c.bits for c in av.VideoFormat(pix_fmt).components), default=8)


def _chroma_multiple(pix_fmt: str) -> tuple[int, int]:
    """Width and height multiples a pixel format needs (2, 2 for yuv420p; 1, 1 for rgb)."""
    fmt = av.VideoFormat(pix_fmt)
    return 1024 // fmt.chroma_width(1024), 1024 // fmt.chroma_height(1024)


class _VideoWriter(FrameWriter):
    def __init__(self, dest: Path, like: MediaInfo, width: int, height: int, fps, codec, crf, preset,
                 pix_fmt, bit_depth: int, copy_streams: bool) -> None:  # fmt: skip
        super().__init__(dest, width, height)
        ext = dest.suffix.lower()
        self._like = like
        self.fps = _exact_fps(fps if fps is not None else like.fps or DEFAULT_FPS)
        if fps is None and like.fps is None:
            logger.warning("%s: no frame rate given, using %s fps", dest, DEFAULT_FPS)
        self.codec = codec or _DEFAULT_CODEC[ext]
        self._codec_obj = _video_encoder(self.codec)
        self.pix_fmt = pix_fmt or _default_pix_fmt(self._codec_obj, bit_depth)
        try:
            av.VideoFormat(self.pix_fmt)
        except ValueError as err:
            raise InputError(f"unknown pixel format {self.pix_fmt!r}") from err
        supported = [f.name for f in self._codec_obj.video_formats or ()]
        if supported and self.pix_fmt not in supported:
            raise InputError(f"encoder {self.codec} cannot write {self.pix_fmt}; it supports {', '.join(supported)}")
        self._options = _codec_options(self.codec, crf, preset)
        mw, mh = _chroma_multiple(self.pix_fmt)
        self._pad = (-height % mh, -width % mw)
        if any(self._pad):
            logger.warning(
                "%s: %s needs sizes divisible by %dx%d; the last row/column is repeated (%dx%d -> %dx%d)",
                dest.name, self.pix_fmt, mw, mh, width, height, width + self._pad[1], height + self._pad[0],
            )  # fmt: skip
        self._color = _output_color(like, self.pix_fmt)
        self._rgb48_gain = rgb48_gain(self.pix_fmt, self._color.get("range") == 2)
        # decoders of these codecs report left (co-sited) chroma, whereas swscale subsamples to
        # centred chroma: without our own subsampling every saved video carries a quarter-pixel
        # chroma shift (a lossless x264 round trip errs by 1.6 levels on average instead of 0.6)
        self._full_chroma_fmt = None
        if self._codec_obj.canonical_name in _COSITED_CODECS and _SUBSAMPLED_420_422.match(self.pix_fmt):
            self._full_chroma_fmt = _SUBSAMPLED_420_422.sub(r"\g<1>444p", self.pix_fmt)
        self._pts0 = max(round(like.start_time * self.fps), 0) if like.kind == "video" else 0
        self._tmp: Path | None = None
        self._out = self._src = None
        self._copied: dict[int, av.stream.Stream] = {}
        self._pending = None
        self._packets = None
        want_copy = copy_streams and like.kind == "video" and Path(like.path).is_file()
        try:
            self._open(want_copy)
        except (av.FFmpegError, ValueError, OSError) as err:
            self.abort()
            if not want_copy:
                raise InputError(f"cannot write {dest} with {self.codec}/{self.pix_fmt}: {err}") from err
            # a copied stream the muxer accepted when it was added may still fail the header
            self._finished = False
            try:
                self._open(False)
            except (av.FFmpegError, ValueError, OSError) as err2:
                self.abort()
                raise InputError(f"cannot write {dest} with {self.codec}/{self.pix_fmt}: {err2}") from err2
            logger.warning("%s: cannot copy the audio/subtitle streams (%s); writing video only", dest.name, err)
        except BaseException:
            self.abort()
            raise

    def _open(self, copy: bool) -> None:
        dest = self.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path_for(dest)  # the muxer is named below, so the name's suffix does not matter
        self._tmp = tmp
        ext = dest.suffix.lower()
        container_options = {"movflags": "+faststart"} if ext in (".mp4", ".mov") else {}
        self._out = av.open(str(tmp), "w", format=MUXERS[ext], container_options=container_options)
        stream = self._out.add_stream(self.codec, rate=self.fps)
        stream.width = self.width + self._pad[1]
        stream.height = self.height + self._pad[0]
        stream.pix_fmt = self.pix_fmt
        stream.codec_context.time_base = 1 / self.fps
        stream.options = dict(self._options)
        for key, attr in (("primaries", "color_primaries"), ("trc", "color_trc"), ("space", "colorspace"),
                          ("range", "color_range")):  # fmt: skip
            if key in self._color:
                setattr(stream.codec_context, attr, self._color[key])
        self._stream = stream
        if copy:
            self._add_copied_streams()
        self._out.start_encoding()

    def _add_copied_streams(self) -> None:
        src = open_input(Path(self._like.path))
        self._src = src
        for s in src.streams:
            if s.type not in ("audio", "subtitle"):
                if s.type != "video":
                    logger.info("%s: %s stream #%d is not copied", self.path.name, s.type, s.index)
                continue
            codec = s.codec_context.codec.name if s.codec_context is not None else "?"
            try:
                out = self._out.add_stream_from_template(s)
            except (ValueError, av.FFmpegError, TypeError) as err:
                logger.warning("%s: cannot copy %s stream #%d (%s) into %s (%s); skipped",
                               self.path.name, s.type, s.index, codec, self.path.suffix, err)  # fmt: skip
                continue
            for key in ("language", "title", "handler_name"):
                if key in s.metadata:
                    out.metadata[key] = s.metadata[key]
            self._copied[s.index] = out
        if self._copied:
            self._packets = src.demux([src.streams[i] for i in self._copied])
        meta = {k: v for k, v in src.metadata.items() if k not in ("encoder", "major_brand", "minor_version",
                                                                     "compatible_brands")}  # fmt: skip
        self._out.metadata.update(meta)

    def _copy_until(self, seconds: float) -> None:
        """Mux copied packets that start before ``seconds`` (keeps the streams interleaved)."""
        while self._packets is not None:
            packet = self._pending
            if packet is None:
                try:
                    packet = next(self._packets)
                except StopIteration:
                    self._packets = None
                    break
                except av.FFmpegError as err:
                    logger.warning("%s: stopped copying audio/subtitles: %s", self.path.name, err)
                    self._packets = None
                    break
                if packet.dts is None and packet.pts is None:
                    continue  # demuxer flush packet
            stamp = packet.pts if packet.pts is not None else packet.dts
            if float(stamp * packet.time_base) >= seconds:
                self._pending = packet
                break
            self._pending = None
            packet.stream = self._copied[packet.stream.index]
            self._out.mux(packet)

    def _to_video_frame(self, data: np.ndarray) -> av.VideoFrame:
        if any(self._pad):
            data = np.pad(data, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        if self.pix_fmt == "pal8":
            return _palette_frame(_convert_depth(data, 8))
        if data.dtype == np.uint16 and _format_bits(self.pix_fmt) <= 8:
            data = _convert_depth(data, 8)  # rgb24 -> 8-bit YUV is exact; rgb48 is not (see rgb48_gain)
        elif data.dtype == np.uint16 and self._rgb48_gain != 1.0:
            data = (data / np.float32(self._rgb48_gain) + np.float32(0.5)).astype(np.uint16)
        frame = av.VideoFrame.from_ndarray(data, format="rgb48le" if data.dtype == np.uint16 else "rgb24")
        if frame.format.name == self.pix_fmt:
            return frame
        if av.VideoFormat(self.pix_fmt).is_rgb:
            return frame.reformat(format=self.pix_fmt, interpolation=WRITE_SWS_FLAGS)
        matrix = SWS_MATRIX.get(SPACE_NAMES.get(self._color.get("space", -1), ""))
        target = self._full_chroma_fmt or self.pix_fmt
        frame = frame.reformat(
            format=target, dst_colorspace=matrix, dst_color_range=self._color.get("range"),
            interpolation=WRITE_SWS_FLAGS,
        )  # fmt: skip
        if self._full_chroma_fmt:
            frame = _subsample_cosited(frame, self.pix_fmt)
        return frame

    def write(self, data: np.ndarray, name: str | None = None) -> None:
        self._check(data)
        frame = self._to_video_frame(data)
        frame.pts = self._pts0 + self.written
        for packet in self._stream.encode(frame):
            self._out.mux(packet)
        self.written += 1
        self._copy_until(self._like.start_time + self.written / self.fps)

    def close(self) -> None:
        if self._finished:
            return
        try:
            if not self.written:
                raise InputError(f"no frames were written to {self.path}")
            for packet in self._stream.encode(None):
                self._out.mux(packet)
            complete = self._like.frame_count is not None and self.written >= self._like.frame_count
            # a partial restore keeps the audio of the frames written; a full one keeps all of it
            self._copy_until(math.inf if complete else self._like.start_time + self.written / self.fps)
            self._out.close()
            self._out = None
            os.replace(self._tmp, self.path)
            self._tmp = None
        except BaseException:
            self.abort()
            raise
        finally:
            self._close_source()
        self._finished = True

    def _close_source(self) -> None:
        self._packets = self._pending = None
        if self._src is not None:
            self._src.close()
            self._src = None

    def abort(self) -> None:
        self._finished = True
        if self._out is not None:
            try:
                self._out.close()
            except (av.FFmpegError, OSError, ValueError) as err:
                logger.debug("closing %s after an error: %s", self._tmp, err)
            self._out = None
        self._close_source()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None


def _video_encoder(codec: str) -> av.Codec:
    try:
        obj = av.Codec(codec, "w")
    except (av.FFmpegError, ValueError) as err:
        have = sorted(c for c in _KNOWN_ENCODERS if c in av.codecs_available)
        raise InputError(
            f"video encoder {codec!r} is not available in this PyAV build (have: {', '.join(have)})"
        ) from err
    if obj.type != "video":
        raise InputError(f"{codec!r} is not a video encoder")
    return obj


def _default_pix_fmt(codec: av.Codec, bit_depth: int) -> str:
    if codec.name in _PIX_FMTS:
        return _PIX_FMTS[codec.name][bit_depth == 16]
    supported = [f.name for f in codec.video_formats or ()]
    wanted = ("yuv420p10le", "yuv420p") if bit_depth == 16 else ("yuv420p",)
    for name in wanted:
        if name in supported:
            if bit_depth == 16 and name == "yuv420p":
                logger.info("encoder %s has no 10-bit mode in this build; writing 8-bit", codec.name)
            return name
    return supported[0] if supported else "yuv420p"


def _codec_options(codec: str, crf: int | None, preset: str | None) -> dict[str, str]:
    options = dict(_EXTRA_OPTIONS.get(codec, {}))
    if crf is not None and codec not in _CRF:
        logger.warning("encoder %s has no crf setting; crf=%s ignored", codec, crf)
    elif codec in _CRF:
        options["crf"] = str(_CRF[codec] if crf is None else crf)
    if preset is not None:
        if codec in _PRESET_CODECS:
            options["preset"] = str(preset)
        else:
            logger.warning("encoder %s has no preset setting; preset=%s ignored", codec, preset)
    return options


def _output_color(like: MediaInfo, pix_fmt: str) -> dict[str, int]:
    """Colour tags for the output stream (FFmpeg enum values), and so the matrix it is converted with.

    Known tags of the input video are kept. Otherwise the output says what it holds: the matrix the
    input was read with (or BT.709 for frames, which are sRGB-like) in limited range, and for frames
    BT.709 primaries and transfer.
    """
    if av.VideoFormat(pix_fmt).is_rgb or pix_fmt == "pal8":
        return {}
    names = dict(like.color)
    if names.get("space") == "gbr":  # an RGB source: its tags say nothing about a YUV output
        names.pop("space")
        names.pop("range", None)
    if like.kind == "frames":
        names.setdefault("primaries", "bt709")
        names.setdefault("trc", "bt709")
    names.setdefault("space", "bt709" if like.kind == "frames" else assumed_matrix(like.width, like.height))
    names.setdefault("range", "tv")
    if names["space"] not in SWS_MATRIX:
        logger.warning("cannot convert to colour space %s; writing bt709 instead", names["space"])
        names["space"] = "bt709"
    reverse = {key: {v: k for k, v in table.items()} for key, table in COLOR_TABLES.items()}
    return {key: reverse[key][value] for key, value in names.items() if value in reverse[key]}


def _palette_frame(rgb: np.ndarray) -> av.VideoFrame:
    """``(H, W, 3)`` uint8 -> a pal8 frame with its own 256-colour palette (for GIF)."""
    from PIL import Image

    quantized = Image.fromarray(rgb).quantize(colors=256)
    colors = np.asarray(quantized.getpalette()[: 256 * 3], dtype=np.uint8).reshape(-1, 3)
    palette = np.zeros((256, 4), dtype=np.uint8)
    palette[:, 0] = 255  # PyAV takes the palette as (alpha, red, green, blue)
    palette[: len(colors), 1:] = colors
    return av.VideoFrame.from_ndarray((np.asarray(quantized, dtype=np.uint8), palette), format="pal8")


def _refuse_own_input(dest: Path, like: MediaInfo) -> None:
    """Writing over the input would destroy it before (or while) it is read."""
    target = dest.resolve()
    sources = [Path(like.path).resolve()] if like.path else []
    sources += [Path(f).resolve() for f in (like.files or ())]
    if any(src == target or target in src.parents for src in sources):
        raise InputError(f"output {dest} is (or holds) the input {like.path}; choose another output")


def open_writer(
    dest: str | os.PathLike,
    *,
    like: MediaInfo,
    width: int,
    height: int,
    fps: Fraction | float | None = None,
    codec: str | None = None,
    crf: int | None = None,
    preset: str | None = None,
    pix_fmt: str | None = None,
    bit_depth: int = 8,
    copy_streams: bool = True,
    overwrite: bool = False,
    resume: bool = False,
    compress_level: int = 3,
) -> FrameWriter:
    """Open a video file or a folder of PNG frames for writing restored frames.

    Args:
        dest: ``*.mp4 .mkv .mov .avi .webm .gif``: a video; anything else: a folder of PNG frames.
        like: the input (from :func:`probe`): frame rate, colour tags, audio/subtitle streams, names.
        width, height: size of the frames that will be written.
        fps: frame rate of a video output (default: ``like.fps``, else 25); floats near 29.97 etc.
            mean the exact NTSC rates (30000/1001).
        codec, crf, preset, pix_fmt: video encoder settings (defaults per container, see module doc).
        bit_depth: 8 or 16. Frames folder: 24 or 48-bit PNG. Video: 16 picks a 10-bit pixel format
            where the encoder has one.
        copy_streams: copy the audio and subtitle streams of an input video (packets, no re-encoding).
        overwrite: replace an existing video file / the PNG frames of an existing folder.
        resume: continue a frames folder (see module doc); not possible for video files.
        compress_level: zlib level of PNG frames (0..9).

    Raises:
        InputError: existing output without overwrite/resume, unknown encoder or pixel format, a
            resume that does not match the folder.
    """
    dest = Path(dest).expanduser()
    if bit_depth not in (8, 16):
        raise InputError(f"bit_depth must be 8 or 16, got {bit_depth}")
    if width <= 0 or height <= 0:
        raise InputError(f"output size must be positive, got {width}x{height}")
    _refuse_own_input(dest, like)
    ext = dest.suffix.lower()
    if ext in IMAGE_EXTENSIONS:
        raise InputError(
            f"output {dest} looks like an image file; give a folder for frames or a video file "
            f"({' '.join(VIDEO_EXTENSIONS)})"
        )
    if ext not in MUXERS:
        return _FramesWriter(dest, like, width, height, bit_depth, overwrite, resume, compress_level)
    if resume:
        raise InputError(f"cannot resume into the video file {dest}; write to a frames folder to be able to resume")
    if dest.is_dir():
        raise InputError(f"output {dest} is a folder, not a video file")
    if dest.exists() and not overwrite:
        raise InputError(f"output {dest} already exists; pass overwrite (--overwrite) to replace it")
    return _VideoWriter(dest, like, width, height, fps, codec, crf, preset, pix_fmt, bit_depth, copy_streams)
