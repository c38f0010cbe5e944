"""The real-world recipes: they load, their tables are checked, the official-size one builds the
published architecture, and the small x4 and x1 ones train for two iterations on a tiny video."""

from __future__ import annotations

import json

import pytest
import torch

from media import make_video, smooth_frames
from rvrt import zoo
from rvrt.data.datasets import build_dataset
from rvrt.data.realworld import DEFAULTS, check_config
from rvrt.errors import InputError
from rvrt.train import Trainer, load_recipe
from rvrt.train.model import build_model


def test_the_official_size_recipe_builds_rvrt_with_the_published_degradations():
    r = load_recipe("realworld_sr_rvrt")
    t = r["data"]["train"]
    assert t["type"] == "degraded" and t["degradation"] == "real" and t["scale"] == 4 and t["gt_patch"] == 256
    assert check_config(t["real"]) == check_config({})  # the defaults: Real-ESRGAN / RealBasicVSR numbers
    assert r["loss"]["type"] == "charbonnier" and r["optim"]["lr"] == 1e-4 and r["model"]["init"] == ""
    with torch.device("meta"):
        module, _, _ = build_model(r["model"])
        spec = zoo.get_spec("rvrt.sr_bi_reds")
        reference = spec.architecture.model_class(spec.build_config())
    assert {k: v.shape for k, v in module.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }


def test_the_small_recipes_share_the_built_in_architecture_and_differ_in_scale():
    sr, x1 = load_recipe("realworld_sr_small"), load_recipe("realworld_x1_small")
    base = load_recipe("default_sr_small")["model"]["kwargs"]
    assert sr["model"]["kwargs"] == base and x1["model"]["kwargs"] == {**base, "upscale": 1}
    assert sr["data"]["train"]["real"] == x1["data"]["train"]["real"]
    assert (sr["data"]["train"]["scale"], x1["data"]["train"]["scale"]) == (4, 1)
    merged = check_config(sr["data"]["train"]["real"])
    assert merged["first"]["sigma"] == [0.2, 1.5] and merged["first"]["kernels"] == DEFAULTS["first"]["kernels"]


def test_a_bad_override_of_the_real_table_is_refused_before_any_video_is_read():
    r = load_recipe("realworld_sr_small", ["data.train.real.first.crf=[40, 20]"])
    assert r["data"]["train"]["roots"] == ["data/train"]  # not there: the table is checked first
    with pytest.raises(InputError, match=r"data.train.real.first.crf must be \[low, high\]"):
        build_dataset(r["data"]["train"], train=True)


def test_the_fine_tuning_recipe_starts_from_the_bundled_small_model():
    from rvrt.api import fetch_weights
    from rvrt.checkpoint import load_state_dict_file
    from rvrt.train.model import init_weights

    r = load_recipe("realworld_sr_small_ft")
    assert r["model"]["kwargs"] == load_recipe("default_sr_small")["model"]["kwargs"]
    assert r["model"]["init"] == "zoo:rvrt.sr_small" and r["data"]["train"]["degradation"] == "real"
    real = check_config(r["data"]["train"]["real"])
    assert real["clean_prob"] == 0.25 and real["final"]["resize_modes"]["matlab"] > 0.5
    module, _, _ = build_model({**r["model"], "init": ""})
    init_weights(module, r["model"])
    bundled = load_state_dict_file(fetch_weights("rvrt.sr_small"))
    own = module.state_dict()
    assert all(torch.equal(own[k], v.to(own[k].dtype)) for k, v in bundled.items())


@pytest.mark.parametrize(
    "name, scale", [("realworld_sr_small", 4), ("realworld_x1_small", 1), ("realworld_sr_small_ft", 4)]
)
def test_small_recipes_train_two_iterations_on_a_video(tmp_path, name, scale):
    video = make_video(tmp_path / "clip.mp4", smooth_frames(6, 96, 80))
    r = load_recipe(
        name,
        [
            f'data.train.roots=["{video}"]',
            "data.train.num_frames=2",
            "data.train.gt_patch=64",
            "data.batch_size=1",
            "data.num_workers=0",
            "data.persistent_workers=false",
            "data.pin_memory=false",
            "data.val={}",
            "train.iterations=2",
            "train.log_every=1",
            "train.save_every=0",
            "train.threads=1",
            "train.device='cpu'",
        ],
    )
    Trainer(r, tmp_path / "run", progress=False).fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in rows if "loss" in row]
    assert len(losses) == 2 and all(0 < v < 1 for v in losses)
    assert (tmp_path / "run" / "final.safetensors").is_file()
