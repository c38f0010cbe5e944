"""Degradations of the video restoration benchmarks: MATLAB bicubic (BI), blur-downsampling (BD), noise.

* :func:`imresize` is MATLAB's ``imresize(img, scale, 'bicubic')`` (antialiased when shrinking).
  For an 8-bit image it reproduces MATLAB's bytes: checked on all 41 frames of Vid4 ``calendar``
  against the published BIx4 frames, every byte equal.
* :func:`bd_degrade` is the "BD" degradation: a Gaussian blur (sigma 1.6), replicate borders,
  then every ``scale``-th pixel. Two published variants differ in kernel size and sampling phase
  (see :data:`BD_VARIANTS`).
* :func:`add_gaussian_noise` is the noise of the denoising benchmarks (sigma on the 0..255
  scale, no clipping), drawn from a seeded torch generator.
* :func:`make_degradation` turns a name (``"bi"``, ``"bd"``, ``"area"``) into the uint8 GT -> LQ
  frame function the datasets apply on the fly.

Layouts: numpy arrays are images, ``(H, W)`` or ``(H, W, C)``; torch tensors are channel first,
``(..., H, W)``. Integer images (uint8, uint16, ...) are computed in float64 and rounded half away
from zero and clipped to their range once at the end, as MATLAB does when it writes the result of
``imresize(im2double(img), ...)``; float images are returned unrounded in their own dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from rvrt.errors import InputError

__all__ = [
    "imresize",
    "bd_degrade",
    "add_gaussian_noise",
    "gaussian_kernel1d",
    "BDVariant",
    "BD_VARIANTS",
    "resize_weights",
    "Degrade",
    "make_degradation",
    "area_downsample",
]

Array = np.ndarray | torch.Tensor


# ---------------------------------------------------------------------------------------------
# resampling along one axis with a (weights, indices) table: shared by imresize and bd_degrade
# ---------------------------------------------------------------------------------------------


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


def resize_weights(in_len: int, out_len: int, scale: float, *, antialias: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB's bicubic contribution table for one dimension.

    Output pixel ``i`` (1-based) maps to input coordinate ``u = i / scale + (1 - 1 / scale) / 2``;
    when shrinking with antialiasing the kernel is stretched by ``1 / scale`` (and scaled by
    ``scale``). Rows are normalised to sum to 1; out-of-range taps are folded back symmetrically
    (edge pixel repeated); taps whose weight is zero for every output are dropped.

    Returns:
        ``weights`` ``(out_len, P)`` float64 and 0-based ``indices`` ``(out_len, P)`` int64.
    """
    shrink_aa = antialias and scale < 1
    width = 4.0 / scale if shrink_aa else 4.0
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    dist = u[:, None] - idx
    weights = scale * _cubic(dist * scale) if shrink_aa else _cubic(dist)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # symmetric extension, edge included: ..., 1, 0 | 0, 1, ..., n-1 | n-1, n-2, ...
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    indices = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], indices[:, keep]


def _resample(x: Array, axis: int, weights: np.ndarray, indices: np.ndarray) -> Array:
    """``out[i] = sum_k weights[i, k] * x[indices[i, k]]`` along ``axis``, summed in tap order."""
    if isinstance(x, torch.Tensor):
        w = torch.as_tensor(weights, dtype=x.dtype, device=x.device)
        ind = torch.as_tensor(indices, device=x.device)
        shape = [1] * x.dim()
        shape[axis] = -1
        out = None
        for k in range(ind.shape[1]):
            term = x.index_select(axis, ind[:, k]) * w[:, k].view(shape)
            out = term if out is None else out + term
        return out
    shape = [1] * x.ndim
    shape[axis] = -1
    out = None
    for k in range(indices.shape[1]):
        term = np.take(x, indices[:, k], axis=axis) * weights[:, k].reshape(shape)
        out = term if out is None else out + term
    return out


