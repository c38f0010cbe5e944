"""RVRT Light: config, structure, and the MindSpore reference case (tiny config, real .ckpt)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import rvrt
from rvrt.errors import InputError
from rvrt.models.rvrt_light import ClipWindowAlignment, RVRTLight, RVRTLightConfig

DATA = Path(__file__).resolve().parents[1] / "data" / "rvrt_light"
CONFIG = DATA / "tiny_light_config.json"
FEATURES = ("shallow", "backward_1", "forward_1", "backward_2", "forward_2")


def tiny_kwargs() -> dict:
    kwargs = json.loads(CONFIG.read_text())
    kwargs.pop("arch")
    return kwargs


@pytest.fixture(scope="module")
def tiny_model() -> RVRTLight:
    return rvrt.load_model(DATA / "tiny_light.ckpt", model=CONFIG)


@pytest.fixture(scope="module")
def case() -> dict[str, torch.Tensor]:
    z = np.load(DATA / "tiny_light_case.npz")
    return {k: torch.from_numpy(z[k]) for k in z.files}


# bounds on max abs errors are ``scale * max(1, max|ref|)``, about 5-10x the measured error: 1e-5 by
# default (measured at most 1.2e-6 * max|ref| for the first alignment call and shallow features);
# the later propagation branches drift further from MindSpore's float32 arithmetic
FEATURE_SCALE = {
    "shallow": 1e-5,  # measured 9.8e-7
    "backward_1": 1e-5,  # 6.1e-7
    "forward_1": 1e-5,  # 1.8e-6
    "backward_2": 2e-5,  # 3.1e-6
    "forward_2": 1e-4,  # 1.3e-5
}


def _bound(ref: torch.Tensor, scale: float = 1e-5) -> float:
    return scale * max(1.0, ref.abs().max().item())


# --------------------------------------------------------------------------- config
def test_config_round_trip_and_defaults():
    cfg = RVRTLightConfig.from_kwargs(**tiny_kwargs())
    assert cfg.embed_dims == (24, 24, 24) and cfg.relative_position_encoding is False
    assert RVRTLightConfig.from_kwargs(**cfg.to_kwargs()) == cfg
    json.dumps(cfg.to_kwargs())
    assert RVRTLightConfig().relative_position_encoding is True  # the MindSpore constructor's default


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"upscale": 1}, "upscale 4 or 2"),
        ({"clip_size": 3}, "clip_size=2"),
        ({"to_float16": True}, "dtype=torch.float16"),
        ({"attention_heads": 5}, "attention_heads=5"),
        ({"embed_dims": [24, 48, 24]}, "must be equal"),
        ({"recurrent_feature_refinement_steps": 5}, "0..4"),
        ({"spynet_path": "x"}, "unknown RVRT Light option"),
    ],
)
def test_config_rejects_impossible_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RVRTLightConfig.from_kwargs(**{**tiny_kwargs(), **kwargs})


def test_published_config_size_and_names():
    spec = rvrt.get_spec("rvrt_light.sr_bi_vimeo")
    with torch.device("meta"):
        model = RVRTLight(spec.build_config())
    sd = model.state_dict()
    # the MindSpore listing of the SR config: 354 parameters, 8,456,755 elements
    assert len(sd) == 354
    assert sum(v.numel() for v in sd.values()) == 8_456_755
    assert not any("relative_position" in k or "spynet" in k or "conv_offset" in k for k in sd)
    # the tiny checkpoint has the same names (only widths differ)
    assert set(sd) == set(rvrt.load_model(DATA / "tiny_light.ckpt", model=CONFIG).state_dict())


def test_zoo_record():
    spec = rvrt.get_spec("rvrt_light.sr_bi_vimeo")
    assert spec.arch == "rvrt_light" and spec.scale == 4 and spec.task == "sr"
    assert spec.weights.url.endswith("/RVRT/ckpt/trained/rvrt_light_37.91.ckpt")
    assert "Apache-2.0" in spec.weights.license
    assert [(m.dataset, m.channel, m.psnr) for m in spec.metrics] == [("Vimeo-90K-T", "Y", 37.91)]
    assert "rvrt_light.sr_bi_vimeo" in rvrt.list_models("rvrt_light")


def test_relative_position_encoding_adds_bias_tables():
    model = RVRTLight(**{**tiny_kwargs(), "relative_position_encoding": True})
    tables = [k for k in model.state_dict() if k.endswith("relative_position_bias_table")]
    assert len(tables) == 2 + 4 * 4 + 2  # feat_extract, 4 backbones x 2 RSTBs, reconstruction; 2 layers each
    out = model.eval()(torch.rand(1, 2, 3, 9, 10))
    assert out.shape == (1, 2, 3, 36, 40) and torch.isfinite(out).all()


# --------------------------------------------------------------------------- MindSpore reference case
def test_output_matches_mindspore(tiny_model, case):
    with torch.no_grad():
        out = tiny_model(case["input"])
    assert out.shape == (1, 6, 3, 80, 112)
    err = (out[..., ::3, ::3] - case["output"]).double()
    assert err.abs().max().item() <= 2e-5  # measured 3.5e-6
    assert (err.norm() / case["output"].double().norm()).item() <= 5e-6  # measured 6.5e-7


def test_intermediates_match_mindspore(tiny_model, case):
    captured = {}

    def grab_features(module, args):
        captured["feats"] = args[0]

    def grab_first_alignment(module, args, output):
        captured.setdefault("attn1", (args, output))

    hooks = [
        tiny_model.reconstruction.register_forward_pre_hook(grab_features),
        tiny_model.deform_align["backward_1"].register_forward_hook(grab_first_alignment),
    ]
    try:
        with torch.no_grad():
            tiny_model(case["input"])
    finally:
        for h in hooks:
            h.remove()
    # the reconstruction input is [shallow, backward_1, forward_1, backward_2, forward_2] on channels
    for name, feat in zip(FEATURES, captured["feats"].chunk(5, dim=2), strict=True):
        ref = case[f"feat_{name}"]
        assert (feat[..., ::3, ::3] - ref).abs().max().item() <= _bound(ref, FEATURE_SCALE[name]), name
    (q, k, v), out = captured["attn1"]
    for got, key in ((q, "attn1_q_in"), (k, "attn1_k_in"), (v, "attn1_v_in")):
        assert (got - case[key]).abs().max().item() <= _bound(case[key]), key
    assert (out[..., ::3, ::3] - case["attn1_out"]).abs().max().item() <= _bound(case["attn1_out"])


def test_alignment_module_matches_mindspore(tiny_model, case):
    align = tiny_model.deform_align["backward_1"]
    assert isinstance(align, ClipWindowAlignment)
    with torch.no_grad():
        out = align(case["attn1_q_in"], case["attn1_k_in"], case["attn1_v_in"])
        qp = align.proj_q[1](case["attn1_q_in"].permute(0, 1, 3, 4, 2)).permute(0, 1, 4, 2, 3)
    assert (qp.reshape(case["op1_q"].shape) - case["op1_q"]).abs().max().item() <= _bound(case["op1_q"])
    assert (out[..., ::3, ::3] - case["attn1_out"]).abs().max().item() <= _bound(case["attn1_out"])


# --------------------------------------------------------------------------- inputs
def test_odd_frame_counts_are_mirror_padded(tiny_model):
    x = torch.rand(1, 3, 3, 6, 7, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = tiny_model(x)
        padded = tiny_model(torch.cat([x, x[:, 2:3]], 1))
        single = tiny_model(x[:, :1])
    assert out.shape == (1, 3, 3, 24, 28)
    torch.testing.assert_close(out, padded[:, :3])
    assert single.shape == (1, 1, 3, 24, 28) and torch.isfinite(single).all()


@pytest.mark.parametrize("size", [(4, 1, 1), (2, 9, 16), (4, 5, 11)])
def test_any_spatial_size(tiny_model, size):
    t, h, w = size
    with torch.no_grad():
        out = tiny_model(torch.rand(2, t, 3, h, w))
    assert out.shape == (2, t, 3, 4 * h, 4 * w) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.rand(1, 2, 4, 8, 8), "3 input channels"),
        (torch.rand(2, 3, 8, 8), r"\(N, T, C, H, W\)"),
        (torch.zeros(1, 2, 3, 8, 8, dtype=torch.uint8), "floating-point"),
        (torch.rand(1, 0, 3, 8, 8), "empty"),
    ],
)
def test_bad_input(tiny_model, x, match):
    with pytest.raises(InputError, match=match):
        tiny_model(x)


def test_fewer_refinement_steps_skip_branches():
    kwargs = {**tiny_kwargs(), "recurrent_feature_refinement_steps": 2}
    model = RVRTLight(**kwargs).eval()
    x = torch.rand(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        before = model(x)
        for p in [*model.backbone["backward_2"].parameters(), *model.deform_align["forward_2"].parameters()]:
            p.add_(1.0)
        after = model(x)
        for p in model.backbone["forward_1"].parameters():
            p.add_(0.1)
        changed = model(x)
    torch.testing.assert_close(before, after)
    assert (changed - before).abs().max() > 1e-3


def test_trains():
    model = RVRTLight(**tiny_kwargs()).train()
    out = model(torch.rand(1, 4, 3, 8, 8))
    out.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
