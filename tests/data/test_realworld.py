"""The real-world degradation pipeline (rvrt.data.realworld): each operation does what it says, the
sampled parameters honour the recipe's ranges and probabilities, the codecs' artefacts are the
encoders' own, and clips are reproducible per seed and index whatever the worker layout."""

from __future__ import annotations

import math
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from media import REAL, REAL_MISSING, make_video, smooth_frames
from rvrt.data import realworld as rw
from rvrt.data.compression import codec_available, compress_video, jpeg
from rvrt.data.datasets import build_dataset
from rvrt.data.frames import read_image
from rvrt.data.kernels import _filter, blur_kernel, motion_kernel, sinc_kernel
from rvrt.data.realworld import RealDegradation, check_config
from rvrt.errors import InputError

DEMO = REAL / "ckkelvinchan+BasicVSR_PlusPlus" / "data" / "demo_000"
needs_data = pytest.mark.skipif(not DEMO.is_dir(), reason=REAL_MISSING)


def _textured(t=8, h=64, w=64, seed=0) -> np.ndarray:
    """Moving gradients plus fixed fine texture: something for a codec to lose."""
    base = np.stack(smooth_frames(t, w, h)).astype(np.float64)
    grain = np.random.default_rng(seed).normal(0, 12, (h + t, w + t, 3))
    tex = np.stack([grain[i : i + h, i : i + w] for i in range(t)])  # the texture moves too
    return np.clip(base + tex, 0, 255).round().astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of two uint8 clips or frames, over all their pixels."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse)) if mse > 0 else float("inf")


def _real_crop() -> np.ndarray:
    frames = sorted(DEMO.glob("*.png"))[:8]
    return np.stack([read_image(f)[40:104, 100:164] for f in frames])


# --------------------------------------------------------------------------- configuration
@pytest.mark.parametrize(
    "table, message",
    [
        ({"firts": {}}, "has no key(s) ['firts']"),
        ({"first": {"sigmaa": [1, 2]}}, "data.train.real.first has no key(s) ['sigmaa']"),
        ({"first": {"sigma": [3.0, 1.0]}}, "data.train.real.first.sigma must be [low, high]"),
        ({"second": {"crf": [10, 60]}}, "second.crf must be [low, high], integers with 0 <= low <= high <= 51"),
        ({"final": {"kernel_size": [8, 21]}}, "final.kernel_size must be odd"),
        ({"first": {"blur_prob": 1.5}}, "first.blur_prob must be a probability"),
        ({"first": {"codecs": {"libvpx": 1.0}}}, "first.codecs has no choice(s) ['libvpx']"),
        ({"first": {"noise": {"gaussian": 0, "poisson": 0}}}, "first.noise: the weights sum to 0"),
        ({"second_order_prob": "yes"}, "second_order_prob must be a probability"),
    ],
)
def test_bad_tables_are_one_line_errors(table, message):
    with pytest.raises(InputError) as err:
        check_config(table)
    assert message in str(err.value) and "\n" not in str(err.value)
    # the dataset builder checks the table when the dataset is built
    with pytest.raises(InputError, match="data.train.real"):
        build_dataset({"type": "synthetic", "degradation": "real", "real": table}, train=True)


def test_defaults_are_the_published_numbers_and_merge():
    c = check_config({"second": {"sigma": [0.5, 1.0]}, "second_order_prob": 0.3})
    first, second, final = c["first"], c["second"], c["final"]
    assert first["sigma"] == [0.2, 3.0] and second["sigma"] == [0.5, 1.0] and c["second_order_prob"] == 0.3
    assert first["kernels"]["iso"] == 0.45 and first["sinc_prob"] == 0.1 and final["sinc_prob"] == 0.8
    assert first["resize_range"] == [0.15, 1.5] and second["resize_range"] == [0.3, 1.2]
    assert first["gaussian_sigma"] == [1.0, 30.0] and second["poisson_scale"] == [0.05, 2.5]
    assert first["jpeg_quality"] == [30, 95] and second["blur_prob"] == 0.8
    with pytest.raises(InputError, match="needs degradation"):
        build_dataset({"type": "synthetic", "degradation": "bi", "real": {}}, train=True)


