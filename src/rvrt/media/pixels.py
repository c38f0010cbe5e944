"""Pixel values: 8/16-bit integers <-> float in [0, 1], in one place.

To float: ``v / 255`` (or ``/ 65535``) in float32, as the official loaders do. To integers: clamp to
[0, 1], multiply by 255 (or 65535) in float32 and round half to even, as the official evaluation
saves and scores frames. numpy arrays are ``(H, W, 3)`` channel last; tensors ``(3, H, W)``.
"""

from __future__ import annotations

import numpy as np
import torch

from rvrt.errors import InputError

__all__ = ["to_float", "quantize", "frame_to_tensor", "tensor_to_frame", "top_value"]


def top_value(bit_depth: int) -> float:
    """The integer white of a bit depth (255 or 65535)."""
    if bit_depth not in (8, 16):
        raise InputError(f"bit depth must be 8 or 16; got {bit_depth}")
    return 65535.0 if bit_depth == 16 else 255.0


def to_float(img: np.ndarray) -> np.ndarray:
    """uint8 / uint16 pixels to float32 in [0, 1] (``x / 255`` or ``x / 65535`` in float32)."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) / np.float32(255.0)
    if img.dtype == np.uint16:
        return img.astype(np.float32) / np.float32(65535.0)
    raise InputError(f"expected a uint8 or uint16 image; got {img.dtype}")


def quantize(x: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """Float pixels (any precision) to uint8 / uint16: clamp to [0, 1], scale in float32, round half to even."""
    top = np.float32(top_value(bit_depth))
    q = np.rint(np.clip(np.asarray(x).astype(np.float32, copy=False), 0.0, 1.0) * top)
    return q.astype(np.uint16 if bit_depth == 16 else np.uint8)


def frame_to_tensor(data: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8/uint16 -> ``(3, H, W)`` float32 tensor in [0, 1] (same values as :func:`to_float`)."""
    if data.dtype not in (np.uint8, np.uint16):
        raise InputError(f"expected uint8 or uint16 frames; got {data.dtype}")
    scale = 65535.0 if data.dtype == np.uint16 else 255.0
    # decoded frames may be read-only views: copy those (torch cannot wrap them safely)
    arr = np.require(data, requirements=("C", "W"))
    if arr.dtype == np.uint16:  # torch has no arithmetic on uint16
        arr = arr.astype(np.int32)
    return torch.from_numpy(arr).permute(2, 0, 1).float().div_(scale)


def tensor_to_frame(frame: torch.Tensor, bit_depth: int = 8) -> np.ndarray:
    """``(3, H, W)`` float tensor -> ``(H, W, 3)`` uint8/uint16 (same values as :func:`quantize`)."""
    top = top_value(bit_depth)
    q = frame.detach().float().clamp(0, 1).mul(top).round_()
    q = q.to(torch.int32 if bit_depth == 16 else torch.uint8).permute(1, 2, 0).cpu().numpy()
    return q.astype(np.uint16) if bit_depth == 16 else np.ascontiguousarray(q)
