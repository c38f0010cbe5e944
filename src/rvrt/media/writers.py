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

from rvrt.errors import InputError, OutputError
from rvrt.files import os_error, place, temp_path_for
from rvrt.media.copy import StreamCopy
from rvrt.media.images import IMAGE_EXTENSIONS, write_png
from rvrt.media.info import (
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
    rgb48_write_gain,
)

__all__ = ["open_writer", "output_kind"]

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
#: the range each encoder accepts for crf
_CRF_RANGE = {
    "libx264": (0, 51),
    "libx265": (0, 51),
    "libvpx-vp9": (0, 63),
    "libsvtav1": (1, 63),
    "libaom-av1": (0, 63),
}
_X26X_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
#: the presets each encoder knows
_PRESETS = {"libx264": _X26X_PRESETS, "libx265": _X26X_PRESETS, "libsvtav1": tuple(str(i) for i in range(-1, 14))}
_EXTRA_OPTIONS = {
    "libvpx-vp9": {"b": "0", "row-mt": "1", "deadline": "good", "cpu-used": "4"},
}
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
    """PNG frames, each written atomically; the caller decides what may be in the folder already
    (see :mod:`rvrt.inference.outputs`). Without ``overwrite`` no existing file is ever replaced."""

    def __init__(self, dest: Path, like: MediaInfo, width: int, height: int, bit_depth: int,
                 overwrite: bool, compress_level: int, first: int = 0) -> None:  # fmt: skip
        super().__init__(dest, width, height)
        self.bit_depth = bit_depth
        self.compress_level = compress_level
        self.overwrite = overwrite
        self.first = first  # index of the first frame this writer writes
        self._names = like.names or ()
        if dest.exists() and not dest.is_dir():
            raise OutputError(f"output {dest} exists and is not a folder")
        self._created = not dest.exists()
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise os_error(err, "create the folder", dest) from err

    def name_of(self, index: int) -> str:
        """Name of frame ``index`` as the reader calls it (input file stem, or ``%08d`` for videos)."""
        return self._names[index] if index < len(self._names) else f"{index:08d}"

    def write(self, data: np.ndarray, name: str | None = None) -> Path:
        self._check(data)
        if name is None:
            name = self.name_of(self.first + self.written)
        if not name or name.startswith(".") or "/" in name or os.sep in name:
            raise ValueError(f"invalid frame name {name!r}")
        path = self.path / f"{name}.png"
        try:
            write_png(path, _convert_depth(data, self.bit_depth), compress_level=self.compress_level,
                      overwrite=self.overwrite)  # fmt: skip
        except OSError as err:
            raise os_error(err, "write", path) from err
        self.written += 1
        return path

    def close(self) -> None:
        self._finished = True

    def abort(self) -> None:
        # finished frames stay: each one is complete, and they are what a resumed run continues from
        self._finished = True
        if self._created and self.path.is_dir() and not any(self.path.iterdir()):
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


def rgb_to_frame(data: np.ndarray, pix_fmt: str, color: dict[str, int], *, full_chroma_fmt: str | None = None
                 ) -> av.VideoFrame:  # fmt: skip
    """An ``(H, W, 3)`` uint8/uint16 RGB frame as a frame of ``pix_fmt`` (or of ``full_chroma_fmt``,
    its 4:4:4 form, for a subsampling of our own), converted with the matrix and range of
    ``color`` (FFmpeg enum values, :func:`_output_color`)."""
    if data.dtype == np.uint16 and _format_bits(pix_fmt) <= 8:
        data = _convert_depth(data, 8)  # rgb24 -> 8-bit YUV is exact; rgb48 is not (see rgb48_write_gain)
    elif data.dtype == np.uint16 and rgb48_write_gain(pix_fmt) != 1.0:
        data = (data / np.float32(rgb48_write_gain(pix_fmt)) + np.float32(0.5)).astype(np.uint16)
    frame = av.VideoFrame.from_ndarray(data, format="rgb48le" if data.dtype == np.uint16 else "rgb24")
    if frame.format.name == pix_fmt:
        return frame
    if av.VideoFormat(pix_fmt).is_rgb:
        return frame.reformat(format=pix_fmt, interpolation=WRITE_SWS_FLAGS)
    matrix = SWS_MATRIX.get(SPACE_NAMES.get(color.get("space", -1), ""))
    return frame.reformat(
        format=full_chroma_fmt or pix_fmt, dst_colorspace=matrix, dst_color_range=color.get("range"),
        interpolation=WRITE_SWS_FLAGS,
    )  # fmt: skip