def _spatial_axes(x: Array) -> tuple[int, int]:
    """(row axis, column axis) for the layout conventions of this module."""
    if isinstance(x, torch.Tensor):
        if x.dim() < 2:
            raise InputError(f"expected a tensor (..., H, W); got shape {tuple(x.shape)}")
        return x.dim() - 2, x.dim() - 1
    if not isinstance(x, np.ndarray):
        raise InputError(f"expected a numpy array or a torch tensor; got {type(x).__name__}")
    if x.ndim not in (2, 3):
        raise InputError(f"expected an (H, W) or (H, W, C) image; got shape {x.shape}")
    return 0, 1


def _to_work(x: Array) -> Array:
    """float64 working copy (exactness first: these are data-preparation tools, not hot paths)."""
    if isinstance(x, torch.Tensor):
        if x.dtype == torch.bool or x.is_complex():
            raise InputError(f"unsupported tensor dtype {x.dtype}")
        return x.to(torch.float64)
    if x.dtype.kind not in "uif":
        raise InputError(f"unsupported image dtype {x.dtype}")
    return x.astype(np.float64)


def _from_work(y: Array, like: Array) -> Array:
    """Back to the input's dtype; integers rounded half away from zero and clipped to their range."""
    if isinstance(like, torch.Tensor):
        if like.is_floating_point():
            return y.to(like.dtype)
        info = torch.iinfo(like.dtype)
        r = torch.sign(y) * torch.floor(torch.abs(y) + 0.5)
        return r.clamp(info.min, info.max).to(like.dtype)
    if like.dtype.kind == "f":
        return y.astype(like.dtype)
    info = np.iinfo(like.dtype)
    r = np.sign(y) * np.floor(np.abs(y) + 0.5)
    return np.clip(r, info.min, info.max).astype(like.dtype)


# ---------------------------------------------------------------------------------------------
# BI: MATLAB bicubic imresize
# ---------------------------------------------------------------------------------------------


def imresize(img: Array, scale: float | tuple[float, float], *, antialias: bool = True) -> Array:
    """MATLAB ``imresize(img, scale, 'bicubic')``.

    Args:
        img: numpy ``(H, W)`` / ``(H, W, C)`` or tensor ``(..., H, W)``; integer or float.
        scale: factor (``0.25`` for x4 downscaling), or ``(scale_h, scale_w)``.
        antialias: widen the kernel when shrinking (MATLAB's default, ``'Antialiasing', true``).

    Returns:
        ``ceil(H * scale) x ceil(W * scale)`` in the input's dtype and layout. Dimensions are
        resized in MATLAB's order (the smaller factor first, rows first on a tie); integer results
        are rounded once, at the end.
    """
    rows, cols = _spatial_axes(img)
    sh, sw = (scale, scale) if isinstance(scale, (int, float)) else tuple(scale)
    if not (sh > 0 and sw > 0 and math.isfinite(sh) and math.isfinite(sw)):
        raise InputError(f"scale must be positive and finite; got {scale}")
    h, w = img.shape[rows], img.shape[cols]
    if h < 1 or w < 1:
        raise InputError(f"cannot resize an empty image of shape {tuple(img.shape)}")
    out = _to_work(img)
    passes = [(rows, h, sh), (cols, w, sw)]
    passes.sort(key=lambda p: p[2])  # stable: rows first when the factors are equal
    for axis, n, s in passes:
        weights, indices = resize_weights(n, math.ceil(n * s), s, antialias=antialias)
        out = _resample(out, axis, weights, indices)
    return _from_work(out, img)


# ---------------------------------------------------------------------------------------------
# BD: Gaussian blur + subsampling
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BDVariant:
    """One published recipe of the blur-downsampling degradation.

    Attributes:
        name: key in :data:`BD_VARIANTS`.
        kernel_size: kernel size as a function of sigma.
        phase: offset (0-based) of the first kept pixel as a function of the scale.
        source: where the recipe comes from.
    """

    name: str
    kernel_size: Callable[[float], int]
    phase: Callable[[int], int]
    source: str


