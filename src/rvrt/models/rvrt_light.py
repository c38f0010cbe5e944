"""RVRT Light: RVRT without optical flow, aligned by plain window attention.

The variant of RVRT published with MindSpore's mindediting (its docs: "made from RVRT by
replacing the guided deformable attention by simple attention and removing SpyNet"). The
network is RVRT's clip recurrence (:mod:`rvrt.models.propagation`), Swin blocks and
reconstruction head; each alignment step is :class:`ClipWindowAlignment`: attention of every
pixel over the 3x3 neighbourhood of the same pixel in both frames of the previous clip, on
projected keys and values (:func:`rvrt.ops.clip_attention.clip_window_attention`).

Its numerics are MindSpore's: GELU in the tanh approximation and LayerNorm epsilon 1e-7
everywhere; the published SR model has no relative position bias. Parameter names are those of
the MindSpore checkpoints after renaming LayerNorm ``gamma``/``beta`` to ``weight``/``bias``
(see :mod:`rvrt.formats.mindspore`), which are also the official RVRT names of the shared parts.

Without SpyNet and the offset network it keeps far fewer per-clip tensors alive than RVRT,
which is its point: about half of RVRT's memory at equal input size (mindediting reports
6.3 GB against 11.7 GB for 14 frames of Vimeo-90K on a GPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from rvrt.errors import InputError
from rvrt.models.config import ConstructorConfig, check_clip_recurrent
from rvrt.models.layers import IndexedModules, Mlp, Upsampler, channels_linear, mirror_pad_end
from rvrt.models.propagation import (
    BRANCHES,
    ClipRecurrentNet,
    FeatureStore,
    check_video,
    extract_per_clip,
    propagate_branch,
)
from rvrt.models.swin import RSTBWithInputConv
from rvrt.ops.clip_attention import clip_window_attention

__all__ = ["RVRTLight", "RVRTLightConfig", "ClipWindowAlignment"]

#: MindSpore's ``nn.LayerNorm`` default epsilon, used by every norm of the published model
NORM_EPS = 1e-7
#: MindSpore's ``nn.GELU()`` default is the tanh approximation
GELU = "tanh"


@dataclass(frozen=True)
class RVRTLightConfig(ConstructorConfig):
    """Architecture of an RVRT Light model: the MindSpore constructor's arguments and defaults.

    ``img_size`` and ``max_residue_magnitude`` are accepted for compatibility and change
    nothing. ``relative_position_encoding`` adds the relative position bias tables to every
    window attention (the MindSpore default; the published SR model turns it off).
    ``recurrent_feature_refinement_steps`` (0-4) runs only the first branches; the
    reconstruction then repeats the last computed features for the missing ones.
    """

    family: ClassVar[str] = "RVRT Light"

    upscale: int = 4
    clip_size: int = 2
    img_size: tuple[int, int, int] = (2, 64, 64)
    window_size: tuple[int, int, int] = (2, 8, 8)
    num_blocks: tuple[int, int, int] = (1, 2, 1)
    depths: tuple[int, int, int] = (2, 2, 2)
    embed_dims: tuple[int, int, int] = (144, 144, 144)
    num_heads: tuple[int, int, int] = (6, 6, 6)
    mlp_ratio: float = 2.0
    qkv_bias: bool = True
    qk_scale: float | None = None
    inputconv_groups: tuple[int, int, int, int, int, int] = (1, 1, 1, 1, 1, 1)
    max_residue_magnitude: float = 10.0
    attention_heads: int = 12
    attention_window: tuple[int, int] = (3, 3)
    nonblind_denoising: bool = False
    to_float16: bool = False
    relative_position_encoding: bool = True
    recurrent_feature_refinement_steps: int = 4

    def __post_init__(self) -> None:
        self._freeze()
        if self.upscale not in (2, 4):
            # x1 would need RVRT's 1/4-resolution feature extractor: full-size features cost 16x
            raise ValueError(f"RVRT Light is defined for upscale 4 or 2 (video super-resolution); got {self.upscale}")
        if self.nonblind_denoising:
            raise ValueError("RVRT Light has no denoising variant (nonblind_denoising needs upscale=1)")
        if self.clip_size != 2:
            raise ValueError(f"RVRT Light's propagation is defined for clip_size=2; got {self.clip_size}")
        if self.to_float16:
            raise ValueError(
                "to_float16 is MindSpore's cast of the whole network; pass dtype=torch.float16 "
                "to rvrt.create_model (or call model.half()) instead"
            )
        for name in ("embed_dims", "num_heads", "depths", "num_blocks"):
            if len(getattr(self, name)) != 3:
                raise ValueError(f"{name} needs 3 entries; got {getattr(self, name)}")
        if len(set(self.embed_dims)) != 1:
            raise ValueError(
                f"RVRT Light concatenates features of all stages, so embed_dims must be equal; got {self.embed_dims}"
            )
        if len(self.inputconv_groups) != 6:
            raise ValueError(f"inputconv_groups needs 6 entries; got {self.inputconv_groups}")
        if len(self.attention_window) != 2 or any(k < 1 or k % 2 == 0 for k in self.attention_window):
            raise ValueError(f"attention_window must be two odd sizes; got {self.attention_window}")
        if (2 * self.embed_dims[1]) % self.attention_heads:
            raise ValueError(
                f"attention_heads={self.attention_heads} must divide the attention width "
                f"2 * embed_dims[1] = {2 * self.embed_dims[1]}"
            )
        check_clip_recurrent(self, extract_in=3)
        if not 0 <= self.recurrent_feature_refinement_steps <= len(BRANCHES):
            raise ValueError(
                f"recurrent_feature_refinement_steps must be 0..{len(BRANCHES)}; "
                f"got {self.recurrent_feature_refinement_steps}"
            )

    @property
    def in_channels(self) -> int:
        """Input channels (RGB)."""
        return 3

    @property
    def feature_stride(self) -> int:
        """Input pixels per feature pixel along each axis (features are at the input resolution)."""
        return 1


class ClipWindowAlignment(nn.Module):
    """Aligns the propagated features to the current clip (the Light ``deform_align`` modules).

    Queries come from the current clip, keys from the previous clip (both of the previous
    branch), values are the propagated features; all three are projected to twice the width,
    attend over a window (:func:`~rvrt.ops.clip_attention.clip_window_attention`), are
    projected back, and refined by a residual MLP.

    Keys: ``proj_q.1``, ``proj_k.1``, ``proj_v.1`` (C -> 2C), ``proj.1`` (2C -> C),
    ``mlp.1.fc1`` / ``mlp.1.fc2``.
    """

    def __init__(
        self,
        channels: int,
        *,
        attention_window: tuple[int, int] = (3, 3),
        attention_heads: int = 12,
        clip_size: int = 2,
        gelu_approximate: str = GELU,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.kernel_size = tuple(attention_window)
        self.attention_heads = attention_heads
        self.clip_size = clip_size
        proj = 2 * channels
        self.proj_channels = proj
        self.proj_q = IndexedModules({"1": nn.Linear(channels, proj)})
        self.proj_k = IndexedModules({"1": nn.Linear(channels, proj)})
        self.proj_v = IndexedModules({"1": nn.Linear(channels, proj)})
        self.proj = IndexedModules({"1": nn.Linear(proj, channels)})
        self.mlp = IndexedModules({"1": Mlp(channels, 2 * channels, channels, gelu_approximate=gelu_approximate)})

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Args:
            q: ``(N, clip, C, H, W)`` current clip (of the previous branch).
            k: ``(N, clip, C, H, W)`` previous clip (of the previous branch).
            v: ``(N, clip, C, H, W)`` propagated features of the previous clip.

        Returns:
            aligned features ``(N, clip, C, H, W)``.
        """
        n, t, _, h, w = q.shape
        qp = channels_linear(self.proj_q[1], q).reshape(n * t, self.proj_channels, h, w)
        kv = torch.cat([channels_linear(self.proj_k[1], k), channels_linear(self.proj_v[1], v)], 2)
        out = clip_window_attention(
            qp, kv, kernel_size=self.kernel_size, attention_heads=self.attention_heads, clip_size=self.clip_size
        ).view(n, t, self.proj_channels, h, w)
        out = channels_linear(self.proj[1], out)
        return out + channels_linear(self.mlp[1], out)


