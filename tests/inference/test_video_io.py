"""Video and frame-folder input/output: probing, streaming reads, writers, round trips, errors, resume."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from media import NTSC, H, W
from media import make_video as _make_video
from media import smooth_frames as _smooth_frames
from rvrt.errors import InputError, OutputError
from rvrt.media import MediaInfo, natural_key, open_reader, open_writer, probe
from rvrt.media.images import encode_png, read_image, write_png

N = 12


def _packets(path: Path, kind: str) -> list[tuple]:
    with av.open(str(path)) as container:
        stream = next(s for s in container.streams if s.type == kind)
        tb = stream.time_base
        return [(float(p.pts * tb), float(p.duration * tb), bytes(p)) for p in container.demux(stream) if p.size]


def _frames_like(width: int, height: int, n: int, names=None) -> MediaInfo:
    names = tuple(names or (f"f{i}" for i in range(n)))
    return MediaInfo("frames", width, height, None, n, 8, names, {}, None, "synthetic")


def _read_all(source, **kw) -> list:
    with open_reader(source, **kw) as reader:
        return list(reader)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """12 frames 64x48 H.264 at 30000/1001 fps, BT.709 tags, with an AAC audio stream."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    return _make_video(path, _smooth_frames(N), audio=True, tags=(1, 1, 1, 1))


def _tiny_pngs(folder: Path, names, size=(8, 6), dtype=np.uint8) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(names))
    top = 65535 if dtype == np.uint16 else 255
    arrays = [rng.integers(0, top + 1, (size[1], size[0], 3), dtype=dtype) for _ in names]
    for name, arr in zip(names, arrays, strict=True):
        write_png(folder / f"{name}.png", arr)
    return arrays


# ------------------------------------------------------------------------------------------- reading


def test_natural_key_orders_numbers_by_value():
    names = ["frame10", "frame2", "Frame1", "frame02", "frame1b", "a", "frame100"]
    assert sorted(names, key=natural_key) == [
        "a",
        "Frame1",
        "frame1b",
        "frame02",
        "frame2",
        "frame10",
        "frame100",
    ]
    assert sorted(["Frame 010.png", "Frame 009.png", "Frame 1.png"], key=natural_key)[0] == "Frame 1.png"


def test_probe_video(clip):
    info = probe(clip)
    assert (info.kind, info.width, info.height, info.bit_depth) == ("video", W, H, 8)
    assert info.fps == NTSC and isinstance(info.fps, Fraction)
    assert info.frame_count == N
    assert info.names is None and info.channels_note is None
    assert info.color == {"primaries": "bt709", "trc": "bt709", "space": "bt709", "range": "tv"}
    assert info.codec == "h264" and info.pix_fmt == "yuv420p"


def test_read_video_streams_frames_and_start_skips(clip):
    frames = _read_all(clip)
    assert [f.index for f in frames] == list(range(N))
    assert frames[3].name == "00000003"
    assert frames[0].data.shape == (H, W, 3) and frames[0].data.dtype == np.uint8
    original = _smooth_frames(N)
    assert np.abs(frames[5].data.astype(int) - original[5]).mean() < 3  # lossy H.264 + 4:2:0
    tail = _read_all(clip, start=8)
    assert [f.index for f in tail] == [8, 9, 10, 11]
    assert all(np.array_equal(a.data, b.data) for a, b in zip(tail, frames[8:], strict=True))
    assert _read_all(clip, start=50) == []


def test_reader_can_stop_early_and_iterate_again(clip):
    with open_reader(clip) as reader:
        first = next(iter(reader))
        again = next(iter(reader))
    assert np.array_equal(first.data, again.data) and reader.remaining == N


def test_untagged_video_matrix_follows_size(tmp_path):
    # an untagged SD stream converted with BT.601 reads back right; players assume the same
    frames = _smooth_frames(2)
    path = _make_video(tmp_path / "sd.mkv", frames, codec="ffv1", pix_fmt="yuv444p")
    info = probe(path)
    assert "space" not in info.color
    assert np.abs(_read_all(path)[0].data.astype(int) - frames[0]).mean() < 1


def test_video_10bit_reads_as_uint16(tmp_path):
    frames = _smooth_frames(2)
    path = _make_video(tmp_path / "ten.mp4", frames, pix_fmt="yuv420p10le", options={"qp": "0"})
    info = probe(path)
    assert info.bit_depth == 16 and info.pix_fmt == "yuv420p10le"
    data = _read_all(path)[0].data
    assert data.dtype == np.uint16 and data.max() > 255
    assert np.abs(data / 257.0 - frames[0]).mean() < 3


