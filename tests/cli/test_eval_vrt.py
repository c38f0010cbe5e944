"""``rvrt eval`` with micro VRT models: super-resolution, denoising with --sigma, official per-protocol tiles."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from rvrt.api import create_model
from rvrt.cli import main
from rvrt.cli.eval import build_restore_fn
from rvrt.data.frames import read_image, write_image
from rvrt.evaluation import evaluate
from rvrt.inference.stages import model_runner
from rvrt.inference.temporal import restore_frames


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    rng = np.random.default_rng(0)
    for seq in ("a", "b"):
        for i in range(3):
            write_image(root / "lq" / seq / f"{i:03d}.png", rng.integers(0, 256, (8, 12, 3), dtype=np.uint8))
            write_image(root / "gt" / seq / f"{i:03d}.png", rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))
            write_image(root / "clean" / seq / f"{i:03d}.png", rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    return root


def test_eval_vrt_super_resolution(tiny_vrt, bench, tmp_path, capsys):
    cfg, weights = tiny_vrt["sr"]
    code = main(["eval", "-m", str(cfg), "--weights", str(weights), "--lq", str(bench / "lq"), "--gt",
                 str(bench / "gt"), "--protocol", "vid4", "--json", str(tmp_path / "r.json"), "--save",
                 str(tmp_path / "out"), "--device", "cpu", "--quiet"])  # fmt: skip
    assert code == 0 and "Vid4" in capsys.readouterr().out
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["num_sequences"] == 2 and data["num_frames"] == 6

    model = create_model(cfg, weights=weights)
    expected = evaluate(build_restore_fn(model, device="cpu"), bench / "lq", bench / "gt", "vid4", progress=False)
    assert data["overall"]["psnr_y"] == pytest.approx(expected.psnr_y, rel=1e-9)
    lq = np.stack([read_image(bench / "lq" / "a" / f"{i:03d}.png") for i in range(3)])
    with torch.no_grad():  # a three-frame clip is restored whole
        out = model(torch.from_numpy(lq).permute(0, 3, 1, 2)[None].float() / 255)[0]
    saved = read_image(tmp_path / "out" / "a" / "002.png")
    assert np.abs(saved.astype(int) - (out[2].clamp(0, 1) * 255).round().permute(1, 2, 0).numpy()).max() <= 1


def test_eval_vrt_denoising_with_sigma(tiny_vrt, bench, tmp_path, capsys):
    cfg, weights = tiny_vrt["denoise"]
    args = [
        "eval",
        "-m",
        str(cfg),
        "--weights",
        str(weights),
        "--gt",
        str(bench / "clean"),
        "--protocol",
        "set8",
        "--device",
        "cpu",
        "--quiet",
        "--json",
        str(tmp_path / "r.json"),
    ]
    assert main(args) == 2 and "sigma" in capsys.readouterr().err
    assert main([*args, "--sigma", "20"]) == 0
    data = json.loads((tmp_path / "r.json").read_text())
    model = create_model(cfg, weights=weights)
    expected = evaluate(build_restore_fn(model, device="cpu"), None, bench / "clean", "set8", sigma=20,
                        progress=False)  # fmt: skip
    assert data["sigma"] == 20 and data["overall"]["psnr"] == pytest.approx(expected.psnr, rel=1e-9)


def test_eval_uses_the_official_tile_of_a_protocol(tiny_vrt):
    cfg, weights = tiny_vrt["deblur"]
    model = create_model(cfg, weights=weights)
    model.rvrt_spec = dataclasses.replace(model.rvrt_spec, extras={"protocol_tiles": {"vimeo": ((2, 0, 0), (0, 0, 0))}})
    clip = torch.rand(4, 3, 8, 12, generator=torch.Generator().manual_seed(0))
    run = model_runner(model, device=torch.device("cpu"), dtype=torch.float32)
    windows = torch.stack([f for _, f in restore_frames(run, clip, scale=1, tile=(2, 0, 0), overlap=(0, 0, 0))])
    assert torch.equal(build_restore_fn(model, device="cpu", protocol="vimeo")(clip), windows)
    whole = build_restore_fn(model, device="cpu", protocol="vid4")(clip)
    assert not torch.allclose(whole, windows)  # another protocol keeps the default (the whole clip)


def test_eval_rejects_an_interpolation_model(tiny_vrt, bench, capsys):
    cfg, weights = tiny_vrt["vfi"]
    assert main(["eval", "-m", str(cfg), "--weights", str(weights), "--lq", str(bench / "lq"), "--gt",
                 str(bench / "gt"), "--device", "cpu", "--quiet"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "interpolates frames: use `rvrt interpolate`" in err and len(err.strip().splitlines()) == 1
