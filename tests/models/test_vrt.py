"""VRT as software: configs, construction, input handling (padding, errors), purity, training paths, zoo."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import rvrt
from conftest import VRT_MICRO_CONFIGS
from rvrt.api import _task_of, resolve_spec
from rvrt.errors import InputError
from rvrt.models.layers import mirror_pad_end
from rvrt.models.vrt import VRT, VRTConfig, interpolation_windows

MICRO = VRT_MICRO_CONFIGS["sr"]
MICRO_DEBLUR = VRT_MICRO_CONFIGS["deblur"]
MICRO_DENOISE = VRT_MICRO_CONFIGS["denoise"]
MICRO_PA6 = dict(MICRO_DEBLUR, pa_frames=6, deformable_groups=3, embed_dims=[12] * 7 + [16, 16])
MICRO_VFI = VRT_MICRO_CONFIGS["vfi"]


def micro(kwargs: dict, seed: int = 0, **extra) -> VRT:
    torch.manual_seed(seed)
    model = VRT(**kwargs, **extra).eval()
    # the published init zeroes the last offset layer; perturb it so offsets are exercised
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def frames(n=1, t=3, c=3, h=40, w=40, seed=1) -> torch.Tensor:
    return torch.rand(n, t, c, h, w, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- config


def test_config_roundtrip_for_every_registered_model():
    for name in rvrt.list_models("vrt"):
        cfg = rvrt.get_spec(name).build_config()
        kwargs = cfg.to_kwargs()
        json.dumps(kwargs)
        assert VRTConfig.from_kwargs(**kwargs) == cfg
        assert isinstance(cfg.depths, tuple) and isinstance(kwargs["depths"], list)


def test_config_rejects_unknown_and_unsupported_options():
    with pytest.raises(ValueError, match="unknown VRT option.*'window'"):
        VRTConfig.from_kwargs(window=[6, 8, 8])
    with pytest.raises(ValueError, match="norm_layer"):
        VRTConfig.from_kwargs(norm_layer=nn.BatchNorm2d)
    assert VRTConfig.from_kwargs(norm_layer=nn.LayerNorm) == VRTConfig()


@pytest.mark.parametrize(
    "change,message",
    [
        ({"pa_frames": 3}, "pa_frames"),
        ({"pa_frames": 0}, "upscale=1"),
        ({"upscale": 5}, "upscale"),
        ({"depths": [2] * 7}, "stage-8"),
        ({"num_heads": [1] * 8}, "same length"),
        ({"embed_dims": [8] * 6 + [12, 16, 16]}, "embed_dims"),
        ({"embed_dims": [8] * 7 + [16, 24]}, "stage-8"),
        ({"num_heads": [3] * 9}, "divisible"),
        ({"in_chans": 1}, "RGB"),
        ({"upscale": 1, "out_chans": 1}, "out_chans"),
        ({"mul_attn_ratio": 1.5}, "mul_attn_ratio"),
    ],
)
def test_config_rejects_impossible_architectures(change, message):
    with pytest.raises(ValueError, match=message):
        VRTConfig(**{**MICRO, **change})


def test_deformable_groups_must_split_the_neighbours():
    with pytest.raises(ValueError, match="deformable_groups=3"):
        VRT(**{**MICRO, "deformable_groups": 3})
    with pytest.raises(ValueError, match="deformable_groups=16"):
        VRT(VRTConfig())  # the official constructor defaults: 120 channels in 16 groups


def test_constructor_forms(tmp_path):
    a = VRT(**MICRO)
    b = VRT(VRTConfig(**MICRO))
    shapes = [(k, v.shape) for k, v in a.state_dict().items()]
    assert shapes == [(k, v.shape) for k, v in b.state_dict().items()]
    with pytest.raises(TypeError):
        VRT(VRTConfig(**MICRO), upscale=4)
    with pytest.raises(ValueError, match="unknown"):
        VRT(**MICRO, spynet_pth="x")
    spynet = {k: torch.randn_like(v) for k, v in a.spynet.state_dict().items()}
    torch.save({"params": spynet}, tmp_path / "spynet.pth")
    c = VRT(**MICRO, spynet_path=str(tmp_path / "spynet.pth"))
    assert all(torch.equal(c.spynet.state_dict()[k], v) for k, v in spynet.items())
    with pytest.raises(ValueError, match="no SpyNet"):
        VRT(**MICRO_VFI, spynet_path=str(tmp_path / "spynet.pth"))


# ----------------------------------------------------------------------------- sizes and padding


def test_padded_size():
    m = VRT(**MICRO)  # windows of 4: the 1/8 stage needs >= 4 rows, SpyNet > 32 pixels
    assert m.padded_size(5, 40, 48) == (5, 40, 48)
    assert m.padded_size(1, 21, 27) == (2, 40, 40)
    assert m.padded_size(3, 40, 41) == (3, 40, 48)
    assert m.padded_size(2, 32, 32) == (2, 40, 40)
    assert VRT(**MICRO_PA6).padded_size(2, 48, 48) == (4, 48, 48)
    vfi = VRT(**MICRO_VFI)  # no SpyNet: 8 windows of 4 rows suffice
    assert vfi.padded_size(4, 32, 40) == (4, 32, 40)
    assert vfi.padded_size(4, 20, 33) == (4, 32, 40)
    big = rvrt.create_model("vrt.sr_bi_reds_6f", device="meta")
    assert big.padded_size(7, 64, 72) == (7, 64, 72)
    assert big.padded_size(7, 60, 100) == (7, 64, 104)


@pytest.mark.parametrize("kwargs", [MICRO, MICRO_DEBLUR])
def test_unaccepted_sizes_are_mirror_padded_and_cropped(kwargs):
    model = micro(kwargs)
    x = frames(t=1, h=21, w=27)
    with torch.no_grad():
        out = model(x)
        padded = mirror_pad_end(mirror_pad_end(mirror_pad_end(x, 1, 1), 3, 19), 4, 13)
        ref = model(padded)
    s = model.config.upscale
    assert out.shape == (1, 1, 3, 21 * s, 27 * s)
    assert torch.equal(out, ref[:, :1, :, : 21 * s, : 27 * s])


def test_input_errors():
    model = VRT(**MICRO)
    with pytest.raises(InputError, match=r"\(N, T, C, H, W\)"):
        model(torch.rand(3, 3, 40, 40))
    with pytest.raises(InputError, match="3 input"):
        model(frames(c=4))
    with pytest.raises(InputError, match="floating-point"):
        model(torch.zeros(1, 2, 3, 40, 40, dtype=torch.uint8))
    with pytest.raises(InputError, match="noise-level"):
        VRT(**MICRO_DENOISE)(frames(c=3))
    with pytest.raises(InputError, match="exactly 4 frames"):
        VRT(**MICRO_VFI)(frames(t=3, h=32, w=32))


# ----------------------------------------------------------------------------- behaviour


def test_forward_is_pure_and_repeatable():
    model = micro(MICRO_DEBLUR)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    attrs = set(vars(model))
    x = frames(t=3)
    with torch.no_grad():
        a = model(x)
        b = model(x)
    assert torch.equal(a, b)
    assert set(vars(model)) == attrs
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_long_clips_are_aligned_in_chunks(monkeypatch):
    import rvrt.models.vrt_blocks as vrt_blocks

    model = micro(MICRO_PA6)
    x = frames(t=5)
    with torch.no_grad():
        whole = model(x)
        monkeypatch.setattr(vrt_blocks, "PA_CHUNK_FRAMES", 2)
        chunked = model(x)
    assert torch.allclose(chunked, whole, atol=1e-5)


def test_dtype_follows_the_model():
    model = micro(MICRO_DEBLUR)
    x = frames(t=2)
    with torch.no_grad():
        out32 = model(x)
        out64 = model.double()(x.double())
    assert out64.dtype == torch.float64
    assert torch.allclose(out32.double(), out64, atol=1e-3)


def test_denoising_takes_a_noise_map_and_returns_rgb():
    model = micro(MICRO_DENOISE)
    x = torch.cat([frames(t=2), torch.full((1, 2, 1, 40, 40), 25 / 255)], 2)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (1, 2, 3, 40, 40)


def test_six_neighbour_warping_runs_on_short_clips():
    model = micro(MICRO_PA6)
    with torch.no_grad():
        out = model(frames(t=2, h=40, w=40))
    assert out.shape == (1, 2, 3, 40, 40)
    assert torch.isfinite(out).all()


def test_frame_interpolation():
    model = micro(MICRO_VFI)
    x = frames(t=4, h=32, w=40)
    with torch.no_grad():
        out = model(x)
        shifted = model(x + 0.25)
    assert out.shape == (1, 1, 3, 32, 40)
    # the network sees the input minus its mean colour and adds the mean back
    assert torch.allclose(shifted, out + 0.25, atol=1e-5)
    assert interpolation_windows(5) == [(0, 0, 1, 2), (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 4)]
    assert interpolation_windows(2) == [(0, 0, 1, 1)]


def test_training_drop_path_and_checkpointing():
    x = frames(t=2)
    model = micro(dict(MICRO_DEBLUR, drop_path_rate=0.5))
    model.train()
    outs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        outs.append(model(x))
    assert not torch.equal(outs[0], outs[1])
    outs[0].square().mean().backward()
    assert model.stage1.pa_deform.conv_offset[-1].weight.grad.abs().sum() > 0
    assert model.stage1.residual_group1.blocks[0].attn.qkv_mut.weight.grad.abs().sum() > 0

    grads = []
    for ckpt in (False, True):
        m = micro(MICRO_DEBLUR, use_checkpoint_attn=ckpt, use_checkpoint_ffn=ckpt).train()
        m(x).square().mean().backward()
        grads.append(m.stage8[1].residual_group.blocks[0].attn.qkv_self.weight.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_training_after_inference_mode_in_the_same_process(empty_model_caches):
    # cached masks and index tables first built under inference_mode must still serve autograd
    x = frames(t=2, h=24, w=28)
    model = micro(MICRO_DEBLUR, use_checkpoint_attn=True, use_checkpoint_ffn=True)
    with torch.inference_mode():
        model(x)
    model.train()
    model(x).square().mean().backward()
    assert model.stage1.residual_group1.blocks[0].attn.qkv_mut.weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- zoo and api


def test_zoo_records():
    names = rvrt.list_models("vrt")
    assert len(names) == 9
    for name in names:
        spec = rvrt.get_spec(name)
        (alias,) = spec.aliases
        assert rvrt.get_spec(alias) is spec
        assert spec.weights.url == f"https://github.com/JingyunLiang/VRT/releases/download/v0.0/{alias}.pth"
        assert spec.weights.license == "CC-BY-NC-4.0"
        assert spec.metrics and spec.train_frames
        assert spec.task == _task_of("vrt", spec.kwargs)[0]
        assert spec.scale == spec.build_config().upscale
    assert rvrt.get_spec("vrt.vfi_vimeo").task == "vfi"
    assert rvrt.get_spec("vrt.denoise_davis").in_channels == 4


def test_config_file_with_vrt_arch(tmp_path):
    path = tmp_path / "micro_vfi.json"
    path.write_text(json.dumps({"arch": "vrt", **MICRO_VFI}))
    spec = resolve_spec(path)
    assert (spec.arch, spec.task, spec.scale) == ("vrt", "vfi", 1)
    model = rvrt.create_model(path)
    assert isinstance(model, VRT) and model.config == VRTConfig(**MICRO_VFI)
