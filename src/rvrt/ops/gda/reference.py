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


def bilinear_sample_zeros(table: torch.Tensor, y: torch.Tensor, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Bilinear samples from channels-last images, zero outside the image.

    Args:
        table: ``(M * H * W, C)``: ``M`` images of ``H x W`` pixels, one row of ``C`` channels per pixel.
        y, x: ``(M, P)`` pixel coordinates (row, column) of ``P`` samples in each image.
        h, w: image size.

    Returns:
        ``(M, P, C)`` samples. A corner outside ``[0, H) x [0, W)`` contributes zero, so a sample
        fades to zero over the one-pixel band around the image, like
        ``grid_sample(..., padding_mode="zeros")``. The arithmetic (floor, fractional parts, four
        weighted corners) is that of the modulated deformable im2col kernels.
    """
    m, p = y.shape
    y0f = torch.floor(y)
    x0f = torch.floor(x)
    ly = y - y0f
    lx = x - x0f
    hy = 1 - ly
    hx = 1 - lx
    y0 = y0f.long()
    x0 = x0f.long()
    base = (torch.arange(m, device=y.device) * (h * w)).view(m, 1)
    rows = []
    weights = []
    for dy, dx, wgt in ((0, 0, hy * hx), (0, 1, hy * lx), (1, 0, ly * hx), (1, 1, ly * lx)):
        yy = y0 + dy
        xx = x0 + dx
        valid = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        rows.append(base + yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1))
        weights.append(torch.where(valid, wgt, torch.zeros_like(wgt)))
    corners = table.index_select(0, torch.stack(rows).reshape(-1)).view(4, m, p, -1)
    wts = torch.stack(weights).unsqueeze(-1)  # (4, M, P, 1)
    return corners[0] * wts[0] + corners[1] * wts[1] + corners[2] * wts[2] + corners[3] * wts[3]


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

    frames = kv.reshape(n * clip_size, 2 * c, h, w)
    off = offset.reshape(bsz, clip_size, 2, half, taps, 2, hw)  # slot, keys|values, group, tap, (dy, dx)
    b = torch.arange(bsz, device=q.device)
    ys = torch.arange(h, device=q.device, dtype=q.dtype).repeat_interleave(w).view(1, 1, hw)
    xs = torch.arange(w, device=q.device, dtype=q.dtype).repeat(h).view(1, 1, hw)
    # channels-last: one row of channels per pixel, so that a sample is a contiguous row gather
    qs = (q * head_dim**-0.5).permute(0, 2, 3, 1).reshape(bsz, hw, heads, head_dim)

    def tables(m: int) -> torch.Tensor:
        # frame read by slot m of every query: kv[b // clip, (m + b) % clip], as (2, B * G/2 * HW, cg)
        src = frames[(b // clip_size) * clip_size + (m + b) % clip_size]
        return src.reshape(bsz, 2, half, cg, hw).permute(1, 0, 2, 4, 3).reshape(2, bsz * half * hw, cg)

    def sample(table: torch.Tensor, m: int, kind: int, k: int) -> torch.Tensor:
        i, j = divmod(k, kw)
        y = (ys + float(i - kh // 2) + off[:, m, kind, :, k, 0]).reshape(bsz * half, hw)
        x = (xs + float(j - kw // 2) + off[:, m, kind, :, k, 1]).reshape(bsz * half, hw)
        s = bilinear_sample_zeros(table, y, x, h, w)  # (B * G/2, HW, cg)
        return s.view(bsz, half, hw, cg).transpose(1, 2).reshape(bsz, hw, heads, head_dim)

    # Pass 1: logits of every (slot, tap) sample. Pass 2: the weighted sum of the values.
    # Two passes keep one sampled tensor alive at a time instead of an im2col buffer.
    slot_tables = [tables(m) for m in range(clip_size)]
    logits = torch.stack(
        [(qs * sample(slot_tables[m][0], m, 0, k)).sum(-1) for m in range(clip_size) for k in range(taps)], -1
    )  # (B, HW, heads, clip * taps)
    attn = torch.softmax(logits, dim=-1)
    out = None
    for m in range(clip_size):
        for k in range(taps):
            term = sample(slot_tables[m][1], m, 1, k) * attn[..., m * taps + k, None]
            out = term if out is None else out + term
    return out.reshape(bsz, h, w, c).permute(0, 3, 1, 2)