def test_gray_video_expanded_and_noted(tmp_path, caplog):
    rng = np.random.default_rng(1)
    gray = [rng.integers(0, 256, (H, W), dtype=np.uint8) for _ in range(2)]
    path = _make_video(tmp_path / "gray.mkv", gray, codec="ffv1", pix_fmt="gray", in_fmt="gray")
    with caplog.at_level(logging.WARNING):
        frames = _read_all(path)
    assert probe(path).channels_note == "grayscale converted to RGB"
    assert "grayscale converted to RGB" in caplog.text
    assert np.array_equal(frames[1].data, np.repeat(gray[1][:, :, None], 3, axis=2))


def test_rotated_video_is_read_upright(tmp_path):
    arr = np.zeros((H, W, 3), np.uint8)
    arr[:4, :10] = 255  # a bar in the top-left corner of the stored picture
    path = _make_video(tmp_path / "rot.mp4", [arr] * 2, pix_fmt="yuv444p", rotation=90)
    info = probe(path)
    assert (info.width, info.height, info.rotation) == (H, W, 90)
    data = _read_all(path)[0].data
    assert data.shape == (W, H, 3)
    rows, cols = np.nonzero(data[..., 0] > 128)
    # 90 degrees counter-clockwise takes the top-left corner to the bottom-left
    assert rows.min() >= W - 10 and cols.max() < 4


def test_frames_folder_natural_order_and_16bit(tmp_path):
    names = ["frame10", "frame2", "frame1", "frame9"]
    arrays = dict(zip(names, _tiny_pngs(tmp_path / "seq", names, dtype=np.uint16), strict=True))
    (tmp_path / "seq" / "notes.txt").write_text("not a frame")
    info = probe(tmp_path / "seq")
    assert info.kind == "frames" and info.bit_depth == 16 and info.fps is None
    assert info.names == ("frame1", "frame2", "frame9", "frame10") and info.frame_count == 4
    frames = _read_all(tmp_path / "seq")
    assert [f.name for f in frames] == list(info.names)
    for f in frames:
        assert f.data.dtype == np.uint16 and np.array_equal(f.data, arrays[f.name])
    assert [f.name for f in _read_all(tmp_path / "seq", start=2)] == ["frame9", "frame10"]


def test_glob_pattern(tmp_path):
    _tiny_pngs(tmp_path, [f"img{i}" for i in (1, 2, 11)])
    _tiny_pngs(tmp_path, ["other"])
    info = probe(str(tmp_path / "img*.png"))
    assert info.names == ("img1", "img2", "img11")


def test_gray_rgba_palette_pngs_converted_and_noted(tmp_path, caplog):
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (6, 8), dtype=np.uint8)
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(gray, "L").save(folder / "a1.png")
    Image.fromarray(np.dstack([rgb, gray]), "RGBA").save(folder / "a2.png")
    Image.fromarray(np.dstack([gray, gray]), "LA").save(folder / "a3.png")
    Image.fromarray(rgb).convert("P").save(folder / "a4.png")
    gray16 = rng.integers(0, 65536, (6, 8), dtype=np.uint16)
    Image.fromarray(gray16).save(folder / "b.png")
    with caplog.at_level(logging.WARNING):
        with open_reader(folder) as reader:
            frames = list(reader)
    assert reader.info.channels_note == "grayscale converted to RGB; alpha channel dropped"
    assert "alpha channel dropped" in caplog.text
    assert reader.info.bit_depth == 16  # b.png is 16-bit, so every frame comes as uint16
    assert np.array_equal(frames[0].data, np.repeat(gray[:, :, None], 3, 2).astype(np.uint16) * 257)
    assert np.array_equal(frames[1].data, rgb.astype(np.uint16) * 257)
    assert np.array_equal(frames[2].data, frames[0].data)
    assert np.array_equal(frames[4].data, np.repeat(gray16[:, :, None], 3, 2))
    palette, _, _ = read_image(folder / "a4.png")
    assert np.array_equal(palette, np.asarray(Image.open(folder / "a4.png").convert("RGB")))


def test_16bit_tiff_and_rgba64_png_keep_16_bits(tmp_path):
    rng = np.random.default_rng(3)
    rgb48 = rng.integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    rgba64 = rng.integers(0, 65536, (5, 7, 4), dtype=np.uint16)
    for name, arr, fmt, codec, pix in (("t.tif", rgb48, "rgb48le", "tiff", "rgb48le"),
                                       ("p.png", rgba64, "rgba64le", "png", "rgba64be")):  # fmt: skip
        ctx = av.CodecContext.create(codec, "w")
        ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 7, 5, pix, Fraction(1, 25)
        packets = list(ctx.encode(av.VideoFrame.from_ndarray(arr, format=fmt))) + list(ctx.encode(None))
        (tmp_path / name).write_bytes(b"".join(bytes(p) for p in packets))
        data, header, notes = read_image(tmp_path / name)
        assert header.bit_depth == 16 and data.dtype == np.uint16
        assert np.array_equal(data, arr[..., :3])
    assert notes == {"alpha channel dropped"}


