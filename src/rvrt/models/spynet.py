"""SpyNet optical flow (Ranjan and Black, CVPR 2017), as used inside RVRT and VRT.

A six-level coarse-to-fine pyramid; each level refines the upsampled flow with a small
five-layer CNN (``basic_module``). Parameter names follow the published checkpoints
(``spynet.basic_module.<level>.basic_module.<layer>``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rvrt.models.layers import frame_chunks
from rvrt.models.warp import flow_warp

__all__ = ["SpyNet", "MIN_FLOW_SIZE"]

#: The input of SpyNet must be larger than this in both dimensions: it is resized to a
#: multiple of 32 and pooled five times, so 32 pixels or less would leave an empty level.
MIN_FLOW_SIZE = 33


class _Level(nn.Module):
    """One pyramid level: 8 input channels (reference, warped support, flow) -> 2 flow channels."""

    def __init__(self) -> None:
        super().__init__()
        chans = [8, 32, 64, 32, 16, 2]
        layers: list[nn.Module] = []
        for i in range(5):
            layers.append(nn.Conv2d(chans[i], chans[i + 1], kernel_size=7, stride=1, padding=3))
            if i < 4:
                layers.append(nn.ReLU(inplace=False))
        self.basic_module = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.basic_module(x)


class SpyNet(nn.Module):
    """Flow from ``ref`` to ``supp``: ``flow_warp(supp, flow)`` aligns ``supp`` onto ``ref``.

    Args:
        return_levels: pyramid levels whose flows are returned, 5 = full resolution,
            4 = half, 3 = quarter, 2 = eighth (VRT uses several).
    """

    def __init__(self, return_levels: tuple[int, ...] = (5,)) -> None:
        super().__init__()
        self.return_levels = tuple(return_levels)
        self.basic_module = nn.ModuleList([_Level() for _ in range(6)])
        # ImageNet normalisation, stored in the published checkpoints as buffers
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def _pyramid(self, ref: torch.Tensor, supp: torch.Tensor, h: int, w: int) -> list[torch.Tensor]:
        refs = [(ref - self.mean) / self.std]
        supps = [(supp - self.mean) / self.std]
        for _ in range(5):
            refs.insert(0, F.avg_pool2d(refs[0], kernel_size=2, stride=2, count_include_pad=False))
            supps.insert(0, F.avg_pool2d(supps[0], kernel_size=2, stride=2, count_include_pad=False))

        hs, ws = ref.shape[2:]
        coarse = refs[0]
        flow = coarse.new_zeros(coarse.shape[0], 2, coarse.shape[2] // 2, coarse.shape[3] // 2)
        outputs = []
        for level in range(6):
            up = F.interpolate(flow, scale_factor=2, mode="bilinear", align_corners=True) * 2.0
            # odd sizes: the doubled flow is one pixel short; repeat the last row / column
            if up.shape[2] != refs[level].shape[2]:
                up = F.pad(up, [0, 0, 0, 1], mode="replicate")
            if up.shape[3] != refs[level].shape[3]:
                up = F.pad(up, [0, 1, 0, 0], mode="replicate")
            warped = flow_warp(supps[level], up, padding_mode="border")
            # channels-last: the five 7x7 convolutions run about a fifth faster on the CPU
            inp = torch.cat([refs[level], warped, up], 1).contiguous(memory_format=torch.channels_last)
            flow = self.basic_module[level](inp) + up
            if level in self.return_levels:
                s = 2 ** (5 - level)
                out = F.interpolate(flow, size=(h // s, w // s), mode="bilinear", align_corners=False)
                scale = torch.tensor(
                    [(w // s) / (ws // s), (h // s) / (hs // s)], dtype=out.dtype, device=out.device
                ).view(1, 2, 1, 1)
                outputs.insert(0, out * scale)
        return outputs

    def forward(self, ref: torch.Tensor, supp: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Args:
            ref, supp: ``(N, 3, H, W)`` RGB in [0, 1], ``H, W >= 33``.

        Returns:
            ``(N, 2, H, W)`` flow (dx, dy) in pixels when one level is returned, otherwise a
            list of flows from the finest to the coarsest returned level.
        """
        if ref.shape != supp.shape:
            raise ValueError(f"ref and supp must have one shape; got {tuple(ref.shape)} and {tuple(supp.shape)}")
        h, w = ref.shape[2:]
        if h < MIN_FLOW_SIZE or w < MIN_FLOW_SIZE:
            raise ValueError(f"SpyNet needs frames of at least {MIN_FLOW_SIZE}x{MIN_FLOW_SIZE}; got {h}x{w}")
        hf = math.ceil(h / 32.0) * 32
        wf = math.ceil(w / 32.0) * 32
        # frame pairs are independent: a few at a time bounds memory on long clips
        levels = []
        for part in frame_chunks(ref.shape[0], hf * wf * 64):  # 64: its widest layer
            r = F.interpolate(ref[part], size=(hf, wf), mode="bilinear", align_corners=False)
            s = F.interpolate(supp[part], size=(hf, wf), mode="bilinear", align_corners=False)
            levels.append(self._pyramid(r, s, h, w))
        flows = levels[0] if len(levels) == 1 else [torch.cat(parts) for parts in zip(*levels)]
        return flows[0] if len(flows) == 1 else flows
