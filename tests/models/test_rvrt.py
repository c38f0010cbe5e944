"""RVRT behaviour beyond the reference vectors: official listings, sizes, purity, options."""

from __future__ import annotations

import gzip
import json

import pytest
import torch
from torch import nn

import rvrt
from conftest import DATA, tiny_rvrt
from rvrt.models.layers import mirror_pad_end

OFFICIAL = json.loads(gzip.decompress((DATA / "rvrt" / "official_listings.json.gz").read_bytes()))
TASKS = sorted(OFFICIAL["tasks"])


def _meta_state(model_name: str) -> list[tuple[str, list[int], bool]]:
    with torch.device("meta"):
        model = rvrt.create_model(model_name)
    buffers = {k for k, _ in model.named_buffers()}
    return [(k, list(v.shape), k in buffers) for k, v in model.state_dict().items()]


@pytest.mark.parametrize("task", TASKS)
def test_official_listing_equals_state_dict(task):
    listing = OFFICIAL["listings"][OFFICIAL["tasks"][task]["listing_of"]]
    assert _meta_state(task) == [(k, list(s), bool(b)) for k, s, b in listing]


@pytest.mark.parametrize("task", TASKS)
def test_registered_config_is_the_official_one(task):
    spec = rvrt.get_spec(task)
    assert spec.build_config() == rvrt.RVRTConfig.from_kwargs(**OFFICIAL["tasks"][task]["constructor_kwargs"])


@pytest.mark.parametrize(
    ("name", "count"),
    [("rvrt.sr_bi_reds", 10_782_295), ("rvrt.deblur_gopro", 13_573_159), ("rvrt.denoise_davis", 12_786_919)],
)
def test_parameter_counts(name, count):
    with torch.device("meta"):
        model = rvrt.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == count


def test_tiny_listings_equal_state_dicts(rvrt_meta):
    for name, cfg in rvrt_meta["configs"].items():
        model = rvrt.RVRT(**cfg)
        buffers = {k for k, _ in model.named_buffers()}
        got = [[k, list(v.shape), k in buffers] for k, v in model.state_dict().items()]
        assert got == [[k, list(s), bool(b)] for k, s, b in rvrt_meta["listings"][name]]


def test_official_init_zeroes_offset_head_and_bias_tables():
    model = rvrt.create_model("rvrt.sr_bi_reds")
    assert not model.training
    head = model.deform_align["forward_2"].conv_offset[-1]
    assert head.weight.abs().sum() == 0 and head.bias.abs().sum() == 0
    table = model.backbone["backward_1"].main[5][0].residual_group.blocks[0].attn.relative_position_bias_table
    assert table.abs().sum() == 0


@pytest.fixture(scope="module")
def sr(rvrt_meta):
    return tiny_rvrt(rvrt_meta, "tiny_sr")


@pytest.fixture(scope="module")
def deblur(rvrt_meta):
    return tiny_rvrt(rvrt_meta, "tiny_deblur")


def _clip(t, h, w, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, t, c, h, w, generator=g)


@pytest.mark.parametrize(("t", "h", "w"), [(1, 36, 40), (5, 33, 35), (3, 40, 36), (2, 9, 14)])
def test_sr_any_size_runs_and_keeps_shape(sr, t, h, w):
    with torch.no_grad():
        out = sr(_clip(t, h, w))
    assert out.shape == (1, t, 3, 4 * h, 4 * w)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("t", "h", "w"), [(3, 50, 61), (1, 132, 136)])
def test_deblur_any_size_runs_and_keeps_shape(deblur, t, h, w):
    with torch.no_grad():
        out = deblur(_clip(t, h, w))
    assert out.shape == (1, t, 3, h, w)


def test_padding_follows_the_official_test_script(sr):
    # odd T: the official script appends the reversed last frames; small H/W: mirrored rows/columns
    x = _clip(5, 30, 36)
    tp, hp, wp = sr.padded_size(5, 30, 36)
    assert (tp, hp, wp) == (6, 40, 36)
    padded = torch.cat([x, x[:, -1:]], 1)
    padded = torch.cat([padded, padded[:, :, :, -10:].flip(3)], 3)
    with torch.no_grad():
        expect = sr(padded)[:, :5, :, : 30 * 4]
        got = sr(x)
    torch.testing.assert_close(got, expect, rtol=0, atol=1e-6)
    assert torch.equal(mirror_pad_end(torch.arange(3), 0, 7), torch.tensor([0, 1, 2, 2, 1, 0, 0, 1, 2, 2]))


