"""Model configs are checked when they are read: wrong types, impossible sizes and widths that heads
or groups cannot split are one clear error, before any model is built or any frame is read."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import rvrt
from rvrt.checkpoint import save_safetensors
from rvrt.cli import main
from rvrt.errors import InputError, WeightsError
from rvrt.media.images import write_png

SMALL = dict(embed_dims=[12, 12, 12], num_heads=[2, 2, 2], attention_heads=2, deformable_groups=2)


@pytest.mark.parametrize(
    ("arch", "change", "message"),
    [
        ("rvrt", {"num_heads": [5, 5, 5]}, "num_heads[0] (embed_dims[0]) = 5 must divide the 12 channels"),
        ("rvrt", {"attention_heads": 7}, "attention_heads (the attention width 2 * embed_dims[1]) = 7 must divide"),
        ("rvrt", {"deformable_groups": 3}, "deformable_groups must be even"),
        ("rvrt", {"inputconv_groups": [1, 5, 1, 1, 1, 1]}, "inputconv_groups[1] (input 24, output 12) = 5"),
        ("rvrt", {"window_size": [2, 0, 8]}, "window_size entries must be at least 1"),
        ("rvrt", {"depths": [2, -1, 2]}, "depths must be a list of non-negative integers"),
        ("rvrt", {"embed_dims": "abc"}, "embed_dims must be a list of integers"),
        ("rvrt", {"mlp_ratio": "x"}, "mlp_ratio must be a finite number"),
        ("rvrt", {"upscale": 4.5}, "upscale must be a non-negative integer"),
        ("rvrt", {"qkv_bias": "yes"}, "qkv_bias must be true or false"),
        ("rvrt", {"bogus": 1}, "unknown RVRT option(s) ['bogus']"),
        ("rvrt_light", {"num_heads": [5, 5, 5]}, "num_heads[0] (embed_dims[0]) = 5 must divide"),
        ("vrt", {"num_heads": [7] * 13}, "must be divisible by num_heads"),
        ("vrt", {"mul_attn_ratio": "half"}, "mul_attn_ratio must be a finite number"),
    ],
)
def test_bad_config_files_are_one_clear_error(tmp_path, capsys, arch, change, message):
    base = dict(SMALL) if arch != "vrt" else {}
    if arch == "rvrt_light":
        base.pop("deformable_groups")
    cfg = tmp_path / "model.json"
    cfg.write_text(json.dumps(dict(base, arch=arch, **change)))
    with pytest.raises(InputError) as err:
        rvrt.create_model(cfg)
    assert message in str(err.value)
    frames = tmp_path / "frames"
    frames.mkdir()
    write_png(frames / "0.png", np.zeros((40, 40, 3), np.uint8))
    assert main(["restore", str(frames), "-o", str(tmp_path / "out"), "-m", str(cfg), "--weights", "x.pth"]) == 2
    out = capsys.readouterr().err
    assert message in out and len(out.strip().splitlines()) == 1


def test_a_weights_file_with_broken_config_metadata_is_refused(tmp_path):
    model = rvrt.RVRT(**SMALL)
    for name, config in (("bad_json", "{not json"), ("unknown", json.dumps(dict(SMALL, bogus=1))),
                         ("heads", json.dumps(dict(SMALL, num_heads=[5, 5, 5]))), ("list", "[1, 2]")):  # fmt: skip
        path = tmp_path / f"{name}.safetensors"
        save_safetensors(model, path, arch="rvrt", metadata={"rvrt.config": config})
        with pytest.raises(WeightsError, match="its model config"):
            rvrt.load_model(path)


def test_good_configs_still_build_and_run():
    model = rvrt.RVRT(**SMALL).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 4, 3, 40, 40)).shape == (1, 4, 3, 160, 160)