class _VideoWriter(FrameWriter):
    def __init__(self, dest: Path, like: MediaInfo, width: int, height: int, fps, codec, crf, preset,
                 pix_fmt, bit_depth: int, copy_streams: bool, overwrite: bool = False,
                 first_frame: int = 0) -> None:  # fmt: skip
        super().__init__(dest, width, height)
        self.overwrite = overwrite
        # the output starts at input frame first_frame (a part of the input): copied audio follows
        self._first_frame = first_frame
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
        # decoders of these codecs report left (co-sited) chroma, whereas swscale subsamples to
        # centred chroma: without our own subsampling every saved video carries a quarter-pixel
        # chroma shift (a lossless x264 round trip errs by 1.6 levels on average instead of 0.6)
        self._full_chroma_fmt = None
        if self._codec_obj.canonical_name in _COSITED_CODECS and _SUBSAMPLED_420_422.match(self.pix_fmt):
            self._full_chroma_fmt = _SUBSAMPLED_420_422.sub(r"\g<1>444p", self.pix_fmt)
        self._pts0 = max(round(like.start_time * self.fps), 0) if like.kind == "video" else 0
        self._tmp: Path | None = None
        self._out = None
        self._copy: StreamCopy | None = None
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
        container_options = _container_options(ext)
        try:
            self._out = av.open(str(tmp), "w", format=MUXERS[ext], container_options=container_options)
        except OSError as err:
            raise os_error(err, "write", dest) from err
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
        like = self._like
        in_fps = like.fps or DEFAULT_FPS
        skip = self._first_frame / in_fps
        self._copy = StreamCopy(
            Path(like.path), self._out, name=self.path.name, start=like.start_time + skip if skip else 0.0, shift=skip
        )

    def _to_video_frame(self, data: np.ndarray) -> av.VideoFrame:
        if any(self._pad):
            data = np.pad(data, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        if self.pix_fmt == "pal8":
            return _palette_frame(_convert_depth(data, 8))
        frame = rgb_to_frame(data, self.pix_fmt, self._color, full_chroma_fmt=self._full_chroma_fmt)
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
        if self._copy is not None:
            self._copy.until(self._like.start_time + self.written / self.fps)

    def close(self) -> None:
        if self._finished:
            return
        try:
            if not self.written:
                raise InputError(f"no frames were written to {self.path}")
            for packet in self._stream.encode(None):
                self._out.mux(packet)
            if self._copy is not None:
                end = self._like.frame_count
                complete = end is not None and self._first_frame + self.written * self._like_rate() >= end
                # a partial restore keeps the audio of the frames written; a full one keeps all of it
                self._copy.finish(math.inf if complete else self._like.start_time + self.written / self.fps)
                self._copy = None
            self._out.close()
            self._out = None
            place(self._tmp, self.path, overwrite=self.overwrite)
            self._tmp = None
        except OSError as err:
            self.abort()
            raise os_error(err, "write", self.path) from err
        except BaseException:
            self.abort()
            raise
        self._finished = True

    def _like_rate(self) -> float:
        """Input frames per output frame (1, or 1/2 for a doubled frame rate)."""
        return float((self._like.fps or DEFAULT_FPS) / self.fps)

    def abort(self) -> None:
        self._finished = True
        if self._copy is not None:
            self._copy.close()
            self._copy = None
        if self._out is not None:
            try:
                self._out.close()
            except (av.FFmpegError, OSError, ValueError) as err:
                logger.debug("closing %s after an error: %s", self._tmp, err)
            self._out = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None


def _container_options(ext: str) -> dict[str, str]:
    """Muxer options: the index first in MP4/MOV (playable while downloading); ``bitexact`` so that
    the same packets give the same file (Matroska writes random identifiers otherwise)."""
    options = {"fflags": "+bitexact"}
    if ext in (".mp4", ".mov"):
        options["movflags"] = "+faststart"
    return options


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
    """Encoder options for ``crf`` and ``preset``.

    Raises:
        InputError: a crf outside the encoder's range, a preset it does not know.
    """
    options = dict(_EXTRA_OPTIONS.get(codec, {}))
    if crf is not None and codec not in _CRF:
        logger.warning("encoder %s has no crf setting; crf=%s ignored", codec, crf)
    elif codec in _CRF:
        low, high = _CRF_RANGE[codec]
        if crf is not None and not low <= crf <= high:
            raise InputError(f"--crf for {codec} must be {low}..{high} (lower is better quality); got {crf}")
        options["crf"] = str(_CRF[codec] if crf is None else crf)
    if preset is not None:
        if codec in _PRESETS:
            if str(preset) not in _PRESETS[codec]:
                raise InputError(f"--preset for {codec} must be one of {', '.join(_PRESETS[codec])}; got {preset!r}")
            options["preset"] = str(preset)
        else:
            logger.warning("encoder %s has no preset setting; preset=%s ignored", codec, preset)
    return options


def _output_color(like: MediaInfo, pix_fmt: str) -> dict[str, int]:
    """Colour tags for the output stream (FFmpeg enum values), and so the matrix it is converted with.

    Known tags of the input video are kept. Otherwise the output says what it holds: the matrix the
    input was read with (or BT.709 for frames, which are sRGB-like) in limited range, and for frames
    BT.709 primaries and transfer. An RGB output (FFV1, PNG) keeps the primaries and transfer and
    says it is RGB (full range); a palette (GIF) has no tags.
    """
    if pix_fmt == "pal8":
        return {}
    rgb = av.VideoFormat(pix_fmt).is_rgb
    names = dict(like.color)
    if names.get("space") == "gbr" or rgb:  # matrix and range: those of the YUV a stream holds, if any
        names.pop("space", None)
        names.pop("range", None)
    if like.kind == "frames":
        names.setdefault("primaries", "bt709")
        names.setdefault("trc", "bt709")
    if rgb:
        names.update(space="gbr", range="pc")
    else:
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
    if os.fspath(dest) == "-":  # stdout
        return
    target = dest.resolve()
    sources = [Path(like.path).resolve()] if like.path and like.kind != "pipe" else []
    sources += [Path(f).resolve() for f in (like.files or ())]
    if any(src == target or target in src.parents for src in sources):
        raise InputError(f"output {dest} is (or holds) the input {like.path}; choose another output")


def output_kind(dest: str | os.PathLike) -> str:
    """``"video"`` for a known video extension, ``"frames"`` for a folder path (an existing folder,
    a name without extension, or one ending in a path separator), ``"pipe"`` for ``-`` (stdout).

    Raises:
        InputError: anything else (``out.xyz``, ``frame.png``): one would silently become a folder.
    """
    text = os.fspath(dest)
    if text == "-":  # stdout: a y4m stream (rvrt.media.pipes)
        return "pipe"
    path = Path(text).expanduser()
    ext = path.suffix.lower()
    if ext in MUXERS and not path.is_dir():
        return "video"
    if path.is_dir() or text.endswith(("/", os.sep)) or not ext:
        if path.exists() and not path.is_dir():
            raise InputError(f"output {path} exists and is not a folder")
        return "frames"
    if ext in IMAGE_EXTENSIONS:
        raise InputError(
            f"output {path} looks like an image file; give a folder for frames or a video file "
            f"({' '.join(VIDEO_EXTENSIONS)})"
        )
    raise InputError(
        f"output {path}: {ext!r} is not a video type this build writes ({' '.join(VIDEO_EXTENSIONS)}); for "
        f"PNG frames give a folder (a name without extension, or ending in '/')"
    )


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
    compress_level: int = 3,
    first_frame: int = 0,
) -> FrameWriter:
    """Open a video file or a folder of PNG frames for writing restored frames.

    Args:
        dest: a video (see :func:`output_kind`) or a folder for PNG frames.
        like: the input (from :func:`probe`): frame rate, colour tags, audio/subtitle streams, names.
        width, height: size of the frames that will be written.
        fps: frame rate of a video output (default: ``like.fps``, else 25); floats near 29.97 etc.
            mean the exact NTSC rates (30000/1001).
        codec, crf, preset, pix_fmt: video encoder settings (defaults per container, see module doc).
        bit_depth: 8 or 16. Frames folder: 24 or 48-bit PNG. Video: 16 picks a 10-bit pixel format
            where the encoder has one.
        copy_streams: copy the audio and subtitle streams of an input video (packets, no re-encoding).
        overwrite: replace an existing video file; write into a folder that holds files (files with
            the names of the frames written are replaced, others are left alone).
        compress_level: zlib level of PNG frames (0..9).
        first_frame: the first frame written is input frame ``first_frame`` (a part of the input):
            frame names and copied audio follow.

    Raises:
        InputError: an output path of no known kind, unknown encoder or pixel format, bad settings.
        OutputError: an existing output without ``overwrite``; the operating system refuses.
    """
    dest = Path(dest).expanduser()
    if bit_depth not in (8, 16):
        raise InputError(f"bit_depth must be 8 or 16, got {bit_depth}")
    if width <= 0 or height <= 0:
        raise InputError(f"output size must be positive, got {width}x{height}")
    _refuse_own_input(dest, like)
    if output_kind(dest) == "frames":
        if dest.is_dir() and not overwrite and any(not p.name.startswith(".") for p in dest.iterdir()):
            raise OutputError(f"output folder {dest} is not empty; pass overwrite (--overwrite) to write into it")
        return _FramesWriter(dest, like, width, height, bit_depth, overwrite, compress_level, first_frame)
    if dest.exists() and not overwrite:
        raise OutputError(f"output {dest} already exists; pass overwrite (--overwrite) to replace it")
    return _VideoWriter(dest, like, width, height, fps, codec, crf, preset, pix_fmt, bit_depth, copy_streams,
                        overwrite, first_frame)  # fmt: skip
