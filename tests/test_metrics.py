"""PSNR / SSIM / Y conversion against hand-computed values and scikit-image."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rvrt.errors import InputError
from rvrt.metrics import psnr, rgb_to_y, ssim, to_uint8

skm = pytest.importorskip("skimage.metrics")


def _img(seed: int, h: int = 40, w: int = 48, c: int | None = 3, lo: int = 0, hi: int = 256) -> np.ndarray:
    shape = (h, w) if c is None else (h, w, c)
    return np.random.default_rng(seed).integers(lo, hi, shape, dtype=np.uint8)


def test_psnr_of_constant_offset_is_exact():
    a = _img(0, lo=10, hi=200)
    b = a + np.uint8(5)  # MSE = 25 everywhere
    assert psnr(a, b) == pytest.approx(20 * math.log10(255 / 5), abs=1e-12)
    assert psnr(b, a) == psnr(a, b)


def test_psnr_of_identical_images_is_infinite():
    a = _img(1)
    assert psnr(a, a.copy()) == math.inf
    assert psnr(a, a, y_channel=True) == math.inf


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_psnr_matches_scikit_image(seed):
    a, b = _img(seed), _img(seed + 10)
    assert psnr(a, b) == pytest.approx(skm.peak_signal_noise_ratio(a, b, data_range=255), rel=1e-12)


def test_border_crop_ignores_the_border():
    a = _img(3)
    b = a.copy()
    b[:2] = 0
    b[:, -2:] = 255
    assert psnr(a, b) < 100
    assert psnr(a, b, border=2) == math.inf
    c = b.copy()
    c[10, 10, 0] ^= 0xFF
    expected = skm.peak_signal_noise_ratio(a[3:-3, 3:-3], c[3:-3, 3:-3], data_range=255)
    assert psnr(a, c, border=3) == pytest.approx(expected, rel=1e-12)


def _sk_ssim(a, b, channel_axis=-1):
    return skm.structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=channel_axis
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_ssim_matches_scikit_image_rgb(seed):
    # skimage filters with reflected borders and then drops 5 pixels per side: the same "valid" map
    a = _img(seed, 37, 53)
    noise = np.random.default_rng(seed + 5).integers(-30, 31, a.shape)
    b = np.clip(a.astype(int) + noise, 0, 255).astype(np.uint8)
    assert ssim(a, b) == pytest.approx(_sk_ssim(a, b), abs=1e-12)


def test_ssim_matches_scikit_image_grey_and_border():
    a, b = _img(4, 30, 30, None), _img(5, 30, 30, None)
    assert ssim(a, b) == pytest.approx(_sk_ssim(a, b, None), abs=1e-12)
    assert ssim(a, b, border=4) == pytest.approx(_sk_ssim(a[4:-4, 4:-4], b[4:-4, 4:-4], None), abs=1e-12)


def test_ssim_of_constant_images_has_closed_form():
    # no variance: SSIM reduces to the luminance term (2 m1 m2 + C1) / (m1^2 + m2^2 + C1)
    a = np.full((20, 24, 3), 100, np.uint8)
    b = np.full((20, 24, 3), 140, np.uint8)
    c1 = (0.01 * 255) ** 2
    assert ssim(a, b) == pytest.approx((2 * 100 * 140 + c1) / (100**2 + 140**2 + c1), rel=1e-12)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-15)


def test_ssim_needs_the_window_to_fit():
    a = _img(0, 10, 30)
    with pytest.raises(InputError, match="11x11"):
        ssim(a, a)
    with pytest.raises(InputError):
        ssim(_img(0, 30, 30), _img(0, 30, 30), border=10)


def test_rgb_to_y_values():
    white = np.full((2, 2, 3), 255, np.uint8)
    black = np.zeros((2, 2, 3), np.uint8)
    assert np.allclose(rgb_to_y(white), 235.0, atol=1e-4)  # 16 + (65.481 + 128.553 + 24.966)
    assert np.allclose(rgb_to_y(black), 16.0, atol=1e-5)
    img = _img(7)
    expected = 16 + img.astype(np.float64) @ np.array([65.481, 128.553, 24.966]) / 255
    y = rgb_to_y(img)
    assert y.shape == img.shape[:2] and y.dtype == np.float32
    np.testing.assert_allclose(y, expected, atol=3e-5)


def test_y_channel_scores_use_unrounded_luma():
    a, b = _img(8), _img(9)
    ya, yb = rgb_to_y(a).astype(np.float64), rgb_to_y(b).astype(np.float64)
    mse = np.mean((ya - yb) ** 2)
    assert psnr(a, b, y_channel=True) == pytest.approx(10 * math.log10(255**2 / mse), rel=1e-12)
    assert ssim(a, b, y_channel=True) == pytest.approx(_sk_ssim(ya, yb, None), abs=1e-12)


def test_to_uint8_roundtrip_clamp_and_layouts():
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert np.array_equal(to_uint8(levels.astype(np.float32) / np.float32(255)), levels)
    assert np.array_equal(to_uint8(levels.astype(np.float64) / 255), levels)
    assert to_uint8(np.array([[-0.3, 1.7]], np.float32)).tolist() == [[0, 255]]
    rgb = np.random.default_rng(0).random((5, 6, 3), dtype=np.float32)
    chw = torch.from_numpy(rgb).permute(2, 0, 1)
    assert np.array_equal(to_uint8(chw), to_uint8(rgb))
    assert to_uint8(chw).shape == (5, 6, 3)
    u8 = _img(0)
    assert to_uint8(u8) is u8


def test_float_and_tensor_inputs_are_quantised_first():
    gt = _img(11)
    out = gt.astype(np.float32) / 255 + np.float32(0.4 / 255)  # rounds back to gt
    assert psnr(out, gt) == math.inf
    t = torch.from_numpy(out).permute(2, 0, 1)
    assert psnr(t, gt) == math.inf
    noisy = gt.astype(np.float32) / 255 + np.float32(0.6 / 255)  # rounds to gt + 1 (where < 255)
    assert psnr(noisy, gt) == pytest.approx(psnr(to_uint8(noisy), gt), rel=1e-15)


def test_bad_inputs_raise_input_error():
    with pytest.raises(InputError, match="shape"):
        psnr(_img(0, 20, 20), _img(0, 20, 21))
    with pytest.raises(InputError):
        psnr(np.zeros((4, 4, 3), np.int32), np.zeros((4, 4, 3), np.int32))
    with pytest.raises(InputError):
        rgb_to_y(_img(0, c=None))
    with pytest.raises(InputError):
        psnr([1, 2], [1, 2])
