"""Small building blocks shared by the RVRT family (RVRT, RVRT Light, VRT).

Module attribute names reproduce the published state-dict keys, so official checkpoints load
with ``strict=True``. Where the published models keep parameters inside an ``nn.Sequential``
interleaved with parameter-free layout changes, we register the parametrised layers under the
same numeric names and write the layout changes out in ``forward``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Mlp",
    "GEGLUMlp",
    "IndexedModules",
    "Upsampler",
    "channels_linear",
    "conv3d_per_frame",
    "drop_path",
    "frame_chunks",
    "in_row_bands",
    "upsample_frames",
    "mirror_pad_end",
    "to_channels_last",
]


class Mlp(nn.Module):
    """``fc1 -> GELU -> fc2`` on the last dimension."""

    def __init__(
        self, in_features: int, hidden_features: int, out_features: int | None = None, gelu_approximate: str = "none"
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU(approximate=gelu_approximate)
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class GEGLUMlp(nn.Module):
    """Gated MLP on the last dimension: ``fc2(GELU(fc11(x)) * fc12(x))`` (GEGLU, Shazeer 2020).

    VRT's feed-forward layers and its ``pa_fuse`` use it (keys ``fc11``, ``fc12``, ``fc2``).
    """

    def __init__(
        self, in_features: int, hidden_features: int, out_features: int | None = None, gelu_approximate: str = "none"
    ) -> None:
        super().__init__()
        self.fc11 = nn.Linear(in_features, hidden_features)
        self.fc12 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU(approximate=gelu_approximate)
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc11(x)) * self.fc12(x))


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero a residual branch for a random subset of samples while training.

    Each sample of the batch (dim 0) is kept with probability ``1 - p`` and the kept ones are
    scaled by ``1 / (1 - p)``, so the expectation is unchanged. Identity in eval mode or for ``p = 0``.
    """
    if p <= 0.0 or not training:
        return x
    keep = 1.0 - p
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    return x * torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep).div_(keep)


class IndexedModules(nn.Module):
    """A container whose children are registered under given (often numeric) names.

    ``IndexedModules({"1": nn.Linear(...)})`` gives state-dict keys ``<name>.1.weight`` like a
    slot of an ``nn.Sequential``, while the owner decides how the children are applied.
    """

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        super().__init__()
        for name, module in modules.items():
            self.add_module(name, module)

    def __getitem__(self, name: str | int) -> nn.Module:
        return self._modules[str(name)]