#: ``"matlab"``: the RVRT/VRT/KAIR MATLAB scripts (``generate_LR_Vimeo90K_BD.m``,
#: ``generate_LR_UDM10_BD.m``): ``fspecial('gaussian', 2 * ceil(3 sigma) + 2, sigma)`` (12x12 for
#: sigma 1.6, an even size that MATLAB's ``imfilter`` anchors at its 6th tap), replicate borders,
#: keep rows/columns ``scale/2, scale/2 + scale, ...`` (1-based), i.e. 0-based phase
#: ``scale/2 - 1``: the kept samples are the centres of the ``scale x scale`` blocks.
#: ``"duf"``: the 13x13 kernel (``2 * floor(4 sigma + 0.5) + 1``) of the DUF / TOFlow-era data, replicate
#: borders, phase 0; it matches the Vid4 BD frames published with VSR-DUF (within 2 grey levels).
BD_VARIANTS: dict[str, BDVariant] = {
    "matlab": BDVariant(
        "matlab",
        kernel_size=lambda sigma: 2 * math.ceil(3 * sigma) + 2,
        phase=lambda scale: max(scale // 2 - 1, 0),
        source="KAIR scripts/matlab_scripts/generate_LR_Vimeo90K_BD.m (used for RVRT/VRT training and tests)",
    ),
    "duf": BDVariant(
        "duf",
        kernel_size=lambda sigma: 2 * int(4 * sigma + 0.5) + 1,
        phase=lambda scale: 0,
        source="VSR-DUF inputs (Vid4 BD as used by DUF, TDAN and others)",
    ),
}


def gaussian_kernel1d(size: int, sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian of ``size`` taps centred on the middle of the taps (float64).

    Its outer product is MATLAB's ``fspecial('gaussian', size, sigma)`` (to rounding error).
    """
    if size < 1 or not sigma > 0:
        raise InputError(f"need size >= 1 and sigma > 0; got size={size}, sigma={sigma}")
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(r * r) / (2.0 * sigma * sigma))
    return g / g.sum()


def _blur_sample_table(n: int, scale: int, kernel: np.ndarray, phase: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights/indices for 'correlate with kernel (replicate borders), keep every scale-th sample'."""
    size = len(kernel)
    anchor = (size + 1) // 2 - 1  # MATLAB imfilter's centre tap (0-based), also for even sizes
    centres = phase + scale * np.arange(n // scale)
    indices = np.clip(centres[:, None] + np.arange(size)[None, :] - anchor, 0, n - 1)
    weights = np.tile(kernel, (len(centres), 1))
    return weights, indices


def bd_degrade(img: Array, scale: int = 4, sigma: float = 1.6, *, variant: str = "matlab") -> Array:
    """Blur-downsampling: Gaussian blur with replicate borders, then keep every ``scale``-th pixel.

    The image is first cropped to a multiple of ``scale`` (``modcrop``, as the official scripts
    do) and the result is ``H // scale x W // scale``.

    Args:
        img: numpy ``(H, W)`` / ``(H, W, C)`` or tensor ``(..., H, W)``; integer or float.
        scale: integer downsampling factor.
        sigma: Gaussian standard deviation in pixels.
        variant: ``"matlab"`` (the RVRT/KAIR MATLAB scripts) or ``"duf"``; see :data:`BD_VARIANTS`.
    """
    if variant not in BD_VARIANTS:
        raise InputError(f"unknown BD variant {variant!r}; known: {', '.join(BD_VARIANTS)}")
    if int(scale) != scale or scale < 1:
        raise InputError(f"BD scale must be a positive integer; got {scale}")
    scale = int(scale)
    spec = BD_VARIANTS[variant]
    rows, cols = _spatial_axes(img)
    h, w = img.shape[rows] // scale * scale, img.shape[cols] // scale * scale
    if h == 0 or w == 0:
        raise InputError(f"image of shape {tuple(img.shape)} is smaller than the scale {scale}")
    kernel = gaussian_kernel1d(spec.kernel_size(sigma), sigma)
    phase = spec.phase(scale)
    out = _to_work(img)
    out = out[..., :h, :w] if isinstance(out, torch.Tensor) else out[:h, :w]
    for axis, n in ((rows, h), (cols, w)):
        weights, indices = _blur_sample_table(n, scale, kernel, phase)
        out = _resample(out, axis, weights, indices)
    return _from_work(out, img)


# ---------------------------------------------------------------------------------------------
# noise
# ---------------------------------------------------------------------------------------------


def add_gaussian_noise(
    img: Array, sigma_255: float, *, generator: torch.Generator | None = None, seed: int | None = None
) -> Array:
    """``img + N(0, (sigma_255 / 255)^2)``, not clipped (the denoising benchmarks' protocol).

    The noise is one draw of ``torch.randn(img.shape)`` in float32 from a CPU generator,
    scaled by ``float32(sigma_255 / 255)``: the same numbers as the official
    ``torch.manual_seed(seed); torch.normal(0, sigma_map)`` over the same shape. For the benchmark
    values draw over the whole clip at once, ``(T, C, H, W)``.

    Args:
        img: float image in [0, 1], numpy or tensor of any shape.
        sigma_255: standard deviation on the 0..255 scale (e.g. 10, 20, 30, 40, 50).
        generator: a CPU ``torch.Generator`` to draw from (advanced by the call).
        seed: seed for a fresh generator when ``generator`` is None; default 0 (the benchmark seed).

    Returns:
        The noisy image, same type and float dtype as ``img`` (float32 for a float32 input).
    """
    if generator is not None and seed is not None:
        raise InputError("pass either a generator or a seed, not both")
    if not (sigma_255 >= 0 and math.isfinite(sigma_255)):
        raise InputError(f"noise sigma must be >= 0; got {sigma_255}")
    is_tensor = isinstance(img, torch.Tensor)
    t = img if is_tensor else torch.from_numpy(np.asarray(img))
    if not t.is_floating_point():
        raise InputError(f"add_gaussian_noise expects a float image in [0, 1]; got {t.dtype}")
    if generator is None:
        generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
    noise = torch.randn(tuple(t.shape), generator=generator, dtype=torch.float32)
    noise = noise * torch.tensor(sigma_255 / 255.0, dtype=torch.float32)
    out = t + noise.to(device=t.device, dtype=t.dtype)
    return out if is_tensor else out.numpy()


# ---------------------------------------------------------------------------------------------
# GT -> LQ frame functions by name (the on-the-fly degradations of the datasets)
# ---------------------------------------------------------------------------------------------

#: ``(H, W, 3)`` uint8 GT frame -> ``(H / s, W / s, 3)`` uint8 LQ frame
Degrade = Callable[[np.ndarray], np.ndarray]


def area_downsample(img: np.ndarray, scale: int) -> np.ndarray:
    """Mean of each ``scale x scale`` block, rounded to uint8. A cheap, dependency-free
    degradation (synthetic data, smoke tests); not the BI protocol of published results."""
    h, w = img.shape[0] // scale * scale, img.shape[1] // scale * scale
    blocks = img[:h, :w].astype(np.float32).reshape(h // scale, scale, w // scale, scale, -1)
    return np.clip(np.rint(blocks.mean(axis=(1, 3))), 0, 255).astype(np.uint8)


def _as_uint8(img: np.ndarray) -> np.ndarray:
    # stored LQ datasets are 8-bit images, so on-the-fly LQ is rounded the same way
    if img.dtype == np.uint8:
        return img
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def make_degradation(name: str, scale: int, *, blur_sigma: float = 1.6) -> Degrade:
    """GT -> LQ function by name.

    ``"bi"``: MATLAB-exact bicubic downsampling (antialiased, :func:`imresize`); ``"bd"``:
    Gaussian blur (``blur_sigma``) then every ``scale``-th pixel (:func:`bd_degrade`); ``"area"``:
    block mean (:func:`area_downsample`).
    """
    if name == "area":
        return lambda img: area_downsample(img, scale)
    if name == "bi":
        return lambda img: _as_uint8(imresize(img, 1.0 / scale))
    if name == "bd":
        return lambda img: _as_uint8(bd_degrade(img, scale=scale, sigma=blur_sigma))
    raise InputError(f"unknown degradation {name!r}; use 'bi', 'bd', 'area' or (in a dataset table) 'real'")
