"""Blur kernels of the real-world degradations, and the filter that applies them to a clip.

Kernels are ``size x size`` (odd) float64 arrays summing to 1: Gaussian (isotropic or
anisotropic), generalised Gaussian, plateau, 2-D sinc and straight-line motion blur.
:func:`_kernel` builds one from the parameter dict drawn by :mod:`rvrt.data.realworld`;
:func:`_filter` convolves a ``(T, C, H, W)`` clip with it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rvrt.errors import InputError

__all__ = ["blur_kernel", "sinc_kernel", "motion_kernel"]


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.arange(size, dtype=np.float64) - size // 2
    return np.meshgrid(r, r, indexing="xy")


def blur_kernel(
    size: int, sigma_x: float, sigma_y: float, theta: float = 0.0, *, shape: str = "gaussian", beta: float = 1.0
) -> np.ndarray:
    """A ``size x size`` (odd) kernel summing to 1, of covariance ``R(theta) diag(sx^2, sy^2) R^T``.

    ``shape``: ``"gaussian"`` ``exp(-q / 2)``, ``"generalized"`` ``exp(-q^beta / 2)`` (beta < 1
    heavier tails, > 1 flatter top), ``"plateau"`` ``1 / (1 + q^beta)``, where ``q = x^T S^-1 x``.
    """
    xx, yy = _grid(size)
    c, s = math.cos(theta), math.sin(theta)
    u, v = c * xx + s * yy, -s * xx + c * yy  # coordinates along the rotated axes
    q = (u / sigma_x) ** 2 + (v / sigma_y) ** 2
    if shape == "gaussian":
        k = np.exp(-0.5 * q)
    elif shape == "generalized":
        k = np.exp(-0.5 * q**beta)
    elif shape == "plateau":
        k = 1.0 / (1.0 + q**beta)
    else:
        raise InputError(f"unknown kernel shape {shape!r}")
    return k / k.sum()


def sinc_kernel(size: int, omega: float) -> np.ndarray:
    """Circular low-pass (2-D sinc, cutoff ``omega`` rad/pixel): ringing and overshoot artefacts."""
    xx, yy = _grid(size)
    r = torch.from_numpy(np.hypot(xx, yy))
    safe = torch.where(r > 0, r, torch.ones_like(r))
    k = omega * torch.special.bessel_j1(omega * safe) / (2 * math.pi * safe)
    k = torch.where(r > 0, k, torch.full_like(k, omega**2 / (4 * math.pi))).numpy()
    return k / k.sum()


def motion_kernel(size: int, length: float, theta: float) -> np.ndarray:
    """A straight motion path of ``length`` pixels at angle ``theta``, splatted bilinearly."""
    k = np.zeros((size, size), np.float64)
    length = min(length, size - 1)
    n = max(2, int(math.ceil(length * 4)))
    t = np.linspace(-length / 2, length / 2, n)
    x, y = t * math.cos(theta) + size // 2, t * math.sin(theta) + size // 2
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    for dy, dx, w in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)), (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(k, (np.clip(y0 + dy, 0, size - 1), np.clip(x0 + dx, 0, size - 1)), w)
    return k / k.sum()


def _kernel(p: Mapping[str, Any]) -> np.ndarray:
    kind, size = p["kind"], p["size"]
    if kind == "sinc":
        return sinc_kernel(size, p["omega"])
    if kind == "motion":
        return motion_kernel(size, p["length"], p["theta"])
    shape = next((f for f in ("generalized", "plateau") if kind.startswith(f)), "gaussian")
    return blur_kernel(size, p["sigma_x"], p["sigma_y"], p["theta"], shape=shape, beta=p.get("beta", 1.0))


def _filter(x: torch.Tensor, kernel: np.ndarray) -> torch.Tensor:
    """``(T, C, H, W)`` convolved with one 2-D kernel (true convolution), reflected borders.

    Computed as a product of FFTs: for the 7-21 tap kernels here that is several times faster on
    the CPU than ``conv2d``, and equal to it within float32 rounding."""
    pad = kernel.shape[0] // 2
    t, c, h, w = x.shape
    mode = "reflect" if pad < min(h, w) else "replicate"
    y = F.pad(x.reshape(t * c, 1, h, w), (pad, pad, pad, pad), mode=mode)[:, 0]
    size = y.shape[-2:]
    k = torch.from_numpy(np.ascontiguousarray(kernel)).to(torch.float32)
    spectrum = torch.fft.rfft2(y.float(), s=size) * torch.fft.rfft2(k, s=size)
    # circular convolution: output (i, j) holds the kernel centred at (i - pad, j - pad)
    out = torch.fft.irfft2(spectrum, s=size)[:, 2 * pad : 2 * pad + h, 2 * pad : 2 * pad + w]
    return out.reshape(t, c, h, w).to(x.dtype)
