"""Compression of the real-world degradations: JPEG per frame, and whole clips through a video codec.

:func:`jpeg` sends every frame of a ``(T, H, W, 3)`` uint8 clip through Pillow's JPEG encoder;
:func:`compress_video` encodes the clip as one stream with PyAV (libx264/libx265/mpeg4/mpeg2video)
and decodes it back in memory, so that I, P and B frames carry different artefacts.
:func:`to_uint8` turns the float clips of the pipeline into the uint8 clips the encoders take.
"""

from __future__ import annotations

import functools
import io
import logging
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from rvrt.errors import InputError

__all__ = ["CODEC_DECODERS", "FPS", "jpeg", "compress_video", "codec_available", "to_uint8"]

log = logging.getLogger(__name__)

#: encoder -> decoder; the order is also the fall-back order when an encoder is missing
CODEC_DECODERS = {"libx264": "h264", "libx265": "hevc", "mpeg4": "mpeg4", "mpeg2video": "mpeg2video"}
#: frame rate given to the encoders (bitrate mode is in bits per pixel per frame, so it cancels)
FPS = 25
#: smallest frame side given to an encoder (smaller clips are padded)
_MIN_SIZE = {"libx265": 64}


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """``(T, 3, H, W)`` float -> ``(T, H, W, 3)`` uint8 (clamped, rounded)."""
    return x.clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def _to_float(clip: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2).float().div_(255)


def jpeg(clip: np.ndarray, quality: int) -> np.ndarray:
    """Every frame of a ``(T, H, W, 3)`` uint8 clip through Pillow's JPEG encoder and back."""
    from PIL import Image

    out = []
    for frame in clip:
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        with Image.open(buf) as im:
            out.append(np.asarray(im.convert("RGB")))
    return np.stack(out)


@functools.cache
def codec_available(name: str) -> bool:
    """Whether this PyAV/FFmpeg build has the encoder ``name``."""
    import av

    try:
        av.codec.Codec(name, "w")
    except Exception:  # noqa: BLE001 - PyAV raises UnknownCodecError or ValueError depending on version
        return False
    return True


def _usable_codec(name: str) -> str:
    if codec_available(name):
        return name
    for other in CODEC_DECODERS:
        if codec_available(other):
            log.warning("encoder %s is not in this PyAV/FFmpeg build; using %s", name, other)
            return other
    raise InputError("this PyAV/FFmpeg build has none of the encoders " + ", ".join(CODEC_DECODERS))


def _encoder(codec: str, width: int, height: int, p: Mapping[str, Any]):
    """An encoder context set up as ``p`` says (see :func:`compress_video`)."""
    import av

    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = Fraction(1, FPS)
    ctx.framerate = Fraction(FPS, 1)
    ctx.gop_size = int(p["gop"])
    ctx.max_b_frames = int(p["bframes"])
    ctx.thread_count = 1  # one thread: deterministic, and DataLoader workers are processes already
    options: dict[str, str] = {}
    if p["rate_control"] == "bitrate":
        ctx.bit_rate = max(1000, int(p["bpp"] * width * height * FPS))
    if codec == "libx264":
        options.update(preset="veryfast")
        if p["rate_control"] == "crf":
            options["crf"] = str(p["crf"])
    elif codec == "libx265":
        params = f"log-level=error:keyint={p['gop']}:bframes={p['bframes']}:pools=none:frame-threads=1"
        options.update(preset="ultrafast", **{"x265-params": params})
        if p["rate_control"] == "crf":
            options["crf"] = str(p["crf"])
    elif p["rate_control"] == "crf":  # mpeg4 / mpeg2video: a fixed quantiser
        options.update(qmin=str(p["qscale"]), qmax=str(p["qscale"]))
        ctx.bit_rate = max(1000, int(24 * width * height * FPS))  # not the limit: the quantiser is
    ctx.options = options
    return ctx


def compress_video(clip: np.ndarray, p: Mapping[str, Any]) -> tuple[np.ndarray, list[str]]:
    """Encode a ``(T, H, W, 3)`` uint8 clip as one stream and decode it back, in memory.

    ``p``: ``codec`` (a key of :data:`CODEC_DECODERS`), ``rate_control`` (``"crf"`` or
    ``"bitrate"``), ``crf`` (libx264/libx265), ``qscale`` (mpeg4/mpeg2video), ``bpp`` (bits per
    pixel per frame), ``gop`` (frames between I frames), ``bframes`` (B frames at most in a row).
    Frames are padded by edge replication to whole 16x16 macroblocks (x264 otherwise reads
    padding it leaves uninitialised, in bitrate mode: the same input gave different outputs) of
    at least 64 pixels for libx265 (whose build here corrupts memory on smaller frames), and the
    output is cropped back.

    Returns:
        the decoded clip, and each decoded frame's picture type (``"I"``, ``"P"``, ``"B"``), in
        display order.
    """
    import av

    t, h, w, _ = clip.shape
    least = _MIN_SIZE.get(p["codec"], 16)
    ph, pw = max(least, -(-h // 16) * 16), max(least, -(-w // 16) * 16)
    if (ph, pw) != (h, w):
        clip = np.pad(clip, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    enc = _encoder(p["codec"], pw, ph, p)
    packets = []
    for i, frame in enumerate(clip):
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24").reformat(format="yuv420p")
        vf.pts = i
        packets += enc.encode(vf)
    packets += enc.encode(None)
    dec = av.CodecContext.create(CODEC_DECODERS[p["codec"]], "r")
    dec.thread_count = 1
    frames = []
    for packet in packets:
        frames += dec.decode(packet)
    frames += dec.decode(None)
    if len(frames) != t:
        raise RuntimeError(f"{p['codec']} returned {len(frames)} frames for {t}")
    types = [av.video.frame.PictureType(int(f.pict_type)).name for f in frames]
    out = np.stack([f.to_ndarray(format="rgb24") for f in frames])[:, :h, :w]
    return out, types
