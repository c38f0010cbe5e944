"""Baselines for the benchmarks: the official algorithms re-expressed in plain PyTorch.

Written from the published description of the official CUDA op (it is not the official code):
for every query frame and clip slot an im2col buffer of bilinear samples of all ``2C``
key|value channels at every tap, then per head a batched ``q . k`` matmul over the
``clip * taps`` samples, a softmax and a matmul with the values. ``official_algorithm`` runs an
RVRT model with that op and the explicit window-attention math, the way the official model
computes.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F


def gda_im2col(q, kv, offset, *, kernel_size, attention_heads, deformable_groups, clip_size):
    """The official algorithm in plain PyTorch: im2col per query frame and slot, then matmuls."""
    bsz, c, h, w = q.shape
    kh, kw = kernel_size
    taps = kh * kw
    heads, d = attention_heads, c // attention_heads
    cg = 2 * c // deformable_groups
    hw = h * w
    ys = torch.arange(h, device=q.device, dtype=torch.float32).view(h, 1).expand(h, w).reshape(hw)
    xs = torch.arange(w, device=q.device, dtype=torch.float32).view(1, w).expand(h, w).reshape(hw)
    ty = torch.tensor([i - kh // 2 for i in range(kh) for _ in range(kw)], device=q.device, dtype=torch.float32)
    tx = torch.tensor([j - kw // 2 for _ in range(kh) for j in range(kw)], device=q.device, dtype=torch.float32)
    outs = []
    for b in range(bsz):
        n, t = divmod(b, clip_size)
        cols = []
        for m in range(clip_size):
            frame = kv[n, (m + t) % clip_size].reshape(deformable_groups, cg, h, w)
            off = offset[b].view(clip_size, deformable_groups, taps, 2, hw)[m].float()
            y = ys + ty.view(taps, 1) + off[:, :, 0]  # (G, taps, HW) pixel rows
            x = xs + tx.view(taps, 1) + off[:, :, 1]
            # align_corners=True maps -1..1 onto pixel centres 0..size-1; zeros padding gives the
            # corner-wise "outside contributes zero" rule of the modulated deformable im2col
            grid = torch.stack([2 * x / max(w - 1, 1) - 1, 2 * y / max(h - 1, 1) - 1], -1)
            samp = F.grid_sample(
                frame, grid.to(frame.dtype), mode="bilinear", padding_mode="zeros", align_corners=True
            )  # (G, CG, taps, HW)
            cols.append(samp.reshape(2 * c * taps, hw))  # im2col rows: channel-major, then tap
        col = torch.stack(cols).view(clip_size, 2, heads, d, taps, hw)
        col = col.permute(1, 2, 5, 3, 0, 4).reshape(2, heads, hw, d, clip_size * taps)
        qb = (q[b] * d**-0.5).view(heads, d, hw).permute(0, 2, 1).unsqueeze(2)  # (heads, HW, 1, D)
        attn = torch.matmul(qb, col[0]).softmax(-1)  # (heads, HW, 1, clip*taps)
        ob = torch.matmul(attn, col[1].transpose(2, 3))  # (heads, HW, 1, D)
        outs.append(ob.squeeze(2).permute(0, 2, 1).reshape(c, h, w))
    return torch.stack(outs)


@contextlib.contextmanager
def official_algorithm():
    """Within this block, RVRT models use the im2col GDA and explicit window attention."""
    import rvrt.models.rvrt as rvrt_module
    from rvrt.models import swin

    saved_gda = rvrt_module.guided_deformable_attention
    saved_fused = swin.fused_attention()

    def im2col_op(q, kv, offset, *, backend="auto", **kwargs):
        return gda_im2col(q, kv, offset, **kwargs)

    rvrt_module.guided_deformable_attention = im2col_op
    swin.set_fused_attention(False)
    try:
        yield
    finally:
        rvrt_module.guided_deformable_attention = saved_gda
        swin.set_fused_attention(saved_fused)
