"""``rvrt degrade`` on tiny generated frame folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rvrt.cli import main
from rvrt.data.degradations import add_gaussian_noise, bd_degrade, imresize
from rvrt.data.frames import read_image, write_image


def _tree(root, seqs=("s1", "s2"), n=2, h=18, w=22, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for seq in seqs:
        for i in range(n):
            img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            write_image(root / seq / f"f{i}.png", img)
            out[f"{seq}/f{i}.png"] = img
    return out


def test_bi_mirrors_the_tree_and_modcrops(tmp_path):
    frames = _tree(tmp_path / "gt")
    assert main(["degrade", str(tmp_path / "gt"), "-o", str(tmp_path / "lr"), "--kind", "bi", "--quiet"]) == 0
    for rel, img in frames.items():
        out = read_image(tmp_path / "lr" / rel)
        assert out.shape == (4, 5, 3)
        assert np.array_equal(out, imresize(img[:16, :20], 0.25))


def test_bd_variants_and_glob(tmp_path):
    frames = _tree(tmp_path / "gt", seqs=("s",))
    pattern = str(tmp_path / "gt" / "s" / "*.png")
    assert main(["degrade", pattern, "-o", str(tmp_path / "bd"), "--kind", "bd", "--bd-variant", "duf", "--quiet"]) == 0
    for rel, img in frames.items():
        name = rel.split("/")[1]
        assert np.array_equal(read_image(tmp_path / "bd" / name), bd_degrade(img, variant="duf"))
    assert (
        main(
            [
                "degrade",
                str(tmp_path / "gt"),
                "-o",
                str(tmp_path / "bd2"),
                "--kind",
                "bd",
                "--scale",
                "2",
                "--sigma",
                "1.0",
                "--quiet",
            ]
        )
        == 0
    )
    img = frames["s/f0.png"]
    assert np.array_equal(read_image(tmp_path / "bd2" / "s" / "f0.png"), bd_degrade(img, 2, 1.0))


def test_noise_is_drawn_per_sequence_and_reproducible(tmp_path):
    frames = _tree(tmp_path / "gt", seqs=("s1", "s2"), n=3)
    args = ["degrade", str(tmp_path / "gt"), "--kind", "noise", "--sigma", "25", "--quiet"]
    assert main([*args, "-o", str(tmp_path / "n1")]) == 0
    assert main([*args, "-o", str(tmp_path / "n2")]) == 0
    assert main([*args, "-o", str(tmp_path / "n3"), "--seed", "5"]) == 0
    clip = torch.from_numpy(np.stack([frames[f"s2/f{i}.png"] for i in range(3)]))
    clip = clip.permute(0, 3, 1, 2).float() / 255
    noisy = add_gaussian_noise(clip, 25, seed=0).clamp(0, 1).mul(255).round().to(torch.uint8)
    noisy = noisy.permute(0, 2, 3, 1)
    for i in range(3):
        a = read_image(tmp_path / "n1" / "s2" / f"f{i}.png")
        assert np.array_equal(a, noisy[i].numpy())
        assert np.array_equal(a, read_image(tmp_path / "n2" / "s2" / f"f{i}.png"))
        assert not np.array_equal(a, read_image(tmp_path / "n3" / "s2" / f"f{i}.png"))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--kind", "noise"], "needs --sigma"),
        (["--kind", "bi", "--sigma", "2"], "does not apply"),
        (["--kind", "bd", "--seed", "1"], "only applies"),
    ],
)
def test_bad_options_exit_2(tmp_path, capsys, extra, message):
    _tree(tmp_path / "gt", seqs=("s",), n=1)
    assert main(["degrade", str(tmp_path / "gt"), "-o", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_existing_output_and_missing_input(tmp_path, capsys):
    _tree(tmp_path / "gt", seqs=("s",), n=1)
    args = ["degrade", str(tmp_path / "gt"), "-o", str(tmp_path / "o"), "--kind", "bi", "--quiet"]
    assert main(args) == 0
    assert main(args) == 2
    assert "holds a finished run" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "s").mkdir()
    (tmp_path / "p" / "s" / "f0.png").write_bytes(b"mine")  # a file rvrt did not write
    assert main(["degrade", str(tmp_path / "gt"), "-o", str(tmp_path / "p"), "--kind", "bi", "--quiet"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "p" / "s" / "f0.png").read_bytes() == b"mine"
    assert main(["degrade", str(tmp_path / "none"), "-o", str(tmp_path / "o"), "--kind", "bi"]) == 2
    assert "not found" in capsys.readouterr().err


def test_a_failed_run_does_not_block_its_rerun(tmp_path, capsys):
    frames = _tree(tmp_path / "gt", seqs=("s",), n=3)
    bad = tmp_path / "gt" / "s" / "f1.png"
    good = bad.read_bytes()
    bad.write_bytes(good[: len(good) // 2])  # a truncated frame: the run stops there
    args = ["degrade", str(tmp_path / "gt"), "-o", str(tmp_path / "lr"), "--kind", "bi", "--scale", "2", "--quiet"]
    assert main(args) == 2
    assert "f1.png" in capsys.readouterr().err
    written = sorted(p.name for p in (tmp_path / "lr" / "s").iterdir())
    assert written == ["f0.png"]  # each frame is whole or absent; no temporary file is left
    bad.write_bytes(good)
    assert main(args) == 0  # the rerun replaces what the failed run wrote
    for i in range(3):
        assert np.array_equal(read_image(tmp_path / "lr" / "s" / f"f{i}.png"), imresize(frames[f"s/f{i}.png"], 0.5))


def test_real_is_one_draw_per_sequence_reproducible_and_logged(tmp_path):
    import json

    from rvrt.data.realworld import RealDegradation

    frames = _tree(tmp_path / "gt", seqs=("s1", "s2"), n=3, h=32, w=36)
    (tmp_path / "ranges.toml").write_text("second_order_prob = 0.0\n[first]\nvideo_prob = 0.0\n")
    args = [
        "degrade",
        str(tmp_path / "gt"),
        "--kind",
        "real",
        "--scale",
        "2",
        "--config",
        str(tmp_path / "ranges.toml"),
    ]
    assert main([*args, "-o", str(tmp_path / "a"), "--quiet"]) == 0
    assert main([*args, "-o", str(tmp_path / "b"), "--quiet"]) == 0
    assert main([*args, "-o", str(tmp_path / "c"), "--seed", "1", "--quiet"]) == 0
    # the second sequence is the library's pipeline on its whole clip, seeded by (seed, position)
    deg = RealDegradation({"second_order_prob": 0.0, "first": {"video_prob": 0.0}}, scale=2)
    clip = np.stack([frames[f"s2/f{i}.png"] for i in range(3)])
    want = deg(clip, np.random.default_rng([0, 1])).mul(255).round().byte().permute(0, 2, 3, 1).numpy()
    for i in range(3):
        a = read_image(tmp_path / "a" / "s2" / f"f{i}.png")
        assert a.shape == (16, 18, 3) and np.array_equal(a, want[i])
        assert np.array_equal(a, read_image(tmp_path / "b" / "s2" / f"f{i}.png"))
        assert not np.array_equal(a, read_image(tmp_path / "c" / "s2" / f"f{i}.png"))
    log = [json.loads(line) for line in (tmp_path / "a" / ".rvrt-run.jsonl").read_text().splitlines()]
    params = {r["sequence"]: r["params"] for r in log if "sequence" in r}
    assert sorted(params) == ["s1", "s2"] and params["s2"] == deg.sample(np.random.default_rng([0, 1]))


def test_real_on_a_video_file_writes_its_frames(tmp_path):
    from media import make_video, smooth_frames

    video = make_video(tmp_path / "clip.mp4", smooth_frames(5, 64, 48))
    assert main(["degrade", str(video), "-o", str(tmp_path / "o"), "--kind", "real", "--scale", "4", "--quiet"]) == 0
    names = sorted(p.name for p in (tmp_path / "o" / "clip").iterdir())
    assert names == [f"{i:08d}.png" for i in range(5)]
    assert read_image(tmp_path / "o" / "clip" / names[0]).shape == (12, 16, 3)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--kind", "real", "--sigma", "2"], "--sigma does not apply to --kind real"),
        (["--kind", "bi", "--config", "r.toml"], "--config only applies to --kind real"),
        (["--kind", "real", "--config", "missing.toml"], "--config file not found"),
        (["--kind", "real", "--config", "{bad}"], "first.jpeg_quality must be [low, high]"),
    ],
)
def test_bad_real_options_exit_2(tmp_path, capsys, extra, message):
    _tree(tmp_path / "gt", seqs=("s",), n=1)
    bad = tmp_path / "bad.toml"
    bad.write_text("[first]\njpeg_quality = [30, 120]\n")
    extra = [str(bad) if e == "{bad}" else e for e in extra]
    assert main(["degrade", str(tmp_path / "gt"), "-o", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()  # refused before anything is written
