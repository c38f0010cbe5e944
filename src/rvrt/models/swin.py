"""3-D (shifted) window self-attention blocks shared by the RVRT family.

Tensors inside this module are channels-last ``(B, D, H, W, C)``. A window is ``(wd, wh, ww)``
frames x rows x columns; a dimension not larger than its window uses a window of its own size
and no shift (as the published models do, including their quirk of slicing the full-window
relative-position table to ``[:N, :N]`` for such shrunken windows). Sizes that are not window
multiples are zero-padded after ``norm1`` and cropped back.

VRT adds two options to the same blocks: mutual attention between the two frames of a
``(2, wh, ww)`` window (:class:`MutualWindowAttention`) and a gated (GEGLU) feed-forward layer.
"""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import nn

from rvrt.fastpath import run_fast
from rvrt.models.layers import GEGLUMlp, IndexedModules, Mlp, conv3d_per_frame, drop_path

__all__ = [
    "WindowAttention",
    "MutualWindowAttention",
    "SwinLayer",
    "SwinGroup",
    "RSTB",
    "RSTBWithInputConv",
    "effective_window",
    "relative_position_index",
    "shift_mask",
    "sine_position_encoding",
    "window_partition",
    "window_reverse",
]

Size3 = tuple[int, int, int]


def effective_window(size: Size3, window: Size3, shift: Size3) -> tuple[Size3, Size3]:
    """Window and shift actually used for an input of ``size``: a dimension no larger than its
    window gets a window of its own size and no shift."""
    ws = tuple(s if s <= w else w for s, w in zip(size, window))
    ss = tuple(0 if s <= w else sh for s, w, sh in zip(size, window, shift))
    return ws, ss  # type: ignore[return-value]


def _context_device() -> torch.device:
    """The device new tensors go to (follows a ``with torch.device(...)`` block)."""
    return torch.empty(0).device


@lru_cache(maxsize=64)
def _cpu_constant(fn, *args) -> torch.Tensor:
    # inference_mode(False): a cached tensor made during inference must stay usable in training
    with torch.device("cpu"), torch.inference_mode(False), torch.no_grad():
        return fn(*args)


def _constant(fn, *args) -> torch.Tensor:
    """``fn(*args)`` computed once on the CPU, copied to the current default device.

    Architecture constants (index tables, position encodings) are built like this so that
    building a model on the ``meta`` device (to list its parameters) stays fast.
    """
    return _cpu_constant(fn, *args).to(_context_device(), copy=True)


def relative_position_index(window: Size3) -> torch.Tensor:
    """``(N, N)`` index into the ``(2wd-1)(2wh-1)(2ww-1)`` bias table for every token pair of a window."""
    wd, wh, ww = window
    coords = torch.stack(torch.meshgrid(torch.arange(wd), torch.arange(wh), torch.arange(ww), indexing="ij")).flatten(
        1
    )  # (3, N)
    rel = coords[:, :, None] - coords[:, None, :]  # (3, N, N), token i minus token j
    rel = rel + torch.tensor([wd - 1, wh - 1, ww - 1]).view(3, 1, 1)
    return rel[0] * (2 * wh - 1) * (2 * ww - 1) + rel[1] * (2 * ww - 1) + rel[2]


