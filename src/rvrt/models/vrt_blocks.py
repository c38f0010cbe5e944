"""Building blocks of VRT: the stages of its U-net and flow-guided deformable alignment.

Features are channels-last ``(N, T, H, W, C)`` between blocks. Attribute names reproduce the
official state-dict keys (``stage<k>.reshape``, ``residual_group1``, ``linear1``,
``residual_group2``, ``linear2``, ``pa_deform``, ``pa_fuse``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rvrt.models.layers import GEGLUMlp, IndexedModules
from rvrt.models.swin import SwinGroup
from rvrt.models.warp import flow_warp
from rvrt.ops.dcn import Backend, deform_conv2d

__all__ = ["FlowGuidedDeformConv", "NormLinear", "VRTStage", "PA_CHUNK_FRAMES"]

#: Frames aligned by one parallel-warping call; longer clips are processed in chunks to bound memory.
PA_CHUNK_FRAMES = 16


class FlowGuidedDeformConv(nn.Module):
    """Flow-guided modulated deformable convolution aligning neighbours onto a frame (``pa_deform``).

    For ``m = pa_frames / 2`` neighbours the offsets are ``max_residue_magnitude * tanh(.)``
    residuals, predicted from the flow-warped neighbours, the current frame and the flows, added
    to the flow of the neighbour they belong to (the offset groups are split into ``m`` equal
    parts, one per neighbour). The convolution input is the channel concatenation of the ``m``
    unwarped neighbours while the weight keeps ``C`` input channels, so it is a grouped
    convolution with ``m`` groups (each neighbour produces its share of the output channels).

    Keys: ``weight``, ``bias``, ``conv_offset.{0,2,4,6}``.
    """

    def __init__(
        self,
        channels: int,
        *,
        pa_frames: int,
        deformable_groups: int,
        max_residue_magnitude: float,
        backend: Backend = "auto",
    ) -> None:
        super().__init__()
        self.channels = channels
        self.neighbours = pa_frames // 2
        self.deformable_groups = deformable_groups
        self.max_residue_magnitude = max_residue_magnitude
        self.backend = backend
        self.weight = nn.Parameter(torch.empty(channels, channels, 3, 3))
        self.bias = nn.Parameter(torch.empty(channels))
        c_in = (1 + self.neighbours) * channels + 2 * self.neighbours
        self.conv_offset = nn.Sequential(
            nn.Conv2d(c_in, channels, 3, 1, 1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(channels, channels, 3, 1, 1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(channels, channels, 3, 1, 1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(channels, 3 * 9 * deformable_groups, 3, 1, 1),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The published initialisation: U(+-1/sqrt(9C)) weight, zero bias, zero last offset layer."""
        bound = 1.0 / math.sqrt(self.channels * 9)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.zeros_(self.bias)
        nn.init.zeros_(self.conv_offset[-1].weight)
        nn.init.zeros_(self.conv_offset[-1].bias)

    def offset_and_mask(
        self, x_flow_warpeds: list[torch.Tensor], x_current: torch.Tensor, flows: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Deformable offsets ``(B, 2 * G * 9, H, W)`` (torchvision layout) and masks ``(B, G * 9, H, W)``."""
        out = self.conv_offset(torch.cat([*x_flow_warpeds, x_current, *flows], 1))
        o1, o2, mask = torch.chunk(out, 3, dim=1)
        residual = self.max_residue_magnitude * torch.tanh(torch.cat((o1, o2), dim=1))
        parts = torch.chunk(residual, self.neighbours, dim=1)
        # each neighbour's share of groups and taps moves around that neighbour's flow, as (dy, dx)
        offset = [p + f.flip(1).repeat(1, p.shape[1] // 2, 1, 1) for p, f in zip(parts, flows, strict=True)]
        return torch.cat(offset, 1), torch.sigmoid(mask)

    def forward(
        self, x: torch.Tensor, x_flow_warpeds: list[torch.Tensor], x_current: torch.Tensor, flows: list[torch.Tensor]
    ) -> torch.Tensor:
        """Args:
            x: ``(B, m * C, H, W)`` the unwarped neighbours (nearest first), concatenated.
            x_flow_warpeds: ``m`` neighbours ``(B, C, H, W)`` warped onto the current frame.
            x_current: ``(B, C, H, W)`` the frame being aligned to.
            flows: ``m`` flows ``(B, 2, H, W)`` (dx, dy) from the current frame to each neighbour.

        Returns:
            ``(B, C, H, W)``.
        """
        offset, mask = self.offset_and_mask(x_flow_warpeds, x_current, flows)
        return deform_conv2d(x, offset, self.weight, self.bias, 1, 1, 1, mask, backend=self.backend)


class NormLinear(IndexedModules):
    """``LayerNorm`` (key ``1``) then optionally ``Linear`` (key ``2``), on channels-last tensors."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self[1](x)
        return self[2](x) if "2" in self._modules else x


class VRTStage(nn.Module):
    """One of stages 1-7: resize, TMSA (mutual + self attention), self attention, parallel warping.

    Features are channels-last ``(N, T, H, W, C)``. ``reshape`` is ``"none"``, ``"down"`` (2x2
    space-to-depth then LayerNorm + Linear) or ``"up"`` (depth-to-space then LayerNorm + Linear).

    Args:
        in_dim, dim: input and output channels.
        depth: attention layers; the first ``int(depth * mul_attn_ratio)`` use mutual attention
            in ``(2, wh, ww)`` windows, the others self-attention in ``window_size`` windows.
        drop_path: per-layer stochastic-depth rates of the stage (both groups index it from 0,
            as the published model does).
        pa_frames: neighbours for parallel warping (0: none).
        checkpoint_attn, checkpoint_ffn: activation checkpointing of the mutual group (the
            self-attention group always checkpoints its attention, as published).
    """

    def __init__(
        self,
        in_dim: int,
        dim: int,
        *,
        reshape: str,
        depth: int,
        num_heads: int,
        window_size: tuple[int, int, int],
        mul_attn_ratio: float,
        mlp_ratio: float,
        qkv_bias: bool,
        qk_scale: float | None,
        drop_path: list[float],
        pa_frames: int,
        deformable_groups: int,
        max_residue_magnitude: float,
        checkpoint_attn: bool = False,
        checkpoint_ffn: bool = False,
        dcn_backend: Backend = "auto",
    ) -> None:
        super().__init__()
        self.mode = reshape
        self.pa_frames = pa_frames
        if reshape == "none":
            self.reshape = NormLinear({"1": nn.LayerNorm(dim)})
        elif reshape == "down":
            self.reshape = NormLinear({"1": nn.LayerNorm(4 * in_dim), "2": nn.Linear(4 * in_dim, dim)})
        elif reshape == "up":
            self.reshape = NormLinear({"1": nn.LayerNorm(in_dim // 4), "2": nn.Linear(in_dim // 4, dim)})
        else:
            raise ValueError(f"reshape must be 'none', 'down' or 'up'; got {reshape!r}")
        layer = dict(
            mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_scale=qk_scale, mlp="geglu", checkpoint_ffn=checkpoint_ffn
        )
        mutual_depth = int(depth * mul_attn_ratio)
        self.residual_group1 = SwinGroup(
            dim,
            mutual_depth,
            num_heads,
            (2, window_size[1], window_size[2]),
            drop_path=drop_path[:mutual_depth],
            mutual=True,
            checkpoint_attn=checkpoint_attn,
            **layer,
        )
        self.linear1 = nn.Linear(dim, dim)
        self.residual_group2 = SwinGroup(
            dim,
            depth - mutual_depth,
            num_heads,
            window_size,
            drop_path=drop_path[: depth - mutual_depth],
            checkpoint_attn=True,
            **layer,
        )
        self.linear2 = nn.Linear(dim, dim)
        if pa_frames:
            self.pa_deform = FlowGuidedDeformConv(
                dim,
                pa_frames=pa_frames,
                deformable_groups=deformable_groups,
                max_residue_magnitude=max_residue_magnitude,
                backend=dcn_backend,
            )
            self.pa_fuse = GEGLUMlp(3 * dim, 3 * dim, dim)

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        n, t, h, w, c = x.shape
        if self.mode == "down":
            # 2x2 neighbourhoods to channels, ordered (column offset, row offset, channel)
            x = x.view(n, t, h // 2, 2, w // 2, 2, c).permute(0, 1, 2, 4, 5, 3, 6)
            x = x.reshape(n, t, h // 2, w // 2, 4 * c)
        elif self.mode == "up":
            x = x.view(n, t, h, w, 2, 2, c // 4).permute(0, 1, 2, 5, 3, 4, 6)
            x = x.reshape(n, t, 2 * h, 2 * w, c // 4)
        return self.reshape(x)

    def forward(
        self, x: torch.Tensor, flows_backward: list[torch.Tensor], flows_forward: list[torch.Tensor]
    ) -> torch.Tensor:
        """Args:
            x: ``(N, T, H, W, C_in)`` (``H, W`` of the previous stage).
            flows_backward, flows_forward: ``pa_frames / 2`` flows at this stage's scale, the
                ``k``-th ``(N, T-k, 2, H', W')`` (see :meth:`rvrt.models.vrt.VRT.get_flows`);
                unused without parallel warping.

        Returns:
            ``(N, T, H', W', C)``.
        """
        x = self._resize(x)
        x = self.linear1(self.residual_group1(x)) + x
        x = self.linear2(self.residual_group2(x)) + x
        if not self.pa_frames:
            return x
        frames = x.permute(0, 1, 4, 2, 3)  # (N, T, C, H, W)
        backward = self.align_neighbours(frames, flows_backward, backward=True)
        forward = self.align_neighbours(frames, flows_forward, backward=False)
        fused = torch.cat([x, backward.permute(0, 1, 3, 4, 2), forward.permute(0, 1, 3, 4, 2)], -1)
        return self.pa_fuse(fused)

    def align_neighbours(self, x: torch.Tensor, flows: list[torch.Tensor], backward: bool) -> torch.Tensor:
        """Neighbours of every frame aligned onto it by :class:`FlowGuidedDeformConv`.

        Args:
            x: ``(N, T, C, H, W)``.
            flows: ``m`` flows, the ``k``-th ``(N, T-k, 2, H, W)``: for ``backward`` entry ``i``
                warps frame ``i+k`` onto frame ``i``, otherwise frame ``i`` onto frame ``i+k``.
            backward: align the following frames (``t+1 .. t+m``) instead of the preceding ones.

        Returns:
            ``(N, T, C, H, W)``; zeros for the last (backward) or first (forward) frame, which has
            no such neighbour. Neighbours beyond the ends count as zero features with zero flow.
        """
        n, t, c, h, w = x.shape
        targets = list(range(t - 1)) if backward else list(range(1, t))
        out = []
        for s in range(0, len(targets), PA_CHUNK_FRAMES):
            chunk = targets[s : s + PA_CHUNK_FRAMES]
            feats, warped, used_flows = [], [], []
            for k, flow in enumerate(flows, start=1):
                # flow index and neighbour frame of each target; missing neighbours -> zeros
                pairs = [(i, i + k) if backward else (i - k, i - k) for i in chunk]
                nb = torch.stack(
                    [x[:, j] if 0 <= fi < flow.shape[1] else x.new_zeros(n, c, h, w) for fi, j in pairs], 1
                ).flatten(0, 1)
                fl = torch.stack(
                    [flow[:, fi] if 0 <= fi < flow.shape[1] else flow.new_zeros(n, 2, h, w) for fi, _ in pairs], 1
                ).flatten(0, 1)
                feats.append(nb)
                warped.append(flow_warp(nb, fl))
                used_flows.append(fl)
            current = x[:, chunk].flatten(0, 1)
            aligned = self.pa_deform(torch.cat(feats, 1), warped, current, used_flows)
            out.append(aligned.view(n, len(chunk), c, h, w))
        zeros = x.new_zeros(n, 1, c, h, w)
        return torch.cat([*out, zeros] if backward else [zeros, *out], 1)
