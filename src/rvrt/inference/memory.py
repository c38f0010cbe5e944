"""How much memory a model call takes: the memory model behind ``--tile auto``.

:func:`model_peak_bytes` predicts the peak memory of one call of a model on a ``T x H x W`` input
(the growth of the process's resident memory on the CPU; on CUDA the same formula stands in for
the allocator's peak), from the architecture's configuration, the tile, the dtype and the device.

Each family has a formula whose terms follow what its forward pass holds at once, with
coefficients measured, not guessed: ``benchmarks/bench_memory_model.py`` runs each family over a
grid of widths (16 to 180 channels), tile sizes and frame counts (2 to 30) in fresh processes,
records the peak, and ``--fit`` fits the coefficients on the relative error; the table of
measured against predicted peaks is in docs/PERFORMANCE.md. Notation: ``T`` frames (padded to
even), ``p`` input pixels, ``q`` feature pixels (``p``, or ``p / 16`` for the 1/4-resolution
features of x1 models: deblurring, denoising), ``C`` channels, ``s`` the output scale.

* RVRT and RVRT Light: the peak is the largest of three phases, each holding the features of
  every frame of the window (``5 C T q`` values: the shallow features and four branches):
  feature extraction (one chunk of frames through a Swin block), propagation (one clip aligned
  at a time; from the second clip on), and reconstruction (the output frames, one chunk of
  frames through the reconstruction block, one band of the upsampler).
* VRT: its stages hold features of the whole window at four scales and attend over windows of
  ``wd x wh x ww`` tokens: terms ``T p``, ``T p heads tokens``, ``C^2`` and a constant, with one
  set of coefficients for restoration and one for frame interpolation.

On the CPU the resident memory includes what the C allocator keeps after transient tensors are
freed. The ``rvrt`` command asks PyTorch for 2 MB-aligned, huge-page backed blocks
(``THP_MEM_ALLOC_ENABLE=1``, set before PyTorch is loaded), which keeps that small (a 30-frame
window of the built-in model at 320x180: 2.1 GB instead of 3.1 GB, at the same speed); the
coefficients are measured that way, and a process without it gets a 1.5x margin. Half precision
is planned like float32 (measured 6-19 % less). No GPU was available to measure CUDA; the CPU
coefficients overestimate there (no fragmentation), which errs on the safe side.
"""

from __future__ import annotations

import math
import os

import torch

__all__ = ["model_peak_bytes", "thp_enabled", "vrt_terms", "CLIP_RECURRENT", "VRT_COEFFICIENTS", "VFI_COEFFICIENTS"]

_MB = 2**20

#: RVRT / RVRT Light (bytes per element of each term, MB for the constant), fitted with
#: ``bench_memory_model.py --fit`` on 40 measurements (fp32, CPU, THP): worst error 23 %, within
#: 15 % at tiles of 96 x 128 pixels and more
CLIP_RECURRENT = dict(
    features=12.155,  # per T q C: the per-clip features of the five branches (float32: 20 B), net of sharing
    extract=66.496,  # per q C of an extraction chunk (its frames)
    align=466.833,  # per q C: one clip of alignment (guided deformable attention and its sampling)
    output=55.21,  # per T p s^2: the output frames (float32 RGB) and the accumulators around them
    recon=21.466,  # per 5 q C of a reconstruction chunk (its frames)
    band=4.796,  # per element of an upsampler band
    base_mb=31.913,
)
#: VRT: bytes per unit of ``T p``, ``T p heads tokens``, ``1000 C^2`` and a constant, for restoration
#: (20 measurements: worst error 32 %) and for frame interpolation (6 measurements: worst 4 %)
VRT_COEFFICIENTS = (5181.076, 2.743, 19.491, 121576063.259)
VFI_COEFFICIENTS = (895.421, 4.162, 3.809, 24373293.725)


def thp_enabled() -> bool:
    """Whether PyTorch's CPU allocator was told to use huge pages (``THP_MEM_ALLOC_ENABLE``)."""
    return os.environ.get("THP_MEM_ALLOC_ENABLE", "") not in ("", "0")


def _clip_recurrent(config, frames: int, height: int, width: int) -> float:
    from rvrt.models.layers import CHUNK_ELEMENTS

    t = frames + frames % 2 if frames != 3 else frames
    c = config.embed_dims[0]
    s = config.upscale
    f = config.feature_stride  # 4: the 1/4-resolution features of same-size (x1) models
    p = height * width
    q = p / (f * f)
    chunk = min(t, max(2, CHUNK_ELEMENTS // max(int(q * c), 1) // 2 * 2))
    chunk_r = min(t, max(2, CHUNK_ELEMENTS // max(int(q * c * 5), 1) // 2 * 2))
    band = min(p * s * s * 128 * chunk_r, max(CHUNK_ELEMENTS, 16 * width * s * s * 128 * chunk_r))
    k = CLIP_RECURRENT
    feats = k["features"] * t * q * c
    extract = k["extract"] * q * c * chunk + feats / 5
    align = feats + (k["align"] * q * c if t > 2 else 0.0)
    recon = feats + k["output"] * t * p * s * s + k["recon"] * q * c * 5 * chunk_r + k["band"] * band
    return k["base_mb"] * _MB + max(extract, align, recon)


def vrt_terms(config, frames: int, height: int, width: int) -> tuple[float, ...]:
    """The terms of the VRT formulas (see :data:`VRT_COEFFICIENTS`)."""
    c = max(config.embed_dims)
    heads = max(config.num_heads)
    wd, wh, ww = config.window_size
    tokens = min(wd, frames) * wh * ww
    p = height * width
    return (frames * p, frames * p * heads * tokens, c * c * 1000, 1.0)


def _vrt(config, frames: int, height: int, width: int) -> float:
    coef = VFI_COEFFICIENTS if config.pa_frames == 0 else VRT_COEFFICIENTS
    return sum(k * x for k, x in zip(coef, vrt_terms(config, frames, height, width), strict=True))


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
        dtype: compute dtype (half precision is planned like float32).
        device: where the call runs.
    """
    if arch in ("rvrt", "rvrt_light"):
        total = _clip_recurrent(config, frames, height, width)
    elif arch == "vrt":
        total = _vrt(config, frames, height, width)
    else:
        raise ValueError(f"no memory model for architecture {arch!r}")
    if torch.device(device).type == "cpu" and not thp_enabled():
        total *= 1.5  # the C allocator keeps more of the freed transients (see the module doc)
    return int(math.ceil(total))