def test_forward_is_pure_and_mirror_detection_is_per_call(sr):
    x = _clip(4, 36, 40, seed=1)
    mirror = torch.cat([x[:, :2], x[:, :2].flip(1)], 1)
    with torch.no_grad():
        a = sr(x)
        sr(mirror)  # the official model would keep a flag set from here on
        b = sr(x)
    assert torch.equal(a, b)
    assert not any(k for k in vars(sr) if k.startswith("is_mirror"))


def test_wrong_channels_and_dims_are_reported(sr, rvrt_meta):
    with pytest.raises(ValueError, match="3 input channels"):
        sr(torch.rand(1, 2, 4, 36, 36))
    with pytest.raises(ValueError, match=r"\(N, T, C, H, W\)"):
        sr(torch.rand(2, 3, 36, 36))
    denoise = tiny_rvrt(rvrt_meta, "tiny_denoise")
    with pytest.raises(ValueError, match="RGB \\+ sigma map"):
        denoise(torch.rand(1, 2, 3, 132, 132))


def test_offload_gives_the_same_result(sr):
    x = _clip(6, 36, 40, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(sr(x, offload=True), sr(x, offload=False), rtol=0, atol=0)


def test_batch_elements_are_independent(sr):
    x = torch.cat([_clip(4, 36, 40, seed=3), _clip(4, 36, 40, seed=4)])
    with torch.no_grad():
        both = sr(x)
        one = sr(x[1:])
    torch.testing.assert_close(both[1:], one, rtol=1e-5, atol=1e-5)


def test_float64_follows_input_dtype(rvrt_meta):
    model = tiny_rvrt(rvrt_meta, "tiny_sr").double()
    with torch.no_grad():
        out = model(_clip(2, 36, 36).double())
    assert out.dtype == torch.float64


def test_activation_checkpointing_gives_the_same_gradients(rvrt_meta):
    cfg = dict(rvrt_meta["configs"]["tiny_sr"], use_checkpoint_attn=True, use_checkpoint_ffn=True)
    plain = tiny_rvrt(rvrt_meta, "tiny_sr").train()
    ckpt = rvrt.RVRT(**cfg).train()
    ckpt.load_state_dict(plain.state_dict())
    assert ckpt.backbone["forward_1"].main[5][0].residual_group.blocks[0].checkpoint_attn
    x = _clip(4, 36, 36, seed=5)
    grads = []
    for model in (plain, ckpt):
        model.zero_grad()
        out = model(x)
        out.square().mean().backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], rtol=1e-4, atol=1e-6)


def test_config_from_official_kwargs_and_back():
    kwargs = OFFICIAL["tasks"]["006_RVRT_videodenoising_DAVIS_16frames"]["constructor_kwargs"]
    cfg = rvrt.RVRTConfig.from_kwargs(**kwargs)
    assert cfg.nonblind_denoising and cfg.in_channels == 4
    assert rvrt.RVRTConfig.from_kwargs(**cfg.to_kwargs()) == cfg
    with pytest.raises(ValueError, match="unknown RVRT option"):
        rvrt.RVRTConfig.from_kwargs(upscal=4)
    with pytest.raises(ValueError, match="upscale"):
        rvrt.RVRTConfig(upscale=3)


# measured PSNR from float32: 45.2 dB in bfloat16, 63.2 dB in float16 (mean errors 0.0042 and 0.00053,
# about one unit in the last place of each); bounds +- 5 dB: closer would mean autocast was not applied
@pytest.mark.parametrize(("dtype", "min_psnr", "max_psnr"), [(torch.bfloat16, 40.0, 50.0), (torch.float16, 58.0, 68.0)])
def test_autocast_half_precision_stays_close_to_float32(sr, dtype, min_psnr, max_psnr):
    x = _clip(4, 36, 40, seed=6)
    outputs: dict[str, list[torch.dtype]] = {"linear": [], "spynet": []}
    spynet = set(sr.spynet.modules())

    def record(module, args, out):
        outputs["spynet" if module in spynet else "linear"].append(out.dtype)

    layers = [m for m in sr.modules() if isinstance(m, nn.Linear) or m in spynet and isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        ref = sr(x)
        hooks = [m.register_forward_hook(record) for m in layers]
        try:
            with torch.autocast("cpu", dtype=dtype):
                flows = sr.compute_flows(x, mirror=False)
                out = sr(x).float()
        finally:
            for h in hooks:
                h.remove()
    assert all(f.dtype == torch.float32 for f in flows)  # flows stay float32 under autocast
    # the linear layers (attention, MLPs) run in half precision, SpyNet's convolutions in float32
    assert len(outputs["linear"]) > 100 and set(outputs["linear"]) == {dtype}
    assert outputs["spynet"] and set(outputs["spynet"]) == {torch.float32}
    psnr = 10 * torch.log10(1 / (out - ref).pow(2).mean())
    assert min_psnr < psnr < max_psnr, f"{dtype}: {psnr:.1f} dB from float32"
