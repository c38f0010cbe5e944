"""``rvrt eval`` with a tiny RVRT built from a config file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rvrt.api import create_model
from rvrt.cli import main
from rvrt.cli.eval import build_restore_fn
from rvrt.data.frames import read_image, write_image
from rvrt.evaluation import evaluate

TINY_SR = {
    "upscale": 4,
    "clip_size": 2,
    "img_size": [2, 64, 64],
    "window_size": [2, 8, 8],
    "num_blocks": [1, 2, 1],
    "depths": [2, 2, 2],
    "embed_dims": [24, 24, 24],
    "num_heads": [2, 2, 2],
    "inputconv_groups": [1] * 6,
    "deformable_groups": 4,
    "attention_heads": 4,
    "attention_window": [3, 3],
    "max_residue_magnitude": 10,
    "cpu_cache_length": 100,
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    cfg = root / "tiny_sr.json"
    cfg.write_text(json.dumps(TINY_SR))
    torch.manual_seed(0)
    model = create_model(cfg)
    weights = root / "tiny_sr.pth"
    torch.save(model.state_dict(), weights)
    rng = np.random.default_rng(0)
    for seq in ("a", "b"):
        for i in range(2):
            write_image(root / "lq" / seq / f"{i:03d}.png", rng.integers(0, 256, (12, 14, 3), dtype=np.uint8))
            write_image(root / "gt" / seq / f"{i:03d}.png", rng.integers(0, 256, (48, 56, 3), dtype=np.uint8))
    return root, cfg, weights


def test_eval_prints_table_and_writes_json_csv_frames(tiny, tmp_path, capsys):
    root, cfg, weights = tiny
    args = [
        "eval",
        "-m",
        str(cfg),
        "--weights",
        str(weights),
        "--lq",
        str(root / "lq"),
        "--gt",
        str(root / "gt"),
        "--protocol",
        "vid4",
        "--json",
        str(tmp_path / "r.json"),
        "--csv",
        str(tmp_path / "r.csv"),
        "--save",
        str(tmp_path / "out"),
        "--device",
        "cpu",
        "--quiet",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "Vid4" in printed and "mean of sequences" in printed

    model = create_model(cfg, weights=weights)
    restore = build_restore_fn(model, device="cpu")
    expected = evaluate(restore, root / "lq", root / "gt", "vid4", progress=False)
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["protocol"] == "vid4" and data["num_frames"] == 4
    assert data["overall"]["psnr_y"] == pytest.approx(expected.psnr_y, rel=1e-9)
    assert data["sequences"][1]["frames"][1]["ssim"] == pytest.approx(expected.sequences[1].frames[1].ssim, rel=1e-9)
    assert len((tmp_path / "r.csv").read_text().splitlines()) == 5
    with torch.no_grad():
        lq = torch.from_numpy(np.stack([read_image(root / "lq" / "b" / f"{i:03d}.png") for i in range(2)]))
        out = model(lq.permute(0, 3, 1, 2)[None].float() / 255)[0]
    saved = read_image(tmp_path / "out" / "b" / "001.png")
    assert saved.shape == (48, 56, 3)
    assert np.abs(saved.astype(int) - (out[1].clamp(0, 1) * 255).round().permute(1, 2, 0).numpy()).max() <= 1

    assert main(args) == 2  # outputs exist
    assert "exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--protocol", "dvd"], "needs x1"),
        (["--protocol", "set8", "--sigma", "10"], "non-blind denoising"),
        (["--protocol", "vid4", "--sigma", "10"], "only used by denoising"),
    ],
)
def test_eval_rejects_mismatched_protocols(tiny, capsys, extra, message):
    root, cfg, weights = tiny
    code = main(
        [
            "eval",
            "-m",
            str(cfg),
            "--weights",
            str(weights),
            "--lq",
            str(root / "lq"),
            "--gt",
            str(root / "gt"),
            "--device",
            "cpu",
            "--quiet",
            *extra,
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_eval_needs_a_model_and_lq(tiny, capsys):
    root, cfg, weights = tiny
    # without -m: the built-in model of the protocol's scale; there is none at x1, so the models are named
    assert main(["eval", "--gt", str(root / "gt"), "--lq", str(root / "lq"), "--protocol", "dvd", "-q"]) == 2
    assert "no built-in x1 model: name one with -m (rvrt.deblur_dvd" in capsys.readouterr().err
    x2 = ["--protocol", "vid4x2", "-q"]
    assert main(["eval", "-m", str(cfg), "--weights", str(weights), "--gt", str(root / "gt"), *x2]) == 2
    assert "restores at x4; protocol vid4x2 needs x2" in capsys.readouterr().err
    assert main(["eval", "-m", str(cfg), "--gt", str(root / "gt"), "--device", "cpu", "--quiet"]) == 2
    assert "no published weights" in capsys.readouterr().err
    assert (
        main(
            ["eval", "-m", str(cfg), "--weights", str(weights), "--gt", str(root / "gt"), "--device", "cpu", "--quiet"]
        )
        == 2
    )
    assert "needs --lq" in capsys.readouterr().err
