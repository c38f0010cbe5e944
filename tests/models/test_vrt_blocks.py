"""The shared building blocks VRT added: nearest-pixel warping, mutual attention, GEGLU MLP, drop path."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rvrt.models.layers import GEGLUMlp, drop_path
from rvrt.models.swin import MutualWindowAttention, SwinGroup, SwinLayer, sine_position_encoding
from rvrt.models.warp import flow_warp_nearest4


def _grid_sample_nearest(x, px, py):
    """Nearest-pixel lookup through ``grid_sample`` on whole-pixel positions (align_corners=True)."""
    h, w = x.shape[2:]
    grid = torch.stack((2.0 * px / max(w - 1, 1) - 1.0, 2.0 * py / max(h - 1, 1) - 1.0), dim=3)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=True)


def test_nearest4_picks_the_four_surrounding_pixels():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 9, 11, generator=g)
    flow = (torch.rand(2, 2, 9, 11, generator=g) - 0.5) * 8  # some samples leave the image
    flow = flow + 0.01 * (flow.frac().abs() < 0.01)  # no position within rounding noise of a whole pixel
    out = flow_warp_nearest4(x, flow)
    assert out.shape == (2, 12, 9, 11)
    gy, gx = torch.meshgrid(torch.arange(9.0), torch.arange(11.0), indexing="ij")
    vx, vy = gx + flow[:, 0], gy + flow[:, 1]
    rounding = (torch.floor, torch.ceil)
    expect = [_grid_sample_nearest(x, fx(vx), fy(vy)) for fx in rounding for fy in rounding]
    assert torch.equal(out, torch.cat(expect, 1))
    # integer flows: all four copies are the same shifted image
    shifted = flow_warp_nearest4(x, torch.ones(2, 2, 9, 11))
    assert torch.equal(shifted[:, :3, :-1, :-1], x[:, :, 1:, 1:])
    assert torch.equal(shifted[:, :3], shifted[:, 9:])
    assert (shifted[:, :, -1] == 0).all() and (shifted[:, :, :, -1] == 0).all()


def test_sine_position_encoding_values():
    h, w, dim = 3, 5, 8
    enc = sine_position_encoding(h, w, dim)
    assert enc.shape == (1, h * w, dim) and enc.dtype == torch.float32
    feats = dim // 2
    for i in range(h):
        for j in range(w):
            token = enc[0, i * w + j].double()
            for k in range(feats):
                freq = 10000.0 ** (2 * (k // 2) / feats)
                y = (i + 1) / (h + 1e-6) * 2 * math.pi / freq
                x = (j + 1) / (w + 1e-6) * 2 * math.pi / freq
                trig = math.sin if k % 2 == 0 else math.cos
                assert token[k].item() == pytest.approx(trig(y), abs=1e-6)
                assert token[feats + k].item() == pytest.approx(trig(x), abs=1e-6)


def test_mutual_attention_exchanges_the_two_frames():
    torch.manual_seed(0)
    attn = MutualWindowAttention(8, (2, 2, 2), num_heads=2)
    x = torch.randn(3, 8, 8)
    out = attn(x)
    assert out.shape == (3, 8, 8) and attn.proj.in_features == 16
    # frame-1 outputs depend on frame-2 tokens through the mutual branch (and the self branch)
    y = x.clone()
    y[:, 4:] += 1.0
    assert not torch.allclose(attn(y)[:, :4], out[:, :4])
    with pytest.raises(ValueError, match="full"):
        attn(x[:, :6])  # a shrunken window cannot take the fixed position encoding
    with pytest.raises(ValueError, match="2 frames"):
        MutualWindowAttention(8, (3, 2, 2), num_heads=2)


def test_geglu_mlp():
    torch.manual_seed(0)
    mlp = GEGLUMlp(4, 6, 3)
    x = torch.randn(5, 4)
    ref = mlp.fc2(F.gelu(mlp.fc11(x)) * mlp.fc12(x))
    assert torch.equal(mlp(x), ref)
    assert [n for n, _ in mlp.named_parameters()] == [
        "fc11.weight",
        "fc11.bias",
        "fc12.weight",
        "fc12.bias",
        "fc2.weight",
        "fc2.bias",
    ]


def test_drop_path():
    x = torch.ones(1000, 3)
    assert drop_path(x, 0.3, training=False) is x
    assert drop_path(x, 0.0, training=True) is x
    torch.manual_seed(0)
    y = drop_path(x, 0.3, training=True)
    rows = y[:, 0]
    kept = rows[rows > 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / 0.7))  # kept samples are rescaled
    assert (y == y[:, :1]).all()  # whole samples are dropped
    assert 0.6 < (rows > 0).float().mean().item() < 0.8


def test_swin_layer_options():
    with pytest.raises(ValueError, match="mlp"):
        SwinLayer(8, 2, (2, 4, 4), mlp="relu")
    group = SwinGroup(8, 3, 2, (2, 4, 4), drop_path=[0.0, 0.1, 0.2], mutual=True, mlp="geglu")
    assert [b.drop_path for b in group.blocks] == [0.0, 0.1, 0.2]
    assert all(isinstance(b.attn, MutualWindowAttention) for b in group.blocks)
    with pytest.raises(ValueError, match="drop_path"):
        SwinGroup(8, 3, 2, (2, 4, 4), drop_path=[0.1])