def test_png_encoder_matches_pillow_and_av(tmp_path):
    rng = np.random.default_rng(4)
    rgb8 = rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)
    rgb16 = rng.integers(0, 65536, (9, 13, 3), dtype=np.uint16)
    (tmp_path / "a.png").write_bytes(encode_png(rgb8))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), rgb8)
    (tmp_path / "b.png").write_bytes(encode_png(rgb16, compress_level=9))
    with av.open(str(tmp_path / "b.png")) as container:
        assert np.array_equal(next(container.decode(video=0)).to_ndarray(), rgb16)
    with pytest.raises(ValueError, match="expected"):
        encode_png(rgb8[..., :2])


# -------------------------------------------------------------------------------------------- errors


def test_input_errors_have_clear_messages(tmp_path):
    with pytest.raises(InputError, match="input not found"):
        probe(tmp_path / "nope.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no frames"):
        probe(tmp_path / "empty")
    with pytest.raises(InputError, match="no image frames match"):
        probe(str(tmp_path / "*.png"))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="cannot open .* as a video"):
        probe(tmp_path / "notes.txt")
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    with pytest.raises(InputError, match="broken.mp4"):
        probe(tmp_path / "broken.mp4")


def test_audio_only_file_is_not_a_video(tmp_path):
    with av.open(str(tmp_path / "tone.m4a"), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=48000)
        frame = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = 48000, 0
        for packet in list(stream.encode(frame)) + list(stream.encode(None)):
            out.mux(packet)
    with pytest.raises(InputError, match="has no video stream"):
        probe(tmp_path / "tone.m4a")


