"""MATLAB bicubic imresize, BD blur-downsampling and benchmark noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from media import REAL, REAL_MISSING
from rvrt.data.degradations import (
    BD_VARIANTS,
    add_gaussian_noise,
    bd_degrade,
    gaussian_kernel1d,
    imresize,
    resize_weights,
)
from rvrt.errors import InputError


def _img(seed: int, h: int = 23, w: int = 31, c: int = 3, dtype=np.uint8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == np.uint8:
        return rng.integers(0, 256, (h, w, c), dtype=np.uint8)
    return rng.random((h, w, c)).astype(dtype)


# --------------------------------------------------------------------------- imresize


def _mirror(i: int, n: int) -> int:
    """0-based symmetric extension with the edge repeated."""
    while i < 0 or i >= n:
        i = -i - 1 if i < 0 else 2 * n - 1 - i
    return i


def test_half_size_weights_derived_by_hand():
    # x1/2 with antialiasing: kernel 0.5 * cubic(d / 2) at d = +-0.5, +-1.5, +-2.5, +-3.5
    hand = np.array(
        [-0.01171875, -0.03515625, 0.11328125, 0.43359375, 0.43359375, 0.11328125, -0.03515625, -0.01171875]
    )
    row = np.random.default_rng(0).random(16)
    img = row[None, :, None]  # a single row: the vertical pass is the identity
    out = imresize(img, 0.5)
    assert out.shape == (1, 8, 1)
    for i in range(8):  # output i (0-based) uses inputs 2i-3 .. 2i+4, mirrored at the edges
        taps = [row[_mirror(2 * i - 3 + k, 16)] for k in range(8)]
        assert out[0, i, 0] == pytest.approx(float(np.dot(hand, taps)), abs=1e-14)


def test_double_size_weights_derived_by_hand():
    # x2 (no antialiasing widening): cubic at d = 1.75, 0.75, -0.25, -1.25 for the first output
    hand = np.array([-0.0234375, 0.2265625, 0.8671875, -0.0703125])
    row = np.random.default_rng(1).random(6)
    out = imresize(row[None, :], 2.0)
    assert out.shape == (2, 12)  # the single row is doubled as well
    np.testing.assert_allclose(out[1], out[0], rtol=0, atol=1e-15)
    for i in range(12):  # output i maps to input (i + 0.5) / 2 - 0.5
        left = (i - 3) // 2 if i % 2 else (i - 4) // 2
        w = hand if i % 2 == 0 else hand[::-1]
        taps = [row[_mirror(left + k, 6)] for k in range(4)]
        assert out[0, i] == pytest.approx(float(np.dot(w, taps)), abs=1e-14)


@pytest.mark.parametrize("scale", [0.25, 0.5, 1 / 3, 0.7, 2.0, 3.0])
def test_weights_are_normalised_and_in_range(scale):
    n = 19
    w, idx = resize_weights(n, int(np.ceil(n * scale)), scale)
    assert np.allclose(w.sum(1), 1.0, atol=1e-14)
    assert idx.min() >= 0 and idx.max() < n


def test_scale_one_is_the_identity():
    img = _img(2)
    assert np.array_equal(imresize(img, 1.0), img)


@pytest.mark.parametrize("dtype", [np.uint8, np.float64])
@pytest.mark.parametrize("scale", [0.25, 0.5, 3.0])
def test_constant_image_stays_constant(dtype, scale):
    img = np.full((17, 22, 3), 77 if dtype == np.uint8 else 0.3, dtype)
    out = imresize(img, scale)
    assert out.dtype == dtype
    assert out.shape == (int(np.ceil(17 * scale)), int(np.ceil(22 * scale)), 3)
    np.testing.assert_allclose(out, img.flat[0], atol=1e-12)


def test_output_size_is_ceil_and_dimensions_independent():
    img = _img(3, 37, 41)
    assert imresize(img, 0.25).shape == (10, 11, 3)
    assert imresize(img, (0.5, 0.25)).shape == (19, 11, 3)


def test_integer_result_is_the_float_result_rounded_once():
    img = _img(4, 40, 36)
    img[:, ::16] = 0  # sharp dark lines next to bright blocks: the cubic kernel overshoots
    img[:, 8:16] = 255
    ref = imresize(img.astype(np.float64), 0.25)
    expected = np.clip(np.floor(ref + 0.5), 0, 255).astype(np.uint8)
    assert np.array_equal(imresize(img, 0.25), expected)
    # cubic overshoot really needs the clipping
    assert ref.min() < 0 or ref.max() > 255


def test_uint16_and_float32_keep_their_dtype():
    img16 = _img(5).astype(np.uint16) * 257
    out16 = imresize(img16, 0.5)
    assert out16.dtype == np.uint16
    ref = imresize(img16.astype(np.float64), 0.5)
    assert np.array_equal(out16, np.clip(np.floor(ref + 0.5), 0, 65535).astype(np.uint16))
    f32 = _img(5, dtype=np.float32)
    out = imresize(f32, 0.5)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, imresize(f32.astype(np.float64), 0.5), atol=1e-6)


def test_antialias_only_matters_when_shrinking():
    img = _img(6, dtype=np.float64)
    assert not np.allclose(imresize(img, 0.5), imresize(img, 0.5, antialias=False))
    assert np.array_equal(imresize(img, 2.0), imresize(img, 2.0, antialias=False))


@pytest.mark.parametrize("scale", [0.25, 2.0])
def test_torch_and_numpy_agree(scale):
    img = _img(7, 29, 34)
    ref = imresize(img, scale)
    t = torch.from_numpy(img).permute(2, 0, 1)
    out = imresize(t, scale)
    assert out.dtype == torch.uint8
    assert np.array_equal(out.permute(1, 2, 0).numpy(), ref)
    # batched float tensors (..., H, W)
    f = torch.from_numpy(img.astype(np.float64) / 255).permute(2, 0, 1)[None].repeat(2, 1, 1, 1)
    fo = imresize(f, scale)
    assert fo.shape[:2] == (2, 3)
    np.testing.assert_allclose(
        fo[1].permute(1, 2, 0).numpy(), imresize(img.astype(np.float64) / 255, scale), rtol=0, atol=1e-13
    )


def test_imresize_rejects_bad_input():
    with pytest.raises(InputError):
        imresize(np.zeros((4, 4, 3), bool), 0.5)
    with pytest.raises(InputError):
        imresize(_img(0), 0)
    with pytest.raises(InputError):
        imresize(np.zeros((2, 3, 4, 5)), 0.5)


# --------------------------------------------------------------------------- BD


def test_bd_kernels():
    assert len(gaussian_kernel1d(BD_VARIANTS["matlab"].kernel_size(1.6), 1.6)) == 12
    assert len(gaussian_kernel1d(BD_VARIANTS["duf"].kernel_size(1.6), 1.6)) == 13
    for size in (12, 13):
        k = gaussian_kernel1d(size, 1.6)
        assert k.sum() == pytest.approx(1.0, abs=1e-15)
        np.testing.assert_array_equal(k, k[::-1])
        assert np.argmax(k) == (size - 1) // 2
    assert BD_VARIANTS["matlab"].phase(4) == 1 and BD_VARIANTS["duf"].phase(4) == 0


def _bd_loops(img: np.ndarray, scale: int, size: int, phase: int, sigma: float = 1.6) -> np.ndarray:
    """Slow reference: 2-D correlation with MATLAB's anchor, replicate borders, then subsampling."""
    g = gaussian_kernel1d(size, sigma)
    k2 = np.outer(g, g)
    anchor = (size + 1) // 2 - 1
    h, w = img.shape[0] // scale * scale, img.shape[1] // scale * scale
    src = img[:h, :w].astype(np.float64)
    out = np.zeros((h // scale, w // scale) + img.shape[2:])
    for r in range(h // scale):
        for c in range(w // scale):
            pr, pc = phase + scale * r, phase + scale * c
            for j in range(size):
                for k in range(size):
                    y = min(max(pr + j - anchor, 0), h - 1)
                    x = min(max(pc + k - anchor, 0), w - 1)
                    out[r, c] += k2[j, k] * src[y, x]
    return out


@pytest.mark.parametrize("variant", ["matlab", "duf"])
def test_bd_matches_a_slow_loop_reference(variant):
    img = _img(8, 18, 22, 2, dtype=np.float64)  # not multiples of 4: modcrop to 16x20
    spec = BD_VARIANTS[variant]
    out = bd_degrade(img, 4, 1.6, variant=variant)
    assert out.shape == (4, 5, 2)
    np.testing.assert_allclose(out, _bd_loops(img, 4, spec.kernel_size(1.6), spec.phase(4)), atol=1e-13)


def test_bd_of_a_delta_is_the_kernel():
    img = np.zeros((32, 32))
    img[9, 9] = 1.0  # kept sample (matlab phase 1: rows 1, 5, 9, ...) sits on the delta
    g = gaussian_kernel1d(12, 1.6)
    out = bd_degrade(img, 4, 1.6, variant="matlab")
    # the anchor is the 6th tap (index 5): the delta meets g[5] at the sample on it, g[1] one sample on
    assert out[2, 2] == pytest.approx(g[5] * g[5], rel=1e-14)
    assert out[2, 3] == pytest.approx(g[5] * g[1], rel=1e-14)
    assert out[2, 1] == pytest.approx(g[5] * g[9], rel=1e-14)


def test_bd_uint8_constant_torch_and_rounding():
    img = np.full((16, 20, 3), 200, np.uint8)
    assert np.array_equal(bd_degrade(img), np.full((4, 5, 3), 200, np.uint8))
    rnd = _img(9, 24, 28)
    out = bd_degrade(rnd, variant="duf")
    ref = bd_degrade(rnd.astype(np.float64), variant="duf")
    assert np.array_equal(out, np.clip(np.floor(ref + 0.5), 0, 255).astype(np.uint8))
    t = bd_degrade(torch.from_numpy(rnd).permute(2, 0, 1), variant="duf")
    assert np.array_equal(t.permute(1, 2, 0).numpy(), out)


def test_bd_rejects_bad_options():
    with pytest.raises(InputError, match="variant"):
        bd_degrade(_img(0), variant="nope")
    with pytest.raises(InputError):
        bd_degrade(_img(0), scale=2.5)
    with pytest.raises(InputError):
        bd_degrade(_img(0, 3, 3), scale=4)


# --------------------------------------------------------------------------- noise


def test_noise_is_seeded_unclipped_and_has_the_right_level():
    img = np.full((2, 3, 64, 64), 0.98, np.float32)
    a = add_gaussian_noise(img, 50)
    b = add_gaussian_noise(img, 50, seed=0)
    c = add_gaussian_noise(img, 50, seed=1)
    assert isinstance(a, np.ndarray) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.max() > 1.0 and a.min() < 0.98  # not clipped
    assert np.std(a - img) == pytest.approx(50 / 255, rel=0.03)
    g = torch.Generator().manual_seed(3)
    first = add_gaussian_noise(torch.from_numpy(img), 10, generator=g)
    second = add_gaussian_noise(torch.from_numpy(img), 10, generator=g)
    assert not torch.equal(first, second)  # the generator advances


def test_noise_equals_the_official_protocol_draw():
    # the official test: torch.manual_seed(0); gt + torch.normal(0, sigma/255 map expanded to gt)
    gt = torch.rand(3, 3, 20, 24)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        level = torch.ones((1, 1, 1, 1)) * (30 / 255.0)
        expected = gt + torch.normal(mean=0, std=level.expand_as(gt))
    assert torch.equal(add_gaussian_noise(gt, 30, seed=0), expected)


def test_noise_rejects_bad_input():
    with pytest.raises(InputError):
        add_gaussian_noise(np.zeros((4, 4), np.uint8), 10)
    with pytest.raises(InputError):
        add_gaussian_noise(np.zeros((4, 4), np.float32), -1)
    with pytest.raises(InputError):
        add_gaussian_noise(np.zeros((4, 4), np.float32), 1, seed=0, generator=torch.Generator())


# --------------------------------------------------------------------------- MATLAB exactness


def test_bicubic_equals_the_matlab_verified_golden_results_bit_for_bit():
    """tests/data/bicubic/golden.npz: rvrt's results at a commit that matched MATLAB byte for byte on all
    of Vid4 calendar (tests/data/make_bicubic_fixture.py); float64 bitwise, so even a change of
    summation order shows up, and this runs in every checkout, real data or not."""
    with np.load(Path(__file__).parent / "data" / "bicubic" / "golden.npz") as z:
        g = {k: z[k] for k in z.files}
    img = g["input"]
    f = img.astype(np.float64) / 255
    assert np.array_equal(imresize(img, 1 / 4), g["down4_u8"])
    for name, got in [
        ("down4_f64", imresize(f, 1 / 4)),
        ("down3_f64", imresize(f, 1 / 3)),
        ("up4_f64", imresize(g["down4_f64"], 4)),
        ("aniso_f64", imresize(f, (1 / 2, 1 / 3))),
    ]:
        assert got.dtype == np.float64 and np.array_equal(got, g[name]), name
    # the torch path gives the same bits as numpy
    t = torch.from_numpy(np.ascontiguousarray(f.transpose(2, 0, 1)))
    assert np.array_equal(imresize(t, 1 / 4).numpy().transpose(1, 2, 0), g["down4_f64"])


# --------------------------------------------------------------------------- real data (Vid4)

_VID4_GT = REAL / "yhjo09+VSR-DUF" / "inputs" / "G" / "calendar"
_VID4_BI = REAL / "YapengTian+TDAN-VSR-CVPR-2020" / "data" / "Vid4" / "calendar" / "LR_bicubic"
_VID4_BD = REAL / "yhjo09+VSR-DUF" / "inputs" / "L" / "input"


@pytest.mark.skipif(not (_VID4_GT.is_dir() and _VID4_BI.is_dir()), reason=REAL_MISSING)
def test_vid4_calendar_bicubic_is_byte_exact():
    from rvrt.data.frames import read_image

    names = sorted(p.name for p in _VID4_BI.glob("Frame *.png"))
    assert len(names) == 41
    for name in names:
        out = imresize(read_image(_VID4_GT / name), 1 / 4)
        assert np.array_equal(out, read_image(_VID4_BI / name)), name


@pytest.mark.skipif(not (_VID4_GT.is_dir() and _VID4_BD.is_dir()), reason=REAL_MISSING)
def test_vid4_calendar_bd_matches_the_duf_frames():
    from rvrt.data.frames import read_image

    for name in ("Frame 001.png", "Frame 041.png"):
        out = bd_degrade(read_image(_VID4_GT / name), variant="duf").astype(np.float64)
        ref = read_image(_VID4_BD / name).astype(np.float64)
        assert np.abs(out - ref).max() <= 3
        assert 10 * np.log10(255**2 / np.mean((out - ref) ** 2)) > 50
