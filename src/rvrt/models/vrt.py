"""VRT: A Video Restoration Transformer (Liang et al., arXiv:2201.12288).

All frames are restored in parallel by a U-shaped stack of eight stages. Stages 1-7 work at
scales 1, 1/2, 1/4, 1/8, 1/4, 1/2, 1; each mixes frames with temporal mutual self-attention
(TMSA: windows of two frames whose tokens attend to each other, plus window self-attention)
and, except for frame interpolation, fuses every frame with its neighbours warped onto it by
flow-guided deformable convolution ("parallel warping", around SpyNet flows). Stage 8 refines
the features at full resolution; a residual head produces the output frames.

This implementation computes the same function as the published model: parameter and buffer
names and shapes are the official ones (checkpoints load with ``strict=True``) and outputs
agree with the official network to float32 rounding. It differs where that costs nothing:
``forward`` is pure (no state written on the module, device and dtype follow the input), the
per-frame loops are batched, and inputs the published network rejects (frames smaller than the
attention windows or not a multiple of 8, too few frames for the flows) are mirror-padded the
way the official test script pads and the result is cropped back. Inputs it accepts are not
padded, so results match the official model's exactly there.

Video frame interpolation (``pa_frames=0``, task 009) takes exactly ``img_size[0]`` frames and
returns one. The published model (4 input frames) is trained and evaluated on frames
``s, s+2, s+4, s+6`` of a video and predicts frame ``s+3``, the midpoint of its 2nd and 3rd
inputs: to double a frame rate, frame ``i + 1/2`` is predicted from original frames
``i-1, i, i+1, i+2`` (:func:`interpolation_windows` gives these windows, repeating the first
and last frames at the ends as the official Vid4 protocol does). Its output is ``(N, 1, 3, H, W)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from rvrt.errors import InputError
from rvrt.models.config import ConstructorConfig
from rvrt.models.layers import Upsampler, conv3d_per_frame, frame_chunks, mirror_pad_end, upsample_frames
from rvrt.models.spynet import MIN_FLOW_SIZE, SpyNet
from rvrt.models.swin import RSTB, WindowAttention
from rvrt.models.vrt_blocks import FlowGuidedDeformConv, NormLinear, VRTStage
from rvrt.models.warp import flow_warp, flow_warp_nearest4
from rvrt.ops.dcn import Backend

__all__ = ["VRT", "VRTConfig", "VRTStage", "FlowGuidedDeformConv", "interpolation_windows"]

#: Spatial scale of stages 1-7 relative to the input, and how each stage changes it.
STAGE_SCALES = (1, 2, 4, 8, 4, 2, 1)
STAGE_RESHAPES = ("none", "down", "down", "down", "up", "up", "up")


@dataclass(frozen=True)
class VRTConfig(ConstructorConfig):
    """Architecture of a VRT model. Field names and defaults are the official constructor's.

    ``depths``, ``embed_dims`` and ``num_heads`` have one entry per stage-1..7 block, then one
    per stage-8 block (at least one). ``indep_reconsts`` lists the stage-8 entries (indices into
    ``depths``) whose attention windows span a single frame. ``pa_frames`` is the number of
    neighbours used by parallel warping (2, 4 or 6; 0 builds the frame-interpolation model).
    ``drop_path_rate`` and the ``*checkpoint*`` options only matter for training;
    ``recal_all_flows`` is accepted for compatibility and, as in the published code, unused.
    """

    family: ClassVar[str] = "VRT"

    upscale: int = 4
    in_chans: int = 3
    out_chans: int = 3
    img_size: tuple[int, int, int] = (6, 64, 64)
    window_size: tuple[int, int, int] = (6, 8, 8)
    depths: tuple[int, ...] = (8, 8, 8, 8, 8, 8, 8, 4, 4, 4, 4, 4, 4)
    indep_reconsts: tuple[int, ...] = (11, 12)
    embed_dims: tuple[int, ...] = (120, 120, 120, 120, 120, 120, 120, 180, 180, 180, 180, 180, 180)
    num_heads: tuple[int, ...] = (6,) * 13
    mul_attn_ratio: float = 0.75
    mlp_ratio: float = 2.0
    qkv_bias: bool = True
    qk_scale: float | None = None
    drop_path_rate: float = 0.2
    pa_frames: int = 2
    deformable_groups: int = 16
    recal_all_flows: bool = False
    nonblind_denoising: bool = False
    use_checkpoint_attn: bool = False
    use_checkpoint_ffn: bool = False
    no_checkpoint_attn_blocks: tuple[int, ...] = ()
    no_checkpoint_ffn_blocks: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        self._freeze()
        n = len(self.depths)
        if n < 8:
            raise ValueError(f"depths needs 7 stage entries and at least one stage-8 entry; got {n}")
        if len(self.embed_dims) != n or len(self.num_heads) != n:
            raise ValueError(
                f"depths, embed_dims and num_heads need the same length; got {n}, "
                f"{len(self.embed_dims)}, {len(self.num_heads)}"
            )
        if len(self.img_size) != 3 or len(self.window_size) != 3:
            raise ValueError("img_size and window_size need 3 entries (frames, height, width)")
        if self.pa_frames not in (0, 2, 4, 6):
            raise ValueError(f"pa_frames must be 2, 4 or 6 (0: frame interpolation); got {self.pa_frames}")
        d = self.embed_dims
        if d[4] != d[2] or d[5] != d[1] or d[6] != d[0]:
            raise ValueError(
                f"stages 5-7 add the features of stages 3, 2, 1: embed_dims[4:7] must equal "
                f"embed_dims[2], [1], [0]; got {d[:7]}"
            )
        if len(set(d[7:])) != 1:
            raise ValueError(f"the stage-8 blocks share one width: embed_dims[7:] must be equal; got {d[7:]}")
        for i in (4, 5, 6):
            if d[i - 1] % 4:
                raise ValueError(
                    f"stage {i + 1} upsamples by pixel shuffle: embed_dims[{i - 1}]={d[i - 1]} must be divisible by 4"
                )
        for i, (c, h) in enumerate(zip(d, self.num_heads, strict=True)):
            if h < 1 or c % h:
                raise ValueError(f"embed_dims[{i}]={c} must be divisible by num_heads[{i}]={h}")
            if i < 7 and c % 2:
                raise ValueError(f"embed_dims[{i}]={c} must be even (mutual attention position encoding)")
        if not 0.0 <= self.mul_attn_ratio <= 1.0:
            raise ValueError(f"mul_attn_ratio must be in [0, 1]; got {self.mul_attn_ratio}")
        power_of_two = self.upscale >= 1 and self.upscale & (self.upscale - 1) == 0
        if self.pa_frames:
            if self.in_chans != 3:
                raise ValueError(f"SpyNet flows need RGB input: in_chans must be 3; got {self.in_chans}")
            if not (power_of_two or self.upscale == 3):
                raise ValueError(f"upscale must be 1, 3 or a power of two; got {self.upscale}")
            if self.upscale == 1 and self.out_chans != self.in_chans:
                raise ValueError("upscale=1 adds the input to the output: out_chans must equal in_chans")
        else:
            if self.upscale != 1:
                raise ValueError(f"frame interpolation (pa_frames=0) needs upscale=1; got {self.upscale}")
            if self.nonblind_denoising:
                raise ValueError("nonblind_denoising needs parallel warping (pa_frames > 0)")
            if self.in_chans != 3 or self.out_chans % 3:
                raise ValueError(
                    "frame interpolation takes RGB frames (in_chans=3) and returns RGB frames "
                    "(out_chans a multiple of 3)"
                )

    def check_runnable(self) -> None:
        """Raise ``ValueError`` for an architecture that builds but cannot run.

        The deformable convolution splits the ``pa_frames / 2`` aligned neighbours (``m * C``
        channels) into ``deformable_groups`` equal parts, one share of groups per neighbour. The
        official constructor's defaults (``embed_dims`` 120, 16 groups) do not satisfy this; no
        published model uses them.
        """
        m = self.pa_frames // 2
        channels = [m * c for c in self.embed_dims[:7]]
        if m and (self.deformable_groups % m or any(c % self.deformable_groups for c in channels)):
            raise ValueError(
                f"deformable_groups={self.deformable_groups} must be a multiple of pa_frames/2={m} and "
                f"divide the channels of the aligned neighbours (pa_frames/2 x embed_dims: {channels})"
            )

    @property
    def in_channels(self) -> int:
        """Input channels: ``in_chans``, plus one noise-level channel for non-blind denoising."""
        return self.in_chans + (1 if self.nonblind_denoising else 0)

    @property
    def is_interpolation(self) -> bool:
        """The frame-interpolation variant (no flows, a fixed number of input frames, one output frame)."""
        return self.pa_frames == 0

    @property
    def min_frames(self) -> int:
        """The fewest frames the published network runs on (the fixed count for interpolation)."""
        return self.img_size[0] if self.is_interpolation else {2: 2, 4: 3, 6: 4}[self.pa_frames]


def interpolation_windows(num_frames: int) -> list[tuple[int, int, int, int]]:
    """Input frames of the frame-interpolation model for each gap of a ``num_frames`` video.

    Entry ``i`` (``0 <= i < num_frames - 1``) lists the four frames ``(i-1, i, i+1, i+2)``, clamped
    to the video (the first and last frames repeat, as in the official Vid4 protocol), from which
    the model predicts the frame halfway between frames ``i`` and ``i+1``.
    """
    last = num_frames - 1
    return [tuple(min(max(j, 0), last) for j in (i - 1, i, i + 1, i + 2)) for i in range(num_frames - 1)]


class VRT(nn.Module):
    """VRT video restoration / frame interpolation network.

    Build it from a :class:`VRTConfig`, or from the official constructor's keyword arguments
    (``VRT(upscale=4, pa_frames=2, ...)``).

    Args:
        config: the architecture.
        spynet_path: optional local file with SpyNet weights (``{'params': state_dict}`` or a
            state dict) loaded into ``spynet`` (the official ``spynet_path``; never downloads).
        dcn_backend: deformable convolution backend, ``"auto"``, ``"reference"`` or ``"torchvision"``.
        **kwargs: official constructor arguments, used when ``config`` is None.
    """

    def __init__(
        self,
        config: VRTConfig | None = None,
        *,
        spynet_path: str | None = None,
        dcn_backend: Backend = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if config is None:
            config = VRTConfig.from_kwargs(**kwargs)
        elif kwargs:
            raise TypeError("pass either a config or keyword arguments, not both")
        config.check_runnable()
        self.config = cfg = config
        dims = cfg.embed_dims
        pa = cfg.pa_frames

        first_in = cfg.in_chans * 9 + (1 if cfg.nonblind_denoising else 0) if pa else cfg.in_chans
        self.conv_first = nn.Conv3d(first_in, dims[0], (1, 3, 3), padding=(0, 1, 1))
        if pa:
            self.spynet = SpyNet(return_levels=(2, 3, 4, 5))

        total = sum(cfg.depths)
        rates = [v.item() for v in torch.linspace(0, cfg.drop_path_rate, total, device="cpu")]
        starts = [sum(cfg.depths[:i]) for i in range(len(cfg.depths) + 1)]
        blocks = range(len(dims))
        ckpt_attn = [cfg.use_checkpoint_attn and i not in cfg.no_checkpoint_attn_blocks for i in blocks]
        ckpt_ffn = [cfg.use_checkpoint_ffn and i not in cfg.no_checkpoint_ffn_blocks for i in blocks]
        for i in range(7):
            self.add_module(
                f"stage{i + 1}",
                VRTStage(
                    dims[i - 1],
                    dims[i],
                    reshape=STAGE_RESHAPES[i],
                    depth=cfg.depths[i],
                    num_heads=cfg.num_heads[i],
                    window_size=cfg.window_size,
                    mul_attn_ratio=cfg.mul_attn_ratio,
                    mlp_ratio=cfg.mlp_ratio,
                    qkv_bias=cfg.qkv_bias,
                    qk_scale=cfg.qk_scale,
                    drop_path=rates[starts[i] : starts[i + 1]],
                    pa_frames=pa,
                    deformable_groups=cfg.deformable_groups,
                    max_residue_magnitude=10 / STAGE_SCALES[i],
                    checkpoint_attn=ckpt_attn[i],
                    checkpoint_ffn=ckpt_ffn[i],
                    dcn_backend=dcn_backend,
                ),
            )

        project = NormLinear({"1": nn.LayerNorm(dims[6]), "2": nn.Linear(dims[6], dims[7])})
        self.stage8 = nn.ModuleList([project])
        for i in range(7, len(dims)):
            window = (1, *cfg.window_size[1:]) if i in cfg.indep_reconsts else cfg.window_size
            self.stage8.append(
                RSTB(
                    dims[i],
                    cfg.depths[i],
                    cfg.num_heads[i],
                    window,
                    drop_path=rates[starts[i] : starts[i + 1]],
                    mlp_ratio=cfg.mlp_ratio,
                    qkv_bias=cfg.qkv_bias,
                    qk_scale=cfg.qk_scale,
                    mlp="geglu",
                    checkpoint_attn=ckpt_attn[i],
                    checkpoint_ffn=ckpt_ffn[i],
                )
            )
        self.norm = nn.LayerNorm(dims[-1])
        self.conv_after_body = nn.Linear(dims[-1], dims[0])

        if pa and cfg.upscale == 1:
            self.conv_last = nn.Conv3d(dims[0], cfg.out_chans, (1, 3, 3), padding=(0, 1, 1))
        elif pa:
            self.conv_before_upsample = nn.Sequential(
                nn.Conv3d(dims[0], 64, (1, 3, 3), padding=(0, 1, 1)), nn.LeakyReLU()
            )
            self.upsample = Upsampler(cfg.upscale, 64)
            self.conv_last = nn.Conv3d(64, cfg.out_chans, (1, 3, 3), padding=(0, 1, 1))
        else:
            self.linear_fuse = nn.Conv2d(dims[0] * cfg.img_size[0], 64, kernel_size=1)
            self.conv_last = nn.Conv2d(64, cfg.out_chans, kernel_size=7)

        for m in self.modules():
            if isinstance(m, WindowAttention):
                nn.init.trunc_normal_(m.relative_position_bias_table, std=0.02, a=-2.0, b=2.0)

        if spynet_path is not None:
            if not pa:
                raise ValueError("the frame-interpolation model has no SpyNet; spynet_path must be None")
            from rvrt.checkpoint import load_state_dict_file

            self.spynet.load_state_dict(load_state_dict_file(spynet_path), strict=True)

    # ------------------------------------------------------------------ sizes
    @property
    def scale(self) -> int:
        return self.config.upscale

    def padded_size(self, t: int, h: int, w: int) -> tuple[int, int, int]:
        """The ``(T, H, W)`` the network runs at for an input of ``(t, h, w)``.

        Unchanged where the published network accepts the input. Otherwise frames are added up
        to :attr:`VRTConfig.min_frames`, and rows/columns up to the next multiple of 8 that is
        at least 8 windows (the 1/8-scale stage must hold a whole attention window) and, with
        flows, larger than 32 pixels (SpyNet). The padding mirrors the last frames, rows and
        columns, as the official test script does. The interpolation model's frame count is fixed.
        """
        cfg = self.config
        tp = t if cfg.is_interpolation else max(t, cfg.min_frames)

        def fix(s: int, window: int) -> int:
            least = max(8 * window, MIN_FLOW_SIZE if cfg.pa_frames else 1)
            return s if s % 8 == 0 and s >= least else -(-max(s, least) // 8) * 8

        return tp, fix(h, cfg.window_size[1]), fix(w, cfg.window_size[2])

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Restore (or interpolate) a batch of clips.

        Args:
            x: ``(N, T, C, H, W)`` float in [0, 1]; ``C = in_chans`` (3), or 4 for non-blind
               denoising (RGB plus a constant ``sigma / 255`` map). Any ``T >= 1`` (exactly
               ``img_size[0]`` for frame interpolation) and ``H, W >= 1``.

        Returns:
            ``(N, T, out_chans, s * H, s * W)`` with ``s = upscale``; for frame interpolation
            ``(N, out_chans / 3, 3, H, W)``, the frame(s) between input frames ``T/2 - 1`` and ``T/2``.
        """
        cfg = self.config
        if x.dim() != 5:
            raise InputError(f"input must be (N, T, C, H, W); got shape {tuple(x.shape)}")
        n, t, c, h, w = x.shape
        if c != cfg.in_channels:
            what = "RGB + noise-level map" if cfg.nonblind_denoising else "channels"
            raise InputError(f"this model takes {cfg.in_channels} input {what}; got {c}")
        if not x.is_floating_point():
            raise InputError(f"input must be a floating-point tensor in [0, 1]; got {x.dtype}")
        if t < 1 or h < 1 or w < 1:
            raise InputError(f"input has an empty dimension: {tuple(x.shape)}")
        if cfg.is_interpolation and t != cfg.img_size[0]:
            raise InputError(f"this interpolation model takes exactly {cfg.img_size[0]} frames; got {t}")
        tp, hp, wp = self.padded_size(t, h, w)
        x = mirror_pad_end(mirror_pad_end(mirror_pad_end(x, 1, tp - t), 3, hp - h), 4, wp - w)
        out = self._interpolate(x) if cfg.is_interpolation else self._restore(x)
        s = cfg.upscale
        return out[:, : (out.shape[1] if cfg.is_interpolation else t), :, : h * s, : w * s]

    def get_flows(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """SpyNet flows between frames ``k = 1 .. pa_frames/2`` apart, at scales 1, 1/2, 1/4, 1/8.

        Args:
            x: ``(N, T, 3, H, W)``.

        Returns:
            ``(flows_backward, flows_forward)``, each a list of ``4 * pa_frames / 2`` tensors in
            the published order: for ``k = 1, 2, 3`` the four scales, ``(N, T-k, 2, H/s, W/s)``
            with channels (dx, dy). ``flows_backward[..][:, i]`` warps frame ``i+k`` onto frame
            ``i``; ``flows_forward[..][:, i]`` warps frame ``i`` onto frame ``i+k``. The
            ``k > 1`` flows are chained from the one-step flows by warping, as published.
        """
        n, t, c, h, w = x.shape
        a = x[:, :-1].reshape(-1, c, h, w)
        b = x[:, 1:].reshape(-1, c, h, w)

        def levels(flows: list[torch.Tensor]) -> list[torch.Tensor]:
            return [f.view(n, t - 1, 2, h // 2**i, w // 2**i) for i, f in enumerate(flows)]

        def chain(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
            # flow to the frame `first` points at, plus `second` read at that place
            warped = flow_warp(second.flatten(0, 1), first.flatten(0, 1)).view(second.shape)
            return first + warped

        back = [levels(self.spynet(a, b))]
        fwd = [levels(self.spynet(b, a))]
        if self.config.pa_frames >= 4:
            back.append([chain(f[:, :-1], f[:, 1:]) for f in back[0]])
            fwd.append([chain(f[:, 1:], f[:, :-1]) for f in fwd[0]])
        if self.config.pa_frames >= 6:
            back.append([chain(f2[:, :-1], f1[:, 2:]) for f1, f2 in zip(back[0], back[1], strict=True)])
            fwd.append([chain(f2[:, 1:], f1[:, :-2]) for f1, f2 in zip(fwd[0], fwd[1], strict=True)])
        return [f for step in back for f in step], [f for step in fwd for f in step]

    @staticmethod
    def align_input(x: torch.Tensor, flow_backward: torch.Tensor, flow_forward: torch.Tensor) -> torch.Tensor:
        """Frames with their whole-pixel aligned neighbours, the input of ``conv_first``.

        Args:
            x: ``(N, T, C, H, W)``.
            flow_backward, flow_forward: full-resolution one-step flows ``(N, T-1, 2, H, W)``.

        Returns:
            ``(N, T, 9C, H, W)``: the frame, 4 nearest-pixel warps of frame ``t+1`` and 4 of frame
            ``t-1`` (see :func:`~rvrt.models.warp.flow_warp_nearest4`), zeros where there is no neighbour.
        """
        n, t, c, h, w = x.shape
        shape = (n, t - 1, 4 * c, h, w)
        nxt = flow_warp_nearest4(x[:, 1:].flatten(0, 1), flow_backward.flatten(0, 1)).view(shape)
        prv = flow_warp_nearest4(x[:, :-1].flatten(0, 1), flow_forward.flatten(0, 1)).view(shape)
        zeros = x.new_zeros(n, 1, 4 * c, h, w)
        return torch.cat([x, torch.cat([nxt, zeros], 1), torch.cat([zeros, prv], 1)], 2)

    def forward_features(
        self, x: torch.Tensor, flows_backward: list[torch.Tensor], flows_forward: list[torch.Tensor]
    ) -> torch.Tensor:
        """Stages 1-8 and the final LayerNorm, channels-last: ``(N, T, H, W, C0) -> (N, T, H, W, C_last)``."""

        def at(flows: list[torch.Tensor], level: int) -> list[torch.Tensor]:
            return flows[level::4]

        fb, ff = flows_backward, flows_forward
        x1 = self.stage1(x, at(fb, 0), at(ff, 0))
        x2 = self.stage2(x1, at(fb, 1), at(ff, 1))
        x3 = self.stage3(x2, at(fb, 2), at(ff, 2))
        x4 = self.stage4(x3, at(fb, 3), at(ff, 3))
        x = self.stage5(x4, at(fb, 2), at(ff, 2))
        x = self.stage6(x + x3, at(fb, 1), at(ff, 1))
        x = self.stage7(x + x2, at(fb, 0), at(ff, 0))
        x = x + x1
        for layer in self.stage8:
            x = layer(x)
        return self.norm(x)

    def _body(
        self, x: torch.Tensor, flows_backward: list[torch.Tensor], flows_forward: list[torch.Tensor]
    ) -> torch.Tensor:
        """``conv_first``, the stages and the long skip: ``(N, T, C_in', H, W) -> (N, T, C0, H, W)``."""
        f = conv3d_per_frame(self.conv_first, x).permute(0, 1, 3, 4, 2)
        f = f + self.conv_after_body(self.forward_features(f, flows_backward, flows_forward))
        return f.permute(0, 1, 4, 2, 3)

    def _restore(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        lq = x[:, :, : cfg.in_chans]
        flows_backward, flows_forward = self.get_flows(lq)
        inp = self.align_input(lq, flows_backward[0], flows_forward[0])
        if cfg.nonblind_denoising:
            inp = torch.cat([inp, x[:, :, cfg.in_chans :]], 2)
        f = self._body(inp, flows_backward, flows_forward)
        if cfg.upscale == 1:
            return conv3d_per_frame(self.conv_last, f) + lq
        # the upsampling head treats frames independently: a few at a time, in bands of rows
        n, t, _, h, w = lq.shape
        s = cfg.upscale
        out = lq.new_empty(n, t, 3, s * h, s * w)
        for part in frame_chunks(t, n * h * w * self.conv_before_upsample[0].out_channels):
            y = self.conv_before_upsample[1](conv3d_per_frame(self.conv_before_upsample[0], f[:, part]))
            y = upsample_frames(self.upsample, self.conv_last, y)
            # the published residual: trilinear resize of the (N, T, C, H, W) input, i.e. bilinear per frame
            out[:, part] = y + F.interpolate(lq[:, part], size=y.shape[-3:], mode="trilinear", align_corners=False)
        return out

    def _interpolate(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean((1, 3, 4), keepdim=True)
        f = self._body(x - mean, [], [])
        n, t, c, h, w = f.shape
        f = F.leaky_relu(self.linear_fuse(f.reshape(n, t * c, h, w)), 0.2)
        out = self.conv_last(F.pad(f, (3, 3, 3, 3), mode="reflect"))
        return out.view(n, -1, 3, h, w) + mean
