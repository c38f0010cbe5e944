"""PSNR and SSIM as the RVRT / VRT papers compute them.

The published numbers come from 8-bit images: a restored frame is clamped to [0, 1], scaled by
255 in float32 and rounded (half to even, as numpy does), then compared with the 8-bit ground
truth. PSNR uses the MSE on the 0..255 scale. SSIM is the MATLAB-style definition of Wang et al.:
an 11x11 Gaussian window (sigma 1.5), statistics only where the window fits inside the image
("valid"), ``C1 = (0.01 * 255)^2``, ``C2 = (0.03 * 255)^2``, the mean of the SSIM map, and for
RGB the mean of the three per-channel values. The Y channel is ITU-R BT.601 luma on the
studio range 16..235, computed in float from the 8-bit image and not rounded.

Identical images have an infinite PSNR (``math.inf``), as in the official scripts; a sequence
or dataset mean that includes such a frame is infinite too.

Inputs: numpy arrays are images, ``(H, W, 3)`` RGB or ``(H, W)`` grey; torch tensors are
channel first, ``(3, H, W)`` or ``(H, W)``. Integer inputs (uint8) are used as they are; float
inputs are taken to be in [0, 1] and converted with :func:`to_uint8`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rvrt.errors import InputError
from rvrt.media.pixels import quantize

__all__ = ["psnr", "ssim", "rgb_to_y", "to_uint8", "SSIM_WINDOW", "SSIM_SIGMA"]

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2
# BT.601 luma weights for R, G, B on [0, 255] inputs (scaled by 255), offset 16
_Y_WEIGHTS = (65.481, 128.553, 24.966)

ImageLike = np.ndarray | torch.Tensor


def _as_hwc(img: ImageLike) -> np.ndarray:
    """numpy ``(H, W[, C])`` from a numpy image or a channel-first tensor."""
    if isinstance(img, torch.Tensor):
        t = img.detach().cpu()
        if t.dim() == 3:
            t = t.permute(1, 2, 0)
        elif t.dim() != 2:
            raise InputError(f"expected a (C, H, W) or (H, W) tensor; got shape {tuple(img.shape)}")
        if t.dtype == torch.bfloat16:
            t = t.float()
        return t.numpy()
    if not isinstance(img, np.ndarray):
        raise InputError(f"expected a numpy array or a torch tensor; got {type(img).__name__}")
    if img.ndim not in (2, 3):
        raise InputError(f"expected an (H, W, C) or (H, W) image; got shape {img.shape}")
    return img


def to_uint8(img: ImageLike) -> np.ndarray:
    """The 8-bit image the official evaluation scores: ``(H, W[, C])`` uint8.

    Floats (any precision) are clamped to [0, 1], multiplied by 255 in float32 and rounded half
    to even; uint8 passes through unchanged. Tensors are channel first and come back channel last.
    """
    arr = _as_hwc(img)
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind == "f":
        return quantize(arr, 8)
    raise InputError(f"expected a uint8 image or a float image in [0, 1]; got dtype {arr.dtype}")


def rgb_to_y(img: ImageLike) -> np.ndarray:
    """BT.601 luma of an RGB image, ``(H, W)`` float in 16..235 (not rounded).

    ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` on R, G, B in 0..255, from the 8-bit
    image (:func:`to_uint8`). The arithmetic follows the official script step by step (float32
    scaling to [0, 1] and back, a float64 dot product, a float32 result) so the values agree
    with it to the last bit in practice, not only to rounding error.
    """
    u8 = to_uint8(img)
    if u8.ndim != 3 or u8.shape[2] != 3:
        raise InputError(f"rgb_to_y needs an RGB image (H, W, 3); got shape {u8.shape}")
    x = u8.astype(np.float32) / np.float32(255.0)
    x = x * np.float32(255.0)
    # the official input is BGR, so its sum runs B, G, R
    acc = x[..., 2].astype(np.float64) * _Y_WEIGHTS[2]
    acc = acc + x[..., 1].astype(np.float64) * _Y_WEIGHTS[1]
    acc = acc + x[..., 0].astype(np.float64) * _Y_WEIGHTS[0]
    y = (acc / 255.0 + 16.0) / 255.0
    return y.astype(np.float32) * np.float32(255.0)


def _prepare(a: ImageLike, b: ImageLike, border: int, y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    if border < 0:
        raise InputError(f"border must be >= 0; got {border}")
    x, y = to_uint8(a), to_uint8(b)
    if x.shape != y.shape:
        raise InputError(f"images differ in shape: {x.shape} vs {y.shape}")
    if y_channel:
        x, y = rgb_to_y(x), rgb_to_y(y)
    if border:
        h, w = x.shape[:2]
        if 2 * border >= min(h, w):
            raise InputError(f"border {border} leaves nothing of a {h}x{w} image")
        x, y = x[border : h - border, border : w - border], y[border : h - border, border : w - border]
    return x.astype(np.float64), y.astype(np.float64)


def psnr(a: ImageLike, b: ImageLike, *, border: int = 0, y_channel: bool = False) -> float:
    """Peak signal-to-noise ratio in dB on the 0..255 scale.

    Args:
        a, b: images of the same shape (see the module docstring for layouts and dtypes).
        border: pixels cropped from each side before scoring.
        y_channel: score the BT.601 luma instead of all channels.

    Returns:
        ``10 log10(255^2 / MSE)``; ``math.inf`` for identical images.
    """
    x, y = _prepare(a, b, border, y_channel)
    mse = float(np.mean((x - y) ** 2))
    if mse == 0.0:
        return math.inf
    return 20.0 * math.log10(255.0 / math.sqrt(mse))


def _gaussian_window() -> np.ndarray:
    r = np.arange(SSIM_WINDOW, dtype=np.float64) - (SSIM_WINDOW - 1) / 2
    g = np.exp(-(r * r) / (2.0 * SSIM_SIGMA**2))
    return g / g.sum()


_WINDOW = _gaussian_window()


def _filter_valid(x: np.ndarray) -> np.ndarray:
    """Separable Gaussian correlation keeping only positions where the window fits."""
    n = SSIM_WINDOW
    h, w = x.shape
    rows = _WINDOW[0] * x[0 : h - n + 1]
    for i in range(1, n):
        rows = rows + _WINDOW[i] * x[i : h - n + 1 + i]
    out = _WINDOW[0] * rows[:, 0 : w - n + 1]
    for j in range(1, n):
        out = out + _WINDOW[j] * rows[:, j : w - n + 1 + j]
    return out


def _ssim_plane(x: np.ndarray, y: np.ndarray) -> float:
    mx, my = _filter_valid(x), _filter_valid(y)
    mxx, myy, mxy = mx * mx, my * my, mx * my
    vx = _filter_valid(x * x) - mxx
    vy = _filter_valid(y * y) - myy
    cxy = _filter_valid(x * y) - mxy
    smap = ((2 * mxy + _C1) * (2 * cxy + _C2)) / ((mxx + myy + _C1) * (vx + vy + _C2))
    return float(smap.mean())


def ssim(a: ImageLike, b: ImageLike, *, border: int = 0, y_channel: bool = False) -> float:
    """Structural similarity, MATLAB style (see the module docstring), in [-1, 1].

    Args:
        a, b: images of the same shape, at least 11x11 after the border crop.
        border: pixels cropped from each side before scoring.
        y_channel: score the BT.601 luma instead of the mean over channels.
    """
    x, y = _prepare(a, b, border, y_channel)
    if min(x.shape[:2]) < SSIM_WINDOW:
        raise InputError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}; got {x.shape[:2]}")
    if x.ndim == 2:
        return _ssim_plane(x, y)
    return float(np.mean([_ssim_plane(x[..., c], y[..., c]) for c in range(x.shape[2])]))