# --------------------------------------------------------------------------- kernels and filters
def _moments(k: np.ndarray) -> np.ndarray:
    r = np.arange(k.shape[0]) - k.shape[0] // 2
    xx, yy = np.meshgrid(r, r, indexing="xy")
    return np.array([[(k * xx * xx).sum(), (k * xx * yy).sum()], [(k * xx * yy).sum(), (k * yy * yy).sum()]])


def test_gaussian_kernels_have_their_covariance():
    k = blur_kernel(41, 3.0, 3.0)
    assert k.sum() == pytest.approx(1.0) and np.allclose(k, k.T) and np.allclose(k, k[::-1])
    assert np.allclose(_moments(k), np.diag([9.0, 9.0]), rtol=1e-3)
    theta = 0.6
    k = blur_kernel(41, 3.0, 1.0, theta)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    assert k.sum() == pytest.approx(1.0)
    assert np.allclose(_moments(k), rot @ np.diag([9.0, 1.0]) @ rot.T, atol=2e-3)
    # generalised with beta 1 is the Gaussian; beta > 1 a flatter top, < 1 heavier tails
    assert np.allclose(blur_kernel(21, 2.0, 2.0, shape="generalized", beta=1.0), blur_kernel(21, 2.0, 2.0))
    flat, peaky = (blur_kernel(21, 2.0, 2.0, shape="generalized", beta=b) for b in (3.0, 0.5))
    gauss = blur_kernel(21, 2.0, 2.0)
    assert flat[10, 10] / flat[10, 11] < gauss[10, 10] / gauss[10, 11] < peaky[10, 10] / peaky[10, 11]
    plateau = blur_kernel(21, 2.0, 2.0, shape="plateau", beta=1.0)  # 1 / (1 + r^2 / sigma^2)
    assert plateau[10, 10] / plateau[10, 12] == pytest.approx(2.0)
    plateau = blur_kernel(21, 2.0, 2.0, shape="plateau", beta=2.0)  # 1 / (1 + (r^2 / sigma^2)^2)
    assert plateau[10, 10] / plateau[10, 14] == pytest.approx(17.0)


def test_sinc_kernel_is_a_low_pass_at_its_cutoff():
    omega = math.pi / 2
    k = sinc_kernel(21, omega)
    assert k.sum() == pytest.approx(1.0) and np.allclose(k, k.T)
    response = np.abs(np.fft.fft2(k, s=(256, 256)))
    freq = np.hypot(*np.meshgrid(np.fft.fftfreq(256), np.fft.fftfreq(256))) * 2 * math.pi
    assert response[freq < 0.7 * omega].min() > 0.8 and response[freq > 1.3 * omega].max() < 0.1


def test_motion_kernel_is_a_line_of_its_length():
    k = motion_kernel(21, 9.0, 0.0)
    assert k.sum() == pytest.approx(1.0)
    m = _moments(k)
    # horizontal, 9 px long: the variance of a uniform segment (plus the bilinear splat's spread)
    assert m[0, 0] == pytest.approx(81 / 12, rel=0.1) and abs(m[1, 1]) < 1e-9
    assert np.flatnonzero(k.sum(0)).tolist() == list(range(5, 16)) and np.flatnonzero(k.sum(1)).tolist() == [10]
    diagonal = _moments(motion_kernel(21, 9.0, math.pi / 4))
    assert diagonal[0, 1] == pytest.approx(diagonal[0, 0], rel=0.05) and diagonal[0, 0] > 2


def test_fft_filter_equals_a_reflect_padded_convolution():
    x = torch.rand(2, 3, 37, 50)
    k = blur_kernel(15, 2.0, 0.8, 0.4)
    flipped = torch.from_numpy(k[::-1, ::-1].copy()).float()[None, None]  # conv2d is a correlation
    ref = F.conv2d(F.pad(x.reshape(6, 1, 37, 50), (7, 7, 7, 7), mode="reflect"), flipped).reshape(2, 3, 37, 50)
    assert torch.allclose(_filter(x, k), ref, atol=1e-5)


