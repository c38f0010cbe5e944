"""Modulated deformable convolution: the pure-PyTorch op against a slow loop reference, gradients,
and the backend dispatch (torchvision's compiled op only when present and equal)."""

from __future__ import annotations

import math

import pytest
import torch

from rvrt.ops import dcn
from rvrt.ops.dcn import DCNBackendError, deform_conv2d, deform_conv2d_reference, torchvision_status


def _bilinear(img: torch.Tensor, y: float, x: float) -> torch.Tensor:
    """torchvision's rule, written per sample: 0 outside (-1, H) x (-1, W), missing corners are 0."""
    c, h, w = img.shape
    if y <= -1 or y >= h or x <= -1 or x >= w:
        return img.new_zeros(c)
    y0, x0 = math.floor(y), math.floor(x)
    ly, lx = y - y0, x - x0
    out = img.new_zeros(c)
    for yy, wy in ((y0, 1 - ly), (y0 + 1, ly)):
        for xx, wx in ((x0, 1 - lx), (x0 + 1, lx)):
            if 0 <= yy < h and 0 <= xx < w:
                out = out + wy * wx * img[:, yy, xx]
    return out


def loop_reference(x, offset, weight, bias, stride, padding, dilation, mask):
    """Output pixel by output pixel, tap by tap (float64, tiny sizes only)."""
    n, cin, h, w = x.shape
    cout, cin_g, kh, kw = weight.shape
    groups = cin // cin_g
    og = offset.shape[1] // (2 * kh * kw)
    ho, wo = offset.shape[2:]
    out = torch.zeros(n, cout, ho, wo, dtype=x.dtype)
    per_og = cin // og
    for b in range(n):
        for i in range(ho):
            for j in range(wo):
                cols = torch.zeros(cin, kh * kw, dtype=x.dtype)
                for g in range(og):
                    for ki in range(kh):
                        for kj in range(kw):
                            k = ki * kw + kj
                            dy = offset[b, g * 2 * kh * kw + 2 * k, i, j].item()
                            dx = offset[b, g * 2 * kh * kw + 2 * k + 1, i, j].item()
                            y = i * stride[0] - padding[0] + ki * dilation[0] + dy
                            xx = j * stride[1] - padding[1] + kj * dilation[1] + dx
                            v = _bilinear(x[b, g * per_og : (g + 1) * per_og], y, xx)
                            if mask is not None:
                                v = v * mask[b, g * kh * kw + k, i, j]
                            cols[g * per_og : (g + 1) * per_og, k] = v
                for gr in range(groups):
                    wg = weight[gr * cout // groups : (gr + 1) * cout // groups].reshape(cout // groups, -1)
                    cg = cols[gr * cin_g : (gr + 1) * cin_g].reshape(-1)
                    out[b, gr * cout // groups : (gr + 1) * cout // groups, i, j] = wg @ cg
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


def _case(
    n=2,
    cin=4,
    cout=6,
    groups=2,
    og=2,
    h=5,
    w=6,
    kernel=(3, 3),
    stride=(1, 1),
    padding=(1, 1),
    dilation=(1, 1),
    spread=3.0,
    seed=0,
    dtype=torch.float64,
):
    g = torch.Generator().manual_seed(seed)
    kh, kw = kernel
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    x = torch.rand(n, cin, h, w, generator=g, dtype=dtype)
    weight = torch.rand(cout, cin // groups, kh, kw, generator=g, dtype=dtype) - 0.5
    bias = torch.rand(cout, generator=g, dtype=dtype)
    offset = (torch.rand(n, 2 * og * kh * kw, ho, wo, generator=g, dtype=dtype) - 0.5) * 2 * spread
    mask = torch.rand(n, og * kh * kw, ho, wo, generator=g, dtype=dtype)
    return x, offset, weight, bias, stride, padding, dilation, mask


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"groups": 1, "og": 1},
        {"groups": 1, "og": 4, "cin": 8},
        {"groups": 4, "og": 1, "cin": 8, "cout": 4},
        {"kernel": (2, 3), "stride": (2, 1), "padding": (1, 2), "dilation": (2, 1)},
        {"h": 1, "w": 7, "kernel": (1, 3), "padding": (0, 1)},
        {"spread": 12.0},  # most samples fall partly or wholly outside the image
    ],
)
def test_matches_loop_reference(kwargs):
    args = _case(**kwargs)
    ref = loop_reference(*args)
    assert torch.allclose(deform_conv2d_reference(*args), ref, rtol=0, atol=1e-12)
    assert torch.allclose(deform_conv2d(*args), ref, rtol=0, atol=1e-12)


