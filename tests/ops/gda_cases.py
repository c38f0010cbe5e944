"""Helpers shared by the GDA tests: random inputs and a slow, obviously-correct loop version."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Case:
    """One problem size; ``B = n * clip`` query frames."""

    n: int = 1
    clip: int = 2
    c: int = 8
    heads: int = 2
    groups: int = 4
    h: int = 5
    w: int = 7
    kernel: tuple[int, int] = (3, 3)

    @property
    def kwargs(self) -> dict:
        return dict(
            kernel_size=self.kernel,
            attention_heads=self.heads,
            deformable_groups=self.groups,
            clip_size=self.clip,
        )


def make_inputs(case: Case, *, dtype=torch.float64, offsets: str = "random", seed: int = 0, device="cpu"):
    """``(q, kv, offset)`` for ``case``.

    ``offsets``: ``"random"`` (normal, std 2 px: many samples leave the image by a few pixels) or
    ``"grid"`` (multiples of 0.5 px in [-4, 4], so samples land exactly on pixel centres, on the
    border rows/columns, on -1 and on H/W).
    """
    g = torch.Generator().manual_seed(seed)
    b = case.n * case.clip
    taps = case.kernel[0] * case.kernel[1]
    q = torch.randn(b, case.c, case.h, case.w, generator=g, dtype=torch.float64)
    kv = torch.randn(case.n, case.clip, 2 * case.c, case.h, case.w, generator=g, dtype=torch.float64)
    shape = (b, case.clip * case.groups * taps * 2, case.h, case.w)
    if offsets == "random":
        off = 2.0 * torch.randn(shape, generator=g, dtype=torch.float64)
    elif offsets == "grid":
        off = torch.randint(-8, 9, shape, generator=g).to(torch.float64) / 2
    else:
        raise ValueError(offsets)
    return tuple(x.to(device=device, dtype=dtype) for x in (q, kv, off))


def _bilinear(img, y: float, x: float) -> float:
    """Tent-weighted sum over the (up to) four integer neighbours inside the image."""
    h, w = img.shape
    total = 0.0
    for yy in (math.floor(y), math.floor(y) + 1):
        for xx in (math.floor(x), math.floor(x) + 1):
            if 0 <= yy < h and 0 <= xx < w:
                total += (1 - abs(y - yy)) * (1 - abs(x - xx)) * float(img[yy, xx])
    return total


def gda_loops(q, kv, offset, *, kernel_size, attention_heads, deformable_groups, clip_size) -> torch.Tensor:
    """Guided deformable attention, one query pixel, head and sample at a time (float64)."""
    q, kv, offset = (x.detach().double().numpy() for x in (q, kv, offset))
    bsz, c, h, w = q.shape
    kh, kw = kernel_size
    d = c // attention_heads
    cg = 2 * c // deformable_groups
    out = torch.zeros(bsz, c, h, w, dtype=torch.float64)
    for b in range(bsz):
        n, t = divmod(b, clip_size)
        for head in range(attention_heads):
            chans = range(head * d, (head + 1) * d)
            for y in range(h):
                for x in range(w):
                    logits, values = [], []
                    for m in range(clip_size):
                        frame = kv[n, (m + t) % clip_size]
                        for i in range(kh):
                            for j in range(kw):
                                tap = i * kw + j

                                def sample(ch, b=b, tap=tap, m=m, i=i, j=j, frame=frame, y=y, x=x):
                                    grp = ch // cg
                                    base = (((m * deformable_groups) + grp) * kh * kw + tap) * 2
                                    sy = y + i - kh // 2 + offset[b, base, y, x]
                                    sx = x + j - kw // 2 + offset[b, base + 1, y, x]
                                    return _bilinear(frame[ch], sy, sx)

                                key = [sample(ch) for ch in chans]
                                logits.append(
                                    sum(q[b, ch, y, x] * k for ch, k in zip(chans, key, strict=True)) / math.sqrt(d)
                                )
                                values.append([sample(c + ch) for ch in chans])
                    top = max(logits)
                    weights = [math.exp(v - top) for v in logits]
                    total = sum(weights)
                    for idx, ch in enumerate(chans):
                        out[b, ch, y, x] = sum(wt * v[idx] for wt, v in zip(weights, values, strict=True)) / total
    return out
