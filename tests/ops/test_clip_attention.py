"""Clip window attention (the RVRT Light alignment op) against a slow loop reference and MindSpore data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rvrt.ops.clip_attention import clip_window_attention

DATA = Path(__file__).resolve().parents[1] / "data" / "rvrt_light"


def loop_reference(q, kv, kernel_size, heads, clip_size):
    """Pixel by pixel, as the README of the conformance data states the operator (float64)."""
    q, kv = q.double(), kv.double()
    bsz, c, h, w = q.shape
    d = c // heads
    kh, kw = kernel_size
    out = torch.zeros(bsz, c, h, w, dtype=torch.float64)
    for b in range(bsz):
        n = b // clip_size
        for head in range(heads):
            ch = slice(head * d, (head + 1) * d)
            for y in range(h):
                for x in range(w):
                    query = q[b, ch, y, x] * d**-0.5
                    logits, values = [], []
                    for m in range(clip_size):
                        frame = kv[n, (m + b) % clip_size]
                        for ky in range(kh):
                            for kx in range(kw):
                                yy, xx = y + ky - kh // 2, x + kx - kw // 2
                                if 0 <= yy < h and 0 <= xx < w:
                                    key, val = frame[:c][ch, yy, xx], frame[c:][ch, yy, xx]
                                else:  # zero padding after the projection, not masked
                                    key, val = torch.zeros(d, dtype=torch.float64), torch.zeros(d, dtype=torch.float64)
                                logits.append(float(query @ key))
                                values.append(val)
                    top = max(logits)
                    weights = [math.exp(v - top) for v in logits]
                    total = sum(weights)
                    out[b, ch, y, x] = sum(wt / total * v for wt, v in zip(weights, values, strict=True))
    return out


@pytest.mark.parametrize(
    ("n", "clip", "c", "heads", "h", "w", "kernel"),
    [(1, 2, 8, 2, 3, 4, (3, 3)), (2, 2, 6, 3, 3, 2, (3, 3)), (1, 3, 4, 1, 2, 4, (3, 5)), (1, 2, 4, 2, 1, 1, (3, 3))],
)
def test_matches_loop_reference(n, clip, c, heads, h, w, kernel):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(n * clip, c, h, w, generator=g, dtype=torch.float64) * 2
    kv = torch.randn(n, clip, 2 * c, h, w, generator=g, dtype=torch.float64) * 2
    got = clip_window_attention(q, kv, kernel_size=kernel, attention_heads=heads, clip_size=clip)
    torch.testing.assert_close(got, loop_reference(q, kv, kernel, heads, clip), rtol=1e-12, atol=1e-12)


def test_border_taps_stay_in_the_softmax():
    # a single pixel: of the 2 x 9 samples only the two centres are inside; the 16 padded taps
    # have logit 0 and value 0 but still take their share of the softmax
    q = torch.tensor([[[[1.0]], [[2.0]]], [[[0.5]], [[-1.0]]]])  # (B=2, C=2, 1, 1), 1 head
    kv = torch.tensor([[[[[0.3]], [[0.4]], [[1.0]], [[2.0]]], [[[0.1]], [[-0.2]], [[3.0]], [[-4.0]]]]])
    out = clip_window_attention(q, kv, attention_heads=1, clip_size=2)
    scale = 2**-0.5
    for b in range(2):
        frames = [(m + b) % 2 for m in range(2)]
        logits = torch.stack([(q[b, :, 0, 0] * scale) @ kv[0, f, :2, 0, 0] for f in frames])
        weights = torch.exp(logits) / (torch.exp(logits).sum() + 16)
        expect = sum(weights[i] * kv[0, f, 2:, 0, 0] for i, f in enumerate(frames))
        torch.testing.assert_close(out[b, :, 0, 0], expect)


def test_reproduces_mindspore_call():
    case = np.load(DATA / "tiny_light_case.npz")
    q = torch.from_numpy(case["op1_q"]).flatten(1, 2)  # (2, 1, 48, H, W) -> (B, C, H, W)
    out = clip_window_attention(q, torch.from_numpy(case["op1_kv"]), attention_heads=4, clip_size=2)
    err = (out[..., ::3, ::3] - torch.from_numpy(case["op1_out"])).abs().max().item()
    assert err <= 1e-5


def test_gradcheck():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, 4, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    kv = torch.randn(1, 2, 8, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    fn = lambda a, b: clip_window_attention(a, b, attention_heads=2)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (q, kv), fast_mode=True)


def test_non_contiguous_inputs():
    g = torch.Generator().manual_seed(2)
    q = torch.randn(2, 4, 5, 6, generator=g).permute(0, 3, 1, 2)  # channels-last storage, (2, 6, 4, 5)
    kv = torch.randn(1, 2, 4, 5, 12, generator=g).permute(0, 1, 4, 2, 3)  # (1, 2, 12, 4, 5)
    assert not q.is_contiguous() and not kv.is_contiguous()
    out = clip_window_attention(q, kv, attention_heads=3)
    torch.testing.assert_close(out, clip_window_attention(q.contiguous(), kv.contiguous(), attention_heads=3))


@pytest.mark.parametrize(
    ("q_shape", "kv_shape", "kwargs", "match"),
    [
        ((2, 4, 3, 3), (1, 2, 8, 3, 3), {"attention_heads": 3}, "divisible by attention_heads"),
        ((3, 4, 3, 3), (1, 2, 8, 3, 3), {"attention_heads": 2}, "multiple of clip_size"),
        ((2, 4, 3, 3), (1, 2, 4, 3, 3), {"attention_heads": 2}, r"kv must be \(N, clip_size, 2C, H, W\)"),
        ((2, 4, 3, 3), (1, 2, 8, 3, 3), {"attention_heads": 2, "kernel_size": (2, 3)}, "odd"),
        ((4, 3, 3), (1, 2, 8, 3, 3), {"attention_heads": 2}, r"q must be \(B, C, H, W\)"),
    ],
)
def test_bad_shapes(q_shape, kv_shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        clip_window_attention(torch.zeros(q_shape), torch.zeros(kv_shape), **kwargs)