def test_integer_offsets_and_borders():
    """Samples on whole pixels, on the last row/column, and exactly at -1 / H (zero weight or outside)."""
    x, offset, weight, bias, stride, padding, dilation, mask = _case(spread=0.0)
    h, w = x.shape[2:]
    offset = offset.clone()
    pairs = offset.shape[1] // 2
    dy = torch.tensor([-1.0, 0.0, 2.0, float(h - 1), float(h)]).repeat(4)[:pairs]
    dx = torch.tensor([1.0, float(w), -1.0, 0.5, float(-w)]).repeat(4)[:pairs]
    offset[:, 0::2] = dy.view(1, -1, 1, 1)
    offset[:, 1::2] = dx.view(1, -1, 1, 1)
    args = (x, offset, weight, bias, stride, padding, dilation, mask)
    assert torch.allclose(deform_conv2d(*args), loop_reference(*args), rtol=0, atol=1e-12)


def test_far_outside_gives_bias_only():
    x, offset, weight, bias, stride, padding, dilation, mask = _case()
    out = deform_conv2d(x, torch.full_like(offset, 100.0), weight, bias, stride, padding, dilation, mask)
    assert torch.equal(out, bias.view(1, -1, 1, 1).expand_as(out))


def test_no_mask_equals_mask_of_ones_and_no_bias():
    x, offset, weight, bias, stride, padding, dilation, mask = _case()
    a = deform_conv2d(x, offset, weight, None, stride, padding, dilation, None)
    b = deform_conv2d(x, offset, weight, None, stride, padding, dilation, torch.ones_like(mask))
    assert torch.allclose(a, b, rtol=0, atol=1e-12)
    ref = loop_reference(x, offset, weight, None, stride, padding, dilation, None)
    assert torch.allclose(a, ref, rtol=0, atol=1e-12)


def test_zero_offsets_is_a_convolution():
    x, offset, weight, bias, stride, padding, dilation, _ = _case()
    out = deform_conv2d(x, torch.zeros_like(offset), weight, bias, stride, padding, dilation)
    ref = torch.nn.functional.conv2d(x, weight, bias, stride, padding, dilation, groups=2)
    assert torch.allclose(out, ref, rtol=0, atol=1e-12)


def test_non_contiguous_inputs():
    x, offset, weight, bias, stride, padding, dilation, mask = _case()
    xt = x.transpose(2, 3).contiguous().transpose(2, 3)
    ot = offset.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    mt = mask[:, :, :, :].transpose(0, 1).contiguous().transpose(0, 1)
    wt = weight.transpose(0, 1).contiguous().transpose(0, 1)
    assert not (xt.is_contiguous() or ot.is_contiguous() or wt.is_contiguous())
    out = deform_conv2d(xt, ot, wt, bias, stride, padding, dilation, mt)
    ref = deform_conv2d(x, offset, weight, bias, stride, padding, dilation, mask)
    assert torch.allclose(out, ref, rtol=0, atol=1e-12)


def test_chunked_batches_agree(monkeypatch):
    args = _case(n=5)
    full = deform_conv2d_reference(*args)
    monkeypatch.setattr(dcn, "MAX_COLUMN_ELEMENTS", 1)  # one sample per chunk
    assert torch.allclose(deform_conv2d_reference(*args), full, rtol=0, atol=1e-12)


def test_float32_follows_float64():
    args64 = _case(spread=5.0)
    args32 = tuple(a.float() if isinstance(a, torch.Tensor) else a for a in args64)
    out = deform_conv2d(*args32)
    assert out.dtype == torch.float32
    assert torch.allclose(out.double(), deform_conv2d(*args64), atol=1e-5)


