"""Modulated deformable convolution (DCNv2) with the semantics of ``torchvision.ops.deform_conv2d``.

VRT aligns neighbouring frames with it (``pa_deform``). The reference implementation here is
pure PyTorch (any device and float dtype, differentiable through autograd); torchvision's
compiled operator is used instead when torchvision is importable and gives the same result as
the reference on a small check (it is an optional dependency, never required).

Semantics (those of torchvision):

* ``input (N, C_in, H, W)``, ``weight (C_out, C_in / groups, kh, kw)``: ``groups`` is inferred
  as ``C_in // weight.shape[1]`` (a grouped convolution when the input has more channels than
  the weight expects).
* ``offset (N, 2 * G * kh * kw, H_out, W_out)``: ``G`` offset groups (inferred from the channel
  count) split the input channels into ``G`` equal parts; for group ``g`` and tap
  ``k = i * kw + j`` channel ``g * 2 * kh * kw + 2 * k`` is the row offset ``dy`` and the next
  one the column offset ``dx``, in pixels.
* ``mask (N, G * kh * kw, H_out, W_out)`` multiplies each sample (modulation), if given.
* Tap ``(i, j)`` of output pixel ``(y, x)`` samples ``(y * sh - ph + i * dh + dy, x * sw - pw + j * dw + dx)``
  bilinearly; a sample is zero unless ``-1 < row < H`` and ``-1 < col < W``, and corners outside
  the image contribute zero.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Literal

import torch

from rvrt.fastpath import run_fast

__all__ = ["deform_conv2d", "deform_conv2d_reference", "DCNBackendError", "torchvision_status", "Backend"]

log = logging.getLogger(__name__)

Backend = Literal["auto", "reference", "torchvision"]
Pair = int | tuple[int, int]
#: the op's name in the fallback log line and memo (rvrt.fastpath)
OP = "deformable convolution (torchvision)"

#: Upper bound on the elements of one sampled-column tensor ``(n, C_in, kh * kw, H_out * W_out)``;
#: larger batches are processed in chunks to bound memory.
MAX_COLUMN_ELEMENTS = 1 << 26


class DCNBackendError(RuntimeError):
    """An explicitly requested deformable-convolution backend cannot run."""


def _pair(v: Pair, name: str) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair; got {v!r}")
    return int(v[0]), int(v[1])


def _geometry(input, offset, weight, bias, stride, padding, dilation, mask):
    """Check shapes; returns ``(groups, offset_groups, (sh, sw), (ph, pw), (dh, dw), (ho, wo))``."""
    if input.dim() != 4:
        raise ValueError(f"input must be (N, C_in, H, W); got shape {tuple(input.shape)}")
    if weight.dim() != 4:
        raise ValueError(f"weight must be (C_out, C_in / groups, kh, kw); got shape {tuple(weight.shape)}")
    n, cin, h, w = input.shape
    cout, cin_g, kh, kw = weight.shape
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding")
    dilation = _pair(dilation, "dilation")
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise ValueError(f"need stride, dilation >= 1 and padding >= 0; got {stride}, {dilation}, {padding}")
    if cin_g < 1 or cin % cin_g:
        raise ValueError(f"input channels {cin} are not a multiple of the weight's {cin_g} input channels")
    groups = cin // cin_g
    if cout % groups:
        raise ValueError(f"output channels {cout} are not divisible by the inferred groups={groups}")
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"input {h}x{w} is too small for a {kh}x{kw} kernel with this padding/dilation")
    taps = kh * kw
    if offset.dim() != 4 or offset.shape[1] % (2 * taps) or offset.shape[1] == 0:
        raise ValueError(f"offset must be (N, 2 * G * {taps}, H_out, W_out); got shape {tuple(offset.shape)}")
    og = offset.shape[1] // (2 * taps)
    if tuple(offset.shape) != (n, 2 * og * taps, ho, wo):
        raise ValueError(
            f"offset must be (N, 2 * G * kh * kw, H_out, W_out) = {(n, 2 * og * taps, ho, wo)}; "
            f"got {tuple(offset.shape)}"
        )
    if cin % og:
        raise ValueError(f"input channels {cin} are not divisible by the {og} offset groups")
    if mask is not None and tuple(mask.shape) != (n, og * taps, ho, wo):
        raise ValueError(
            f"mask must be (N, G * kh * kw, H_out, W_out) = {(n, og * taps, ho, wo)}; got {tuple(mask.shape)}"
        )
    if bias is not None and tuple(bias.shape) != (cout,):
        raise ValueError(f"bias must be ({cout},); got {tuple(bias.shape)}")
    return groups, og, stride, padding, dilation, (ho, wo)


def _sample(x: torch.Tensor, py: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``x (B, C, H, W)`` at rows ``py`` / columns ``px`` ``(B, P)`` -> ``(B, C, P)``."""
    b, c, h, w = x.shape
    flat = x.reshape(b, c, h * w)
    inside = (py > -1) & (py < h) & (px > -1) & (px < w)
    y0 = torch.floor(py)
    x0 = torch.floor(px)
    ly = py - y0
    lx = px - x0
    out = None
    for yy, wy in ((y0, 1 - ly), (y0 + 1, ly)):
        row_ok = inside & (yy >= 0) & (yy <= h - 1)
        for xx, wx in ((x0, 1 - lx), (x0 + 1, lx)):
            ok = row_ok & (xx >= 0) & (xx <= w - 1)
            idx = torch.where(ok, yy * w + xx, torch.zeros_like(yy)).long()
            weight = torch.where(ok, wy * wx, torch.zeros_like(wy)).to(x.dtype)
            term = weight.unsqueeze(1) * flat.gather(2, idx.unsqueeze(1).expand(b, c, -1))
            out = term if out is None else out + term
    return out


