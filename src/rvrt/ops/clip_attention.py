"""Clip window attention: the alignment operator of RVRT Light.

RVRT Light replaces RVRT's guided deformable attention (flow-guided sampling at learned
offsets) by attention over a fixed window: every query pixel attends to the ``kh x kw``
neighbourhood of the same pixel in each frame of the previous clip. It is the published
model's operator, including two details a re-implementation must keep:

* Frame order: for query frame ``t`` of a clip (batch index ``b = n * clip_size + t``),
  slot ``m`` reads frame ``(m + b) % clip_size`` of the previous clip (so with two frames,
  ``t = 1`` reads frames 1 then 0). The softmax-weighted sum does not depend on the order of
  the samples (up to rounding); it is kept so that sample ``s`` means what it means in the
  published model.
* Borders: keys and values are zero-padded *after* their projection, and the padded taps stay
  in the softmax with logit 0 (they are not masked).

Everything is plain PyTorch (differentiable, any device and float dtype). Memory stays at a
few copies of the inputs: the window is walked tap by tap instead of being unfolded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["clip_window_attention"]


def _check(
    q: torch.Tensor, kv: torch.Tensor, kernel_size: tuple[int, int], attention_heads: int, clip_size: int
) -> None:
    if q.dim() != 4:
        raise ValueError(f"q must be (B, C, H, W) with B = N * clip_size; got shape {tuple(q.shape)}")
    bsz, c, h, w = q.shape
    if clip_size < 1 or bsz % clip_size:
        raise ValueError(f"q batch {bsz} must be a multiple of clip_size={clip_size}")
    n = bsz // clip_size
    if tuple(kv.shape) != (n, clip_size, 2 * c, h, w):
        raise ValueError(f"kv must be (N, clip_size, 2C, H, W) = {(n, clip_size, 2 * c, h, w)}; got {tuple(kv.shape)}")
    kh, kw = kernel_size
    if kh < 1 or kw < 1 or kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"kernel_size must be odd (padding is kernel // 2); got {kernel_size}")
    if attention_heads < 1 or c % attention_heads:
        raise ValueError(f"channels C={c} must be divisible by attention_heads={attention_heads}")
    if q.dtype != kv.dtype or not q.is_floating_point():
        raise ValueError(f"q and kv must share one floating-point dtype; got {q.dtype} and {kv.dtype}")
    if q.device != kv.device:
        raise ValueError(f"q and kv must be on one device; got {q.device} and {kv.device}")


def clip_window_attention(
    q: torch.Tensor,
    kv: torch.Tensor,
    *,
    kernel_size: tuple[int, int] = (3, 3),
    attention_heads: int,
    clip_size: int = 2,
) -> torch.Tensor:
    """Window attention of every query pixel over the previous clip.

    Args:
        q: ``(B, C, H, W)`` projected queries (not scaled), ``B = N * clip_size``, batch
            index ``b = n * clip_size + t`` for frame ``t`` of clip batch element ``n``.
        kv: ``(N, clip_size, 2C, H, W)`` projected keys (channels ``[:C]``) and values
            (``[C:]``) of the previous clip.
        kernel_size: ``(kh, kw)`` window, odd sizes; zero padding ``kernel // 2``.
        attention_heads: heads; channel ``c`` belongs to head ``c // (C / heads)``.
        clip_size: frames per clip.

    Returns:
        ``(B, C, H, W)``: per head, ``softmax(q * d**-0.5 . k_s) . v_s`` over the
        ``clip_size * kh * kw`` samples ``s`` (slot-major, then tap ``ky * kw + kx``).
    """
    kernel_size = (int(kernel_size[0]), int(kernel_size[1]))
    _check(q, kv, kernel_size, attention_heads, clip_size)
    bsz, c, h, w = q.shape
    heads = attention_heads
    d = c // heads
    kh, kw = kernel_size
    ph, pw = kh // 2, kw // 2
    qh = (q * d**-0.5).view(bsz, heads, d, h, w)

    # slot m of frame t reads frame (t + m) % clip: the clip rolled back by m frames
    slots = []
    for m in range(clip_size):
        frames = kv if m == 0 else torch.roll(kv, shifts=-m, dims=1)
        slots.append(F.pad(frames.reshape(bsz, 2 * c, h, w), (pw, pw, ph, ph)))

    taps = [(m, ky, kx) for m in range(clip_size) for ky in range(kh) for kx in range(kw)]

    def window(m: int, ky: int, kx: int, part: slice) -> torch.Tensor:
        return slots[m][:, part, ky : ky + h, kx : kx + w].reshape(bsz, heads, d, h, w)

    keys, values = slice(0, c), slice(c, 2 * c)
    logits = torch.stack([(qh * window(m, ky, kx, keys)).sum(2) for m, ky, kx in taps], 2)
    attn = torch.softmax(logits, dim=2)  # (B, heads, samples, H, W)
    out = None
    for s, (m, ky, kx) in enumerate(taps):
        term = attn[:, :, s].unsqueeze(2) * window(m, ky, kx, values)
        out = term if out is None else out + term
    return out.reshape(bsz, c, h, w)
