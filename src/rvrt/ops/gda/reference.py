"""Guided deformable attention (GDA): the readable, differentiable reference.

This file is the specification of the op. Every other implementation (the fused Triton
kernel in ``triton_op.py``) is tested against it.

Semantics (those of the op used by the published RVRT models):

* ``q`` holds one query frame per batch element ``b = n * clip_size + t``; ``kv`` holds the
  ``clip_size`` frames of clip ``n``, keys and values concatenated on channels.
* Query ``b`` reads, for clip slot ``m``, the frame ``kv[b // clip_size, (m + b) % clip_size]``.
  (For ``t = 1`` the slots therefore read frames 1 then 0.)
* The ``2C`` key|value channels are split into ``deformable_groups`` equal groups; the first
  half of the groups covers the keys, the second half the values. Each group has its own
  offsets, laid out ``(clip_size, groups, kh * kw, 2)`` on the channel axis with the pair
  ordered ``(dy, dx)``.
* Tap ``(i, j)`` of the ``kh x kw`` window samples at ``(y + i - kh // 2 + dy, x + j - kw // 2 + dx)``
  with bilinear interpolation; corners outside the image contribute zero.
* Logits are ``(q * head_dim ** -0.5) . k`` per head, the softmax runs over the
  ``clip_size * kh * kw`` samples (slot-major), and the output is the weighted sum of the values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["gda_reference", "sample_zeros"]


def sample_zeros(img: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``img`` at pixel coordinates, zero outside the image.

    Args:
        img: ``(M, C, H, W)``.
        y, x: ``(M, H', W')`` pixel coordinates (row, column).

    Returns:
        ``(M, C, H', W')``. A corner outside ``[0, H) x [0, W)`` contributes zero, so a sample fades
        to zero over the one-pixel band around the image (the rule of the deformable im2col kernels).

    float64 inputs take the exact path: ``floor``, fractional parts and four weighted corners, the
    arithmetic of the im2col kernels (and of the Triton kernel), whose position gradient at an exact
    integer is the one-sided difference towards the next pixel. Other dtypes run on ``grid_sample``,
    several times faster on CPU; its coordinate normalisation rounds positions by about
    ``1e-7 * size`` pixels, far below float32 feature noise, but can pick the other one-sided
    difference at exactly integer positions.
    """
    if y.dtype == torch.float64:
        return _sample_exact(img, y, x)
    h, w = img.shape[-2:]
    # align_corners=False convention, g = (2p + 1) / size - 1: also valid for frames 1 pixel wide
    grid = torch.stack(((2 * x + 1) / w - 1, (2 * y + 1) / h - 1), dim=-1)
    if grid.dtype != img.dtype:
        img = img.to(grid.dtype)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _sample_exact(img: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    m, c, h, w = img.shape
    flat = img.to(y.dtype).reshape(m, c, h * w)
    y0f, x0f = torch.floor(y), torch.floor(x)
    ly, lx = y - y0f, x - x0f
    y0, x0 = y0f.long(), x0f.long()
    out = None
    for dy, dx, wgt in ((0, 0, (1 - ly) * (1 - lx)), (0, 1, (1 - ly) * lx), (1, 0, ly * (1 - lx)), (1, 1, ly * lx)):
        yy, xx = y0 + dy, x0 + dx
        valid = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        idx = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).reshape(m, 1, -1).expand(m, c, -1)
        term = torch.gather(flat, 2, idx) * (wgt * valid).reshape(m, 1, -1)
        out = term if out is None else out + term
    return out.reshape(m, c, *y.shape[1:])


def gda_reference(
    q: torch.Tensor,
    kv: torch.Tensor,
    offset: torch.Tensor,
    *,
    kernel_size: tuple[int, int],
    attention_heads: int,
    deformable_groups: int,
    clip_size: int,
) -> torch.Tensor:
    """Guided deformable attention in plain PyTorch (any device, differentiable).

    Shapes are checked by :func:`rvrt.ops.gda.guided_deformable_attention`; call that.

    Args:
        q: ``(B, C, H, W)`` queries, ``B = N * clip_size``.
        kv: ``(N, clip_size, 2C, H, W)`` keys then values.
        offset: ``(B, clip_size * deformable_groups * kh * kw * 2, H, W)``, ``(dy, dx)`` pairs.

    Returns:
        ``(B, C, H, W)``.
    """
    bsz, c, h, w = q.shape
    n = kv.shape[0]
    kh, kw = kernel_size
    taps = kh * kw
    heads = attention_heads
    head_dim = c // heads
    half = deformable_groups // 2  # groups over the keys (and, again, over the values)
    cg = c // half  # channels per deformable group
    hw = h * w

    # positions, bilinear weights, logits and sums in float32 at least: with half-precision features
    # the samples are blended and accumulated in float32 and only the result is rounded back
    acc = torch.promote_types(torch.promote_types(offset.dtype, q.dtype), torch.float32)
    off = offset.reshape(bsz, clip_size, 2, half, taps, 2, h, w).to(acc)  # slot, keys|values, group, tap, dy|dx
    ys = torch.arange(h, device=q.device, dtype=acc).view(1, 1, h, 1)
    xs = torch.arange(w, device=q.device, dtype=acc).view(1, 1, 1, w)
    b = torch.arange(bsz, device=q.device)
    frames = kv.reshape(n * clip_size, 2, half * cg * hw)  # keys | values of every frame
    # the images slot m of query b reads, kv[b // clip, (m + b) % clip], keys (kind 0) and values
    # (kind 1) apart: gathered once each as a contiguous (B * half, cg, H, W) block in `acc`
    # (float32 at least), not re-sliced for every tap
    images = []
    for m in range(clip_size):
        frame = (b // clip_size) * clip_size + (m + b) % clip_size
        images.append([frames[frame, kind].to(acc).reshape(bsz * half, cg, h, w) for kind in (0, 1)])
    qs = (q.to(acc) * head_dim**-0.5).reshape(bsz, heads, head_dim, hw)

    def sample(m: int, kind: int, k: int) -> torch.Tensor:
        # samples of keys (kind 0) or values (kind 1) at slot m, tap k: (B, heads, head_dim, HW)
        i, j = divmod(k, kw)
        y = ys + float(i - kh // 2) + off[:, m, kind, :, k, 0]
        x = xs + float(j - kw // 2) + off[:, m, kind, :, k, 1]
        s = sample_zeros(images[m][kind], y.reshape(bsz * half, h, w), x.reshape(bsz * half, h, w))
        return s.reshape(bsz, heads, head_dim, hw)

    # Pass 1: logits of every (slot, tap) sample. Pass 2: the weighted sum of the values.
    # Two passes keep one sampled tensor alive at a time instead of an im2col buffer.
    logits = torch.stack(
        [(qs * sample(m, 0, k)).sum(2) for m in range(clip_size) for k in range(taps)], 2
    )  # (B, heads, clip * taps, HW), slot-major
    attn = torch.softmax(logits, dim=2).unsqueeze(3)  # (B, heads, clip * taps, 1, HW)
    out = None
    for m in range(clip_size):
        for k in range(taps):
            s, a = sample(m, 1, k), attn[:, :, m * taps + k]
            # accumulated in place (one pass over the sum per tap, no temporary)
            out = s * a if out is None else out.addcmul_(s, a)
    return out.reshape(bsz, c, h, w).to(q.dtype)
