"""The built-in model and the quickstart: ``rvrt demo`` and ``rvrt restore`` without a model."""

from __future__ import annotations

import hashlib
import logging

import pytest
import torch

import rvrt
from rvrt import zoo
from rvrt.api import fetch_weights
from rvrt.cli import main
from rvrt.demo import run_demo
from rvrt.media import probe
from rvrt.train.config import load_recipe

BUILT_IN = [n for n in zoo.list_models() if (w := rvrt.get_spec(n).weights) and w.bundled]


def test_the_default_is_a_built_in_model_for_x4():
    assert zoo.DEFAULT_MODEL in BUILT_IN and zoo.DEFAULT_MODEL == zoo.spec.DEFAULT_MODELS[4]
    assert set(zoo.spec.DEFAULT_MODELS.values()) <= set(BUILT_IN)


@pytest.mark.parametrize("name", BUILT_IN)
def test_built_in_models_ship_and_match_their_recipes(name):
    spec = rvrt.get_spec(name)
    assert spec.weights.bundled and spec.weights.license == "Apache-2.0"
    assert hashlib.sha256(fetch_weights(spec).read_bytes()).hexdigest() == spec.weights.sha256
    # trained by one recipe (which `rvrt train NAME` runs) or averaged from runs of several, each the same network
    made_by = spec.extras.get("average_of") or (spec.extras["recipe"],)
    for recipe in map(load_recipe, made_by):
        assert recipe["model"]["kwargs"] == spec.kwargs
    if "recipe" in spec.extras:
        assert name in load_recipe(spec.extras["recipe"])["aliases"]
    net = rvrt.create_model(spec, weights="official")
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(2.9e6, rel=0.05)
    # trained weights, not an initialisation: the reconstruction head is far from zero
    assert all(torch.isfinite(p).all() for p in net.parameters())
    assert float(net.conv_last.weight.detach().abs().mean()) > 1e-3
    assert {m.dataset for m in spec.metrics} == {"Vid4 calendar", "Vid4 city"}
    assert all(m.psnr > 20 and 0 < m.ssim < 1 for m in spec.metrics)


def test_demo_beats_bicubic_and_writes_videos(tmp_path, capsys):
    result = run_demo(tmp_path / "demo", frames=6, device="cpu", progress=True)
    err = capsys.readouterr().err  # the bar of the model's run (tqdm on stderr)
    assert "restore:" in err and "/6 frames" in err
    assert result.model == zoo.DEFAULT_MODEL
    assert result.model_psnr > result.bicubic_psnr and result.model_ssim > result.bicubic_ssim
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == ["bicubic.mp4", "gt.mp4", "lq.mp4", "restored.mp4"]
    gt, lq = probe(tmp_path / "demo" / "gt.mp4"), probe(tmp_path / "demo" / "lq.mp4")
    assert (gt.width, gt.height) == (4 * lq.width, 4 * lq.height) and lq.frame_count == 6


def test_quickstart_demo_then_restore_without_a_model(tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO)
    demo = tmp_path / "demo"
    assert main(["demo", "-o", str(demo), "--frames", "3", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "bicubic" in out and zoo.DEFAULT_MODEL in out
    assert main(["demo", "-o", str(demo), "--frames", "3"]) == 2  # nothing overwritten unasked
    assert "--overwrite" in capsys.readouterr().err
    assert main(["demo", "-o", str(demo), "--frames", "3", "--overwrite"]) == 0
    assert main(["demo", "-o", str(tmp_path / "x"), "--frames", "1"]) == 2
    assert "--frames must be at least 2" in capsys.readouterr().err

    restored = demo / "lq_x4.mp4"
    assert main(["restore", str(demo / "lq.mp4"), "-o", str(restored), "--device", "cpu"]) == 0
    assert f"no model given: using {zoo.DEFAULT_MODEL}" in caplog.text
    assert "--weights official" in caplog.text  # and how to get the official models
    src, dst = probe(demo / "lq.mp4"), probe(restored)
    assert (dst.width, dst.height) == (4 * src.width, 4 * src.height) and dst.frame_count == 3


def test_weights_means_the_same_in_every_function(caplog):
    """None: a randomly initialised model everywhere (said in a warning where it runs); "default" (the default
    of the run functions): the weights that go with the model; "official": the published file."""
    import numpy as np

    from rvrt.api import select_model

    default = rvrt.create_model(zoo.DEFAULT_MODEL, weights="default")
    official = rvrt.create_model(zoo.DEFAULT_MODEL, weights="official")
    random = rvrt.create_model(zoo.DEFAULT_MODEL)  # weights=None
    assert torch.equal(default.conv_last.weight, official.conv_last.weight)
    assert not torch.equal(default.conv_last.weight, random.conv_last.weight)
    net, _ = select_model()  # what rvrt.restore uses when nothing is named
    assert torch.equal(net.conv_last.weight, official.conv_last.weight)
    frames = [np.full((16, 16, 3), 100 + 20 * i, np.uint8) for i in range(2)]
    run = dict(device="cpu", tile=(0, 0, 0), scene_cuts="off")
    with caplog.at_level(logging.WARNING):
        noise = dict(rvrt.restore_iter(frames, weights=None, **run))
    assert f"weights=None: {zoo.DEFAULT_MODEL} is randomly initialised" in caplog.text
    restored = dict(rvrt.restore_iter(frames, **run))
    assert not torch.allclose(noise[0], restored[0], atol=0.05)