# --------------------------------------------------------------------------- noise
def test_noise_levels_grey_and_per_frame_draws():
    x = torch.full((4, 3, 64, 64), 0.5)
    rng = np.random.default_rng(0)
    g = rw._noise(x, {"kind": "gaussian", "level": 10.0, "gray": False}, rng) - x
    assert g.std().item() * 255 == pytest.approx(10.0, rel=0.03)
    assert not torch.equal(g[0], g[1]) and not torch.equal(g[:, 0], g[:, 1])  # new draw per frame, channel
    grey = rw._noise(x, {"kind": "gaussian", "level": 10.0, "gray": True}, rng) - x
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    # Poisson: variance level^2 * x / 255 (shot noise of an 8-bit sensor), growing with brightness
    for level in (0.5, 2.0):
        p = rw._noise(x, {"kind": "poisson", "level": level, "gray": False}, rng) - x
        assert p.var().item() == pytest.approx(level**2 * 0.5 / 255, rel=0.05)
    dark = rw._noise(torch.full_like(x, 0.1), {"kind": "poisson", "level": 2.0, "gray": False}, rng) - 0.1
    assert dark.var().item() == pytest.approx(4 * 0.1 / 255, rel=0.05)


# --------------------------------------------------------------------------- compression
def test_jpeg_is_pillows_encoder_frame_by_frame():
    clip = _textured(3, 32, 40)
    out = jpeg(clip, 40)
    for frame, got in zip(clip, out, strict=True):
        import io

        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="JPEG", quality=40)
        assert np.array_equal(got, np.asarray(Image.open(buf).convert("RGB")))
    assert psnr(jpeg(clip, 90), clip) > psnr(out, clip) + 1


def _reference_encode(tmp_path, clip, codec, options, gop, bframes, bit_rate=None):
    """The same clip through a container file written and read by PyAV's own muxer and demuxer."""
    path = tmp_path / f"ref_{codec}.mkv"
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=Fraction(25, 1))
        stream.width, stream.height, stream.pix_fmt = clip.shape[2], clip.shape[1], "yuv420p"
        ctx = stream.codec_context
        ctx.gop_size, ctx.max_b_frames, ctx.thread_count = gop, bframes, 1
        if bit_rate:
            ctx.bit_rate = bit_rate
        ctx.options = options
        for frame in clip:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    with av.open(str(path)) as src:
        return np.stack([f.to_ndarray(format="rgb24") for f in src.decode(video=0)])


@pytest.mark.parametrize(
    "codec, rate_control, options",
    [
        ("libx264", "crf", {"preset": "veryfast", "crf": "30"}),
        ("mpeg4", "crf", {"qmin": "9", "qmax": "9"}),
        ("mpeg2video", "bitrate", {}),
        pytest.param(
            "libx265",
            "crf",
            {"preset": "ultrafast", "crf": "30", "x265-params": "log-level=error:keyint=5:bframes=2"},
            marks=pytest.mark.skipif(not codec_available("libx265"), reason="no libx265 in this PyAV build"),
        ),
    ],
)
def test_video_artefacts_are_the_encoders_own(tmp_path, codec, rate_control, options):
    clip = _textured(8, 64, 64)
    p = {"codec": codec, "rate_control": rate_control, "crf": 30, "qscale": 9, "bpp": 0.3, "gop": 5, "bframes": 2}
    out, types = compress_video(clip, p)
    bit_rate = (
        int(0.3 * 64 * 64 * 25) if rate_control == "bitrate" else (24 * 64 * 64 * 25 if codec == "mpeg4" else None)
    )
    ref = _reference_encode(tmp_path, clip, codec, options, 5, 2, bit_rate)
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1
    assert psnr(out, clip) < 40  # it did compress
    assert types[0] == "I" and {"P", "B"} & set(types) and types.count("I") >= 2  # a GOP of 5 in 8 frames


