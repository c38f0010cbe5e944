"""``rvrt interpolate`` and ``rvrt restore --interpolate`` from the command line."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from rvrt.cli import main
from rvrt.media import probe
from rvrt.media.images import write_png


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frames") / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        write_png(folder / f"f{i}.png", rng.integers(0, 256, (8, 12, 3), dtype=np.uint8))
    return folder


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_interpolate_a_frames_folder_into_a_video(tiny_vrt, frames, tmp_path, capsys):
    cfg, weights = tiny_vrt["vfi"]
    out = tmp_path / "out.mp4"
    assert main(["interpolate", str(frames), "-o", str(out), "-m", str(cfg), "--weights", str(weights),
                 "--device", "cpu"]) == 0  # fmt: skip
    assert "rvrt interpolate: 6 frames at 50 fps" in capsys.readouterr().err
    info = probe(out)
    assert info.fps == Fraction(50) and (info.width, info.height) == (12, 8)
    assert main(["interpolate", str(frames), "-o", str(tmp_path / "f"), "-m", str(cfg), "--weights", str(weights),
                 "--device", "cpu", "--no-hold-last", "-q"]) == 0  # fmt: skip
    assert len(list((tmp_path / "f").glob("*.png"))) == 5


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "needs weights: pass weights='official' (--weights official)"),
        (["-m", "vrt.sr_bi_reds_6f", "--weights", "official"], "is a sr model"),
        (["--weights", "x.pth", "--tile", "1", "2", "3"], "--tile takes two non-negative integers"),
    ],
)
def test_interpolate_errors(frames, tmp_path, capsys, extra, message):
    assert main(["interpolate", str(frames), "-o", str(tmp_path / "o.mp4"), "--device", "cpu", *extra]) == 2
    assert message in _one_line_error(capsys)


def test_space_time_from_the_restore_command(tiny_vrt, frames, tmp_path, capsys):
    sr, sr_w = tiny_vrt["sr"]
    vfi, vfi_w = tiny_vrt["vfi"]
    base = [
        "restore",
        str(frames),
        "-o",
        str(tmp_path / "st.mp4"),
        "-m",
        str(sr),
        "--weights",
        str(sr_w),
        "--device",
        "cpu",
    ]
    assert main([*base, "--interpolate"]) == 2
    assert "--vfi-weights official" in _one_line_error(capsys)
    assert main([*base, "--vfi-tile", "8", "8"]) == 2
    assert "--vfi-tile only applies with --interpolate" in _one_line_error(capsys)
    assert main(["restore", str(frames), "-o", str(tmp_path / "x"), "-m", "vrt.vfi_vimeo"]) == 2
    assert "use `rvrt interpolate`" in _one_line_error(capsys)

    assert main([*base, "--interpolate", "--vfi-model", str(vfi), "--vfi-weights", str(vfi_w), "--fps", "30"]) == 0
    assert "6 frames at 30 fps" in capsys.readouterr().err
    info = probe(tmp_path / "st.mp4")
    assert info.fps == Fraction(30) and (info.width, info.height) == (48, 32) and info.frame_count == 6