def window_partition(x: torch.Tensor, window: Size3) -> torch.Tensor:
    """``(B, D, H, W, C) -> (B * nW, wd * wh * ww, C)``; sizes must be window multiples."""
    b, d, h, w, c = x.shape
    wd, wh, ww = window
    x = x.view(b, d // wd, wd, h // wh, wh, w // ww, ww, c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, wd * wh * ww, c)


def window_reverse(windows: torch.Tensor, window: Size3, b: int, d: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``(B * nW, N, C) -> (B, D, H, W, C)``."""
    wd, wh, ww = window
    x = windows.view(b, d // wd, h // wh, w // ww, wd, wh, ww, -1)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, d, h, w, -1)


def _region_labels(size: int, window: int, shift: int) -> torch.Tensor:
    """Label of each position of a cyclically shifted axis: tokens that were neighbours before
    the shift share a label. Without shift the whole axis is one region."""
    lab = torch.zeros(size, dtype=torch.long)
    if shift > 0:
        lab[size - window : size - shift] = 1
        lab[size - shift :] = 2
    return lab


@lru_cache(maxsize=64)
@torch.inference_mode(False)
def _shift_mask_cpu(size: Size3, window: Size3, shift: Size3) -> torch.Tensor:
    # cached across calls, so never an inference tensor (it may be saved for a backward pass later)
    ld, lh, lw = (_region_labels(s, w, sh) for s, w, sh in zip(size, window, shift))
    labels = (ld.view(-1, 1, 1) * 9 + lh.view(1, -1, 1) * 3 + lw.view(1, 1, -1)).float()
    win = window_partition(labels.view(1, *size, 1), window).squeeze(-1)  # (nW, N)
    diff = win.unsqueeze(1) - win.unsqueeze(2)
    return torch.where(diff != 0, torch.tensor(-100.0), torch.tensor(0.0))


def shift_mask(size: Size3, window: Size3, shift: Size3, device: torch.device) -> torch.Tensor:
    """``(nW, N, N)`` additive mask (0 or -100) for shifted windows of a padded ``size``."""
    return _shift_mask_cpu(tuple(size), tuple(window), tuple(shift)).to(device)


_BIAS_MEMO: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_FUSED = os.environ.get("RVRT_FUSED_ATTENTION", "1") not in ("0", "false", "False")
#: the fused path's name in the fallback log line and memo (rvrt.fastpath)
SDPA_OP = "window attention (scaled_dot_product_attention)"


def fused_attention() -> bool:
    """Whether window attention runs through ``F.scaled_dot_product_attention`` (the default) or
    the explicit reference math (``RVRT_FUSED_ATTENTION=0`` or :func:`set_fused_attention`)."""
    return _FUSED


def set_fused_attention(enabled: bool) -> None:
    """Switch between the fused (SDPA) and the explicit window-attention path, process-wide."""
    global _FUSED
    _FUSED = bool(enabled)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside 3-D windows, with a learned relative position bias.

    Args:
        dim: channels.
        window_size: ``(wd, wh, ww)``.
        num_heads: heads.
        qkv_bias: bias in the ``qkv_self`` projection.
        qk_scale: overrides ``head_dim ** -0.5``.
        position_bias: learn a relative position bias table (RVRT Light has none).
    """

    def __init__(
        self,
        dim: int,
        window_size: Size3,
        num_heads: int,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        position_bias: bool = True,
    ) -> None:
        super().__init__()
        self.window_size = tuple(window_size)
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.has_position_bias = position_bias
        if position_bias:
            wd, wh, ww = self.window_size
            self.relative_position_bias_table = nn.Parameter(
                torch.zeros((2 * wd - 1) * (2 * wh - 1) * (2 * ww - 1), num_heads)
            )
            index = _constant(relative_position_index, self.window_size)
            self.register_buffer("relative_position_index", index)
        self.qkv_self = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def bias(self, n: int) -> torch.Tensor | None:
        """``(heads, n, n)`` relative position bias for windows of ``n`` tokens.

        Outside autograd the gathered bias is memoised per table, window volume and table
        version (an optimizer step or ``load_state_dict`` bumps the version), so inference
        gathers it once per window size instead of on every call.
        """
        if not self.has_position_bias:
            return None
        table = self.relative_position_bias_table
        # traced by torch.compile: the gather joins the graph (the memo's version check would break it)
        if (torch.is_grad_enabled() and table.requires_grad) or torch.compiler.is_compiling():
            return self._gather_bias(n)
        key = (n, table._version, table.device, table.dtype)
        memo = _BIAS_MEMO.setdefault(self, {})
        if key not in memo:
            for stale in [k for k in memo if k[1] != table._version]:
                del memo[stale]
            with torch.inference_mode(False), torch.no_grad():
                memo[key] = self._gather_bias(n)
        return memo[key]

    def _gather_bias(self, n: int) -> torch.Tensor:
        idx = self.relative_position_index[:n, :n].reshape(-1)
        return self.relative_position_bias_table[idx].view(n, n, -1).permute(2, 0, 1).contiguous()

    def _heads(self, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(B_, N, 3C)`` projections -> q, k, v of shape ``(B_, heads, N, C / heads)``."""
        b_, n, c3 = qkv.shape
        qkv = qkv.reshape(b_, n, 3, self.num_heads, c3 // (3 * self.num_heads)).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, bias: torch.Tensor | None
    ) -> torch.Tensor:
        """Softmax attention of ``q`` over ``k``/``v`` (each ``(B_, heads, n, d)``) -> ``(B_, n, heads * d)``.

        ``mask`` is the ``(nW, N, N)`` shift mask of the group; only its ``[:n, :n]`` corner is used.
        """
        if fused_attention():
            # a fused SDPA kernel that fails on these inputs: the explicit math (logged once)
            return run_fast(
                SDPA_OP,
                f"{q.device} {str(q.dtype).removeprefix('torch.')}",
                lambda: self._attend_fused(q, k, v, mask, bias),
                lambda: self._attend_math(q, k, v, mask, bias),
            )
        return self._attend_math(q, k, v, mask, bias)

    def _attend_math(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, bias: torch.Tensor | None
    ) -> torch.Tensor:
        """The explicit reference math of :meth:`_attend`."""
        b_, heads, n, d = q.shape
        attn = (q * self.scale) @ k.transpose(-2, -1)
        if bias is not None:
            attn = attn + bias.unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(b_ // nw, nw, heads, n, n) + mask[:, :n, :n].unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, heads, n, n)
        attn = torch.softmax(attn, dim=-1)
        return (attn @ v).transpose(1, 2).reshape(b_, n, heads * d)

    def _attend_fused(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, bias: torch.Tensor | None
    ) -> torch.Tensor:
        """Same as the explicit path through ``F.scaled_dot_product_attention``: the position bias and
        the shift mask form one additive mask, broadcast over the windows of the batch."""
        b_, heads, n, d = q.shape
        add = None if bias is None else bias.unsqueeze(0)  # (1, heads, n, n)
        if mask is not None:
            nw = mask.shape[0]
            m = mask[:, :n, :n].unsqueeze(1)  # (nW, 1, n, n)
            add = m.expand(nw, heads, n, n) if add is None else add + m
            # windows of one batch element share the mask: fold them into the head axis
            q, k, v = (t.reshape(b_ // nw, nw * heads, n, d) for t in (q, k, v))
            add = add.reshape(1, nw * heads, n, n)
        if add is not None:
            add = add.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=add, scale=self.scale)
        return out.reshape(b_, heads, n, d).transpose(1, 2).reshape(b_, n, heads * d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Args:
        x: ``(B * nW, N, C)`` window tokens.
        mask: ``(nW, N, N)`` additive mask or ``None``.
        """
        q, k, v = self._heads(self.qkv_self(x))
        return self.proj(self._attend(q, k, v, mask, self.bias(x.shape[1])))


def sine_position_encoding(h: int, w: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Fixed 2-D sine/cosine encoding of the ``h x w`` positions of a frame, ``(1, h * w, dim)``.

    The first ``dim / 2`` channels encode the row, the others the column; positions are
    normalised to ``(0, 2 pi]`` (``(i + 1) / (size + 1e-6) * 2 pi``) and channel ``2j`` / ``2j + 1``
    holds the sine / cosine at frequency ``temperature ** (-2j / (dim / 2))``. Tokens are in
    row-major order. Computed in float32 with the published model's operation order, so the
    buffer equals the one stored in its checkpoints.
    """
    feats = dim // 2
    ones = torch.ones(1, h, w)
    y = ones.cumsum(1, dtype=torch.float32)
    x = ones.cumsum(2, dtype=torch.float32)
    y = y / (y[:, -1:, :] + 1e-6) * (2 * math.pi)
    x = x / (x[:, :, -1:] + 1e-6) * (2 * math.pi)
    freq = torch.arange(feats, dtype=torch.float32)
    freq = temperature ** (2 * (freq // 2) / feats)

    def encode(pos: torch.Tensor) -> torch.Tensor:
        pos = pos[..., None] / freq  # (1, h, w, feats)
        return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=4).flatten(3)

    return torch.cat((encode(y), encode(x)), dim=3).flatten(1, 2).contiguous()


class MutualWindowAttention(WindowAttention):
    """Self-attention plus mutual attention between the two frames of a ``(2, wh, ww)`` window (VRT).

    Mutual attention projects the tokens (plus a fixed sine position encoding of the frame
    position, the ``position_bias`` buffer) with ``qkv_mut``; frame 2's queries attend to
    frame 1's keys/values and vice versa, and the results take the places of frame 1 and frame 2.
    They are concatenated on channels with the self-attention result and ``proj`` maps the
    ``2C`` channels back to ``C``. Like the published model, the mutual attention uses the
    top-left ``N/2 x N/2`` corner of the shift mask for both directions and no relative bias.

    Windows must not shrink: the position encoding has exactly ``2 * wh * ww`` tokens.
    """

    def __init__(
        self, dim: int, window_size: Size3, num_heads: int, qkv_bias: bool = True, qk_scale: float | None = None
    ) -> None:
        super().__init__(dim, window_size, num_heads, qkv_bias, qk_scale)
        if self.window_size[0] != 2:
            raise ValueError(f"mutual attention needs a window of 2 frames; got {self.window_size}")
        if dim % 2:
            raise ValueError(f"mutual attention needs an even channel count (position encoding); got {dim}")
        wh, ww = self.window_size[1:]
        self.register_buffer("position_bias", _constant(sine_position_encoding, wh, ww, dim))
        self.qkv_mut = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(2 * dim, dim)  # replaces the C -> C projection, keeping its place

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Args:
        x: ``(B * nW, N, C)`` window tokens, ``N = 2 * wh * ww`` (frame 1 first).
        mask: ``(nW, N, N)`` additive mask or ``None``.
        """
        n = x.shape[1]
        if n != 2 * self.position_bias.shape[1]:
            raise ValueError(
                f"mutual attention needs full {self.window_size} windows ({2 * self.position_bias.shape[1]} "
                f"tokens); got {n}: the feature map is smaller than the window"
            )
        q, k, v = self._heads(self.qkv_self(x))
        self_out = self._attend(q, k, v, mask, self.bias(n))
        q, k, v = self._heads(self.qkv_mut(x + self.position_bias.repeat(1, 2, 1)))
        half = n // 2
        frame1 = self._attend(q[:, :, half:], k[:, :, :half], v[:, :, :half], mask, None)
        frame2 = self._attend(q[:, :, :half], k[:, :, half:], v[:, :, half:], mask, None)
        return self.proj(torch.cat([torch.cat([frame1, frame2], 1), self_out], 2))


class SwinLayer(nn.Module):
    """Pre-norm transformer layer: ``x + WindowAttention(norm1(x))`` then ``x + Mlp(norm2(x))``.

    Args:
        mutual: use :class:`MutualWindowAttention` (VRT; the window must span 2 frames).
        mlp: ``"gelu"`` (``fc1 -> GELU -> fc2``) or ``"geglu"`` (VRT's gated ``fc11/fc12/fc2``).
        drop_path: stochastic-depth rate of both residual branches (training only).
        checkpoint_attn, checkpoint_ffn: recompute the attention / MLP part in the backward
            pass (activation checkpointing, non-reentrant so it composes with DDP).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: Size3,
        shift_size: Size3 = (0, 0, 0),
        mlp_ratio: float = 2.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        norm_eps: float = 1e-5,
        gelu_approximate: str = "none",
        position_bias: bool = True,
        mutual: bool = False,
        mlp: str = "gelu",
        drop_path: float = 0.0,
        checkpoint_attn: bool = False,
        checkpoint_ffn: bool = False,
    ) -> None:
        super().__init__()
        self.window_size = tuple(window_size)
        self.shift_size = tuple(shift_size)
        if not all(0 <= s < w for s, w in zip(self.shift_size, self.window_size)):
            raise ValueError(f"shift {self.shift_size} must be smaller than the window {self.window_size}")
        if mlp not in ("gelu", "geglu"):
            raise ValueError(f"mlp must be 'gelu' or 'geglu'; got {mlp!r}")
        self.checkpoint_attn = checkpoint_attn
        self.checkpoint_ffn = checkpoint_ffn
        self.drop_path = float(drop_path)
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        if mutual:
            if not position_bias:
                raise ValueError("mutual attention always has a relative position bias")
            self.attn = MutualWindowAttention(dim, self.window_size, num_heads, qkv_bias, qk_scale)
        else:
            self.attn = WindowAttention(dim, self.window_size, num_heads, qkv_bias, qk_scale, position_bias)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        mlp_cls = GEGLUMlp if mlp == "geglu" else Mlp
        self.mlp = mlp_cls(dim, int(dim * mlp_ratio), gelu_approximate=gelu_approximate)

    def _attention(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, d, h, w, c = x.shape
        ws, ss = effective_window((d, h, w), self.window_size, self.shift_size)
        x = self.norm1(x)
        pads = [(wi - si % wi) % wi for si, wi in zip((d, h, w), ws)]
        if any(pads):
            x = F.pad(x, (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
        dp, hp, wp = d + pads[0], h + pads[1], w + pads[2]
        shifted = any(s > 0 for s in ss)
        if shifted:
            x = torch.roll(x, shifts=(-ss[0], -ss[1], -ss[2]), dims=(1, 2, 3))
        windows = self.attn(window_partition(x, ws), mask if shifted else None)
        x = window_reverse(windows, ws, b, dp, hp, wp)
        if shifted:
            x = torch.roll(x, shifts=ss, dims=(1, 2, 3))
        if any(pads):
            x = x[:, :d, :h, :w]
        return x

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.norm2(x))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Args:
        x: ``(B, D, H, W, C)``.
        mask: shift mask for the padded size (see :class:`SwinGroup`), used if this layer shifts.
        """
        if self.checkpoint_attn and torch.is_grad_enabled():
            y = cp.checkpoint(self._attention, x, mask, use_reentrant=False)
        else:
            y = self._attention(x, mask)
        x = x + drop_path(y, self.drop_path, self.training)
        if self.checkpoint_ffn and torch.is_grad_enabled():
            y = cp.checkpoint(self._ffn, x, use_reentrant=False)
        else:
            y = self._ffn(x)
        return x + drop_path(y, self.drop_path, self.training)


class SwinGroup(nn.Module):
    """``depth`` :class:`SwinLayer` s, alternating unshifted and half-window shifted windows.

    Args:
        drop_path: stochastic-depth rate, one for all layers or one per layer.
        **layer_kwargs: the other :class:`SwinLayer` options.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: Size3,
        drop_path: float | Sequence[float] = 0.0,
        **layer_kwargs,
    ) -> None:
        super().__init__()
        self.window_size = tuple(window_size)
        self.shift_size = tuple(w // 2 for w in self.window_size)
        if isinstance(drop_path, (int, float)):
            rates = [float(drop_path)] * depth
        else:
            rates = [float(r) for r in drop_path]
        if len(rates) < depth:
            raise ValueError(f"need a drop_path rate for each of the {depth} layers; got {len(rates)}")
        self.blocks = nn.ModuleList(
            SwinLayer(
                dim,
                num_heads,
                self.window_size,
                (0, 0, 0) if i % 2 == 0 else self.shift_size,
                drop_path=rates[i],
                **layer_kwargs,
            )
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D, H, W, C) -> (B, D, H, W, C)``."""
        d, h, w = x.shape[1:4]
        ws, ss = effective_window((d, h, w), self.window_size, self.shift_size)
        padded = tuple(-(-s // wi) * wi for s, wi in zip((d, h, w), ws))
        mask = shift_mask(padded, ws, ss, x.device) if any(s > 0 for s in ss) else None
        if mask is not None and mask.dtype != x.dtype:
            mask = mask.to(x.dtype)
        for blk in self.blocks:
            x = blk(x, mask)
        return x


class RSTB(nn.Module):
    """Residual Swin Transformer block: ``x + linear(SwinGroup(x))`` (channels-last)."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: Size3, **layer_kwargs) -> None:
        super().__init__()
        self.residual_group = SwinGroup(dim, depth, num_heads, window_size, **layer_kwargs)
        self.linear = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.linear(self.residual_group(x))


class RSTBWithInputConv(nn.Module):
    """``Conv (1, 3, 3) -> LayerNorm -> num_blocks x RSTB -> LayerNorm`` on ``(N, T, C, H, W)``.

    Keys: ``main.1`` (conv), ``main.3`` (norm), ``main.5.<i>`` (RSTBs), ``main.7`` (norm).

    Args:
        in_channels: input channels.
        dim: output (embedding) channels.
        groups: groups of the input convolution.
        num_blocks: RSTBs.
        depth, num_heads, window_size: of each RSTB.
        **layer_kwargs: :class:`SwinLayer` options (mlp_ratio, qkv_bias, qk_scale, norm_eps,
            gelu_approximate, position_bias, checkpoint_attn, checkpoint_ffn).
    """

    def __init__(
        self,
        in_channels: int,
        dim: int,
        *,
        groups: int = 1,
        num_blocks: int = 2,
        depth: int = 2,
        num_heads: int = 6,
        window_size: Size3 = (2, 8, 8),
        **layer_kwargs,
    ) -> None:
        super().__init__()
        if in_channels % groups or dim % groups:
            raise ValueError(f"input conv groups={groups} must divide in_channels={in_channels} and dim={dim}")
        norm_eps = layer_kwargs.get("norm_eps", 1e-5)
        self.main = IndexedModules(
            {
                "1": nn.Conv3d(in_channels, dim, (1, 3, 3), padding=(0, 1, 1), groups=groups),
                "3": nn.LayerNorm(dim, eps=norm_eps),
                "5": nn.Sequential(
                    *(RSTB(dim, depth, num_heads, window_size, **layer_kwargs) for _ in range(num_blocks))
                ),
                "7": nn.LayerNorm(dim, eps=norm_eps),
            }
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, T, C_in, H, W) -> (N, T, dim, H, W)``."""
        x = self.main[3](conv3d_per_frame(self.main[1], x).permute(0, 1, 3, 4, 2))  # (N, T, H, W, C)
        x = self.main[5](x)
        x = self.main[7](x)
        return x.permute(0, 1, 4, 2, 3)
