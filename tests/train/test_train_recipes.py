"""Recipes: lookup, official numbers, overrides, TOML round trip, ``rvrt train --dry-run``."""

from __future__ import annotations

import json

import pytest
import torch

from rvrt import zoo
from rvrt.cli import main
from rvrt.errors import InputError
from rvrt.train.config import (
    apply_override,
    dumps_json,
    dumps_toml,
    list_recipes,
    load_recipe,
    loads_toml,
    resolve_recipe,
)
from rvrt.train.losses import CharbonnierLoss, build_loss
from rvrt.train.model import build_model
from rvrt.train.optim import lr_at

OFFICIAL = {
    # name: (model, dataset type, clip frames as read, mirrored, lr, iterations, freeze_iters, ckpt attn, ckpt ffn)
    "001_RVRT_videosr_bi_REDS_30frames": ("rvrt.sr_bi_reds", "reds", 30, False, 4e-4, 600_000, 30_000, False, True),
    "002_RVRT_videosr_bi_Vimeo_14frames": ("rvrt.sr_bi_vimeo", "vimeo", 7, True, 2e-4, 300_000, 0, False, False),
    "003_RVRT_videosr_bd_Vimeo_14frames": ("rvrt.sr_bd_vimeo", "vimeo", 7, True, 2e-4, 300_000, 0, False, False),
    "004_RVRT_videodeblurring_DVD_16frames": ("rvrt.deblur_dvd", "dvd", 16, False, 4e-4, 600_000, 30_000, False, False),
    "005_RVRT_videodeblurring_GoPro_16frames": (
        "rvrt.deblur_gopro",
        "gopro",
        16,
        False,
        4e-4,
        600_000,
        30_000,
        False,
        False,
    ),
    "006_RVRT_videodenoising_DAVIS_16frames": (
        "rvrt.denoise_davis",
        "davis",
        16,
        False,
        4e-4,
        600_000,
        30_000,
        False,
        False,
    ),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_recipes_carry_kairs_numbers_and_build(name):
    model, kind, frames, mirror, lr, iters, freeze, ck_attn, ck_ffn = OFFICIAL[name]
    r = load_recipe(name)
    assert r["name"] == name and r["model"]["name"] == model
    assert load_recipe(model) == r  # the model name is an alias of its recipe
    t = r["data"]["train"]
    assert t["type"] == kind and t["num_frames"] == frames and t.get("mirror", kind == "vimeo") == mirror
    assert t["gt_patch"] == 256 and r["data"]["batch_size"] == 8
    assert r["optim"]["lr"] == lr and r["optim"]["betas"] == [0.9, 0.99] and r["optim"]["lr_mul"] == {"spynet": 0.25}
    assert r["loss"] == {"type": "charbonnier", "eps": 1e-9, "weight": 1.0}
    assert r["schedule"]["periods"] == [iters] and r["schedule"]["eta_min"] == 1e-7
    assert r["train"]["iterations"] == iters and r["train"]["freeze_iters"] == freeze
    kw = r["model"]["kwargs"]
    assert kw["use_checkpoint_attn"] is ck_attn and kw["use_checkpoint_ffn"] is ck_ffn
    assert r["model"]["init"] == ("official:rvrt.sr_bi_reds" if kind == "vimeo" else "")
    with torch.device("meta"):
        module, arch, kwargs = build_model(r["model"])
        spec = zoo.get_spec(model)
        reference = spec.architecture.model_class(spec.build_config())
    assert arch == "rvrt"
    shapes = {k: v.shape for k, v in module.state_dict().items()}
    assert shapes == {k: v.shape for k, v in reference.state_dict().items()}  # the published architecture
    assert module.config.use_checkpoint_ffn is ck_ffn and module.config.in_channels == (4 if kind == "davis" else 3)


def test_all_shipped_recipes_round_trip_through_toml_and_json():
    names = [r["file"] for r in list_recipes()]
    assert {"tiny_cpu", "default_sr_small", *OFFICIAL} <= set(names)
    for name in names:
        r = load_recipe(name)
        assert resolve_recipe(loads_toml(dumps_toml(r))) == r
        assert resolve_recipe(json.loads(dumps_json(r))) == r


def test_lookup_by_file_alias_and_path(tmp_path):
    assert load_recipe("tiny") == load_recipe("tiny_cpu")
    path = tmp_path / "mine.toml"
    path.write_text(dumps_toml(load_recipe("tiny_cpu", ["optim.lr=3e-4"])).replace('name = "tiny_cpu"', 'name = ""'))
    mine = load_recipe(path)
    assert mine["name"] == "mine" and mine["optim"]["lr"] == 3e-4
    with pytest.raises(InputError, match="unknown recipe"):
        load_recipe("007_RVRT_nothing")
    path.write_text("[train]\niterations = 'many'\n")
    with pytest.raises(InputError, match="iterations must be a int"):
        load_recipe(path)
    path.write_text("[train]\nepochs = 3\n")
    with pytest.raises(InputError, match="unknown entry 'train.epochs'"):
        load_recipe(path)


def test_overrides():
    r = load_recipe(
        "tiny_cpu",
        [
            "optim.lr=5e-4",
            "train.iterations=7",
            "train.amp=bf16",
            "data.train.count=9",
            "model.kwargs.use_checkpoint_ffn=true",
            "optim.lr_mul.spynet=0.5",
            "seed=3",
        ],
    )
    assert r["optim"]["lr"] == 5e-4 and r["train"]["iterations"] == 7 and r["train"]["amp"] == "bf16"
    assert r["data"]["train"]["count"] == 9 and r["data"]["train"]["type"] == "synthetic"  # merged, not replaced
    assert r["model"]["kwargs"]["use_checkpoint_ffn"] is True and r["model"]["kwargs"]["upscale"] == 4
    assert r["optim"]["lr_mul"] == {"spynet": 0.5} and r["seed"] == 3
    assert apply_override(r, "optim.lr=1")["optim"]["lr"] == 1.0  # an int where a float is expected
    assert apply_override(r, "model.init=weights/x.pth")["model"]["init"] == "weights/x.pth"  # bare string
    replaced = apply_override(r, 'data.train={type = "synthetic", count = 2}')
    assert replaced["data"]["train"] == {"type": "synthetic", "count": 2}  # a table value replaces the table
    for bad, msg in [
        ("optim.lr", "KEY=VALUE"),
        ("optim.nope=1", "unknown entry"),
        ("train.amp=fp8", "amp"),
        ("train.iterations=1.5", "must be a int"),
        ("optim=3", "is a table"),
    ]:
        with pytest.raises(InputError, match=msg):
            load_recipe("tiny_cpu", [bad])


def test_dry_run_prints_the_resolved_recipe(capsys):
    assert main(["train", "001_RVRT_videosr_bi_REDS_30frames", "--dry-run", "--set", "train.iterations=10"]) == 0
    out, err = capsys.readouterr()
    expected = load_recipe("001_RVRT_videosr_bi_REDS_30frames", ["train.iterations=10"])
    assert resolve_recipe(loads_toml(out)) == expected
    assert "parameters" in err
    assert main(["train", "rvrt.denoise_davis", "--dry-run", "--format", "json"]) == 0
    out, _ = capsys.readouterr()
    assert json.loads(out) == load_recipe("006_RVRT_videodenoising_DAVIS_16frames")
    assert main(["train", "nope_recipe", "--dry-run"]) == 2
    assert "unknown recipe" in capsys.readouterr().err
    assert main(["train", "tiny_cpu", "--dry-run", "--set", "model.kwargs.embed_dims=[12, 16, 12]"]) == 2
    assert "embed_dims" in capsys.readouterr().err
    assert main(["train", "--list"]) == 0
    assert "rvrt.sr_bi_reds" in capsys.readouterr().out


def test_cosine_restarts_schedule():
    s = {"type": "cosine_restarts", "periods": [10, 20], "restart_weights": [1.0, 0.5], "eta_min": 1e-7, "warmup": 0}
    assert lr_at(0, 4e-4, s) == pytest.approx(4e-4)
    assert lr_at(5, 4e-4, s) == pytest.approx(1e-7 + (4e-4 - 1e-7) * 0.5)
    assert lr_at(9, 4e-4, s) < 1e-5
    assert lr_at(10, 4e-4, s) == pytest.approx(2e-4)  # restart at half the peak
    assert lr_at(30, 4e-4, s) == lr_at(1000, 4e-4, s) == pytest.approx(1e-7)
    assert [lr_at(i, 1.0, s) for i in range(10)] == sorted((lr_at(i, 1.0, s) for i in range(10)), reverse=True)
    warm = dict(s, warmup=4)
    assert lr_at(0, 1.0, warm) == pytest.approx(0.25 * lr_at(0, 1.0, s))
    assert lr_at(0, 1.0, {"type": "constant", "warmup": 0}) == 1.0


def test_charbonnier_loss():
    x, y = torch.tensor([0.0, 1.0]), torch.tensor([0.5, 1.0])
    assert float(CharbonnierLoss(1e-9)(x, y)) == pytest.approx((0.5 + 1e-9**0.5) / 2, rel=1e-6)
    assert float(build_loss({"type": "l1", "weight": 2.0})(x, y)) == pytest.approx(0.5)
    loss = CharbonnierLoss()(x.requires_grad_(), y)
    loss.backward()
    assert torch.isfinite(x.grad).all()


def test_zero_flow_spynet_start():
    from rvrt.train.model import init_weights

    recipe = load_recipe("default_sr_small")
    assert recipe["model"]["spynet"] == "zero-flow"
    model, _, _ = build_model(recipe["model"])
    init_weights(model, recipe["model"])
    a, b = torch.rand(2, 3, 40, 48), torch.rand(2, 3, 40, 48)
    with torch.no_grad():
        assert torch.equal(model.spynet(a, b), torch.zeros(2, 2, 40, 48))
