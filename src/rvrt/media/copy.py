"""Copying the audio and subtitle streams of an input video into an output (packets, no re-encoding)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import av

from rvrt.media.info import open_input

__all__ = ["StreamCopy"]

logger = logging.getLogger(__name__)

# container metadata that describes the old file, not the new one
_FILE_TAGS = ("encoder", "major_brand", "minor_version", "compatible_brands")


class StreamCopy:
    """The audio and subtitle streams of ``source``, added to ``out`` and muxed as the video advances.

    Args:
        source: the input video.
        out: the output container (streams are added now, before its header is written).
        name: the output's name, for messages.
        start: input time (seconds) of the first output frame: earlier packets are dropped.
        shift: seconds subtracted from every copied timestamp (to align a part of the input with
            an output that starts at the beginning of the container's timeline).

    Streams the output container cannot hold are skipped with a warning.
    """

    def __init__(self, source: Path, out: av.container.OutputContainer, *, name: str, start: float = 0.0,
                 shift: float = 0.0) -> None:  # fmt: skip
        self.name = name
        self.start = start
        self.shift = shift
        self._out = out
        self._src = open_input(source)
        self._copied: dict[int, av.stream.Stream] = {}
        self._pending = None
        self._packets = None
        for s in self._src.streams:
            if s.type not in ("audio", "subtitle"):
                if s.type != "video":
                    logger.info("%s: %s stream #%d is not copied", name, s.type, s.index)
                continue
            codec = s.codec_context.codec.name if s.codec_context is not None else "?"
            try:
                copied = out.add_stream_from_template(s)
            except (ValueError, av.FFmpegError, TypeError) as err:
                logger.warning("%s: cannot copy %s stream #%d (%s) into this container (%s); skipped",
                               name, s.type, s.index, codec, err)  # fmt: skip
                continue
            for key in ("language", "title", "handler_name"):
                if key in s.metadata:
                    copied.metadata[key] = s.metadata[key]
            self._copied[s.index] = copied
        if self._copied:
            self._packets = self._src.demux([self._src.streams[i] for i in self._copied])
        out.metadata.update({k: v for k, v in self._src.metadata.items() if k not in _FILE_TAGS})

    @property
    def streams(self) -> int:
        return len(self._copied)

    def until(self, seconds: float) -> None:
        """Mux the copied packets that start before output time ``seconds`` (keeps streams interleaved)."""
        while self._packets is not None:
            packet = self._pending
            if packet is None:
                try:
                    packet = next(self._packets)
                except StopIteration:
                    self._packets = None
                    break
                except av.FFmpegError as err:
                    logger.warning("%s: stopped copying audio/subtitles: %s", self.name, err)
                    self._packets = None
                    break
                if packet.dts is None and packet.pts is None:
                    continue  # demuxer flush packet
            stamp = packet.pts if packet.pts is not None else packet.dts
            at = float(stamp * packet.time_base)
            if at - self.shift >= seconds:
                self._pending = packet
                break
            self._pending = None
            if self.start > 0 and at < self.start:
                continue  # before the part of the input that is restored
            if self.shift:
                delta = round(self.shift / packet.time_base)
                if packet.pts is not None:
                    packet.pts -= delta
                if packet.dts is not None:
                    packet.dts -= delta
            packet.stream = self._copied[packet.stream.index]
            self._out.mux(packet)

    def finish(self, seconds: float = math.inf) -> None:
        """Mux what is left up to output time ``seconds`` and close the source."""
        try:
            self.until(seconds)
        finally:
            self.close()

    def close(self) -> None:
        self._packets = self._pending = None
        if self._src is not None:
            self._src.close()
            self._src = None
