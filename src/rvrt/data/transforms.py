"""Clip augmentations for training: aligned random crops, flips, transposition, temporal reversal.

Clips are numpy arrays ``(T, H, W, C)``; the LQ and GT clips of one sample receive the same
transform (the crop in LQ pixels, scaled for GT). Randomness comes from the
:class:`numpy.random.Generator` passed in, so a sample is a pure function of its seed.
"""

from __future__ import annotations

import numpy as np
import torch

from rvrt.errors import InputError
from rvrt.media.pixels import to_float

__all__ = ["random_crop_box", "crop", "augment_flags", "apply_augment", "clip_to_tensor"]


def random_crop_box(lq_hw: tuple[int, int], patch: int, rng: np.random.Generator, where: str = "") -> tuple[int, int]:
    """Top-left corner ``(top, left)`` of a random ``patch x patch`` crop in an ``lq_hw`` image.

    Raises:
        InputError: the image is smaller than the patch.
    """
    h, w = lq_hw
    if h < patch or w < patch:
        raise InputError(f"{where or 'frame'} is {h}x{w} (LQ pixels), smaller than the {patch}x{patch} crop")
    return int(rng.integers(0, h - patch + 1)), int(rng.integers(0, w - patch + 1))


def crop(clip: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    """``clip[:, top:top+size, left:left+size]`` for a ``(T, H, W, C)`` clip."""
    return clip[:, top : top + size, left : left + size]


def augment_flags(rng: np.random.Generator, *, hflip: bool, rot: bool) -> tuple[bool, bool, bool]:
    """Draw ``(hflip, vflip, transpose)``; with ``rot`` the vertical flip and transposition
    together give all eight rotations/reflections of the square crop."""
    draws = rng.random(3)
    return bool(hflip and draws[0] < 0.5), bool(rot and draws[1] < 0.5), bool(rot and draws[2] < 0.5)


def apply_augment(clip: np.ndarray, flags: tuple[bool, bool, bool]) -> np.ndarray:
    """Apply ``(hflip, vflip, transpose)`` to a ``(T, H, W, C)`` clip (views; no copy)."""
    hflip, vflip, transpose = flags
    if hflip:
        clip = clip[:, :, ::-1]
    if vflip:
        clip = clip[:, ::-1]
    if transpose:
        clip = clip.transpose(0, 2, 1, 3)
    return clip


def clip_to_tensor(clip: np.ndarray) -> torch.Tensor:
    """``(T, H, W, C)`` uint8/uint16 or float (0-1) -> float32 tensor ``(T, C, H, W)`` in [0, 1]."""
    arr = np.ascontiguousarray(clip.transpose(0, 3, 1, 2))
    if arr.dtype in (np.uint8, np.uint16):
        arr = to_float(arr)
    return torch.from_numpy(arr).float()