def test_gradcheck():
    x, offset, weight, bias, stride, padding, dilation, mask = _case(n=1, cin=4, cout=2, h=3, w=4, spread=1.5)
    # keep sample positions away from whole pixels, where the bilinear weights have kinks
    offset = offset + 0.137
    tensors = [t.clone().requires_grad_(True) for t in (x, offset, weight, bias, mask)]

    def fn(x, offset, weight, bias, mask):
        return deform_conv2d_reference(x, offset, weight, bias, stride, padding, dilation, mask)

    assert torch.autograd.gradcheck(fn, tensors, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda a: {**a, "x": a["x"][0]}, "input must be"),
        (lambda a: {**a, "weight": torch.cat([a["weight"], a["weight"][:, :1]], 1)}, "not a multiple"),
        (lambda a: {**a, "offset": a["offset"][:, :-1]}, "offset must be"),
        (lambda a: {**a, "offset": a["offset"][:, :, :-1]}, "offset must be"),
        (lambda a: {**a, "mask": a["mask"][:, :-1]}, "mask must be"),
        (lambda a: {**a, "bias": a["bias"][:-1]}, "bias must be"),
    ],
)
def test_shape_errors(change, message):
    x, offset, weight, bias, stride, padding, dilation, mask = _case()
    a = change(dict(x=x, offset=offset, weight=weight, bias=bias, mask=mask))
    with pytest.raises(ValueError, match=message):
        deform_conv2d(a["x"], a["offset"], a["weight"], a["bias"], stride, padding, dilation, a["mask"])


# ----------------------------------------------------------------------------- backends


@pytest.fixture
def fake_torchvision(monkeypatch):
    """Install a stand-in for ``torchvision.ops.deform_conv2d``; returns the list of its calls."""
    calls = []

    def install(fn):
        def op(input, offset, weight, bias=None, stride=1, padding=0, dilation=1, mask=None):
            calls.append(input.shape)
            return fn(input, offset, weight, bias, stride, padding, dilation, mask)

        monkeypatch.setattr(dcn, "_torchvision_op", lambda: (op, None))
        dcn._check_torchvision.cache_clear()
        return calls

    yield install
    dcn._check_torchvision.cache_clear()


def test_torchvision_used_when_equal(fake_torchvision):
    calls = fake_torchvision(deform_conv2d_reference)
    assert torchvision_status() is None
    args = _case()
    calls.clear()
    out = deform_conv2d(*args, backend="torchvision")
    assert len(calls) == 1
    assert torch.equal(out, deform_conv2d_reference(*args))
    deform_conv2d(*args)  # auto
    assert len(calls) == 2
    deform_conv2d(*args, backend="reference")
    assert len(calls) == 2


def test_torchvision_rejected_when_different(fake_torchvision):
    def wrong(x, offset, weight, bias, stride, padding, dilation, mask):
        # swapped (dy, dx): the classic layout bug
        swapped = offset.view(offset.shape[0], -1, 2, *offset.shape[2:]).flip(2).reshape(offset.shape)
        return deform_conv2d_reference(x, swapped, weight, bias, stride, padding, dilation, mask)

    fake_torchvision(wrong)
    assert "differs" in torchvision_status()
    args = _case()
    with pytest.raises(DCNBackendError, match="differs"):
        deform_conv2d(*args, backend="torchvision")
    assert torch.equal(deform_conv2d(*args), deform_conv2d_reference(*args))


def test_real_torchvision_status_is_honest():
    """What the status must be here: the import error when torchvision's operator cannot be imported
    (not installed, or built for another torch), else None (its CPU kernel agrees with the reference to
    1e-9) and the torchvision backend is that operator."""
    try:
        from torchvision.ops import deform_conv2d as op

        reason = None
    except (ImportError, RuntimeError, AttributeError) as err:
        op, reason = None, str(err)
    dcn._check_torchvision.cache_clear()  # whatever an earlier test left there
    status = torchvision_status()
    if op is None:
        assert status == f"torchvision is not usable: {reason}"
        with pytest.raises(DCNBackendError, match="torchvision is not usable"):
            deform_conv2d(*_case(), backend="torchvision")
    else:
        assert status is None
        assert torch.equal(deform_conv2d(*_case(), backend="torchvision"), op(*_case()))
    assert torch.allclose(deform_conv2d(*_case()), deform_conv2d_reference(*_case()), atol=1e-12)


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend"):
        deform_conv2d(*_case(), backend="cuda")
