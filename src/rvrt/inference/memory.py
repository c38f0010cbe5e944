"""How much memory a model call takes: the memory model behind ``--tile auto``.

:func:`model_peak_bytes` predicts the peak memory of one call of a model on a ``T x H x W``
input (the growth of the process's resident memory on the CPU, the peak of allocated memory on
CUDA), from the architecture's configuration, the tile, the dtype and the device.

Each family has a formula whose terms follow what its forward pass holds at once, with
coefficients measured, not guessed: ``benchmarks/bench_memory_model.py`` runs each family over a
grid of widths, tile sizes and frame counts in fresh processes and fits the coefficients by
least squares on the relative error (the fit and its worst errors are in docs/PERFORMANCE.md).

* RVRT and RVRT Light keep, for every frame of the window, the shallow features and the four
  propagation branches (``5 C`` channels at feature resolution), the flows, and the output; on
  top of that one chunk of per-frame work (a few frames of feature extraction or reconstruction,
  one band of the upsampler) and one clip of propagation. Terms: ``T q C``, ``T p s^2``, ``q C
  min(T, chunk)``, a constant.
* VRT keeps its four scales of features for the whole window and attends over windows of
  ``wd x wh x ww`` tokens. Terms: ``T p C``, ``T p heads wd wh ww``, ``T p s^2``, a constant.

(``p`` input pixels, ``q`` feature pixels: ``p`` for x4 models, ``p / 16`` for the 1/4-resolution
features of deblurring and denoising models; ``s`` the output scale.)

On the CPU the resident memory includes what the C allocator keeps after transient tensors are
freed. The ``rvrt`` command asks PyTorch for 2 MB-aligned, huge-page backed blocks
(``THP_MEM_ALLOC_ENABLE=1``), which keeps that small (a 30-frame window of the built-in model
at 320x180: 2.1 GB instead of 3.1 GB); the coefficients are measured that way, and other processes
get a 1.5x margin. On CUDA the caching allocator's peak is what the tensors hold: the CPU
coefficients are used there too, which overestimates (no GPU was available to measure them).
"""

from __future__ import annotations

import math
import os

import torch

__all__ = ["model_peak_bytes", "features", "COEFFICIENTS", "thp_enabled"]

_MB = 2**20


def thp_enabled() -> bool:
    """Whether PyTorch's CPU allocator was told to use huge pages (``THP_MEM_ALLOC_ENABLE``)."""
    return os.environ.get("THP_MEM_ALLOC_ENABLE", "") not in ("", "0")


def _clip_frames(t: int) -> int:
    return t + t % 2 if t != 3 else t


def _chunk_frames(t: int, elements_per_frame: int, multiple: int = 2) -> int:
    from rvrt.models.layers import CHUNK_ELEMENTS

    step = max(multiple, CHUNK_ELEMENTS // max(elements_per_frame, 1) // multiple * multiple)
    return min(t, step)


def features(arch: str, config, frames: int, height: int, width: int) -> tuple[float, ...]:
    """The terms of a family's formula (see the module doc): element counts, and 1 for the constant."""
    if arch in ("rvrt", "rvrt_light"):
        t = _clip_frames(frames)
        c = config.embed_dims[0]
        s = config.upscale
        f = 1 if s == 4 else 4
        p = height * width
        q = p / (f * f)
        chunk = _chunk_frames(t, int(q * c))
        return (t * q * c, t * p * s * s, q * c * chunk, 1.0)
    if arch == "vrt":
        t = frames
        c = max(config.embed_dims)
        heads = max(config.num_heads)
        wd, wh, ww = config.window_size
        tokens = min(wd, t) * wh * ww
        p = height * width
        s = config.upscale
        return (t * p * c, t * p * heads * tokens, t * p * s * s, 1.0)
    raise ValueError(f"no memory model for architecture {arch!r}")


#: bytes per unit of each term of :func:`features`, per family (fitted, see the module doc)
COEFFICIENTS: dict[str, tuple[float, ...]] = {
    "rvrt": (28.0, 20.0, 60.0, 120 * _MB),
    "rvrt_light": (28.0, 20.0, 60.0, 120 * _MB),
    "vrt": (40.0, 6.0, 20.0, 120 * _MB),
}
#: the same under bf16/fp16 autocast, relative to float32 (activations are half as wide, the
#: features between steps and the output stay float32)
HALF_FACTOR = 0.75


def model_peak_bytes(
    arch: str,
    config,
    frames: int,
    height: int,
    width: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> int:
    """Predicted peak memory (bytes) of one call on a ``(1, frames, C, height, width)`` input.

    Args:
        arch: ``"rvrt"``, ``"rvrt_light"`` or ``"vrt"``.
        config: the model's config (:class:`~rvrt.models.RVRTConfig`, ...).
        frames, height, width: the tile.
        dtype: compute dtype (half precision runs under autocast).
        device: where the call runs.
    """
    coef = COEFFICIENTS[arch]
    terms = features(arch, config, frames, height, width)
    total = sum(c * x for c, x in zip(coef, terms, strict=True))
    if dtype in (torch.float16, torch.bfloat16):
        total *= HALF_FACTOR
    if torch.device(device).type == "cpu" and not thp_enabled():
        total *= 1.5  # the C allocator keeps more of the freed transients (see the module doc)
    return int(math.ceil(total))