class RVRTLight(ClipRecurrentNet):
    """RVRT Light video super-resolution network (x4 as published, or x2).

    Build it from an :class:`RVRTLightConfig` or from the MindSpore constructor's keyword
    arguments (``RVRTLight(embed_dims=[144] * 3, relative_position_encoding=False, ...)``).
    """

    def __init__(self, config: RVRTLightConfig | None = None, **kwargs: Any) -> None:
        super().__init__()
        if config is None:
            config = RVRTLightConfig.from_kwargs(**kwargs)
        elif kwargs:
            raise TypeError("pass either a config or keyword arguments, not both")
        self.config = config
        cfg = config
        dim = cfg.embed_dims[0]
        swin = dict(
            mlp_ratio=cfg.mlp_ratio,
            qkv_bias=cfg.qkv_bias,
            qk_scale=cfg.qk_scale,
            norm_eps=NORM_EPS,
            gelu_approximate=GELU,
            position_bias=cfg.relative_position_encoding,
        )
        frame_window = (1, cfg.window_size[1], cfg.window_size[2])

        self.feat_extract = RSTBWithInputConv(
            3,
            dim,
            groups=cfg.inputconv_groups[0],
            num_blocks=cfg.num_blocks[0],
            depth=cfg.depths[0],
            num_heads=cfg.num_heads[0],
            window_size=frame_window,
            **swin,
        )
        self.backbone = nn.ModuleDict()
        self.deform_align = nn.ModuleDict()
        for i, name in enumerate(BRANCHES):
            self.deform_align[name] = ClipWindowAlignment(
                cfg.embed_dims[1],
                attention_window=cfg.attention_window,
                attention_heads=cfg.attention_heads,
                clip_size=cfg.clip_size,
            )
            self.backbone[name] = RSTBWithInputConv(
                (2 + i) * dim,
                cfg.embed_dims[1],
                groups=cfg.inputconv_groups[i + 1],
                num_blocks=cfg.num_blocks[1],
                depth=cfg.depths[1],
                num_heads=cfg.num_heads[1],
                window_size=cfg.window_size,
                **swin,
            )
        self.reconstruction = RSTBWithInputConv(
            5 * dim,
            cfg.embed_dims[2],
            groups=cfg.inputconv_groups[5],
            num_blocks=cfg.num_blocks[2],
            depth=cfg.depths[2],
            num_heads=cfg.num_heads[2],
            window_size=frame_window,
            **swin,
        )
        self.conv_before_upsampler = nn.Sequential(nn.Conv3d(cfg.embed_dims[2], 64, (1, 1, 1)), nn.LeakyReLU(0.1))
        self.upsampler = Upsampler(cfg.upscale, 64)
        self.conv_last = nn.Conv3d(64, 3, (1, 3, 3), padding=(0, 1, 1))

    @property
    def scale(self) -> int:
        return self.config.upscale

    def padded_size(self, t: int, h: int, w: int) -> tuple[int, int, int]:
        """The ``(T, H, W)`` the network runs at: an odd frame count gets one mirrored frame."""
        return t + t % 2, h, w

    def forward(self, x: torch.Tensor, *, offload: bool = False) -> torch.Tensor:
        """Upscale a batch of clips by ``upscale``.

        Args:
            x: ``(N, T, 3, H, W)`` float in [0, 1]; any ``T, H, W >= 1`` (an odd ``T`` is
               mirror-padded by one frame and cropped back).
            offload: keep per-clip features in host memory between branches (long videos on
                a GPU); the result is the same.

        Returns:
            ``(N, T, 3, sH, sW)``, ``s = upscale``.
        """
        check_video(x, self.config.in_channels)
        t = x.shape[1]
        x = mirror_pad_end(x, 1, self.padded_size(t, x.shape[3], x.shape[4])[0] - t)
        offload = offload and x.device.type != "cpu"
        feats = self.extract_features(x, offload=offload)
        return self.reconstruct(x, feats, offload=offload)[:, :t]

    def extract_features(self, x: torch.Tensor, *, offload: bool = False) -> dict[str, list[torch.Tensor]]:
        """Shallow features and the four propagation branches of an input with an even frame count.

        Returns:
            ``{"shallow", "backward_1", "forward_1", "backward_2", "forward_2"}``: lists of per-clip
            features ``(N, clip, C, H, W)`` in time order. With fewer refinement steps the missing
            branches repeat the last computed one, as the published model does.
        """
        t = x.shape[1]
        if t % self.config.clip_size:
            raise InputError(
                f"extract_features needs a frame count divisible by {self.config.clip_size}; got {t} (forward pads it)"
            )
        store = FeatureStore(x.device, offload)
        shallow = extract_per_clip(self.feat_extract, x, self.config.clip_size, store, width=self.config.embed_dims[0])
        feats: dict[str, list[torch.Tensor]] = {"shallow": shallow}
        steps = self.config.recurrent_feature_refinement_steps
        for name in BRANCHES[:steps]:
            align = self.deform_align[name]
            feats[name] = propagate_branch(
                feats, name, self.backbone[name], lambda i, q, k, v, align=align: align(q, k, v), store
            )
        last = list(feats)[-1]
        for name in BRANCHES[steps:]:
            feats[name] = feats[last]
        return feats
