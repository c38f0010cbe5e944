"""A video output written in segments and joined at the end, so a long run can resume.

The frames are encoded into standalone segments of ``segment_frames`` frames each (each starts
with a key frame) in a work folder next to the output. When all frames are written the
segments are joined into the output by copying their packets (no re-encoding), with the audio
and subtitle streams of the input muxed once, then the file is moved into place. A run that is
killed loses at most the segment it was writing: the finished ones are listed by the caller
(:class:`Segment` records, see :mod:`rvrt.inference.outputs`) and a resumed run continues after
them. Segment boundaries are fixed frame numbers, so an interrupted and resumed run writes the
very segments an uninterrupted run writes.

Segments of H.264/HEVC/MPEG-4/VP9/AV1 bound for MP4, MOV or Matroska are written as MP4 (it keeps
every packet's decoding time, which Matroska does not, and B-frames need it); other outputs
use their own container. GIF and AVI are written straight into the output, not in segments
(an interrupted run of them starts again).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from rvrt.errors import OutputError
from rvrt.files import os_error, place, temp_path_for
from rvrt.media.copy import StreamCopy
from rvrt.media.info import DEFAULT_FPS, MUXERS, FrameWriter, MediaInfo, open_input
from rvrt.media.writers import _DEFAULT_CODEC, _container_options, _exact_fps, _VideoWriter

__all__ = ["Segment", "SegmentedVideoWriter", "segment_container", "verify_segment", "written_in_segments"]

logger = logging.getLogger(__name__)

_MP4_CODECS = ("h264", "hevc", "mpeg4", "vp9", "av1")
#: written straight into the output, not in segments: GIF (per-frame palettes) and AVI (no room for
#: the decoding delay of B-frames in its index); an interrupted run of them starts again
_ONE_SEGMENT = 1 << 62
_UNSEGMENTED = (".gif", ".avi")


@dataclass(frozen=True)
class Segment:
    """A finished segment: output frames ``first .. first + frames - 1`` in ``file`` (``bytes`` long)."""

    index: int
    first: int
    frames: int
    file: str
    bytes: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def written_in_segments(dest: Path) -> bool:
    """Whether a video output is written in segments (GIF and AVI are written straight)."""
    return dest.suffix.lower() not in _UNSEGMENTED


def segment_container(dest_ext: str, codec: str) -> str:
    """The file extension segments of a ``dest_ext`` output encoded with ``codec`` are written in."""
    try:
        family = av.Codec(codec, "w").canonical_name
    except (av.FFmpegError, ValueError):
        family = codec
    if dest_ext in (".mp4", ".mov", ".mkv") and family in _MP4_CODECS:
        return ".mp4"
    return dest_ext


class SegmentedVideoWriter(FrameWriter):
    """Write frames into segments in ``workdir``; :meth:`close` joins them into ``dest``.

    Args:
        dest: the output video.
        workdir: folder for the segments (created; kept after :meth:`abort`).
        like: the input (frame rate, colour tags, the file whose audio/subtitles are copied).
        width, height, fps, codec, crf, preset, pix_fmt, bit_depth: the encoding, as for
            :func:`rvrt.media.open_writer`.
        copy_streams: copy the input's audio and subtitles into the joined output.
        overwrite: the joined output may replace an existing ``dest``.
        first_frame: input frame of output frame 0 (a part of the input): copied audio follows.
        segment_frames: frames per segment.
        done: segments finished by an earlier run (checked by the caller): writing continues after them.
        on_segment: told of every segment finished (to record it).
        total: output frames the run will write, if known (to keep all the audio when complete).
        first_segment: index of the first segment this writer writes (default: after ``done``);
            segment ``k`` holds output frames ``k * segment_frames ...``.
        join: :meth:`close` joins the segments into ``dest``; False: it only finishes the last one
            (a part of a sharded run: another process joins them all).
    """

    def __init__(self, dest: Path, workdir: Path, like: MediaInfo, width: int, height: int, *, fps=None,
                 codec=None, crf=None, preset=None, pix_fmt=None, bit_depth: int = 8, copy_streams: bool = True,
                 overwrite: bool = False, first_frame: int = 0, segment_frames: int = 250,
                 done: list[Segment] | None = None, on_segment: Callable[[Segment], None] | None = None,
                 total: int | None = None, first_segment: int | None = None, join: bool = True) -> None:  # fmt: skip
        super().__init__(dest, width, height)
        if fps is None and like.fps is None:  # said once for the output, not for every segment
            logger.warning("%s: the input has no frame rate; writing %s fps (--fps to choose)", dest, DEFAULT_FPS)
            fps = DEFAULT_FPS
        self.workdir = workdir
        self.like = like
        self.overwrite = overwrite
        self.copy_streams = copy_streams
        self.first_frame = first_frame
        self.total = total
        self.segments: list[Segment] = sorted(done or [], key=lambda s: s.index)
        self.completed = sum(s.frames for s in self.segments)
        self.on_segment = on_segment
        self.segment_frames = segment_frames
        self._index = len(self.segments) if first_segment is None else first_segment
        self._join_at_close = join
        self._settings = dict(fps=fps, codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt, bit_depth=bit_depth)
        self._current: _VideoWriter | None = None
        self._direct: _VideoWriter | None = None
        if not written_in_segments(dest):  # written straight into the output (see the module doc)
            self._direct = _VideoWriter(dest, like, width, height, fps, codec, crf, preset, pix_fmt, bit_depth,
                                        copy_streams, overwrite, first_frame)  # fmt: skip
            self.fps, self.codec, self.pix_fmt = self._direct.fps, self._direct.codec, self._direct.pix_fmt
            self.segments, self.completed, self.segment_frames = [], 0, _ONE_SEGMENT
            return
        try:
            workdir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise os_error(err, "create the folder", workdir) from err
        # the first segment's writer checks the encoder settings now, before any work is done
        self._current = self._open_segment()
        self.fps = self._current.fps
        self.codec = self._current.codec
        self.pix_fmt = self._current.pix_fmt
        self._settings.update(fps=self.fps, codec=self.codec, pix_fmt=self.pix_fmt)
        for seg in self.segments:  # fixed boundaries: only the segment at the end may be shorter
            if seg.first != seg.index * segment_frames or (
                seg.frames != segment_frames and (total is None or seg.first + seg.frames != total)
            ):
                raise OutputError(f"the segments in {workdir} are of another length; start again with --overwrite")

    def _open_segment(self) -> _VideoWriter:
        ext = self.path.suffix.lower()
        s = self._settings
        codec = s["codec"] or _DEFAULT_CODEC[ext]
        path = self.workdir / f"seg-{self._index:06d}{segment_container(ext, codec)}"
        # segments start at time 0; the join places them on the output's timeline
        like = dataclasses.replace(self.like, start_time=0.0)
        return _VideoWriter(path, like, self.width, self.height, s["fps"] if s["fps"] is not None else self.like.fps,
                            codec, s["crf"], s["preset"], s["pix_fmt"], s["bit_depth"], False, True)  # fmt: skip

    def write(self, data: np.ndarray, name: str | None = None) -> None:
        self._check(data)
        if self._direct is not None:
            self._direct.write(data)
            self.written += 1
            return
        if self._current is None:
            self._current = self._open_segment()
        self._current.write(data)
        self.written += 1
        if self._current.written >= self.segment_frames:
            self._finish_segment()

    def _finish_segment(self) -> None:
        cur, self._current = self._current, None
        cur.close()
        seg = Segment(self._index, self._index * self.segment_frames, cur.written, cur.path.name,
                      cur.path.stat().st_size)  # fmt: skip
        self._index += 1
        self.segments.append(seg)
        if self.on_segment is not None:
            self.on_segment(seg)

    def close(self) -> None:
        if self._finished:
            return
        if self._direct is not None:
            self._finished = True
            self._direct.close()
            return
        try:
            if self._current is not None and self._current.written:
                self._finish_segment()
            elif self._current is not None:
                self._current.abort()
                self._current = None
            if not self._join_at_close:
                self._finished = True
                return
            if not self.segments:
                raise OutputError(f"no frames were written to {self.path}")
            self._check_complete()
            self._join()
        except BaseException:
            self.abort()
            raise
        self._finished = True

    def _check_complete(self) -> None:
        """The segments follow each other from frame 0 (a sharded run's parts all arrived)."""
        self.segments.sort(key=lambda s: s.index)
        for k, seg in enumerate(self.segments):
            if seg.index != k:
                raise OutputError(f"{self.workdir}: segment {k} is missing; rerun with --resume to write it")

    def _join(self) -> None:
        dest = self.path
        tmp = temp_path_for(dest)
        ext = dest.suffix.lower()
        files = [self.workdir / s.file for s in self.segments]
        fps = _exact_fps(self.fps)
        pts0 = max(round(self.like.start_time * fps), 0) if self.like.kind == "video" else 0
        options = _container_options(ext)
        try:
            out = av.open(str(tmp), "w", format=MUXERS[ext], container_options=options)
        except OSError as err:
            raise os_error(err, "write", dest) from err
        copy = None
        try:
            with open_input(files[0]) as first:
                template = first.streams.video[0]
                extradata = template.codec_context.extradata
                video = out.add_stream_from_template(template)
            video.rate = fps  # the frame rate the muxer records (Matroska rounds times to milliseconds)
            if self.copy_streams and self.like.kind == "video" and Path(self.like.path).is_file():
                in_fps = self.like.fps or DEFAULT_FPS
                skip = self.first_frame / in_fps
                start = self.like.start_time + skip if skip else 0.0
                copy = StreamCopy(Path(self.like.path), out, name=dest.name, start=start, shift=skip)
            out.start_encoding()
            # decoding times as encoded, moved to the segment's place, and moved earlier by the frames
            # of reordering delay a segment has less than the longest (a short last segment without
            # B-frames has none; joined as it is, the gap would lengthen the frame before it)
            delays = [_reorder_delay(p, fps) for p in files]
            longest = max(delays)
            for seg, path, delay in zip(self.segments, files, delays, strict=True):
                with open_input(path) as c:
                    stream = c.streams.video[0]
                    if stream.codec_context.extradata != extradata:
                        raise OutputError(f"{path} was encoded with other settings than the first segment")
                    offset = Fraction(pts0 + seg.first) / fps
                    for packet in c.demux(stream):
                        if packet.dts is None and packet.pts is None:
                            continue
                        tb = packet.time_base
                        shift = round(offset / tb)
                        at = float((packet.pts or 0) * tb) + float(offset)
                        if packet.pts is not None:
                            packet.pts += shift
                        if packet.dts is not None:
                            packet.dts += shift - round((longest - delay) / fps / tb)
                        packet.stream = video
                        out.mux(packet)
                        if copy is not None:
                            copy.until(at)
            if copy is not None:
                frames = self.segments[-1].first + self.segments[-1].frames
                complete = self.total is not None and frames >= self.total
                copy.finish(math.inf if complete else self.like.start_time + frames / fps)
                copy = None
            out.close()
            out = None
            place(tmp, dest, overwrite=self.overwrite)
        except OSError as err:
            raise os_error(err, "write", dest) from err
        finally:
            if copy is not None:
                copy.close()
            if out is not None:
                try:
                    out.close()
                except (av.FFmpegError, OSError, ValueError):
                    pass
            tmp.unlink(missing_ok=True)

    def abort(self) -> None:
        # finished segments stay: they are what a resumed run continues from
        self._finished = True
        if self._direct is not None:
            self._direct.abort()
        if self._current is not None:
            self._current.abort()
            self._current = None


def _reorder_delay(path: Path, fps: Fraction) -> int:
    """Frames between a segment's first decoding time and its first picture (its B-frame delay)."""
    with open_input(path) as c:
        stream = c.streams.video[0]
        stamps = [(p.pts, p.dts) for p in c.demux(stream) if p.size and p.pts is not None]
    if not stamps or stamps[0][1] is None:
        return 0
    first_pts = min(p for p, _ in stamps)
    return max(0, round((first_pts - stamps[0][1]) * stream.time_base * fps))


def verify_segment(path: Path, seg: Segment) -> str | None:
    """Why a recorded segment cannot be kept (missing, another size, another frame count), or None."""
    if not path.is_file():
        return "missing"
    if path.stat().st_size != seg.bytes:
        return f"{path.stat().st_size} bytes instead of {seg.bytes}"
    try:
        with open_input(path) as c:
            count = sum(1 for p in c.demux(c.streams.video[0]) if p.size)
    except Exception as err:  # noqa: BLE001 - any failure means the segment cannot be used
        return f"unreadable ({err})"
    if count != seg.frames:
        return f"{count} frames instead of {seg.frames}"
    return None
