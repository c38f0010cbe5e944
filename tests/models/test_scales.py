"""RVRT and RVRT Light at x2 (new) and x1, beside the official x4/x1 networks: shapes, the residual
path, chunking, the memory model, the official key listings, a tiny x2 training run restored
through ``rvrt.restore`` and the command line, ``--scale`` and the x2 evaluation protocols."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import rvrt
import rvrt.models.layers as layers
from media import make_video, smooth_frames
from rvrt import zoo
from rvrt.api import model_for_scale
from rvrt.cli import main
from rvrt.errors import InputError
from rvrt.inference.memory import CLIP_RECURRENT, model_peak_bytes
from rvrt.media import open_reader, probe
from rvrt.models.rvrt import RVRT, RVRTConfig
from rvrt.models.rvrt_light import RVRTLight, RVRTLightConfig
from rvrt.protocols import PROTOCOLS

TINY = dict(embed_dims=[12, 12, 12], num_heads=[2, 2, 2], attention_heads=2, deformable_groups=2)
LIGHT = dict(embed_dims=[12, 12, 12], num_heads=[2, 2, 2], attention_heads=2, relative_position_encoding=False)
CONFORMANCE = Path(__file__).resolve().parents[3] / "shared" / "conformance"

#: sha256 (first 16 hex digits) of the ``[[key, shape], ...]`` JSON of the official checkpoints
#: (../shared/conformance/keys_<task>.json, ``state_dict`` entries without the buffer flag)
OFFICIAL_KEYS = {
    "rvrt.sr_bi_reds": ("001_RVRT_videosr_bi_REDS_30frames", "bbc64b99d5e70250"),
    "rvrt.deblur_dvd": ("004_RVRT_videodeblurring_DVD_16frames", "75d9dfea310051cb"),
    "rvrt.denoise_davis": ("006_RVRT_videodenoising_DAVIS_16frames", "397e460b8f671412"),
}


def _perturbed(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():  # the published init zeroes some layers; make every one count
            p.add_(torch.randn_like(p) * 0.02)
    return model.eval()


def _bilinear(x: torch.Tensor, s: int) -> torch.Tensor:
    """Each frame resized by ``s`` (bilinear, half-pixel centres), computed frame by frame."""
    return torch.stack([F.interpolate(f, scale_factor=s, mode="bilinear", align_corners=False) for f in x.unbind(1)], 1)


@pytest.mark.parametrize(
    ("cls", "kwargs", "scale", "size"),
    [
        (RVRT, TINY, 2, (36, 40)),
        (RVRT, TINY, 4, (36, 40)),
        (RVRT, dict(TINY, inputconv_groups=[1, 3, 3, 3, 3, 3], num_heads=[3, 3, 3]), 1, (132, 136)),
        (RVRTLight, LIGHT, 2, (20, 24)),
        (RVRTLight, LIGHT, 4, (20, 24)),
    ],
)
def test_output_is_the_resized_input_plus_the_upsampler(cls, kwargs, scale, size):
    # with conv_last zeroed only the residual is left: each frame resized to the output by bilinear
    # interpolation (x4, x2) or the input itself (x1); the rest of the network adds a visible change
    model = _perturbed(cls(upscale=scale, **kwargs))
    h, w = size
    x = torch.rand(1, 3, 3, h, w, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(x)
        model.conv_last.weight.zero_()
        model.conv_last.bias.zero_()
        residual = model(x)
    assert full.shape == residual.shape == (1, 3, 3, scale * h, scale * w)
    torch.testing.assert_close(residual, _bilinear(x, scale), rtol=0, atol=1e-6)
    assert (full - residual).abs().mean() > 1e-3


def test_x2_upsampler_has_one_doubling_step_and_x4_x1_keep_two():
    def upsampler_keys(**kw):
        with torch.device("meta"):
            return {
                k: tuple(v.shape) for k, v in RVRT(**dict(TINY, **kw)).state_dict().items() if k.startswith("upsampler")
            }

    two = {"upsampler.0.weight": (256, 64, 1, 3, 3), "upsampler.5.weight": (64, 64, 1, 3, 3)}
    assert {k: v for k, v in upsampler_keys(upscale=2).items() if k.endswith("weight")} == two
    x4 = upsampler_keys(upscale=4)
    assert x4["upsampler.5.weight"] == (256, 64, 1, 3, 3) and x4["upsampler.10.weight"] == (64, 64, 1, 3, 3)
    assert upsampler_keys(upscale=1, inputconv_groups=[1, 3, 3, 3, 3, 3], num_heads=[3, 3, 3]) == x4
    # x2 extracts features from the low-resolution RGB frames, like x4 (no stride-2 convs)
    with torch.device("meta"):
        assert not any(k.startswith("feat_extract.1.") for k in RVRT(upscale=2, **TINY).state_dict())
    assert RVRTConfig(upscale=2).feature_stride == 1 and RVRTConfig(upscale=1).feature_stride == 4


def test_unsupported_scales_are_refused_in_one_line():
    for bad in (3, 8):
        with pytest.raises(ValueError, match="upscale 4 or 2"):
            RVRTConfig(upscale=bad)
    with pytest.raises(ValueError, match="upscale 4 or 2"):
        RVRTLightConfig(upscale=1)
    with pytest.raises(ValueError, match="nonblind_denoising needs upscale=1"):
        RVRTConfig(upscale=2, nonblind_denoising=True)


@pytest.mark.parametrize("name", sorted(OFFICIAL_KEYS))
def test_official_configs_keep_their_checkpoint_keys_and_shapes(name):
    task, digest = OFFICIAL_KEYS[name]
    with torch.device("meta"):
        model = rvrt.create_model(name)
    listing = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:16] == digest
    path = CONFORMANCE / f"keys_{task}.json"
    if path.is_file():  # and the listing itself, where the shared folder is at hand
        assert listing == [[k, s] for k, s, *_ in json.loads(path.read_text())["state_dict"]]


@pytest.mark.parametrize("cls", [RVRT, RVRTLight])
def test_x2_chunked_equals_whole(cls, monkeypatch):
    model = _perturbed(cls(upscale=2, **(TINY if cls is RVRT else LIGHT)))
    x = torch.rand(1, 4, 3, 36, 40, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        whole = model(x)
        monkeypatch.setattr(layers, "CHUNK_ELEMENTS", 1)  # one clip per chunk
        chunked = model(x)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-5)


# calls: extraction chunks + 4 branches x 3 clips + reconstruction chunks; a budget of two frames of the
# reconstruction's input-resolution features splits the reconstruction only (in clips)
@pytest.mark.parametrize(("chunk", "calls"), [(None, 1 + 12 + 1), (1, 3 + 12 + 3), (2 * 36 * 40 * 5 * 12, 1 + 12 + 3)])
def test_progress_of_a_x2_forward_counts_every_call_once(monkeypatch, chunk, calls):
    from rvrt.inference.progress import model_tracker

    if chunk is not None:
        monkeypatch.setattr(layers, "CHUNK_ELEMENTS", chunk)
    model = RVRT(upscale=2, **TINY).eval()
    seen: list[float] = []
    with torch.no_grad(), model_tracker(model)(seen.append):
        model(torch.rand(1, 6, 3, 36, 40))
    assert len(seen) == calls and seen[-1] == 1.0 and seen[-2] < 1.0  # expected as counted, not sooner


def test_memory_model_plans_x2_with_input_resolution_features_and_a_x2_output(monkeypatch):
    # each term alone (the others' coefficients zeroed): the features of every frame at the input
    # resolution, as x4 (x1: 1/16 of the pixels), and the output frames at 4 x the input pixels
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "1")  # no allocator margin
    t, h, w, c = 30, 96, 128, 32
    p = h * w
    wide = dict(embed_dims=[c] * 3, num_heads=[2] * 3)
    configs = [RVRTConfig(upscale=2, **dict(TINY, **wide)), RVRTLightConfig(upscale=2, **dict(LIGHT, **wide))]
    for term, want in (("features", t * p * c), ("output", t * p * 4)):
        for key in CLIP_RECURRENT:
            monkeypatch.setitem(CLIP_RECURRENT, key, 1.0 if key == term else 0.0)
        for cfg, arch in zip(configs, ("rvrt", "rvrt_light"), strict=True):
            assert model_peak_bytes(arch, cfg, t, h, w) == want, (term, arch)
        x1 = RVRTConfig(upscale=1, **dict(TINY, **wide, inputconv_groups=[1, 2, 2, 2, 2, 2]))
        assert model_peak_bytes("rvrt", x1, t, h, w) == (t * p * c // 16 if term == "features" else t * p)


# --------------------------------------------------------------------------- recipes, train, restore, command line
def test_x2_recipes_are_their_x4_counterparts_at_x2_with_bicubic_x2_data():
    from rvrt.train import load_recipe
    from rvrt.train.model import build_model

    small, x4 = load_recipe("sr_x2_small"), load_recipe("default_sr_small")
    assert small["model"]["kwargs"] == dict(x4["model"]["kwargs"], upscale=2)
    assert dict(small["data"]["train"], scale=4, gt_patch=160) == x4["data"]["train"]
    assert small["train"] == x4["train"] and small["optim"] == x4["optim"]
    reds = load_recipe("sr_x2_reds")
    official = zoo.get_spec("rvrt.sr_bi_reds").kwargs  # task 001's network, activation checkpointing as 001
    assert reds["model"]["kwargs"] == dict(official, upscale=2, use_checkpoint_attn=False, use_checkpoint_ffn=True)
    assert (reds["data"]["train"]["degradation"], reds["data"]["train"]["scale"]) == ("bi", 2)
    with torch.device("meta"):
        module, _, _ = build_model(small["model"])
    assert module.config.upscale == 2 and module.scale == 2


def test_degraded_training_data_at_x2_is_matlab_bicubic_at_half(tmp_path):
    from rvrt.data.datasets import build_dataset
    from rvrt.data.degradations import imresize
    from rvrt.media.images import write_png

    seq = tmp_path / "gt" / "clip"
    seq.mkdir(parents=True)
    frames = smooth_frames(4, 80, 64)
    for i, img in enumerate(frames):
        write_png(seq / f"{i:03d}.png", img)
    cfg = dict(type="degraded", roots=[str(tmp_path / "gt")], degradation="bi", scale=2, num_frames=4)
    item = build_dataset(dict(cfg, frames=4), train=False)[0]
    assert item["lq"].shape == (4, 3, 32, 40) and item["gt"].shape == (4, 3, 64, 80)
    want = np.stack([imresize(f, 0.5) for f in frames]).astype(np.float64) / 255  # uint8 in, rounded uint8 out
    torch.testing.assert_close(item["lq"].permute(0, 2, 3, 1).double(), torch.from_numpy(want), rtol=0, atol=1e-6)
    train = build_dataset(dict(cfg, gt_patch=32, hflip=False, rot=False), train=True)[0]
    assert train["lq"].shape == (4, 3, 16, 16) and train["gt"].shape == (4, 3, 32, 32)


def _clip_tensor(frames: list[np.ndarray]) -> torch.Tensor:
    """8-bit ``(H, W, 3)`` frames as the ``(1, T, 3, H, W)`` float input of a model."""
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().div(255)[None]


@pytest.fixture(scope="module")
def x2_weights(tmp_path_factory) -> Path:
    """``final.safetensors`` of two iterations of the tiny recipe at x2 (synthetic BI x2 data)."""
    from rvrt.train import Trainer, load_recipe

    overrides = [
        "model.kwargs.upscale=2",
        "data.train.scale=2",
        "data.train.degradation='bi'",
        "data.train.gt_patch=64",
        "data.val={}",
        "train.iterations=2",
        "train.save_every=0",
        "train.log_every=1",
        "train.threads=1",
    ]
    out = tmp_path_factory.mktemp("x2run")
    result = Trainer(load_recipe("tiny_cpu", overrides), out, progress=False).fit()
    assert result.status == "finished" and result.step == 2
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in rows if "loss" in r)
    return out / "final.safetensors"


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("v") / "in.mp4", smooth_frames(3, 36, 34))


def test_tiny_x2_model_trains_and_restores_through_the_api_and_the_cli(x2_weights, clip, tmp_path):
    model = rvrt.load_model(x2_weights)
    assert model.config.upscale == 2 and rvrt.api.model_spec(model).scale == 2
    frames = tmp_path / "api"
    rvrt.restore(clip, frames, weights=x2_weights, tile=(0, 0, 0), progress=False)
    pngs = sorted(frames.glob("*.png"))
    assert len(pngs) == 3
    from rvrt.media.images import read_image

    got = read_image(pngs[0])[0]
    assert got.shape == (68, 72, 3)
    # the model's own output on the decoded frames, as the run writes it (8-bit, rounded)
    with open_reader(clip) as reader:
        decoded = [f.data for f in reader]
    lq = _clip_tensor(decoded)
    with torch.no_grad():
        ref = model(lq)[0, 0].clamp(0, 1).mul(255).round().permute(1, 2, 0).numpy()
    assert np.abs(got.astype(np.float64) - ref).max() <= 1

    out = tmp_path / "cli.mp4"
    args = ["restore", str(clip), "-o", str(out), "--weights", str(x2_weights), "--quiet"]
    assert main([*args, "--scale", "2"]) == 0
    assert (probe(out).width, probe(out).height) == (72, 68)
    assert main([*args, "--scale", "4", "--overwrite"]) == 2  # disagrees with the weights


def test_scale_picks_the_built_in_model_or_says_what_to_use(capsys, clip, tmp_path):
    assert model_for_scale(4) == zoo.DEFAULT_MODEL == zoo.default_model_for_scale(4)
    with pytest.raises(InputError, match=r"no built-in x2 model: train one \(rvrt train sr_x2_small or sr_x2_reds\)"):
        model_for_scale(2)
    with pytest.raises(InputError, match=r"no built-in x1 model: name one with -m \(rvrt.deblur_dvd"):
        model_for_scale(1)
    with pytest.raises(InputError, match="--scale 2 disagrees with rvrt.sr_small, which restores at x4"):
        model_for_scale(2, "rvrt.sr_small")
    assert model_for_scale(1, "rvrt.deblur_dvd") == "rvrt.deblur_dvd"

    out = str(tmp_path / "o.mp4")
    assert main(["restore", str(clip), "-o", out, "--scale", "2"]) == 2
    err = capsys.readouterr().err
    assert "sr_x2_small" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert main(["restore", str(clip), "-o", out, "--scale", "2", "-m", "rvrt.sr_bi_reds"]) == 2
    assert "disagrees with rvrt.sr_bi_reds" in capsys.readouterr().err


def test_x2_protocols_score_like_their_x4_counterparts():
    for x2, x4 in (("vid4x2", "vid4"), ("reds4x2", "reds4")):
        a, b = PROTOCOLS[x2], PROTOCOLS[x4]
        assert (a.scale, b.scale) == (2, 4)
        assert (a.task, a.channel, a.border, a.aggregate, a.septuplet) == (b.task, b.channel, b.border, b.aggregate,
                                                                          b.septuplet)  # fmt: skip
        assert "--kind bi --scale 2" in a.layout


def test_eval_x2_protocol_scores_a_x2_model_and_names_the_recipe_without_one(x2_weights, tmp_path, capsys):
    from rvrt.data.degradations import imresize
    from rvrt.media.images import read_image, write_png
    from rvrt.metrics import psnr, to_uint8

    gt, lq = tmp_path / "GT" / "seq", tmp_path / "LQ" / "seq"
    gt.mkdir(parents=True)
    lq.mkdir(parents=True)
    for i, img in enumerate(smooth_frames(2, 72, 68)):
        write_png(gt / f"{i:03d}.png", img)
        write_png(lq / f"{i:03d}.png", np.clip(np.rint(imresize(img, 0.5)), 0, 255).astype(np.uint8))
    common = ["eval", "--lq", str(tmp_path / "LQ"), "--gt", str(tmp_path / "GT"), "--protocol", "vid4x2"]
    assert main([*common, "--weights", str(x2_weights), "--json", str(tmp_path / "s.json")]) == 0
    scores = json.loads((tmp_path / "s.json").read_text())
    assert (scores["scale"], scores["channel"], scores["border"]) == (2, "Y", 0)
    # the reported number is the Y PSNR of the model's x2 output, whole frames, mean over frames
    model = rvrt.load_model(x2_weights)
    frames = [read_image(lq / f"{i:03d}.png")[0] for i in range(2)]
    with torch.no_grad():
        out = model(_clip_tensor(frames))[0]
    want = np.mean([psnr(to_uint8(o.permute(1, 2, 0).numpy()), read_image(gt / f"{i:03d}.png")[0], y_channel=True)
                    for i, o in enumerate(out)])  # fmt: skip
    assert scores["reported"]["psnr"] == pytest.approx(want, abs=1e-6)
    capsys.readouterr()
    assert main(common) == 2
    assert "no built-in x2 model" in capsys.readouterr().err


def test_x2_exports_to_onnx_and_matches_pytorch(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from rvrt.export.onnx import export_onnx, load_onnx

    path = tmp_path / "config.json"
    path.write_text(json.dumps(dict(TINY, upscale=2, num_blocks=[1, 1, 1], depths=[1, 1, 1])))
    spec = rvrt.api.resolve_spec(path)
    net = _perturbed(rvrt.create_model(spec))
    export_onnx(net, spec, tmp_path / "x2.onnx", frames=2, height=40, width=40)  # the upsampler is what x2 changes
    x = torch.rand(1, 2, 3, 40, 40, generator=torch.Generator().manual_seed(3))  # not the tracing input
    with torch.no_grad():
        ref = net(x)
    got = load_onnx(tmp_path / "x2.onnx")(x)
    assert got.shape == ref.shape == (1, 2, 3, 80, 80)
    assert (got - ref).abs().max().item() <= 1e-4
