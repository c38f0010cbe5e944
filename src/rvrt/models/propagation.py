"""Clip-recurrent propagation shared by RVRT and RVRT Light.

Both networks cut the shallow features of a video into clips of ``clip_size`` frames and run
four branches (:data:`BRANCHES`) over the clips. Each branch walks the clips in its direction,
keeps a propagated feature ``feat_prop`` (zeros before the first clip), aligns it to the
current clip (from the second clip on; this is where the two models differ), and refines it
with the branch backbone from the features of all earlier branches of the same clip:
``feat_prop = feat_prop + backbone(cat([earlier branches..., feat_prop]))``. Backward branches
see every clip time-reversed and return their clips in time order again.

The reconstruction head (Swin reconstruction, sub-pixel upsampler, residual on the resized
input) is shared too, see :class:`ClipRecurrentNet`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rvrt.errors import InputError
from rvrt.models.layers import conv3d_per_frame, frame_chunks, upsample_frames

__all__ = [
    "BRANCHES",
    "AlignFn",
    "ClipRecurrentNet",
    "FeatureStore",
    "check_video",
    "clip_order",
    "extract_per_clip",
    "propagate_branch",
]

BRANCHES = ("backward_1", "forward_1", "backward_2", "forward_2")

#: ``align(step, q, k, feat_prop) -> aligned feat_prop``, called for steps 1, 2, ... of a branch
#: with ``q`` the previous branch's features of the current clip and ``k`` those of the clip
#: processed before it, both ``(N, clip, C, H, W)`` and already time-reversed in backward branches.
AlignFn = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


class FeatureStore:
    """Where per-clip features wait between branches: on the compute device, or in host memory."""

    def __init__(self, device: torch.device, offload: bool) -> None:
        self.device = device
        self.offload = offload

    def get(self, f: torch.Tensor) -> torch.Tensor:
        return f.to(self.device, non_blocking=True) if self.offload else f

    def clips(self, n_clips: int, like: torch.Tensor) -> _ClipList:
        """A list of ``n_clips`` per-clip features shaped like ``like``, filled with :meth:`_ClipList.set`."""
        return _ClipList(n_clips, like, "cpu" if self.offload else like.device)


class _ClipList(list):
    """Per-clip features in time order. Without autograd they live in one preallocated block: a few
    large allocations instead of hundreds of clip-sized ones interleaved with the transient
    activations, which fragmented the heap (on the CPU the resident memory of a 30-frame window
    grew 1.7x faster than the features it held)."""

    def __init__(self, n_clips: int, like: torch.Tensor, device: torch.device | str) -> None:
        super().__init__([None] * n_clips)
        self._device = device
        self._block = None
        if not torch.is_grad_enabled():
            self._block = torch.empty((n_clips, *like.shape), dtype=like.dtype, device=device)

    def set(self, i: int, f: torch.Tensor) -> None:
        if self._block is None:
            self[i] = f.to(self._device, non_blocking=True)
        else:
            self._block[i].copy_(f, non_blocking=True)
            self[i] = self._block[i]


def extract_per_clip(
    extract: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, clip: int, store: FeatureStore, *, width: int
) -> list[torch.Tensor]:
    """Shallow features of every clip of ``x`` ``(N, T, C, H, W)``, as a list of ``(N, clip, C', h, w)``.

    The feature extractors of these models treat every frame on its own (their attention windows
    are one frame deep), so running them a few clips at a time gives the features of one call over
    the whole clip with memory bounded by the chunk (see :func:`~rvrt.models.layers.frame_chunks`);
    ``width`` is the feature channels.
    """
    n, t, _, h, w = x.shape
    clip = -(-t // max(t // clip, 1))  # torch.chunk's clip length: a 3-frame input is one clip
    out = None
    for part in frame_chunks(t, n * h * w * width, multiple=clip):
        feats = extract(x[:, part])
        for j, c in enumerate(feats.split(clip, dim=1)):
            if out is None:
                out = store.clips(t // clip, c)
            out.set(part.start // clip + j, c)
        del feats
    return out


def clip_order(n_clips: int, backward: bool) -> list[int]:
    """Clip indices in the order a branch visits them."""
    order = list(range(n_clips))
    return order[::-1] if backward else order


def propagate_branch(
    feats: dict[str, list[torch.Tensor]],
    name: str,
    backbone: nn.Module,
    align: AlignFn,
    store: FeatureStore,
) -> list[torch.Tensor]:
    """Run one propagation branch over all clips.

    Args:
        feats: features per clip of the branches computed so far, in computation order
            (``"shallow"`` first); the last entry is the branch this one aligns with.
        name: ``"backward_*"`` or ``"forward_*"``.
        backbone: maps the concatenated ``(N, clip, k * C, H, W)`` inputs to ``(N, clip, C, H, W)``.
        align: the alignment step (see :data:`AlignFn`).
        store: where clip features are kept (host offloading).

    Returns:
        the branch's features per clip, in time order.
    """
    n_clips = len(feats["shallow"])
    backward = name.startswith("backward")
    order = clip_order(n_clips, backward)
    prev = list(feats)[-1]
    timed = (lambda f: f.flip(1)) if backward else _same  # noqa: E731

    feat_prop = torch.zeros_like(store.get(feats["shallow"][0]))
    out = store.clips(n_clips, feat_prop)
    for i, idx in enumerate(order):
        if i > 0:
            q = timed(store.get(feats[prev][idx]))
            k = timed(store.get(feats[prev][order[i - 1]]))
            feat_prop = align(i, q, k, feat_prop)
        inputs = [timed(store.get(feats[key][idx])) for key in feats if key != name] + [feat_prop]
        feat_prop = feat_prop + backbone(torch.cat(inputs, dim=2))
        out.set(idx, timed(feat_prop))  # in time order, as the other branches see it
    return out


def check_video(x: torch.Tensor, in_channels: int, what: str = "RGB") -> None:
    """Raise :class:`~rvrt.errors.InputError` unless ``x`` is a float ``(N, T, in_channels, H, W)`` video."""
    if x.dim() != 5:
        raise InputError(f"input must be (N, T, C, H, W); got shape {tuple(x.shape)}")
    if x.shape[2] != in_channels:
        raise InputError(f"this model takes {in_channels} input channels ({what}); got {x.shape[2]}")
    if not x.is_floating_point():
        raise InputError(f"input must be a floating-point tensor in [0, 1]; got {x.dtype}")
    if min(x.shape) < 1:
        raise InputError(f"input has an empty dimension: {tuple(x.shape)}")


class ClipRecurrentNet(nn.Module):
    """Base of the clip-recurrent networks: the shared reconstruction head.

    Subclasses define ``config.upscale``, ``reconstruction`` (RSTBWithInputConv over the five
    concatenated feature sets), ``conv_before_upsampler`` (``Sequential(Conv3d, LeakyReLU)``),
    ``upsampler`` and ``conv_last``.
    """

    reconstruction: nn.Module
    conv_before_upsampler: nn.Sequential
    upsampler: nn.Module
    conv_last: nn.Conv3d

    def reconstruct(self, x: torch.Tensor, feats: dict[str, Any], *, offload: bool = False) -> torch.Tensor:
        """Output frames from the per-clip features: ``(N, T, 3, s*H, s*W)`` on ``x.device``.

        Args:
            x: the ``(N, T, C, H, W)`` input the features were computed from.
            feats: ``"shallow"`` and the four branches, lists of ``(N, clip, C, h, w)`` in time order.
            offload: the features are in host memory.

        Frames are independent here (the reconstruction attends within single frames), so the
        head runs a few frames at a time (:func:`~rvrt.models.layers.frame_chunks`): the result
        is that of one call over the whole clip, and the memory of the full-resolution layers no
        longer grows with the number of frames.
        """
        names = ("shallow",) + BRANCHES
        store = FeatureStore(x.device, offload)
        n, t, _, h, w = x.shape
        s = self.config.upscale
        clip, dim, fh, fw = feats["shallow"][0].shape[1:]
        out = x.new_empty(n, t, 3, s * h, s * w)
        for part in frame_chunks(t, n * fh * fw * len(names) * dim, multiple=clip):
            clips = range(part.start // clip, part.stop // clip)
            lr = torch.cat([torch.cat([store.get(feats[k][i]) for i in clips], 1) for k in names], 2)
            lr = self.reconstruction(lr)
            lr = F.leaky_relu(conv3d_per_frame(self.conv_before_upsampler[0], lr), 0.1)
            hr = upsample_frames(self.upsampler, self.conv_last, lr)
            # the published residual: a trilinear resize of the first three input channels
            out[:, part] = hr + F.interpolate(x[:, part, :3], size=hr.shape[-3:], mode="trilinear", align_corners=False)
        return out
