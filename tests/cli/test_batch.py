"""Many inputs in one command: folders, globs, names, reruns, and one bad input among good ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from media import make_video, smooth_frames
from rvrt.cli import main
from rvrt.inference.batch import expand_inputs, output_name
from rvrt.media import probe
from rvrt.media.images import write_png


@pytest.fixture()
def library(tmp_path) -> Path:
    root = tmp_path / "lib"
    (root / "videos").mkdir(parents=True)
    make_video(root / "videos" / "a.mp4", smooth_frames(3, 36, 34), audio=True)
    make_video(root / "videos" / "b.mkv", smooth_frames(2, 36, 34))
    shot = root / "videos" / "shot"
    shot.mkdir()
    for i, img in enumerate(smooth_frames(2, 36, 34)):
        write_png(shot / f"{i}.png", img)
    (root / "videos" / "notes.txt").write_text("not a video")
    make_video(root / "c.mov", smooth_frames(2, 36, 34))
    return root


def test_inputs_are_expanded_like_a_user_expects(library):
    found = expand_inputs([str(library / "videos"), str(library / "*.mov"), str(library / "videos" / "shot" / "*.png")])
    names = [Path(p).name for p, err in found if err is None]
    assert names == ["a.mp4", "b.mkv", "shot", "c.mov", "*.png"]
    assert (
        expand_inputs([str(library / "nothing*")])[0][1] == f"nothing matches the pattern {str(library / 'nothing*')!r}"
    )
    assert output_name(str(library / "videos" / "a.mp4")) == "a.mp4"
    assert output_name(str(library / "videos" / "shot")) == "shot"  # frames in, frames out
    assert output_name(str(library / "c.mov"), "{stem}_x4.{ext}") == "c_x4.mov"
    assert output_name(str(library / "videos" / "shot"), "{stem}_x4.mkv") == "shot_x4.mkv"


def test_a_batch_restores_everything_reports_a_table_and_skips_done_outputs_on_a_rerun(
    library, tiny_sr_weights, tmp_path, capsys
):
    out = tmp_path / "out"
    (library / "videos" / "b2.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))  # fails once opened
    args = ["restore", str(library / "videos"), str(library / "c.mov"), str(library / "missing.mp4"), "-o", str(out),
            "--weights", str(tiny_sr_weights), "--name", "{stem}_x4.{ext}"]  # fmt: skip
    assert main(args) == 2  # two inputs failed, the others ran (also those after the failed ones)
    err = capsys.readouterr().err
    assert "missing.mp4: failed: input not found" in err
    assert "b2.mp4: failed:" in err
    assert "6 inputs: 4 restored, 0 skipped, 2 failed" in err
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "a_x4.mp4", "b_x4.mkv", "c_x4.mov", "shot_x4",
    ]  # fmt: skip
    assert probe(out / "a_x4.mp4").frame_count == 3 and probe(out / "a_x4.mp4").width == 144
    assert len(list((out / "shot_x4").glob("*.png"))) == 2

    (library / "videos" / "b2.mp4").unlink()
    assert main([a for a in args if a != str(library / "missing.mp4")]) == 0
    err = capsys.readouterr().err
    assert "4 inputs: 0 restored, 4 skipped, 0 failed" in err


def test_outputs_of_a_batch_must_go_to_a_folder_and_never_collide(library, tiny_sr_weights, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    base = ["restore", str(library / "videos" / "a.mp4"), str(library / "c.mov"), "--weights", str(tiny_sr_weights)]
    assert main([*base, "-o", str(tmp_path / "file")]) == 2
    assert "-o must be a folder" in capsys.readouterr().err
    assert main([*base, "-o", str(tmp_path / "o"), "--name", "same.mp4", "-q"]) == 2
    err = capsys.readouterr().err
    assert "is written to the same output" in err and (tmp_path / "o" / "same.mp4").exists()