def _reference_chunk(input, offset, weight, mask, groups, og, stride, padding, dilation, out_size):
    n, cin, h, w = input.shape
    cout, cin_g, kh, kw = weight.shape
    ho, wo = out_size
    taps = kh * kw
    cdtype = torch.promote_types(offset.dtype, torch.float32)
    dev = input.device
    tap_y = (torch.arange(kh, device=dev, dtype=cdtype) * dilation[0]).repeat_interleave(kw)
    tap_x = (torch.arange(kw, device=dev, dtype=cdtype) * dilation[1]).repeat(kh)
    out_y = torch.arange(ho, device=dev, dtype=cdtype) * stride[0] - padding[0]
    out_x = torch.arange(wo, device=dev, dtype=cdtype) * stride[1] - padding[1]
    base_y = out_y.view(1, ho, 1) + tap_y.view(taps, 1, 1)  # (taps, H_out, 1)
    base_x = out_x.view(1, 1, wo) + tap_x.view(taps, 1, 1)  # (taps, 1, W_out)
    off = offset.to(cdtype).view(n, og, taps, 2, ho, wo)
    py = (base_y + off[:, :, :, 0]).reshape(n * og, taps * ho * wo)
    px = (base_x + off[:, :, :, 1]).reshape(n * og, taps * ho * wo)
    cols = _sample(input.reshape(n * og, cin // og, h, w), py, px).view(n, og, cin // og, taps, ho * wo)
    if mask is not None:
        cols = cols * mask.view(n, og, 1, taps, ho * wo).to(cols.dtype)
    cols = cols.reshape(n, groups, cin_g * taps, ho * wo)
    wmat = weight.reshape(groups, cout // groups, cin_g * taps).to(cols.dtype)
    return torch.einsum("gok,ngkl->ngol", wmat, cols).reshape(n, cout, ho, wo)


def deform_conv2d_reference(
    input: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pure-PyTorch modulated deformable convolution (see the module docstring for the semantics).

    Args:
        input: ``(N, C_in, H, W)``.
        offset: ``(N, 2 * G * kh * kw, H_out, W_out)``, (dy, dx) pairs per offset group and tap.
        weight: ``(C_out, C_in / groups, kh, kw)``.
        bias: ``(C_out,)`` or ``None``.
        stride, padding, dilation: ints or pairs, as for :func:`torch.nn.functional.conv2d`.
        mask: ``(N, G * kh * kw, H_out, W_out)`` modulation or ``None`` (all ones).

    Returns:
        ``(N, C_out, H_out, W_out)``. Large batches are processed in chunks of at most
        :data:`MAX_COLUMN_ELEMENTS` sampled values.
    """
    groups, og, stride, padding, dilation, out_size = _geometry(
        input, offset, weight, bias, stride, padding, dilation, mask
    )
    n, cin = input.shape[:2]
    per_sample = cin * weight.shape[2] * weight.shape[3] * out_size[0] * out_size[1]
    step = max(1, MAX_COLUMN_ELEMENTS // max(per_sample, 1))
    outs = []
    for s in range(0, n, step):
        e = min(n, s + step)
        outs.append(
            _reference_chunk(
                input[s:e],
                offset[s:e],
                weight,
                None if mask is None else mask[s:e],
                groups,
                og,
                stride,
                padding,
                dilation,
                out_size,
            )
        )
    out = outs[0] if len(outs) == 1 else torch.cat(outs, 0)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1).to(out.dtype)
    return out


def _torchvision_op():
    """``torchvision.ops.deform_conv2d`` or the reason it cannot be imported."""
    try:
        from torchvision.ops import deform_conv2d as op
    except (ImportError, RuntimeError, AttributeError) as err:  # not installed, or built for another torch
        return None, f"torchvision is not usable: {err}"
    return op, None


@lru_cache(maxsize=8)
def _check_torchvision(device_type: str) -> str | None:
    op, reason = _torchvision_op()
    if op is None:
        return reason
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 4, 6, 7, generator=g, dtype=torch.float64)
    weight = torch.rand(6, 2, 3, 3, generator=g, dtype=torch.float64) - 0.5
    bias = torch.rand(6, generator=g, dtype=torch.float64)
    offset = (torch.rand(2, 2 * 2 * 9, 6, 7, generator=g, dtype=torch.float64) - 0.5) * 8
    mask = torch.rand(2, 2 * 9, 6, 7, generator=g, dtype=torch.float64)
    args = [t.to(device_type) for t in (x, offset, weight, bias)]
    try:
        got = op(*args, stride=1, padding=1, dilation=1, mask=mask.to(device_type)).cpu()
    except Exception as err:  # noqa: BLE001 - any failure means "do not use it"
        return f"torchvision.ops.deform_conv2d failed on {device_type}: {err}"
    ref = deform_conv2d_reference(x, offset, weight, bias, 1, 1, 1, mask)
    err = (got - ref).abs().max().item()
    if not err <= 1e-9:
        return f"torchvision.ops.deform_conv2d differs from the reference by {err:.3g} on {device_type}"
    return None


def torchvision_status(device: torch.device | str = "cpu") -> str | None:
    """Why torchvision's compiled operator is not used on ``device``, or ``None`` if it is."""
    return _check_torchvision(torch.device(device).type)


def deform_conv2d(
    input: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
    mask: torch.Tensor | None = None,
    *,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Modulated deformable convolution, a drop-in for ``torchvision.ops.deform_conv2d``.

    Arguments and result as in :func:`deform_conv2d_reference`. ``backend``: ``"reference"``
    (pure PyTorch), ``"torchvision"`` (the compiled operator; :class:`DCNBackendError` if it is
    missing, disagrees with the reference or fails on these inputs) or ``"auto"`` (torchvision when
    usable, else the reference; a failure other than out of memory is logged once and the reference
    used from then on for that device and dtype, :mod:`rvrt.fastpath`).
    """
    if backend not in ("auto", "reference", "torchvision"):
        raise ValueError(f"backend must be 'auto', 'reference' or 'torchvision'; got {backend!r}")
    _geometry(input, offset, weight, bias, stride, padding, dilation, mask)
    if backend != "reference":
        reason = torchvision_status(input.device)
        if reason is None:
            op, _ = _torchvision_op()
            # a launch that fails on these inputs: the reference (auto), or the reason (torchvision)
            return run_fast(
                OP,
                f"{input.device} {str(input.dtype).removeprefix('torch.')}",
                lambda: op(input, offset, weight, bias, stride=stride, padding=padding, dilation=dilation, mask=mask),
                lambda: deform_conv2d_reference(input, offset, weight, bias, stride, padding, dilation, mask),
                strict=DCNBackendError if backend == "torchvision" else None,
            )
        if backend == "torchvision":
            raise DCNBackendError(reason)
        _log_fallback(reason)
    return deform_conv2d_reference(input, offset, weight, bias, stride, padding, dilation, mask)


@lru_cache(maxsize=8)
def _log_fallback(reason: str) -> None:
    log.debug("deformable convolution uses the pure-PyTorch reference (%s)", reason)
