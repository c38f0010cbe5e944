"""``rvrt.restore`` / ``restore_iter`` with VRT models from config + weights files, and space-time SR."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import rvrt
from rvrt.errors import InputError
from rvrt.media import open_reader, probe
from rvrt.media.images import read_image, write_png

# the README's test commands of main_test_vrt.py (tile T H W, overlap 2 20 20 for all of them)
OFFICIAL_TILES = {
    "vrt.sr_bi_reds_6f": (40, 128, 128),
    "vrt.sr_bi_reds_16f": (40, 128, 128),
    "vrt.sr_bi_vimeo": (32, 128, 128),
    "vrt.sr_bd_vimeo": (32, 128, 128),
    "vrt.deblur_dvd": (12, 256, 256),
    "vrt.deblur_gopro": (18, 192, 192),
    "vrt.deblur_reds": (12, 256, 256),
    "vrt.denoise_davis": (12, 256, 256),
}


def _smooth(n: int, h: int, w: int) -> list[np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    return [np.dstack([128 + 100 * np.sin((xx + 2 * t) / 3), 128 + 90 * np.cos((yy - t) / 2), 60 + 9 * xx + 7 * yy])
            .clip(0, 255).round().astype(np.uint8) for t in range(n)]  # fmt: skip


@pytest.fixture(scope="module")
def lq(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    folder = tmp_path_factory.mktemp("lq") / "seq"
    folder.mkdir()
    frames = _smooth(4, 8, 12)
    for i, f in enumerate(frames):
        write_png(folder / f"im{i + 1}.png", f)
    return folder, frames


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """6 frames 12x8 at 24000/1001 fps with an AAC audio stream."""
    path = tmp_path_factory.mktemp("st") / "lq.mkv"
    rate = Fraction(24000, 1001)
    frames = _smooth(6, 8, 12)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 12, 8, "bgr0"
        astream = out.add_stream("aac", rate=48000)
        for i, arr in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24").reformat(format="bgr0")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        total = int(48000 * len(frames) / rate)
        for pos in range(0, total, 1024):
            chunk = np.full((2, min(1024, total - pos)), 0.1, np.float32)
            aframe = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            aframe.sample_rate, aframe.pts = 48000, pos
            for packet in astream.encode(aframe):
                out.mux(packet)
        for packet in astream.encode():
            out.mux(packet)
    return path


def _as_float(frames: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255


def _uint8(frame: torch.Tensor) -> np.ndarray:
    return frame.clamp(0, 1).mul(255).round().permute(1, 2, 0).numpy().astype(np.uint8)


def test_default_tiles_are_the_official_ones():
    for name, tile in OFFICIAL_TILES.items():
        spec = rvrt.get_spec(name)
        assert (spec.tile, spec.tile_overlap) == (tile, (2, 20, 20)), name  # rvrt eval's official tiles
    assert sorted(OFFICIAL_TILES) == sorted(n for n in rvrt.list_models("vrt") if rvrt.get_spec(n).task != "vfi")


def test_restore_with_a_vrt_config_and_weights_file(tiny_vrt, lq, tmp_path):
    folder, frames = lq
    cfg, weights = tiny_vrt["sr"]
    summary = rvrt.restore(folder, tmp_path / "out", model=cfg, weights=weights, device="cpu", progress=False)
    assert summary.frames == 4 and summary.model == "vrt:micro_sr"
    model = rvrt.create_model(cfg, weights=weights)
    with torch.no_grad():
        expected = model(_as_float(frames)[None])[0]
    for i in range(4):
        saved = read_image(tmp_path / "out" / f"im{i + 1}.png")[0]
        assert saved.shape == (32, 48, 3)
        assert np.abs(saved.astype(int) - _uint8(expected[i]).astype(int)).max() <= 1


def test_restore_vrt_in_temporal_and_spatial_tiles(tiny_vrt, lq):
    folder, frames = lq
    cfg, weights = tiny_vrt["deblur"]
    out = list(rvrt.restore_iter(folder, model=cfg, weights=weights, device="cpu", tile=(3, 0, 8),
                                 tile_overlap=(1, 0, 4)))  # fmt: skip
    assert [i for i, _ in out] == [0, 1, 2, 3]
    got = torch.stack([f for _, f in out])

    # by hand: windows of frames 0-2 and 1-3, tiles of columns 0-8 and 4-12, each a direct model call,
    # blended with raised-cosine weights over the overlaps (2 frames, 4 columns)
    model = rvrt.create_model(cfg, weights=weights)
    x = _as_float(frames)
    rise2, rise4 = (torch.sin(0.5 * torch.pi * (torch.arange(n, dtype=torch.float64) + 0.5) / n) ** 2 for n in (2, 4))
    one = torch.ones(1, dtype=torch.float64)
    fade_t = {0: torch.cat([one, rise2.flip(0)]), 1: torch.cat([rise2, one])}
    fade_x = {0: torch.cat([one.expand(4), rise4.flip(0)]), 4: torch.cat([rise4, one.expand(4)])}
    num = torch.zeros(4, 3, 8, 12, dtype=torch.float64)
    den = torch.zeros(4, 1, 1, 12, dtype=torch.float64)
    with torch.no_grad():
        for t0, wt in fade_t.items():
            for x0, wx in fade_x.items():
                y = model(x[None, t0 : t0 + 3, :, :, x0 : x0 + 8])[0].double()
                weight = wt.view(3, 1, 1, 1) * wx.view(1, 1, 1, 8)
                num[t0 : t0 + 3, ..., x0 : x0 + 8] += weight * y
                den[t0 : t0 + 3, ..., x0 : x0 + 8] += weight
        whole = model(x[None])[0].clamp(0, 1)
    expected = (num / den).clamp(0, 1).float()
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)  # measured: 6e-8 (float32 sums)
    # and not far from the untiled output: tiles of 8 x 8 pixels see other borders, so the micro VRT
    # (random weights) differs by a mean 0.0363 (0.166 of what it changes); bound: + 15 %.
    # (averaging without the cross-fade: 0.054)
    diff = (got - whole).abs().mean().item()
    assert diff < 0.042, diff


def test_restore_vrt_denoising_takes_sigma(tiny_vrt, lq):
    folder, frames = lq
    cfg, weights = tiny_vrt["denoise"]
    with pytest.raises(InputError, match=r"non-blind denoiser: pass sigma \(--sigma\)"):
        list(rvrt.restore_iter(folder, model=cfg, weights=weights, device="cpu"))
    out = [f for _, f in rvrt.restore_iter(folder, model=cfg, weights=weights, device="cpu", sigma=15)]
    model = rvrt.create_model(cfg, weights=weights)
    x = _as_float(frames)
    with torch.no_grad():
        expected = model(torch.cat([x, torch.full_like(x[:, :1], 15 / 255)], 1)[None])[0].clamp(0, 1)
    torch.testing.assert_close(torch.stack(out), expected, rtol=0, atol=1e-5)


def test_space_time_sr_restores_then_interpolates(tiny_vrt, video, tmp_path):
    sr, sr_w = tiny_vrt["sr"]
    vfi, vfi_w = tiny_vrt["vfi"]
    opts = dict(model=sr, weights=sr_w, device="cpu", interpolate=True, vfi_model=vfi, vfi_weights=vfi_w)
    summary = rvrt.restore(video, tmp_path / "st.mp4", progress=False, **opts)
    info = probe(tmp_path / "st.mp4")
    assert (info.width, info.height) == (48, 32) and info.fps == Fraction(48000, 1001)
    assert summary.frames == 12 and summary.frame_rate == Fraction(48000, 1001)
    assert summary.model == "vrt:micro_sr + vrt:micro_vfi"
    with open_reader(tmp_path / "st.mp4") as reader:
        assert sum(1 for _ in reader) == 12
    with av.open(str(tmp_path / "st.mp4")) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]

    # the same as chaining the two generators by hand: x4 first, then frame interpolation
    restored = [f for _, f in rvrt.restore_iter(video, model=sr, weights=sr_w, device="cpu")]
    chained = [f for _, f in rvrt.interpolate_iter(restored, model=vfi, weights=vfi_w, device="cpu")]
    together = [f for _, f in rvrt.restore_iter(video, **opts)]
    assert len(together) == len(chained) == 12
    for a, b in zip(together, chained, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    for i, f in enumerate(restored):
        torch.testing.assert_close(together[2 * i], f, rtol=0, atol=1e-6)


def test_space_time_sr_resumes_into_frames(tiny_vrt, video, tmp_path):
    sr, sr_w = tiny_vrt["sr"]
    vfi, vfi_w = tiny_vrt["vfi"]
    opts = dict(model=sr, weights=sr_w, device="cpu", interpolate=True, vfi_model=vfi, vfi_weights=vfi_w,
                tile=(3, 0, 0), tile_overlap=(1, 0, 0), progress=False)  # fmt: skip
    out = tmp_path / "frames"
    rvrt.restore(video, out, **opts)
    before = {p.name: p.read_bytes() for p in out.glob("*.png")}
    assert sorted(before) == [f"{i:08d}.png" for i in range(12)]
    for name in sorted(before)[7:]:
        (out / name).unlink()
    summary = rvrt.restore(video, out, resume=True, **opts)
    assert summary.resumed_from == 7 and summary.frames == 5
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == before


def test_space_time_and_model_errors(tiny_vrt, lq, tmp_path):
    folder, _ = lq
    sr, sr_w = tiny_vrt["sr"]
    vfi, vfi_w = tiny_vrt["vfi"]
    with pytest.raises(InputError, match="interpolates frames: use `rvrt interpolate`"):
        rvrt.restore(folder, tmp_path / "o", model=vfi, weights=vfi_w, device="cpu")
    with pytest.raises(InputError, match="interpolates frames"):
        rvrt.restore(folder, tmp_path / "o", model="vrt.vfi_vimeo", device="cpu")
    needs = r"needs the frame-interpolation weights: pass vfi_weights=.official. \(--vfi-weights official"
    with pytest.raises(InputError, match=needs):
        rvrt.restore(folder, tmp_path / "o", model=sr, weights=sr_w, interpolate=True, device="cpu")
    with pytest.raises(InputError, match="vfi_weights, vfi_tile only apply with interpolate"):
        list(rvrt.restore_iter(folder, model=sr, weights=sr_w, vfi_weights=vfi_w, vfi_tile=(8, 8)))
    with pytest.raises(InputError, match="is a sr model"):
        rvrt.restore(folder, tmp_path / "o", model=sr, weights=sr_w, interpolate=True, vfi_model=sr,
                     vfi_weights=sr_w, device="cpu")  # fmt: skip
    single = tmp_path / "single"
    single.mkdir()
    write_png(single / "a.png", _smooth(1, 8, 12)[0])
    with pytest.raises(InputError, match="at least 2 frames"):
        rvrt.restore(single, tmp_path / "o", model=sr, weights=sr_w, interpolate=True, vfi_model=vfi,
                     vfi_weights=vfi_w, device="cpu")  # fmt: skip
    assert not (tmp_path / "o").exists()