def test_corrupt_and_mismatched_frames(tmp_path):
    folder = tmp_path / "seq"
    _tiny_pngs(folder, ["f1", "f2"])
    data = (folder / "f2.png").read_bytes()
    (folder / "f2.png").write_bytes(data[: len(data) // 2])  # truncated IDAT: header fine, pixels not
    with pytest.raises(InputError, match="f2.png"):
        _read_all(folder)
    (folder / "f2.png").write_bytes(b"garbage")
    with pytest.raises(InputError, match="cannot read image .*f2.png"):
        probe(folder)
    _tiny_pngs(folder, ["f2"], size=(9, 6))
    with pytest.raises(InputError, match="differ in size: f1.png is 8x6 but f2.png is 9x6"):
        probe(folder)
    _tiny_pngs(folder, ["f2"])
    Image.new("RGB", (8, 6)).save(folder / "f1.jpg")
    with pytest.raises(InputError, match="same name"):
        probe(folder)


# ------------------------------------------------------------------------------------------- writing


def test_video_frames_video_round_trip_keeps_rate_audio_tags(clip, tmp_path):
    info = probe(clip)
    with open_writer(tmp_path / "frames", like=info, width=W, height=H) as writer:
        for frame in _read_all(clip):
            writer.write(frame.data, name=frame.name)
    frames_info = probe(tmp_path / "frames")
    assert frames_info.frame_count == N and frames_info.names[0] == "00000000"
    pngs = _read_all(tmp_path / "frames")
    with open_writer(tmp_path / "back.mp4", like=info, width=W, height=H) as writer:
        for frame in pngs:
            writer.write(frame.data)
    back = probe(tmp_path / "back.mp4")
    assert back.frame_count == N and back.fps == NTSC and back.color == info.color
    assert _packets(tmp_path / "back.mp4", "audio") == _packets(clip, "audio")
    decoded = _read_all(tmp_path / "back.mp4")
    assert len(decoded) == N
    assert np.abs(decoded[7].data.astype(int) - pngs[7].data).mean() < 3  # crf 18 on a tiny busy frame
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back.mp4", "frames"]  # no temp files left
    assert (tmp_path / "back.mp4").stat().st_mode & 0o777 == (
        tmp_path / "frames" / "00000000.png"
    ).stat().st_mode & 0o777


def test_mkv_and_mov_copy_audio_webm_skips_it(clip, tmp_path, caplog):
    info = probe(clip)
    frames = [f.data for f in _read_all(clip)][:4]
    for ext in (".mkv", ".mov", ".webm"):
        with (
            caplog.at_level(logging.WARNING),
            open_writer(tmp_path / f"o{ext}", like=info, width=W, height=H) as w,
        ):
            for data in frames:
                w.write(data)
        got = probe(tmp_path / f"o{ext}")
        assert got.fps == NTSC and got.color == info.color
        assert len(_read_all(tmp_path / f"o{ext}")) == 4
    assert "o.webm: cannot copy audio stream #1 (aac) into this container" in caplog.text
    with av.open(str(tmp_path / "o.mkv")) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]
    with av.open(str(tmp_path / "o.webm")) as c:
        assert [s.type for s in c.streams] == ["video"]


def test_partial_write_trims_audio_to_the_video(clip, tmp_path):
    info = probe(clip)
    with open_writer(tmp_path / "half.mp4", like=info, width=W, height=H) as writer:
        for frame in _read_all(clip)[:6]:
            writer.write(frame.data)
    audio = _packets(tmp_path / "half.mp4", "audio")
    assert 0 < len(audio) < len(_packets(clip, "audio"))
    assert max(start for start, _, _ in audio) < 6 / NTSC


def test_lossless_ffv1_8_and_16_bit(tmp_path):
    rng = np.random.default_rng(5)
    like = _frames_like(20, 10, 3)
    for depth, dtype, top in ((8, np.uint8, 256), (16, np.uint16, 65536)):
        frames = [rng.integers(0, top, (10, 20, 3), dtype=dtype) for _ in range(3)]
        path = tmp_path / f"l{depth}.mkv"
        with open_writer(path, like=like, width=20, height=10, codec="ffv1", bit_depth=depth) as writer:
            for data in frames:
                writer.write(data)
        info = probe(path)
        assert info.fps == 25 and info.bit_depth == depth
        assert all(np.array_equal(a, b.data) for a, b in zip(frames, _read_all(path), strict=True))


def test_lossless_h264_round_trip_has_no_colour_shift(tmp_path):
    # catches a biased YUV<->RGB conversion, chroma siting that differs between writer and decoder,
    # and swscale's 16-bit scale (white would come back as 65283)
    like = _frames_like(W, H, 3)
    frames = _smooth_frames(3)
    frames[2][:8] = 255
    for depth in (8, 16):
        data = [f.astype(np.uint16) * 257 if depth == 16 else f for f in frames]
        path = tmp_path / f"x{depth}.mkv"
        with open_writer(path, like=like, width=W, height=H, crf=0, bit_depth=depth) as writer:
            for d in data:
                writer.write(d)
        assert probe(path).pix_fmt == ("yuv420p10le" if depth == 16 else "yuv420p")
        back = [f.data.astype(np.float64) / (257 if depth == 16 else 1) for f in _read_all(path)]
        diff = back[1] - frames[1]
        assert np.abs(diff).mean() < 0.7
        assert np.all(np.abs(diff.reshape(-1, 3).mean(0)) < 0.4)
        # white stays white (away from the coloured rows); x264 codes 10-bit lossily even at crf 0,
        # so a few samples come back one 10-bit code below white (253.7)
        assert back[2][:4].min() > 253.5 and back[2][:4].mean() > 254.8


def test_png_folder_round_trip_is_exact_at_16_bit(tmp_path):
    rng = np.random.default_rng(6)
    frames = [rng.integers(0, 65536, (10, 20, 3), dtype=np.uint16) for _ in range(3)]
    like = _frames_like(20, 10, 3, names=["x1", "x2", "x10"])
    with open_writer(tmp_path / "out", like=like, width=20, height=10, bit_depth=16) as writer:
        for data in frames:
            writer.write(data)  # names default to like.names
    back = _read_all(tmp_path / "out")
    assert [f.name for f in back] == ["x1", "x2", "x10"]
    assert all(np.array_equal(a, b.data) for a, b in zip(frames, back, strict=True))
    with open_writer(tmp_path / "out8", like=like, width=20, height=10, bit_depth=8) as writer:
        writer.write(frames[0])
    assert np.array_equal(_read_all(tmp_path / "out8")[0].data, np.round(frames[0] / 257).astype(np.uint8))


def test_odd_size_is_padded_for_yuv420p(tmp_path, caplog):
    like = _frames_like(63, 47, 2)
    frames = _smooth_frames(2, 63, 47)
    with (
        caplog.at_level(logging.WARNING),
        open_writer(tmp_path / "odd.mp4", like=like, width=63, height=47) as w,
    ):
        for data in frames:
            w.write(data)
    assert "63x47 -> 64x48" in caplog.text
    decoded = _read_all(tmp_path / "odd.mp4")[1].data
    assert decoded.shape == (48, 64, 3)
    assert np.abs(decoded[:47, :63].astype(int) - frames[1]).mean() < 3
    assert np.abs(decoded[47].astype(int) - decoded[46]).mean() < 2  # the repeated row


def test_gif_and_10bit_outputs(tmp_path):
    like = _frames_like(W, H, 3)
    frames = _smooth_frames(3)
    with open_writer(tmp_path / "a.gif", like=like, width=W, height=H, fps=10) as writer:
        for data in frames:
            writer.write(data)
    gif = probe(tmp_path / "a.gif")
    assert gif.codec == "gif" and gif.frame_count == 3 and gif.channels_note is None
    assert np.abs(_read_all(tmp_path / "a.gif")[1].data.astype(int) - frames[1]).mean() < 8
    with open_writer(tmp_path / "ten.mkv", like=like, width=W, height=H, bit_depth=16) as writer:
        for data in frames:
            writer.write(data.astype(np.uint16) * 257)
    ten = probe(tmp_path / "ten.mkv")
    assert ten.pix_fmt == "yuv420p10le" and ten.bit_depth == 16
    assert ten.color == {"primaries": "bt709", "trc": "bt709", "space": "bt709", "range": "tv"}


def test_refuses_to_overwrite_unless_asked(clip, tmp_path):
    info = probe(clip)
    target = tmp_path / "out.mp4"
    target.write_bytes(b"precious")
    with pytest.raises(OutputError, match="already exists; pass overwrite"):
        open_writer(target, like=info, width=W, height=H)
    assert target.read_bytes() == b"precious"
    with open_writer(target, like=info, width=W, height=H, overwrite=True) as writer:
        writer.write(_smooth_frames(1)[0])
    assert probe(target).frame_count == 1
    folder = tmp_path / "frames"
    _tiny_pngs(folder, ["old1", "old2"])
    like = _frames_like(8, 6, 1, names=["new"])
    with pytest.raises(OutputError, match="not empty; pass overwrite"):
        open_writer(folder, like=like, width=8, height=6)
    with open_writer(folder, like=like, width=8, height=6, overwrite=True) as writer:
        writer.write(np.zeros((6, 8, 3), np.uint8))
    # overwrite writes into the folder; files it does not write are not its to delete
    assert sorted(p.name for p in folder.iterdir()) == ["new.png", "old1.png", "old2.png"]
    with pytest.raises(InputError, match="'.xyz' is not a video type"):
        open_writer(tmp_path / "out.xyz", like=like, width=8, height=6)
    with pytest.raises(InputError, match="looks like an image"):
        open_writer(tmp_path / "x.png", like=like, width=8, height=6)
    with pytest.raises(InputError, match="not available"):
        open_writer(tmp_path / "y.mp4", like=like, width=8, height=6, codec="no-such-codec")


def test_abort_leaves_nothing_that_looks_complete(clip, tmp_path):
    info = probe(clip)
    with pytest.raises(RuntimeError, match="boom"):
        with open_writer(tmp_path / "v.mp4", like=info, width=W, height=H) as writer:
            writer.write(_smooth_frames(1)[0])
            assert any(p.name.startswith(".v.") for p in tmp_path.iterdir())  # the temp file exists meanwhile
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="no frames were written"):
        with open_writer(tmp_path / "empty.mp4", like=info, width=W, height=H):
            pass
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError):
        with open_writer(tmp_path / "never", like=info, width=W, height=H):
            raise RuntimeError
    assert list(tmp_path.iterdir()) == []  # a folder it created and left empty is removed


def test_bad_encoder_settings_are_input_errors(tmp_path):
    like = _frames_like(W, H, 1)
    with pytest.raises(InputError, match="cannot write yuv422p10be|unknown pixel format"):
        open_writer(tmp_path / "a.mp4", like=like, width=W, height=H, pix_fmt="yuv422p10be")
    with pytest.raises(InputError, match="--preset for libx264 must be one of ultrafast"):
        open_writer(tmp_path / "a.mp4", like=like, width=W, height=H, preset="no-such-preset")
    with pytest.raises(InputError, match="--crf for libx264 must be 0..51"):
        open_writer(tmp_path / "a.mp4", like=like, width=W, height=H, crf=60)
    with pytest.raises(InputError, match="--crf for libvpx-vp9 must be 0..63"):
        open_writer(tmp_path / "a.webm", like=like, width=W, height=H, crf=64)
    with pytest.raises(InputError, match="bit_depth must be 8 or 16"):
        open_writer(tmp_path / "a.mp4", like=like, width=W, height=H, bit_depth=10)
    assert list(tmp_path.iterdir()) == []
