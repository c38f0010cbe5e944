"""Frame-rate doubling: the streaming core with analytic models, then ``rvrt.interpolate`` with a micro VRT."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import rvrt
from media import NTSC, make_video
from rvrt.api import select_model
from rvrt.errors import DownloadError, InputError, OutputError
from rvrt.inference.options import StageOptions
from rvrt.inference.planner import plan_stage
from rvrt.inference.stages import model_runner
from rvrt.inference.tiling import TileGrid
from rvrt.inference.vfi import interpolate_frames, interpolate_window, resume_input_frame
from rvrt.media import open_reader, probe
from rvrt.media.images import read_image
from rvrt.models.vrt import interpolation_windows


def _frames(n: int, h: int = 6, w: int = 7, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, h, w, generator=g) for _ in range(n)]


def midpoint(x: torch.Tensor) -> torch.Tensor:
    """The mean of the two middle frames, ``(1, T, 3, h, w) -> (1, 1, 3, h, w)``."""
    t = x.shape[1]
    return (x[:, t // 2 - 1 : t // 2] + x[:, t // 2 : t // 2 + 1]) / 2


def mixer(x: torch.Tensor) -> torch.Tensor:
    """A per-pixel mix with a different weight for every window position (the order matters)."""
    weights = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=x.dtype).view(1, 4, 1, 1, 1)
    return (x * weights).sum(1, keepdim=True) ** 1.5


def _fades(length: int, fade_in: int, fade_out: int) -> torch.Tensor:
    """Raised-cosine blend weights written out: sin^2 over the first ``fade_in`` samples (at their
    centres), cos^2 over the last ``fade_out``, 1 in between."""
    w = torch.ones(length, dtype=torch.float64)
    i = torch.arange(length, dtype=torch.float64)
    if fade_in:
        w[:fade_in] = torch.sin(0.5 * torch.pi * (i[:fade_in] + 0.5) / fade_in) ** 2
    if fade_out:
        w[length - fade_out :] *= torch.cos(0.5 * torch.pi * (i[:fade_out] + 0.5) / fade_out) ** 2
    return w


def _run_all(run, frames, **kw) -> list[tuple[int, torch.Tensor]]:
    return list(interpolate_frames(run, frames, **kw))


# ----------------------------------------------------------------------------- the streaming core


@pytest.mark.parametrize("n", [2, 3, 7])
def test_output_is_each_frame_then_the_one_after_it(n):
    frames = _frames(n)
    out = _run_all(midpoint, frames)
    assert [i for i, _ in out] == list(range(2 * n))
    for i, f in enumerate(frames):
        assert torch.equal(out[2 * i][1], f)
    for i in range(n - 1):
        torch.testing.assert_close(out[2 * i + 1][1], (frames[i] + frames[i + 1]) / 2, rtol=0, atol=1e-6)
    assert torch.equal(out[-1][1], frames[-1])  # the last frame is held for its interval

    shorter = _run_all(midpoint, frames, hold_last=False)
    assert len(shorter) == 2 * n - 1
    assert all(torch.equal(a[1], b[1]) for a, b in zip(shorter, out, strict=False))


@pytest.mark.parametrize("n", [2, 3, 6])
def test_windows_are_the_published_ones(n):
    seen = []

    def record(x):
        seen.append(tuple(int(v) for v in x[0, :, 0, 0, 0].round()))
        return x[:, :1]

    frames = [torch.full((3, 2, 2), float(i)) for i in range(n)]
    _run_all(record, frames)
    assert seen == interpolation_windows(n)


def test_six_frame_windows():
    seen = []

    def record(x):
        seen.append(tuple(int(v) for v in x[0, :, 0, 0, 0].round()))
        return x[:, :1]

    _run_all(record, [torch.full((3, 2, 2), float(i)) for i in range(5)], window=6)
    assert seen[0] == (0, 0, 0, 1, 2, 3) and seen[2] == (0, 1, 2, 3, 4, 4) and len(seen) == 4


@pytest.mark.parametrize("done", range(0, 15))
def test_resume_reproduces_an_uninterrupted_run(done):
    frames = _frames(7)
    full = _run_all(mixer, frames)
    first = resume_input_frame(done, 4)
    part = _run_all(mixer, frames[first:], first_frame=first, skip_until=done)
    assert [i for i, _ in part] == list(range(done, 14))
    for (i, a), (j, b) in zip(part, full[done:], strict=True):
        assert i == j and torch.equal(a, b)


def test_only_the_window_is_held():
    pulled = []

    def source():
        for i, f in enumerate(_frames(9)):
            pulled.append(i)
            yield f

    for index, _ in interpolate_frames(midpoint, source()):
        gap = index // 2
        assert len(pulled) <= gap + 3  # frames gap-1 .. gap+2, nothing further ahead


def test_the_caller_may_change_frames_in_place():
    frames = _frames(4)
    expected = [f.clone() for _, f in _run_all(mixer, frames)]
    for (_, f), e in zip(interpolate_frames(mixer, frames), expected, strict=True):
        assert torch.equal(f, e)
        f.mul_(0)


@pytest.mark.parametrize("tile, overlap", [((4, 5), (2, 2)), ((3, 0), (1, 0)), ((8, 8), (3, 3))])
def test_tiled_equals_whole_frame_for_a_per_pixel_model(tile, overlap):
    clip = torch.stack(_frames(4, h=11, w=13))
    whole = interpolate_window(mixer, clip, tile=(0, 0), overlap=(0, 0))
    tiled = interpolate_window(mixer, clip, tile=tile, overlap=overlap)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-6)


def test_too_few_frames():
    with pytest.raises(InputError, match="at least 2 frames; the input has 1"):
        _run_all(midpoint, _frames(1))
    with pytest.raises(InputError, match="the input has 0"):
        _run_all(midpoint, [])


# ----------------------------------------------------------------------------- with a micro VRT


def _smooth(n: int, h: int = 24, w: int = 32) -> list[np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    return [np.dstack([128 + 100 * np.sin((xx + 3 * t) / 6), 128 + 90 * np.cos((yy - 2 * t) / 5), 60 + 2 * xx + yy])
            .clip(0, 255).round().astype(np.uint8) for t in range(n)]  # fmt: skip


def _audio_packets(path: Path) -> list[tuple]:
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        return [(p.pts, bytes(p)) for p in c.demux(stream) if p.size]


def _decode(path: Path) -> list[np.ndarray]:
    with open_reader(path) as reader:
        return [f.data for f in reader]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """5 frames 32x24 H.264 at 30000/1001 fps with an AAC audio stream."""
    return make_video(tmp_path_factory.mktemp("vfi") / "clip.mp4", _smooth(5), audio=True)


def test_interpolate_doubles_a_video_keeping_audio(tiny_vrt, clip, tmp_path):
    cfg, weights = tiny_vrt["vfi"]
    out = tmp_path / "double.mp4"
    summary = rvrt.interpolate(clip, out, model=cfg, weights=weights, device="cpu", progress=False)
    info = probe(out)
    assert info.fps == 2 * NTSC == Fraction(60000, 1001)  # exactly
    assert summary.frames == 10 and summary.frame_rate == Fraction(60000, 1001)
    # the values: the input frames, then what the model predicts from the four around each gap (the
    # last frame held), through H.264 at crf 18 in 4:2:0
    decoded = _decode(clip)
    x = torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2).float() / 255
    model = rvrt.create_model(cfg, weights=weights)
    with torch.no_grad():
        mids = [model(x[None, [max(g - 1, 0), g, g + 1, min(g + 2, 4)]])[0, 0].clamp(0, 1) for g in range(4)]
    expected = torch.stack([f for g in range(5) for f in (x[g], mids[g] if g < 4 else x[4])])
    got = torch.from_numpy(np.stack(_decode(out))).permute(0, 3, 1, 2).float() / 255
    assert got.shape == expected.shape == (10, 3, 24, 32)
    err = (got - expected).abs().mean((1, 2, 3))
    # measured mean errors: 0.013-0.018 on the input frames, 0.045-0.047 on the predicted ones (the random
    # micro VRT's fine texture costs H.264 more); a neighbour or the mean of the two neighbours in their
    # place is 0.22-0.27 away. Bounds: + 15 %.
    assert (err[0::2] < 0.02).all() and (err[1::2] < 0.054).all(), err
    assert (info.width, info.height) == (32, 24)
    assert _audio_packets(out) == _audio_packets(clip)  # copied packet for packet
    with av.open(str(out)) as c:  # same duration: 10 frames at 60000/1001 = 5 frames at 30000/1001
        v = c.streams.video[0]
        assert float(v.duration * v.time_base) == pytest.approx(5 / NTSC, abs=1e-3)


def test_interpolate_into_frames_matches_the_model(tiny_vrt, clip, tmp_path):
    cfg, weights = tiny_vrt["vfi"]
    out = tmp_path / "frames"
    rvrt.interpolate(clip, out, model=cfg, weights=weights, device="cpu", progress=False, hold_last=False)
    files = sorted(out.glob("*.png"))
    assert [p.name for p in files] == [f"{i:08d}.png" for i in range(9)]
    decoded = _decode(clip)
    for i, src in enumerate(decoded):
        assert np.array_equal(read_image(files[2 * i])[0], src)  # input frames are kept exactly

    model = rvrt.create_model(cfg, weights=weights)
    for gap, window in enumerate([(0, 0, 1, 2), (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 4)]):  # ends repeated
        x = torch.from_numpy(np.stack([decoded[j] for j in window])).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            mid = model(x[None])[0, 0].clamp(0, 1).mul(255).round().permute(1, 2, 0).numpy()
        # 1: float32 sums in another order may round the other way
        assert np.abs(read_image(files[2 * gap + 1])[0].astype(int) - mid).max() <= 1, gap

    streamed = list(rvrt.interpolate_iter(decoded, model=cfg, weights=weights, device="cpu", hold_last=False))
    assert [i for i, _ in streamed] == list(range(9))
    again = (streamed[5][1] * 255).round().permute(1, 2, 0).numpy()
    assert np.array_equal(again.astype(np.uint8), read_image(files[5])[0])


def test_resume_into_frames_folder(tiny_vrt, clip, tmp_path):
    cfg, weights = tiny_vrt["vfi"]
    out = tmp_path / "frames"
    rvrt.interpolate(clip, out, model=cfg, weights=weights, device="cpu", progress=False)
    before = {p.name: p.read_bytes() for p in out.glob("*.png")}
    assert len(before) == 10
    for name in sorted(before)[5:]:
        (out / name).unlink()
    summary = rvrt.interpolate(clip, out, model=cfg, weights=weights, device="cpu", progress=False, resume=True)
    assert summary.resumed_from == 5 and summary.frames == 5
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == before


def test_big_frames_are_tiled(tiny_vrt):
    cfg, weights = tiny_vrt["vfi"]
    net, spec = select_model(cfg, weights, kind="interpolate")
    calls = []
    inner = model_runner(net, device=torch.device("cpu"), dtype=torch.float32)

    def run(x):
        calls.append(tuple(x.shape[-2:]))
        return inner(x)

    clip = torch.stack(_frames(4, h=40, w=72))
    out = interpolate_window(run, clip, tile=(32, 32), overlap=(8, 8))
    assert out.shape == (3, 40, 72)
    assert len(calls) == len(TileGrid(40, 72, (32, 32), (8, 8))) == 6 and set(calls) == {(32, 32)}
    # by hand: rows 0-32 and 8-40 (overlap 24), columns 0-32, 24-56 and 40-72 (overlaps 8 and 16), each
    # tile a direct model call, blended with raised-cosine weights (sin^2 rise, cos^2 fall) over the overlaps
    rows = {0: _fades(32, 0, 24), 8: _fades(32, 24, 0)}
    cols = {0: _fades(32, 0, 8), 24: _fades(32, 8, 16), 40: _fades(32, 16, 0)}
    num, den = torch.zeros(3, 40, 72, dtype=torch.float64), torch.zeros(1, 40, 72, dtype=torch.float64)
    with torch.no_grad():
        for y0, wy in rows.items():
            for x0, wx in cols.items():
                y = net(clip[None, :, :, y0 : y0 + 32, x0 : x0 + 32])[0, 0].double()
                num[:, y0 : y0 + 32, x0 : x0 + 32] += wy[:, None] * wx * y
                den[:, y0 : y0 + 32, x0 : x0 + 32] += wy[:, None] * wx
        whole = net(clip[None])[0, 0]
    torch.testing.assert_close(out, (num / den).float(), rtol=0, atol=1e-6)  # measured: 1.2e-7
    # tiles of 32 x 32 see other borders: measured mean 0.0086 from the whole frame (which is 0.27 from
    # the mean of its neighbours); bound + 15 %
    assert (out - whole).abs().mean() < 0.0099, (out - whole).abs().mean()
    # "auto" keeps whole frames that fit, and tiles frames that do not
    cpu = torch.device("cpu")
    auto = StageOptions("interpolate")
    plan = dict(device=cpu, dtype=torch.float32, budget=2**30, frames=4)
    assert plan_stage(spec, auto, height=40, width=72, **plan).tile == (0, 0)
    huge = plan_stage(spec, auto, height=2_000, width=3_000, **plan)
    assert huge.tile[0] == huge.tile[1] and huge.tile[0] % 8 == 0 and 64 <= huge.tile[0] < 2_000
    assert huge.overlap == (20, 20)


def test_interpolate_with_explicit_tiles(tiny_vrt, clip, tmp_path):
    cfg, weights = tiny_vrt["vfi"]
    out = tmp_path / "tiled"
    summary = rvrt.interpolate(clip, out, model=cfg, weights=weights, device="cpu", progress=False,
                               tile=(16, 0), tile_overlap=(4, 0))  # fmt: skip
    assert summary.tile.startswith("16 0 (overlap 4 0; given") and len(list(out.glob("*.png"))) == 10
    # the in-between frames are those of the same windows run in tiles of 16 rows (overlap 4)
    decoded = _decode(clip)
    x = torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2).float() / 255
    net, _ = select_model(cfg, weights, kind="interpolate")
    run = model_runner(net, device=torch.device("cpu"), dtype=torch.float32)
    for g in range(4):
        clip4 = x[[max(g - 1, 0), g, g + 1, min(g + 2, 4)]]
        tiled = interpolate_window(run, clip4, tile=(16, 0), overlap=(4, 0))
        saved = read_image(out / f"{2 * g + 1:08d}.png")[0].astype(int)
        expected = tiled.clamp(0, 1).mul(255).round().permute(1, 2, 0).numpy()
        # measured: equal; whole frames would be up to 113 levels away (a mean 19)
        assert np.abs(saved - expected).max() <= 1, g


# ----------------------------------------------------------------------------- errors


def test_a_restoration_model_does_not_interpolate(tiny_vrt, clip, tmp_path):
    cfg, weights = tiny_vrt["sr"]
    with pytest.raises(InputError, match="is a sr model; frame interpolation needs a frame-interpolation model"):
        rvrt.interpolate(clip, tmp_path / "o.mp4", model=cfg, weights=weights, device="cpu", progress=False)
    with pytest.raises(InputError, match="sr model"):
        rvrt.interpolate(clip, tmp_path / "o.mp4", model="vrt.sr_bi_vimeo", weights="official", device="cpu")
    assert not (tmp_path / "o.mp4").exists()


def test_weights_are_required_and_offline_is_clear(tiny_vrt, clip, tmp_path, monkeypatch):
    with pytest.raises(
        InputError, match="vrt.vfi_vimeo needs weights: pass weights='official' \\(--weights official\\).*CC-BY-NC-4.0"
    ):
        rvrt.interpolate(clip, tmp_path / "o.mp4", device="cpu")
    with pytest.raises(InputError, match=r"no published weights: pass a weights file \(weights=PATH, --weights PATH\)"):
        rvrt.interpolate(clip, tmp_path / "o.mp4", model=tiny_vrt["vfi"][0], device="cpu")
    monkeypatch.setenv("RVRT_OFFLINE", "1")
    monkeypatch.setenv("RVRT_HOME", str(tmp_path / "cache"))
    with pytest.raises(DownloadError, match="009_VRT_videofi_Vimeo_4frames.pth.*--weights"):
        rvrt.interpolate(clip, tmp_path / "o.mp4", weights="official", device="cpu")
    assert not (tmp_path / "o.mp4").exists()


def test_input_and_output_errors(tiny_vrt, clip, tmp_path):
    cfg, weights = tiny_vrt["vfi"]
    one = make_video(tmp_path / "one.mp4", _smooth(1))
    with pytest.raises(InputError, match="at least 2 frames"):
        rvrt.interpolate(one, tmp_path / "o.mp4", model=cfg, weights=weights, device="cpu", progress=False)
    (tmp_path / "exists.mp4").write_bytes(b"mine")
    with pytest.raises(OutputError, match="already exists"):
        rvrt.interpolate(clip, tmp_path / "exists.mp4", model=cfg, weights=weights, device="cpu")
    assert (tmp_path / "exists.mp4").read_bytes() == b"mine"
    with pytest.raises(InputError, match="overlap .* must be smaller than the tile"):
        rvrt.interpolate(clip, tmp_path / "o.mp4", model=cfg, weights=weights, device="cpu", tile=(8, 8),
                         tile_overlap=(8, 0))  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.mp4", "one.mp4"]  # nothing half-written
