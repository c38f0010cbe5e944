"""RVRT: Recurrent Video Restoration Transformer with Guided Deformable Attention.

Liang et al., NeurIPS 2022 (arXiv:2206.02146). The video is cut into clips of two frames; four
propagation branches (backward, forward, backward, forward) refine every clip from the clip
before it, aligned by guided deformable attention (GDA) around SpyNet flows; a Swin
reconstruction and a sub-pixel upsampler produce the output.

This implementation computes the same function as the published model (same parameter names
and shapes, checkpoints load with ``strict=True``) but is pure: ``forward`` writes nothing on
the module, follows the input's device and dtype, detects mirror-extended input per call, and
pads inputs the published model cannot take (odd frame counts, small or unaligned frames) the
way the official test script does, then crops back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from rvrt.models.config import ConstructorConfig, check_clip_recurrent
from rvrt.models.layers import IndexedModules, Mlp, Upsampler, channels_linear, conv3d_per_frame, mirror_pad_end
from rvrt.models.propagation import (
    BRANCHES,
    ClipRecurrentNet,
    FeatureStore,
    check_video,
    extract_per_clip,
    propagate_branch,
)
from rvrt.models.spynet import MIN_FLOW_SIZE, SpyNet
from rvrt.models.swin import RSTBWithInputConv
from rvrt.models.warp import flow_warp
from rvrt.ops.gda import Backend, guided_deformable_attention

__all__ = ["RVRT", "RVRTConfig", "GuidedDeformableAttention", "BRANCHES"]


@dataclass(frozen=True)
class RVRTConfig(ConstructorConfig):
    """Architecture of an RVRT model. Field names and defaults are the official constructor's.

    ``use_checkpoint_*`` and ``no_checkpoint_*_blocks`` control activation checkpointing of
    the four propagation backbones (training only); ``cpu_cache_length`` is the clip length
    above which per-clip features are offloaded to host memory on CUDA (see ``RVRT.forward``).

    ``mindspore_compat`` (not an official option) computes what the MindSpore port of RVRT in
    mindediting computes, so that its checkpoints give its results: GELU in its tanh
    approximation, LayerNorm epsilon 1e-7, and forward flows always computed with SpyNet (that
    port never detects mirror-extended input). The parameters are the same.

    ``upscale`` is 4 or 2 (super-resolution: features at the input resolution, a sub-pixel
    upsampler of 2 or 1 doubling steps, the residual a bilinear resize of the input) or 1 (the
    official deblurring/denoising network: features at 1/4 resolution from two stride-2 convs,
    two doubling steps back to the input size, the input itself as residual). x2 is not an
    official configuration; x4 and x1 are unchanged by it. Same-size restoration of any kind
    (compressed video included) uses x1: its 1/4-resolution features are what make full-size
    input affordable.
    """

    family: ClassVar[str] = "RVRT"

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
    deformable_groups: int = 12
    attention_heads: int = 12
    attention_window: tuple[int, int] = (3, 3)
    nonblind_denoising: bool = False
    use_checkpoint_attn: bool = False
    use_checkpoint_ffn: bool = False
    no_checkpoint_attn_blocks: tuple[int, ...] = ()
    no_checkpoint_ffn_blocks: tuple[int, ...] = ()
    cpu_cache_length: int = 100
    mindspore_compat: bool = False

    def __post_init__(self) -> None:
        self._freeze()
        if self.upscale not in (1, 2, 4):
            raise ValueError(
                f"RVRT supports upscale 4 or 2 (super-resolution) or 1 (same-size restoration); got {self.upscale}"
            )
        if self.clip_size != 2:
            raise ValueError(f"RVRT's propagation is defined for clip_size=2; got {self.clip_size}")
        if len(self.embed_dims) != 3 or len(self.num_heads) != 3 or len(self.depths) != 3 or len(self.num_blocks) != 3:
            raise ValueError("embed_dims, num_heads, depths and num_blocks need 3 entries each")
        if len(set(self.embed_dims)) != 1:
            raise ValueError(
                f"RVRT concatenates features of all stages, so embed_dims must be equal; got {self.embed_dims}"
            )
        if len(self.inputconv_groups) != 6:
            raise ValueError(f"inputconv_groups needs 6 entries; got {self.inputconv_groups}")
        if self.nonblind_denoising and self.upscale != 1:
            raise ValueError("nonblind_denoising needs upscale=1")
        check_clip_recurrent(self, extract_in=3 if self.feature_stride == 1 else self.embed_dims[0])
        width = 2 * self.embed_dims[1]  # guided deformable attention runs at twice the feature width
        self._check_divides("attention_heads (the attention width 2 * embed_dims[1])", width, self.attention_heads)
        if self.deformable_groups < 2 or self.deformable_groups % 2:
            raise ValueError(f"RVRT: deformable_groups must be even (keys and values); got {self.deformable_groups}")
        self._check_divides("deformable_groups / 2 (the attention width 2 * embed_dims[1])", width,
                            self.deformable_groups // 2)  # fmt: skip

    @property
    def in_channels(self) -> int:
        """Input channels: 3 (RGB), or 4 for non-blind denoising (RGB + sigma map)."""
        return 4 if self.nonblind_denoising else 3

    @property
    def feature_stride(self) -> int:
        """Input pixels per feature pixel along each axis: 1 for super-resolution, 4 for upscale 1."""
        return 4 if self.upscale == 1 else 1


class GuidedDeformableAttention(nn.Module):
    """Aligns the propagated clip features to the current clip (the ``deform_align`` modules).

    Offsets are ``max_residue_magnitude * tanh(conv_offset(...))`` around the optical flows
    (one offset per deformable group and window tap); queries come from the current clip,
    keys from the previous clip of the previous branch, values are the propagated features.
    """

    def __init__(
        self,
        channels: int,
        *,
        attention_window: tuple[int, int],
        attention_heads: int,
        deformable_groups: int,
        clip_size: int,
        max_residue_magnitude: float,
        gda_backend: Backend = "auto",
        gelu_approximate: str = "none",
    ) -> None:
        super().__init__()
        self.channels = channels
        self.kernel_size = tuple(attention_window)
        self.taps = self.kernel_size[0] * self.kernel_size[1]
        self.attention_heads = attention_heads
        self.deformable_groups = deformable_groups
        self.clip_size = clip_size
        self.max_residue_magnitude = max_residue_magnitude
        self.gda_backend = gda_backend
        proj = 2 * channels  # attention runs at twice the feature width
        self.proj_channels = proj
        self.proj_q = IndexedModules({"1": nn.Linear(channels, proj)})
        self.proj_k = IndexedModules({"1": nn.Linear(channels, proj)})
        self.proj_v = IndexedModules({"1": nn.Linear(channels, proj)})
        mlp = Mlp(channels, channels * 2, channels, gelu_approximate=gelu_approximate)
        self.mlp = IndexedModules({"1": mlp})
        offset_in = channels * (1 + clip_size) + clip_size * 2
        offset_out = clip_size * deformable_groups * self.taps * 2
        layers: list[nn.Module] = [nn.Conv3d(offset_in, 64, (1, 1, 1)), nn.LeakyReLU(0.1)]
        for _ in range(4):
            layers += [nn.Conv3d(64, 64, (1, 3, 3), padding=(0, 1, 1)), nn.LeakyReLU(0.1)]
        layers.append(nn.Conv3d(64, offset_out, (1, 1, 1)))
        self.conv_offset = nn.Sequential(*layers)
        self.proj = IndexedModules({"1": nn.Linear(proj, channels)})
        # the published initialisation starts from pure flow-guided sampling
        nn.init.zeros_(self.conv_offset[-1].weight)
        nn.init.zeros_(self.conv_offset[-1].bias)

    @staticmethod
    def _linear(module: IndexedModules, x: torch.Tensor) -> torch.Tensor:
        return channels_linear(module[1], x)

    def _offsets(self, x: torch.Tensor) -> torch.Tensor:
        """``max_residue_magnitude * tanh(conv_offset(x))``. The last layer and the tanh run in float32
        even under autocast: offsets are sampling positions, and half precision cannot hold them.

        The stack runs frame by frame as 2-D convolutions in channels-last layout: one conversion of
        the input instead of a layout change inside every layer (oneDNN's fast path on the CPU).
        """
        *body, head = self.conv_offset
        n, t, c, h, w = x.shape
        y = x.reshape(n * t, c, h, w).contiguous(memory_format=torch.channels_last)
        for layer in body:
            if isinstance(layer, nn.Conv3d):
                y = F.conv2d(y, layer.weight.squeeze(2), layer.bias, 1, layer.padding[1:])
            else:
                y = layer(y)
        with torch.autocast(x.device.type, enabled=False):
            dt = torch.promote_types(y.dtype, torch.float32)
            y = F.conv2d(y.to(dt), head.weight.squeeze(2).to(dt), head.bias.to(dt))
            return self.max_residue_magnitude * torch.tanh(y.reshape(n, t, -1, h, w))

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, v_warped: list[torch.Tensor], flows: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Args:
            q: ``(N, clip, C, H, W)`` current clip (of the previous branch).
            k: ``(N, clip, C, H, W)`` previous clip (of the previous branch).
            v: ``(N, clip, C, H, W)`` propagated features of the previous clip.
            v_warped: ``clip`` flow-warped copies of ``v``, one per clip slot.
            flows: ``clip`` flows ``(N, clip, 2, H, W)`` (dx, dy) from the current to the previous clip.

        Returns:
            aligned features ``(N, clip, C, H, W)`` and the two updated flows (mean offsets, dx/dy).
        """
        n, t, c, h, w = q.shape
        raw = self._offsets(torch.cat([q, *v_warped, *(f.to(q.dtype) for f in flows)], 2))
        per_slot = raw.shape[2] // self.clip_size
        # each slot's residual offsets plus its flow, repeated for every group and tap as (dy, dx)
        slots = [
            raw[:, :, s * per_slot : (s + 1) * per_slot] + flows[s].flip(2).repeat(1, 1, per_slot // 2, 1, 1)
            for s in range(self.clip_size)
        ]
        offset = torch.cat(slots, 2).flatten(0, 1)
        qp = self._linear(self.proj_q, q).reshape(n * t, self.proj_channels, h, w)
        kv = torch.cat([self._linear(self.proj_k, k), self._linear(self.proj_v, v)], 2)
        out = guided_deformable_attention(
            qp,
            kv,
            offset,
            kernel_size=self.kernel_size,
            attention_heads=self.attention_heads,
            deformable_groups=self.deformable_groups,
            clip_size=self.clip_size,
            backend=self.gda_backend,
        ).view(n, t, self.proj_channels, h, w)
        out = self._linear(self.proj, out)
        out = out + channels_linear(self.mlp[1], out)
        new_flows = [s.view(n, t, per_slot // 2, 2, h, w).mean(2).flip(2) for s in slots]
        return out, new_flows[0], new_flows[1]


class _StridedFeatureExtractor(IndexedModules):
    """Shallow features at 1/4 resolution (deblurring/denoising): two stride-2 convs, then Swin.

    Keys ``feat_extract.1``, ``feat_extract.3`` (convs) and ``feat_extract.6`` (RSTBWithInputConv).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(conv3d_per_frame(self[1], x), 0.1)
        x = F.leaky_relu(conv3d_per_frame(self[3], x), 0.1)
        return self[6](x)


class RVRT(ClipRecurrentNet):
    """RVRT video restoration network.

    Build it from a :class:`RVRTConfig`, or from the official constructor's keyword arguments
    (``RVRT(upscale=4, embed_dims=[144]*3, ...)``).

    Args:
        config: the architecture.
        spynet_path: optional local file with SpyNet weights (``{'params': state_dict}`` or a
            state dict) loaded into ``spynet`` (the official ``spynet_path``; never downloads).
        gda_backend: guided deformable attention backend, ``"auto"``, ``"reference"`` or ``"triton"``.
        **kwargs: official constructor arguments, used when ``config`` is None.
    """

    def __init__(
        self,
        config: RVRTConfig | None = None,
        *,
        spynet_path: str | None = None,
        gda_backend: Backend = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if config is None:
            config = RVRTConfig.from_kwargs(**kwargs)
        elif kwargs:
            raise TypeError("pass either a config or keyword arguments, not both")
        self.config = config
        cfg = config
        dim = cfg.embed_dims[0]
        swin = dict(mlp_ratio=cfg.mlp_ratio, qkv_bias=cfg.qkv_bias, qk_scale=cfg.qk_scale)
        gelu = "none"
        if cfg.mindspore_compat:  # MindSpore's nn.GELU() and nn.LayerNorm defaults
            gelu = "tanh"
            swin.update(norm_eps=1e-7, gelu_approximate=gelu)
        frame_window = (1, cfg.window_size[1], cfg.window_size[2])

        self.spynet = SpyNet()
        if cfg.feature_stride == 1:
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
        else:
            self.feat_extract = _StridedFeatureExtractor(
                {
                    "1": nn.Conv3d(cfg.in_channels, dim, (1, 3, 3), (1, 2, 2), (0, 1, 1)),
                    "3": nn.Conv3d(dim, dim, (1, 3, 3), (1, 2, 2), (0, 1, 1)),
                    "6": RSTBWithInputConv(
                        dim,
                        dim,
                        groups=cfg.inputconv_groups[0],
                        num_blocks=cfg.num_blocks[0],
                        depth=cfg.depths[0],
                        num_heads=cfg.num_heads[0],
                        window_size=frame_window,
                        **swin,
                    ),
                }
            )

        self.backbone = nn.ModuleDict()
        self.deform_align = nn.ModuleDict()
        for i, name in enumerate(BRANCHES):
            self.deform_align[name] = GuidedDeformableAttention(
                cfg.embed_dims[1],
                attention_window=cfg.attention_window,
                attention_heads=cfg.attention_heads,
                deformable_groups=cfg.deformable_groups,
                clip_size=cfg.clip_size,
                max_residue_magnitude=cfg.max_residue_magnitude,
                gda_backend=gda_backend,
                gelu_approximate=gelu,
            )
            self.backbone[name] = RSTBWithInputConv(
                (2 + i) * dim,
                cfg.embed_dims[1],
                groups=cfg.inputconv_groups[i + 1],
                num_blocks=cfg.num_blocks[1],
                depth=cfg.depths[1],
                num_heads=cfg.num_heads[1],
                window_size=cfg.window_size,
                checkpoint_attn=cfg.use_checkpoint_attn and i not in cfg.no_checkpoint_attn_blocks,
                checkpoint_ffn=cfg.use_checkpoint_ffn and i not in cfg.no_checkpoint_ffn_blocks,
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
        # from the features to the output: x4 for x4 and (from 1/4 resolution) for x1, x2 for x2
        self.upsampler = Upsampler(cfg.upscale * cfg.feature_stride, 64)
        self.conv_last = nn.Conv3d(64, 3, (1, 3, 3), padding=(0, 1, 1))

        if spynet_path is not None:
            from rvrt.checkpoint import load_state_dict_file

            self.spynet.load_state_dict(load_state_dict_file(spynet_path), strict=True)

    # ------------------------------------------------------------------ sizes
    @property
    def scale(self) -> int:
        return self.config.upscale

    def padded_size(self, t: int, h: int, w: int) -> tuple[int, int, int]:
        """The ``(T, H, W)`` the network runs at for an input of ``(t, h, w)``.

        Unchanged where the published network accepts the input; otherwise the next size it
        accepts, reached by mirror padding at the end (frames: an even count, as the official
        test script pads; rows/columns: the next multiple of 8 that gives SpyNet frames larger
        than 32 pixels and, for 1/4-resolution models, a multiple of 4).
        """
        tp = t if (t % 2 == 0 or t == 3) else t + 1
        if self.config.feature_stride == 1:
            ok = lambda s: s >= MIN_FLOW_SIZE  # noqa: E731
            least = MIN_FLOW_SIZE
        else:
            ok = lambda s: s % 4 == 0 and s // 4 >= MIN_FLOW_SIZE  # noqa: E731
            least = 4 * MIN_FLOW_SIZE
        fix = lambda s: s if ok(s) else -(-max(s, least) // 8) * 8  # noqa: E731
        return tp, fix(h), fix(w)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, *, offload: bool | None = None) -> torch.Tensor:
        """Restore a batch of clips.

        Args:
            x: ``(N, T, C, H, W)`` float in [0, 1]; ``C = 3``, or 4 for non-blind denoising
               (RGB plus a constant ``sigma / 255`` map). Any ``T >= 1`` and ``H, W >= 1``.
            offload: keep per-clip features in host memory between branches (long videos on a
                GPU). ``None`` follows the official rule: offload when ``T > cpu_cache_length``
                and the input is on a CUDA device. Results are the same either way.

        Returns:
            ``(N, T, 3, s * H, s * W)``, ``s = upscale``.
        """
        cfg = self.config
        check_video(x, cfg.in_channels, "RGB + sigma map" if cfg.nonblind_denoising else "RGB")
        n, t, c, h, w = x.shape
        tp, hp, wp = self.padded_size(t, h, w)
        x = mirror_pad_end(mirror_pad_end(mirror_pad_end(x, 1, tp - t), 3, hp - h), 4, wp - w)
        if offload is None:
            offload = tp > cfg.cpu_cache_length and x.is_cuda
        feats = self.extract_features(x, offload=offload)
        out = self.reconstruct(x, feats, offload=offload)
        s = cfg.upscale
        return out[:, :t, :, : h * s, : w * s]

    def compute_flows(self, lq: torch.Tensor, mirror: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Backward flows (frame i <- i+1) and forward flows (frame i+1 <- i), ``(N, T-1, 2, H, W)`` each.

        For a mirror-extended clip the forward flows are the backward flows reversed in time.
        """
        n, t, c, h, w = lq.shape
        if lq.dtype not in (torch.float32, torch.float64):
            lq = lq.float()
        a = lq[:, :-1].reshape(-1, c, h, w)
        b = lq[:, 1:].reshape(-1, c, h, w)
        # flows are pixel displacements: computed in float32 even under autocast
        with torch.autocast(lq.device.type, enabled=False):
            backward = self.spynet(a, b).view(n, t - 1, 2, h, w)
            forward = backward.flip(1) if mirror else self.spynet(b, a).view(n, t - 1, 2, h, w)
        return backward, forward

    def extract_features(self, x: torch.Tensor, *, offload: bool = False) -> dict[str, Any]:
        """Shallow features, flows and the four propagation branches of an input the network accepts.

        Args:
            x: ``(N, T, C, H, W)`` of a size :meth:`padded_size` leaves unchanged.
            offload: keep per-clip features in host memory (moved back to ``x.device`` when used).

        Returns:
            ``{"shallow", "backward_1", "forward_1", "backward_2", "forward_2"}``: lists of per-clip
            features ``(N, clip, C, h, w)`` in time order; ``"flows_backward"``, ``"flows_forward"``;
            ``"mirror"``: whether the input was detected as mirror-extended (frame i == frame T-1-i).
        """
        cfg = self.config
        n, t, _, h, w = x.shape
        half = t // 2
        # a traced graph (ONNX export) cannot branch on values: it always computes the forward flows
        # with SpyNet, which gives the reversed backward flows of a mirror-extended clip anyway
        traced = torch.jit.is_tracing() or torch.compiler.is_exporting()
        mirror = not (cfg.mindspore_compat or traced) and t % 2 == 0 and torch.equal(x[:, :half], x[:, half:].flip(1))
        if cfg.feature_stride == 1:
            lq_flow = x
        else:
            lq_flow = F.interpolate(x[:, :, :3].reshape(-1, 3, h, w), scale_factor=0.25, mode="bicubic")
            lq_flow = lq_flow.view(n, t, 3, h // 4, w // 4)
        store = FeatureStore(x.device, offload)
        shallow = extract_per_clip(self.feat_extract, x, cfg.clip_size, store, width=self.config.embed_dims[0])
        flows_backward, flows_forward = self.compute_flows(lq_flow, mirror)

        feats: dict[str, Any] = {"shallow": shallow}
        updated: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for name in BRANCHES:
            flows = flows_backward if name.startswith("backward") else flows_forward
            feats[name] = self._propagate(feats, flows, name, updated, store)
        feats.update(flows_backward=flows_backward, flows_forward=flows_forward, mirror=mirror)
        return feats

    def _propagate(self, feats, flows, name, updated, store: FeatureStore) -> list[torch.Tensor]:
        """One propagation branch over all clips; returns its features per clip in time order.

        Each alignment step is guided by the flows between the frames of the current and the
        previous clip: first-pass branches chain them from ``flows`` and record the updated flows
        the guided attention returns, second-pass branches start from those.
        """
        backward = name.startswith("backward")
        first_pass = name.endswith("_1")
        # flow index of the frame pairs met along the direction of propagation
        if backward:
            flow_idx = list(range(flows.shape[1], -1, -1))
        else:
            flow_idx = list(range(-1, flows.shape[1]))
        deform_align = self.deform_align[name]
        if first_pass:
            updated[name] = []

        def align(i: int, q: torch.Tensor, k: torch.Tensor, feat_prop: torch.Tensor) -> torch.Tensor:
            if first_pass:
                f01 = flows[:, flow_idx[2 * i - 1]]
                f12 = flows[:, flow_idx[2 * i]]
                f23 = flows[:, flow_idx[2 * i + 1]]
                f02 = f12 + flow_warp(f01, f12)
                f13 = f23 + flow_warp(f12, f23)
                f03 = f23 + flow_warp(f02, f23)
                flow_n1 = torch.stack([f02, f13], 1)
                flow_n2 = torch.stack([f12, f03], 1)
            else:
                flow_n1, flow_n2 = updated[name.replace("_2", "_1")][i - 1]
            n, t, c, h, w = feat_prop.shape
            warped1 = flow_warp(feat_prop.flatten(0, 1), flow_n1.flatten(0, 1)).view(n, t, c, h, w)
            warped2 = flow_warp(feat_prop.flip(1).flatten(0, 1), flow_n2.flatten(0, 1)).view(n, t, c, h, w)
            feat_prop, new1, new2 = deform_align(q, k, feat_prop, [warped1, warped2], [flow_n1, flow_n2])
            if first_pass:
                updated[name].append((new1, new2))
            return feat_prop

        return propagate_branch(feats, name, self.backbone[name], align, store)