def test_psnr_falls_with_crf_and_artefacts_vary_across_frames():
    clip = _real_crop() if DEMO.is_dir() else _textured(8, 64, 64)
    scores, seen = [], set()
    for crf in (15, 25, 35, 45):
        out, types = compress_video(clip, {"codec": "libx264", "rate_control": "crf", "crf": crf, "qscale": 2,
                                           "bpp": 1.0, "gop": 4, "bframes": 2})  # fmt: skip
        scores.append(psnr(out, clip))
        seen |= set(types)
        per_frame = [psnr(o, c) for o, c in zip(out, clip, strict=True)]
        assert max(per_frame) - min(per_frame) > 0.2  # I, P and B frames lose different amounts
    assert all(a > b + 1 for a, b in zip(scores, scores[1:])), scores
    assert "I" in seen and {"P", "B"} & seen  # x264 places B frames adaptively, up to bframes in a row
    assert types.count("I") == 2  # a GOP of 4 in 8 frames


def test_odd_and_tiny_sizes_are_padded_and_cropped_back():
    clip = _textured(6, 64, 64)[:, :13, :9]
    padded = np.pad(clip, ((0, 0), (0, 3), (0, 7), (0, 0)), mode="edge")  # 16 x 16: one macroblock
    for codec in ("libx264", "mpeg4"):
        p = {"codec": codec, "rate_control": "crf", "crf": 20, "qscale": 3, "bpp": 2.0, "gop": 3, "bframes": 1}
        out, _ = compress_video(clip, p)
        assert out.shape == clip.shape and np.array_equal(out, compress_video(padded, p)[0][:, :13, :9])


# --------------------------------------------------------------------------- sampling
def test_sampled_parameters_honour_ranges_and_probabilities():
    table = {"second_order_prob": 0.3, "first": {"kernels": {"iso": 1, "motion": 1}, "sinc_prob": 0.2}}
    deg = RealDegradation(table, scale=4)
    c = deg.config
    rng = np.random.default_rng(0)
    samples = [deg.sample(rng) for _ in range(1500)]
    n = len(samples)

    def near(count: int, p: float, m: int = n) -> bool:  # within 4 binomial standard deviations
        return abs(count - p * m) <= 4 * math.sqrt(m * p * (1 - p)) + 1

    assert near(sum(s["second"] is not None for s in samples), 0.3)
    kinds = [s["first"]["blur"]["kind"] for s in samples]
    assert near(kinds.count("sinc"), 0.2) and near(kinds.count("motion"), 0.4) and near(kinds.count("iso"), 0.4)
    directions = [np.sign(s["first"]["resize"]["factor"] - 1) for s in samples]
    assert near(directions.count(1), 0.2) and near(directions.count(0), 0.1)
    assert near(sum(s["first"]["noise"]["gray"] for s in samples), 0.4)
    assert near(sum(s["first"]["noise"]["kind"] == "poisson" for s in samples), 0.5)
    codecs = [s["first"]["video"]["codec_requested"] for s in samples]
    assert near(codecs.count("libx264"), 0.4) and near(codecs.count("mpeg2video"), 0.2)
    seconds = [s["second"] for s in samples if s["second"] is not None]
    assert near(sum(s["blur"] is not None for s in seconds), 0.8, len(seconds))
    assert all(s["final"]["jpeg"] is None and s["final"]["video"] is not None for s in samples)

    def within(v, r):
        return r[0] <= v <= r[1]

    for s in samples:
        for stage, cfg in (("first", c["first"]), ("second", c["second"])):
            p = s[stage]
            if p is None:
                continue
            b = p["blur"]
            if b is not None:
                assert b["size"] % 2 == 1 and within(b["size"], cfg["kernel_size"])
                if b["kind"] == "sinc":
                    assert within(b["omega"], [math.pi / 5, math.pi])
                elif b["kind"] == "motion":
                    assert within(b["length"], cfg["motion_length"])
                else:
                    assert within(b["sigma_x"], cfg["sigma"]) and within(b["sigma_y"], cfg["sigma"])
                    if b["kind"] in ("iso", "generalized_iso", "plateau_iso"):
                        assert b["sigma_x"] == b["sigma_y"] and b["theta"] == 0
                    if b["kind"].startswith("generalized"):
                        assert within(b["beta"], cfg["beta_gaussian"])
                    if b["kind"].startswith("plateau"):
                        assert within(b["beta"], cfg["beta_plateau"])
            assert within(p["resize"]["factor"], cfg["resize_range"]) and p["resize"]["mode"] in rw.RESIZE_MODES
            noise = p["noise"]
            assert within(noise["level"], cfg["gaussian_sigma" if noise["kind"] == "gaussian" else "poisson_scale"])
            assert within(p["jpeg"], cfg["jpeg_quality"])
        v = s["final"]["video"]
        fin = c["final"]
        assert within(v["crf"], fin["crf"]) and within(v["qscale"], fin["qscale"]) and within(v["bpp"], fin["bpp"])
        assert within(v["gop"], fin["gop"]) and within(v["bframes"], fin["bframes"])
        if s["final"]["sinc"] is not None:
            assert within(s["final"]["sinc"]["omega"], [math.pi / 3, math.pi])