def conv3d_per_frame(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """Apply a ``(1, kh, kw)`` :class:`nn.Conv3d` to ``(N, T, C, H, W)`` frame by frame.

    Equivalent to the 3-D convolution (the temporal kernel is 1), computed as one 2-D
    convolution over ``N * T`` frames, which is faster on every backend.

    Returns:
        ``(N, T, C_out, H', W')``.
    """
    n, t, c, h, w = x.shape
    weight = conv.weight.squeeze(2)
    stride = conv.stride[1:]
    padding = conv.padding[1:]
    y = F.conv2d(x.reshape(n * t, c, h, w), weight, conv.bias, stride, padding, 1, conv.groups)
    return y.reshape(n, t, *y.shape[1:])


#: tensor elements (frames x rows x columns x channels, batch included) computed together in the
#: stages that treat every frame on its own; bounds their transient memory whatever the clip
#: length (a few hundred MB of activations), see :func:`frame_chunks`
CHUNK_ELEMENTS = 1 << 24


def frame_chunks(frames: int, elements_per_frame: int, *, multiple: int = 1, budget: int | None = None) -> list[slice]:
    """Slices of ``range(frames)`` of about ``budget`` elements each (at least ``multiple`` frames,
    and a multiple of it), for layers that compute every frame independently.

    Running such a layer chunk by chunk gives the frames of one call over the whole clip, with
    transient memory bounded by the chunk instead of growing with the clip length (the x4
    upsampler of a 320x180 clip of 30 frames holds several 7 GB tensors at once otherwise).

    Args:
        frames: frames of the clip.
        elements_per_frame: size of the widest activation of one frame (batch included).
        multiple: chunk lengths are multiples of this (the clip length of clip-wise features).
        budget: elements per chunk (default :data:`CHUNK_ELEMENTS`).
    """
    budget = CHUNK_ELEMENTS if budget is None else budget
    step = max(multiple, budget // max(elements_per_frame, 1) // multiple * multiple)
    return [slice(i, min(i + step, frames)) for i in range(0, frames, step)]


def in_row_bands(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    scale: int,
    halo: int,
    out_channels: int,
    elements_per_row: int,
    budget: int | None = None,
) -> torch.Tensor:
    """``fn`` over ``x`` ``(B, C, H, W)`` in bands of rows, for a stack of convolutions that
    upsamples by ``scale``: each band is computed with ``halo`` extra rows above and below (the
    stack's receptive field, in input rows) and cropped, so the result is that of one call.

    Args:
        fn: ``(B, C, h, W) -> (B, out_channels, scale*h, scale*W)``.
        x: the input.
        scale, halo, out_channels: see above.
        elements_per_row: size of the widest activation per input row (batch included).
        budget: elements per band (default :data:`CHUNK_ELEMENTS`).
    """
    b, _, h, w = x.shape
    budget = CHUNK_ELEMENTS if budget is None else budget
    # at least 8 halos per band: the halo rows are computed twice
    rows = max(8 * halo, budget // max(elements_per_row, 1) - 2 * halo)
    if rows >= h:
        return fn(x)
    out = x.new_empty(b, out_channels, scale * h, scale * w)
    for r0 in range(0, h, rows):
        r1 = min(r0 + rows, h)
        a, z = max(0, r0 - halo), min(h, r1 + halo)
        y = fn(x[:, :, a:z])
        out[:, :, scale * r0 : scale * r1] = y[:, :, scale * (r0 - a) : scale * (r1 - a)]
    return out


class Upsampler(IndexedModules):
    """Sub-pixel upsampling on ``(N, T, C, H, W)``: ``[conv 3x3 -> PixelShuffle(2) -> LeakyReLU(0.1)] * log2(scale)``
    then a final 3x3 conv (scale a power of two), or one ``PixelShuffle(3)`` step for scale 3.

    Convolutions sit at indices ``0, 5, 10, ...`` like the published ``upsampler.*`` keys.
    """

    def __init__(self, scale: int, num_feat: int) -> None:
        if scale & (scale - 1) == 0:
            steps, factor = int(math.log2(scale)), 2
        elif scale == 3:
            steps, factor = 1, 3
        else:
            raise ValueError(f"upsampling scale {scale} is not supported: use a power of two or 3")
        mods: dict[str, nn.Module] = {}
        for i in range(steps):
            mods[str(5 * i)] = nn.Conv3d(num_feat, factor * factor * num_feat, (1, 3, 3), padding=(0, 1, 1))
        mods[str(5 * steps)] = nn.Conv3d(num_feat, num_feat, (1, 3, 3), padding=(0, 1, 1))
        super().__init__(mods)
        self.steps = steps
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t = x.shape[:2]
        y = self.frames(x.flatten(0, 1))
        return y.reshape(n, t, *y.shape[1:])

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """The same on a batch of frames ``(B, C, H, W)``."""
        # channels-last: the convolutions at 2x and 4x resolution run about a fifth faster (CPU and GPU)
        y = x.contiguous(memory_format=torch.channels_last)
        for i in range(self.steps + 1):
            conv = self[5 * i]
            y = F.conv2d(y, conv.weight.squeeze(2), conv.bias, 1, conv.padding[1:])
            if i < self.steps:
                y = F.leaky_relu(F.pixel_shuffle(y, self.factor), 0.1, inplace=not y.requires_grad)
        return y


def upsample_frames(upsampler: Upsampler, conv_last: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """``conv_last(upsampler(x))`` on ``(N, T, C, H, W)`` in bands of rows (see :func:`in_row_bands`):
    the full-resolution activations of a band, not of whole frames, are held at once."""
    n, t, c, h, w = x.shape
    scale = upsampler.factor**upsampler.steps
    weight, bias = conv_last.weight.squeeze(2), conv_last.bias

    def tail(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(upsampler.frames(z), weight, bias, 1, conv_last.padding[1:])

    # receptive field: one input row for the first 3x3 convolution, then half a row for the one at
    # 2x and a quarter for each at 4x (at x3: a third each): two rows of halo cover every scale
    y = in_row_bands(
        tail,
        x.flatten(0, 1),
        scale=scale,
        halo=2,
        out_channels=conv_last.out_channels,
        elements_per_row=2 * n * t * scale * scale * w * upsampler[0].in_channels,
    )
    return y.reshape(n, t, *y.shape[1:])


def channels_linear(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a module acting on the last dimension (``nn.Linear``, :class:`Mlp`) to the channels
    of ``(N, T, C, H, W)``; returns ``(N, T, C', H, W)``."""
    return module(x.permute(0, 1, 3, 4, 2)).permute(0, 1, 4, 2, 3)


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """``(N, T, C, H, W) -> (N, T, H, W, C)``."""
    return x.permute(0, 1, 3, 4, 2)


def mirror_pad_end(x: torch.Tensor, dim: int, amount: int) -> torch.Tensor:
    """Pad ``amount`` entries at the end of ``dim`` by mirroring, edge included.

    One step appends the last ``k`` entries in reverse order (``a b c | c b``), the padding of
    the official test scripts; padding longer than the tensor repeats the step.
    """
    while amount > 0:
        k = min(amount, x.shape[dim])
        x = torch.cat([x, x.narrow(dim, x.shape[dim] - k, k).flip(dim)], dim)
        amount -= k
    return x
