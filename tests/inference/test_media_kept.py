"""What a restored or interpolated video keeps of its input (README: "fps, audio, subtitles and colour
tags kept"): the colour tags (BT.709 and BT.2020 with HLG, limited and full range) with pixels
converted by them, the bit depth (a 10-bit input gives a 10-bit output whose values use the bits),
the audio packets and the subtitle cues, through ``rvrt.restore``, ``rvrt.interpolate`` and the
command line. Tiny clips (3 frames of 32x32) and the tiny models: about 20 s in all on a busy
two-core machine (each restore runs the model twice: the output and the frames to compare with).
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

import rvrt
from media import make_video, smooth_frames
from rvrt.cli import main
from rvrt.media import open_reader, probe
from rvrt.media.pixels import tensor_to_frame

N, SIZE = 3, 32
SUBTITLES = [(0.0, 0.04, "Bonjour"), (0.06, 0.09, "le monde")]
BT709 = {"primaries": "bt709", "trc": "bt709", "space": "bt709"}
HLG = {"primaries": "bt2020", "trc": "arib-std-b67", "space": "bt2020nc"}
#: name -> (container, 10-bit, colour tags as ffmpeg names, the same as FFmpeg enums)
CASES = {
    "bt709-limited-8bit-mp4": (".mp4", False, {**BT709, "range": "tv"}, (1, 1, 1, 1)),
    "bt709-full-8bit-mkv": (".mkv", False, {**BT709, "range": "pc"}, (1, 1, 1, 2)),
    "hlg-bt2020-limited-10bit-mp4": (".mp4", True, {**HLG, "range": "tv"}, (9, 18, 9, 1)),
    "hlg-bt2020-full-10bit-mkv": (".mkv", True, {**HLG, "range": "pc"}, (9, 18, 9, 2)),
}
OPTS = dict(device="cpu", progress=False, scene_cuts="off")


def _make_clip(folder: Path, case: str) -> Path:
    ext, deep, _, tags = CASES[case]
    frames = smooth_frames(N, SIZE, SIZE, deep=deep)  # 16-bit gradients: a 10-bit input 8 bits cannot hold
    options = {"qp": "0", "preset": "ultrafast"}  # lossless
    return make_video(folder / f"{case}{ext}", frames, pix_fmt="yuv420p10le" if deep else "yuv420p", tags=tags,
                      in_fmt="rgb48le" if deep else "rgb24", options=options, audio=True,
                      subtitles=SUBTITLES)  # fmt: skip


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("kept")
    return {case: _make_clip(folder, case) for case in CASES}


# ----------------------------------------------------------------------------- reading what was written


def _stream_tags(path: Path) -> dict:
    """The colour tags of the video stream as the container/bitstream states them (not guessed)."""
    with av.open(str(path)) as c:
        cc = c.streams.video[0].codec_context
        values = (cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range)
    return dict(zip(("primaries", "trc", "space", "range"), (int(v) for v in values), strict=True))


def _audio(path: Path) -> list[tuple]:
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        return [(float(p.pts * p.time_base), bytes(p)) for p in c.demux(stream) if p.size]


def _cues(path: Path) -> tuple[str, str, list[tuple]]:
    """Codec, language and the non-empty cues ``(start s, end s, payload)`` of the subtitle stream.
    (The MP4 muxer writes empty samples into the gaps between cues; those are not cues.)"""
    with av.open(str(path)) as c:
        assert len(c.streams.subtitles) == 1, f"{path.name}: {len(c.streams.subtitles)} subtitle streams"
        stream = c.streams.subtitles[0]
        tb = stream.time_base
        cues = [
            (round(float(p.pts * tb), 3), round(float((p.pts + p.duration) * tb), 3), bytes(p))
            for p in c.demux(stream)
            if p.size and bytes(p) not in (b"", b"\0\0")
        ]
        return stream.codec_context.name, stream.metadata.get("language"), cues


def _luma(path: Path) -> tuple[str, list[np.ndarray]]:
    """Pixel format and the Y planes as stored (10-bit codes for a 10-bit video)."""
    out = []
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            plane = frame.planes[0]
            dtype = np.dtype("<u2") if frame.format.components[0].bits > 8 else np.dtype(np.uint8)
            rows = np.frombuffer(plane, dtype=dtype).reshape(frame.height, plane.line_size // dtype.itemsize)
            out.append(rows[:, : frame.width].astype(np.float64))
        return frame.format.name, out


def _rgb(path: Path) -> list[np.ndarray]:
    """Decoded frames as float RGB in [0, 1] (read with the tags the file carries)."""
    with open_reader(path) as reader:
        return [f.data.astype(np.float64) / (65535 if f.data.dtype == np.uint16 else 255) for f in reader]


def _expected_luma(rgb: np.ndarray, tags: dict, bits: int) -> np.ndarray:
    """Y of ``(H, W, 3)`` float RGB by the matrix and range of ``tags`` (BT.709 / BT.2020), unrounded."""
    kr, kb = (0.2627, 0.0593) if tags["space"] == "bt2020nc" else (0.2126, 0.0722)
    y = kr * rgb[..., 0] + (1 - kr - kb) * rgb[..., 1] + kb * rgb[..., 2]
    return y * ((1 << bits) - 1) if tags["range"] == "pc" else (16 + 219 * y) * (1 << (bits - 8))


def _check_kept(src: Path, out: Path, case: str) -> None:
    """Colour tags (as stated by the stream and as read), bit depth, audio and subtitles of ``src``."""
    _, deep, names, tags = CASES[case]
    assert probe(src).color == names  # the clip is what the case says
    info = probe(out)
    assert info.color == names
    assert _stream_tags(out) == dict(zip(("primaries", "trc", "space", "range"), tags, strict=True))
    assert info.bit_depth == (16 if deep else 8)
    if deep:
        assert info.pix_fmt == "yuv420p10le"
    assert _audio(out) == _audio(src)  # copied packet for packet
    codec, language, cues = _cues(out)
    assert (codec, language) == _cues(src)[:2] and language == "fra"
    assert cues == _cues(src)[2] and len(cues) == len(SUBTITLES)


def _check_luma(out: Path, reference: list[np.ndarray], case: str, every: int = 1) -> None:
    """The luma the video stores (frames ``::every``) is that of the ``reference`` frames (float RGB)
    by the matrix and range of the case: the pixels were converted with the tags written. Luma, as
    4:2:0 keeps it at full resolution; x264 codes 10-bit lossily even at crf 0, hence the means.

    A 10-bit output also holds 10-bit values: its luma is closer to the reference than to the
    reference rounded to 8 bits, and most codes are not multiples of 4 (8-bit values shifted).
    """
    _, deep, names, _ = CASES[case]
    fmt, planes = _luma(out)
    assert fmt == "yuv420p10le" if deep else fmt in ("yuv420p", "yuvj420p")  # (yuvj: H.264's full range)
    bits = 10 if deep else 8
    stored = np.stack(planes[::every])
    assert len(stored) == len(reference)
    exact = np.stack([_expected_luma(r, names, bits) for r in reference])
    err = stored - exact
    assert abs(err.mean()) < 0.1 * (1 << (bits - 8)), err.mean()  # no bias, no scale (codes)
    assert np.abs(err).mean() < (1.5 if deep else 0.6), np.abs(err).mean()
    if deep:
        rounded = np.stack([_expected_luma(np.round(r * 255) / 255, names, bits) for r in reference])
        err8 = np.abs(stored - rounded).mean()
        assert np.abs(err).mean() < 0.93 * err8, (np.abs(err).mean(), err8)
        assert np.mean(stored % 4 != 0) > 0.6


# ----------------------------------------------------------------------------- restore


@pytest.mark.parametrize("case", list(CASES))
def test_restore_keeps_colour_bit_depth_audio_and_subtitles(case, clips, tiny_sr_weights, tmp_path):
    src = clips[case]
    out = tmp_path / f"out{src.suffix}"
    rvrt.restore(src, out, weights=tiny_sr_weights, crf=0, **OPTS)
    _check_kept(src, out, case)

    # the pixels were converted by the tags written: the luma stored is the restored frames' by them
    reference = [tensor_to_frame(f, 16).astype(np.float64) / 65535
                 for _, f in rvrt.restore_iter(src, weights=tiny_sr_weights, **OPTS)]  # fmt: skip
    assert len(reference) == N
    _check_luma(out, reference, case)


def test_restore_writes_16_bit_rgb_exactly_with_primaries_and_transfer(clips, tiny_sr_weights, tmp_path):
    # FFV1 is lossless: the video holds exactly the restored 16-bit frames, not 8-bit ones widened
    src = clips["hlg-bt2020-full-10bit-mkv"]
    out = tmp_path / "out.mkv"
    rvrt.restore(src, out, weights=tiny_sr_weights, codec="ffv1", **OPTS)
    info = probe(out)
    assert info.pix_fmt == "gbrp16le" and info.bit_depth == 16
    assert info.color == {"primaries": "bt2020", "trc": "arib-std-b67", "space": "gbr", "range": "pc"}
    restored = [tensor_to_frame(f, 16) for _, f in rvrt.restore_iter(src, weights=tiny_sr_weights, **OPTS)]
    with open_reader(out) as reader:
        written = [f.data for f in reader]
    assert len(written) == N and all(np.array_equal(a, b) for a, b in zip(written, restored, strict=True))
    assert np.mean(np.stack(written) % 257 != 0) > 0.9
    assert _audio(out) == _audio(src) and _cues(out)[2] == _cues(src)[2]


def test_restore_command_keeps_hlg_10_bit_audio_and_subtitles(clips, tiny_sr_weights, tmp_path):
    # in two segments joined at the end: the join keeps the tags, the depth and the copied streams
    case = "hlg-bt2020-full-10bit-mkv"
    src, out = clips[case], tmp_path / "out.mkv"
    argv = ["restore", str(src), "-o", str(out), "--weights", str(tiny_sr_weights), "--device", "cpu",
            "--scene-cuts", "off", "--crf", "0", "--segment-frames", "2", "-q"]  # fmt: skip
    assert main(argv) == 0
    _check_kept(src, out, case)
    reference = [tensor_to_frame(f, 16).astype(np.float64) / 65535
                 for _, f in rvrt.restore_iter(src, weights=tiny_sr_weights, **OPTS)]  # fmt: skip
    _check_luma(out, reference, case)


# ----------------------------------------------------------------------------- interpolate


@pytest.mark.parametrize("case", list(CASES))
def test_interpolate_keeps_colour_bit_depth_audio_and_subtitles(case, clips, tiny_vrt, tmp_path):
    cfg, weights = tiny_vrt["vfi"]
    src = clips[case]
    out = tmp_path / f"out{src.suffix}"
    rvrt.interpolate(src, out, model=cfg, weights=weights, crf=0, **OPTS)
    _check_kept(src, out, case)
    # exactly twice the rate (Matroska stores 1/59.94 s as 16683333 ns, which FFmpeg reads as 19001/317)
    assert (
        probe(out).fps == 2 * probe(src).fps
        if src.suffix == ".mp4"
        else abs(probe(out).fps - 2 * probe(src).fps) < 1e-4
    )

    # input frames are kept (output frames 0, 2, 4): the luma stored is the input frames' by the tags
    _check_luma(out, _rgb(src), case, every=2)


def test_interpolate_writes_16_bit_rgb_exactly_with_primaries_and_transfer(clips, tiny_vrt, tmp_path):
    # FFV1 is lossless: the input frames it keeps are the 16-bit input frames, not 8-bit ones widened
    cfg, weights = tiny_vrt["vfi"]
    src = clips["hlg-bt2020-full-10bit-mkv"]
    out = tmp_path / "out.mkv"
    rvrt.interpolate(src, out, model=cfg, weights=weights, codec="ffv1", **OPTS)
    info = probe(out)
    assert info.pix_fmt == "gbrp16le" and info.bit_depth == 16
    assert info.color == {"primaries": "bt2020", "trc": "arib-std-b67", "space": "gbr", "range": "pc"}
    with open_reader(src) as reader:
        given = [f.data for f in reader]
    with open_reader(out) as reader:
        written = [f.data for f in reader]
    assert len(written) == 2 * N
    assert all(np.array_equal(a, b) for a, b in zip(written[::2], given, strict=True))
    assert np.mean(np.stack(written) % 257 != 0) > 0.9
    assert _audio(out) == _audio(src) and _cues(out)[2] == _cues(src)[2]


def test_interpolate_command_keeps_hlg_10_bit_audio_and_subtitles(clips, tiny_vrt, tmp_path):
    cfg, weights = tiny_vrt["vfi"]
    case = "hlg-bt2020-limited-10bit-mp4"
    src, out = clips[case], tmp_path / "out.mp4"
    argv = ["interpolate", str(src), "-o", str(out), "-m", str(cfg), "--weights", str(weights), "--device", "cpu",
            "--scene-cuts", "off", "-q"]  # fmt: skip
    assert main(argv) == 0
    _check_kept(src, out, case)
    _, planes = _luma(out)
    assert len(planes) == 2 * N and np.mean(np.stack(planes) % 4 != 0) > 0.6
