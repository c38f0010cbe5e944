"""Synthetic media for tests: smooth moving frames and small videos with optional audio and subtitles."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

#: swscale matrix of a colour-space tag (FFmpeg AVColorSpace): what ``make_video`` converts RGB with
_SWS_MATRIX = {1: "ITU709", 5: "ITU601", 6: "ITU601", 9: "BT2020", 10: "BT2020"}
#: subtitle codec per container, and how a text becomes a packet (mov_text: 16-bit length first)
_SUBTITLE_CODECS = {".mp4": "mov_text", ".mov": "mov_text", ".mkv": "subrip"}
_SUBTITLE_PAYLOAD = {
    "mov_text": lambda text: len(text.encode()).to_bytes(2, "big") + text.encode(),
    "subrip": lambda text: text.encode(),
}

#: real footage (../shared/data/real, see its MANIFEST; ``RVRT_REAL_DATA`` points elsewhere). Tests using
#: it skip with :data:`REAL_MISSING` where it is absent, except under ``CI=true`` where its absence is
#: an error (tests/conftest.py), so CI never passes by skipping them
REAL = Path(os.environ.get("RVRT_REAL_DATA", Path(__file__).resolve().parents[2] / "shared" / "data" / "real"))
REAL_MISSING = (
    f"real footage not found at {REAL}: set RVRT_REAL_DATA to the shared data/real folder "
    "(see its MANIFEST.txt) to run this test"
)
NTSC = Fraction(30000, 1001)
W, H = 64, 48


def smooth_frames(n: int, width: int = W, height: int = H, deep: bool = False) -> list[np.ndarray]:
    """Moving gradients: survive 4:2:0 chroma subsampling with small errors, unlike noise.

    ``deep``: the same gradients as uint16 (0..65535) rounded at 16 bits, not 8 (values between
    the 8-bit levels, for 10-bit sources)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    out = []
    for t in range(n):
        r = 128 + 100 * np.sin((xx + 3 * t) / 9)
        g = 128 + 90 * np.cos((yy - 2 * t) / 7)
        b = 60 + 2 * xx + yy
        rgb = np.dstack([r, g, b]).clip(0, 255)
        out.append((rgb * 257).round().astype(np.uint16) if deep else rgb.round().astype(np.uint8))
    return out


def make_video(path: Path, frames, *, codec="libx264", pix_fmt="yuv420p", rate=NTSC, audio=False,
                tags=None, rotation=None, in_fmt="rgb24", options=None, container_options=None,
                subtitles=None) -> Path:  # fmt: skip
    """Encode ``frames`` (``(H, W, 3)`` arrays in ``in_fmt``: rgb24 uint8, rgb48le uint16) into ``path``.

    ``tags``: ``(primaries, trc, space, range)`` FFmpeg enum values, written on the stream and used
    for the RGB -> YUV conversion. ``audio``: a 440 Hz AAC stereo tone as long as the video.
    ``subtitles``: ``[(start_s, end_s, text), ...]`` muxed as a subtitle stream (language ``fra``)
    of the container's text codec (mov_text in MP4/MOV, SubRip in Matroska).
    """
    out = av.open(str(path), "w", container_options=container_options or {})
    stream = out.add_stream(codec, rate=rate)
    stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
    stream.pix_fmt = pix_fmt
    stream.options = options or ({"preset": "ultrafast", "crf": "12"} if codec == "libx264" else {})
    matrix = None
    if tags:
        cc = stream.codec_context
        cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range = tags
        matrix = _SWS_MATRIX[tags[2]]
    if rotation is not None:
        stream.set_display_rotation(rotation)
    if audio:
        astream = out.add_stream("aac", rate=48000)
    if subtitles:
        sub_codec = _SUBTITLE_CODECS[Path(path).suffix.lower()]
        sstream = out.add_mux_stream(sub_codec, time_base=Fraction(1, 1000))
        sstream.metadata["language"] = "fra"
    for i, arr in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(arr, format=in_fmt)
        if in_fmt != pix_fmt:
            frame = frame.reformat(format=pix_fmt, dst_colorspace=matrix, dst_color_range=tags and tags[3])
        frame.pts = i
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    if audio:
        total = int(48000 * len(frames) / rate)
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(total) / 48000)).astype(np.float32)
        for pos in range(0, total, 1024):
            chunk = tone[pos : pos + 1024]
            aframe = av.AudioFrame.from_ndarray(np.stack([chunk, chunk]), format="fltp", layout="stereo")
            aframe.sample_rate, aframe.pts = 48000, pos
            for packet in astream.encode(aframe):
                out.mux(packet)
        for packet in astream.encode():
            out.mux(packet)
    for begin, end, text in subtitles or ():
        packet = av.Packet(_SUBTITLE_PAYLOAD[sub_codec](text))
        packet.stream, packet.time_base = sstream, Fraction(1, 1000)
        packet.pts = packet.dts = round(begin * 1000)
        packet.duration = round((end - begin) * 1000)
        out.mux(packet)
    out.close()
    return path
