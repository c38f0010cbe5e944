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

__all__ = ["gda_reference", "bilinear_sample_zeros"]


def bilinear_sample_zeros(img: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``img`` at pixel coordinates, zero outside the image.

    Args:
        img: ``(M, C, H, W)``.
        y, x: ``(M, P)`` pixel coordinates (row, column), any float dtype matching ``img``.

    Returns:
        ``(M, C, P)`` samples. A corner outside ``[0, H) x [0, W)`` contributes zero, so a
        sample fades to zero over the one-pixel band around the image, like
        ``grid_sample(..., padding_mode="zeros")``. The arithmetic (floor, fractional parts,
        four weighted corners) follows the modulated deformable im2col kernels exactly.
    """
    m, c, h, w = img.shape
    flat = img.reshape(m, c, h * w)
    y0f = torch.floor(y)
    x0f = torch.floor(x)
    ly = y - y0f
    lx = x - x0f
    hy = 1 - ly
    hx = 1 - lx
    y0 = y0f.long()
    x0 = x0f.long()
    out = None
    for dy, dx, wgt in ((0, 0, hy * hx), (0, 1, hy * lx), (1, 0, ly * hx), (1, 1, ly * lx)):
        yy = y0 + dy
        xx = x0 + dx
        valid = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        idx = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).unsqueeze(1).expand(m, c, -1)
        term = torch.gather(flat, 2, idx) * (wgt * valid.to(wgt.dtype)).unsqueeze(1)
        out = term if out is None else out + term
    return out


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
    groups_half = deformable_groups // 2
    cg = c // groups_half  # channels per deformable group (keys and values alike)
    hw = h * w

    frames = kv.reshape(n * clip_size, 2 * c, h, w)
    off = offset.reshape(bsz, clip_size, deformable_groups, taps, 2, hw)
    b = torch.arange(bsz, device=q.device)
    ys = torch.arange(h, device=q.device, dtype=q.dtype).view(h, 1).expand(h, w).reshape(1, 1, hw)
    xs = torch.arange(w, device=q.device, dtype=q.dtype).view(1, w).expand(h, w).reshape(1, 1, hw)

    qs = (q * head_dim**-0.5).reshape(bsz, heads, head_dim, hw)
    slots = [frames[(b // clip_size) * clip_size + (m + b) % clip_size] for m in range(clip_size)]

    def positions(m: int, k: int, first_group: int) -> tuple[torch.Tensor, torch.Tensor]:
        # sample positions of slot m, tap k for one half of the groups: (B * G/2, HW)
        i, j = divmod(k, kw)
        sel = slice(first_group, first_group + groups_half)
        y = ys + float(i - kh // 2) + off[:, m, sel, k, 0]
        x = xs + float(j - kw // 2) + off[:, m, sel, k, 1]
        return y.reshape(bsz * groups_half, hw), x.reshape(bsz * groups_half, hw)

    # Pass 1: logits of every (slot, tap) sample. Pass 2: the weighted sum of the values.
    # Two passes keep one sampled tensor alive at a time instead of an im2col buffer.
    logits = []
    for m in range(clip_size):
        keys = slots[m][:, :c].reshape(bsz * groups_half, cg, h, w)
        for k in range(taps):
            ksamp = bilinear_sample_zeros(keys, *positions(m, k, 0)).reshape(bsz, heads, head_dim, hw)
            logits.append((qs * ksamp).sum(2))  # (B, heads, HW)
    attn = torch.softmax(torch.stack(logits, 2), dim=2)  # (B, heads, clip*taps, HW)
    out = None
    for m in range(clip_size):
        vals = slots[m][:, c:].reshape(bsz * groups_half, cg, h, w)
        for k in range(taps):
            vsamp = bilinear_sample_zeros(vals, *positions(m, k, groups_half)).reshape(bsz, heads, head_dim, hw)
            term = attn[:, :, m * taps + k].unsqueeze(2) * vsamp
            out = term if out is None else out + term
    return out.reshape(bsz, c, h, w)