def test_a_missing_encoder_falls_back_and_the_choice_is_recorded(monkeypatch):
    monkeypatch.setattr("rvrt.data.compression.codec_available", lambda name: name != "libx265")
    deg = RealDegradation({"first": {"codecs": {"libx265": 1.0}}}, scale=1)
    p = deg.sample(np.random.default_rng(0))["first"]["video"]
    assert p["codec_requested"] == "libx265" and p["codec"] == "libx264"


# --------------------------------------------------------------------------- the whole pipeline
@pytest.mark.parametrize("scale", [4, 2, 1])
def test_whole_pipeline_shapes_levels_and_seeds(scale):
    clip = _textured(6, 64, 64)
    deg = RealDegradation(scale=scale)
    a = deg(clip, np.random.default_rng([7, 3]))
    assert a.shape == (6, 3, 64 // scale, 64 // scale) and a.dtype == torch.float32
    assert 0 <= a.min() and a.max() <= 1 and torch.equal(a, (a * 255).round() / 255)  # 8-bit levels
    assert torch.equal(a, deg(clip, np.random.default_rng([7, 3])))
    assert not torch.equal(a, deg(clip, np.random.default_rng([8, 3])))


def test_the_final_resize_gives_the_lr_size_after_up_and_down_scaling():
    clip = _textured(4, 48, 48)
    up = {"first": {"resize": {"up": 1.0}, "resize_range": [1.4, 1.5]}, "second": {"resize": {"down": 1.0}}}
    for table in (up, {"second_order_prob": 0.0, "final": {"resize_first_prob": 1.0}}):
        deg = RealDegradation(table, scale=4)
        for seed in range(3):
            assert deg(clip, np.random.default_rng(seed)).shape == (4, 3, 12, 12)


#: a small real-world training set of procedural videos
REAL_SYNTHETIC = {"type": "synthetic", "count": 2, "length": 6, "size": [96, 96], "degradation": "real", "scale": 4,
                  "num_frames": 4, "gt_patch": 32}  # fmt: skip


def _real_synthetic(seed: int = 3):
    return build_dataset(REAL_SYNTHETIC, train=True, seed=seed)


def test_dataset_degrades_each_clip_once_with_its_own_draw(monkeypatch):
    calls = []
    apply = RealDegradation.apply

    def spy(self, clip, params, **kw):
        calls.append((clip.shape, params["noise_seed"]))
        return apply(self, clip, params, **kw)

    monkeypatch.setattr(RealDegradation, "apply", spy)
    ds = _real_synthetic()
    a, _ = ds[(0, 0)], ds[(1, 0)]
    assert a["lq"].shape == (4, 3, 8, 8) and a["gt"].shape == (4, 3, 32, 32)
    # one call per clip, on all its frames (crop plus a 4 LQ pixel margin), each clip its own draw
    assert len(calls) == 2 and calls[0][1] != calls[1][1]
    assert all(c[0][0] == 4 and 32 <= min(c[0][1:3]) and max(c[0][1:3]) <= 64 for c in calls), calls
    bicubic = F.interpolate(a["gt"], scale_factor=0.25, mode="bicubic", antialias=True)
    assert (a["lq"] - bicubic).abs().mean() > 0.01  # degraded, not merely downscaled


def test_dataset_samples_do_not_depend_on_order_or_workers():
    ds = _real_synthetic()
    keys = [(i, e) for e in range(2) for i in range(len(ds))][:6]
    direct = {k: ds[k] for k in keys}
    again = {k: ds[k] for k in reversed(keys)}
    loader = torch.utils.data.DataLoader(ds, sampler=keys, batch_size=None, num_workers=2)
    for k, sample in zip(keys, loader, strict=True):
        assert torch.equal(sample["lq"], direct[k]["lq"]) and torch.equal(again[k]["lq"], direct[k]["lq"])
    assert not torch.equal(direct[keys[0]]["lq"], direct[keys[1]]["lq"])
    other = _real_synthetic(seed=4)
    assert not torch.equal(other[keys[0]]["lq"], direct[keys[0]]["lq"])


def test_video_roots_are_decoded_once_into_the_frame_cache(tmp_path, monkeypatch):
    frames = smooth_frames(10, 96, 64)
    video = make_video(tmp_path / "clip.mp4", frames)
    cfg = {"type": "degraded", "roots": [str(video)], "degradation": "real", "scale": 2, "num_frames": 3,
           "gt_patch": 32, "real": {"second_order_prob": 0.0}}  # fmt: skip
    ds = build_dataset(cfg, train=True, seed=0)
    uncached = build_dataset({**cfg, "video_cache": False}, train=True, seed=0)
    assert len(ds) == 10 and torch.equal(ds[(5, 0)]["gt"], uncached[(5, 0)]["gt"])
    assert torch.equal(ds[(5, 0)]["lq"], uncached[(5, 0)]["lq"]) and ds[(5, 0)]["lq"].shape == (3, 3, 16, 16)

    import rvrt.media

    def no_decoding(*a, **k):
        raise AssertionError("decoded the video again")

    monkeypatch.setattr(rvrt.media, "open_reader", no_decoding)
    expected = ds[(5, 0)]["gt"]
    again = build_dataset(cfg, train=True, seed=0)  # a new dataset (a new run) reads the cache only
    assert torch.equal(again[(5, 0)]["gt"], expected)
    monkeypatch.undo()

    # the video changes: decoded again, and its old decoding does not stay behind in the cache
    from rvrt.hub import cache_dir

    before = sorted((cache_dir() / "frames").glob("*.u8"))
    make_video(video, [255 - f for f in frames])
    changed = build_dataset(cfg, train=True, seed=0)
    fresh = build_dataset({**cfg, "video_cache": False}, train=True, seed=0)
    assert not torch.equal(changed[(5, 0)]["gt"], expected) and torch.equal(changed[(5, 0)]["gt"], fresh[(5, 0)]["gt"])
    after = sorted((cache_dir() / "frames").glob("*.u8"))
    assert len(after) == len(before) and after != before  # replaced, not added


@needs_data
def test_real_frames_through_the_pipeline_lose_detail_but_keep_content():
    clip = _real_crop()
    deg = RealDegradation({"second_order_prob": 0.0}, scale=1)
    scores = [psnr(deg(clip, np.random.default_rng(s)).mul(255).round().byte().permute(0, 2, 3, 1).numpy(), clip)
              for s in range(3)]  # fmt: skip
    assert all(15 < s < 40 for s in scores), scores


def test_validation_sets_degrade_whole_sequences_the_same_way_every_time():
    cfg = {"type": "synthetic", "count": 2, "length": 4, "size": [48, 64], "degradation": "real", "scale": 4}
    ds = build_dataset(cfg, train=False, seed=0)
    a, b = ds[0], ds[1]
    assert a["lq"].shape == (4, 3, 12, 16) and a["gt"].shape == (4, 3, 48, 64)
    assert torch.equal(a["lq"], build_dataset(cfg, train=False, seed=0)[0]["lq"])  # the same at every validation
    bicubic = F.interpolate(b["gt"], scale_factor=0.25, mode="bicubic", antialias=True)
    assert (b["lq"] - bicubic).abs().mean() > 0.01


def test_clean_share_is_matlab_bicubic_exactly_and_drawn_at_its_rate():
    from rvrt.data.degradations import imresize

    clip = np.random.default_rng(3).integers(0, 256, (3, 32, 48, 3), dtype=np.uint8)
    deg = RealDegradation({"clean_prob": 1.0}, scale=4)
    lq = deg(clip, np.random.default_rng(0))
    want = np.stack([imresize(f, 0.25) for f in clip])
    assert torch.equal(lq, torch.from_numpy(want).permute(0, 3, 1, 2).float() / 255)
    share = RealDegradation({"clean_prob": 0.3}, scale=4)
    rng = np.random.default_rng(1)
    clean = sum(bool(share.sample(rng).get("clean")) for _ in range(2000))
    assert abs(clean / 2000 - 0.3) < 4 * (0.3 * 0.7 / 2000) ** 0.5
    # with no clean share the draws are those of the pipeline alone (recipes without it are unchanged)
    a, b = RealDegradation({}, scale=4), RealDegradation({"clean_prob": 0.0}, scale=4)
    assert a.sample(np.random.default_rng(5)) == b.sample(np.random.default_rng(5))
    with pytest.raises(InputError, match="clean_prob must be a probability"):
        RealDegradation({"clean_prob": 2}, scale=4)


def test_the_matlab_resize_mode_is_matlab_bicubic_and_then_compressed():
    from rvrt.data.degradations import imresize

    clip = np.random.default_rng(4).integers(0, 256, (4, 64, 96, 3), dtype=np.uint8)
    off = {
        "blur_prob": 0.0,
        "resize": {"keep": 1.0, "up": 0.0, "down": 0.0},
        "noise": {"none": 1.0, "gaussian": 0.0, "poisson": 0.0},
        "jpeg_prob": 0.0,
        "video_prob": 0.0,
    }
    final = {"resize_modes": {"matlab": 1.0, "area": 0.0, "bilinear": 0.0, "bicubic": 0.0}, "sinc_prob": 0.0}
    table = {"second_order_prob": 0.0, "first": off, "final": {**final, "video_prob": 0.0}}
    lq = RealDegradation(table, scale=4)(clip, np.random.default_rng(0))
    want = np.stack([imresize(f, 0.25) for f in clip])
    assert torch.equal(lq, torch.from_numpy(want).permute(0, 3, 1, 2).float() / 255)  # the BI degradation
    # resize first, then the codec: the video stream is that of the MATLAB-downscaled clip
    codec = {"codecs": {"libx264": 1.0}, "rate_control": {"crf": 1.0}, "crf": [30, 30], "resize_first_prob": 1.0}
    deg = RealDegradation({**table, "final": {**final, "video_prob": 1.0, **codec}}, scale=4)
    params = deg.sample(np.random.default_rng(1))
    got = rw.to_uint8(deg.apply(clip, params))
    encoded, _ = compress_video(want, params["final"]["video"])
    assert np.array_equal(got, encoded)
    # any size: a resize to a size that is not a whole factor lands on that size
    x = torch.rand(2, 3, 25, 70)  # 25 * (7 / 25) rounds up to 8 in floating point
    assert rw._resize(x, (7, 33), "matlab").shape == (2, 3, 7, 33)
    assert torch.equal(rw._resize(x, (25, 70), "matlab"), x)
