"""The runner on real files: exact resume at every interruption point (frames and video), the run
log's checks, claims, outputs that are never replaced or deleted without being asked, truncated
inputs, ranges, progress."""

from __future__ import annotations

import errno
import io
import json
import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import rvrt
from media import make_video, smooth_frames
from rvrt.errors import InputError, OutputError
from rvrt.files import OutputClaim
from rvrt.inference import progress as progress_module
from rvrt.inference.outputs import workdir_of
from rvrt.inference.runner import Interrupted
from rvrt.media import open_reader, probe
from rvrt.media.images import write_png
from rvrt.media.segments import SegmentedVideoWriter
from rvrt.media.writers import _FramesWriter

# windows of 4 frames overlapping by 2 over 9 frames: starts 0, 2, 4 and a last window flush with
# the end at 5, which no regular window start reaches
TILE = dict(tile=(4, 0, 0), tile_overlap=(2, 0, 0))
N = 9


@pytest.fixture(scope="module")
def frames_in(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("in") / "clip"
    folder.mkdir()
    for i, img in enumerate(smooth_frames(N, 36, 34)):
        write_png(folder / f"f{i:02d}.png", img)
    return folder


@pytest.fixture(scope="module")
def video_in(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("v") / "in.mp4", smooth_frames(N, 36, 34), audio=True)


def _pngs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def _decoded(path: Path) -> list[np.ndarray]:
    with open_reader(path) as reader:
        return [f.data for f in reader]


def _interrupt_after(monkeypatch, cls, k: int) -> None:
    original = cls.write

    def write(self, data, name=None):
        if self.written >= k:
            raise KeyboardInterrupt
        return original(self, data, name)

    monkeypatch.setattr(cls, "write", write)


def test_frames_resume_is_bit_identical_at_every_interruption_point(frames_in, tiny_sr_weights, tmp_path, monkeypatch):
    full = tmp_path / "full"
    opts = dict(weights=tiny_sr_weights, device="cpu", progress=False, **TILE)
    rvrt.restore(frames_in, full, **opts)
    expected = _pngs(full)
    assert len(expected) == N
    for k in range(N):
        out = tmp_path / f"cut{k}"
        with monkeypatch.context() as m:
            _interrupt_after(m, _FramesWriter, k)
            with pytest.raises(Interrupted) as stop:
                rvrt.restore(frames_in, out, **opts)
        assert stop.value.done == k and len(_pngs(out)) == k
        summary = rvrt.restore(frames_in, out, resume=True, **opts)
        assert summary.resumed_from == k and summary.frames == N - k, k
        assert _pngs(out) == expected, k
        assert not list(out.glob(".*.part")) and not list(tmp_path.glob(".*rvrt-lock"))


def test_video_resume_is_bit_identical_at_every_interruption_point(video_in, tiny_sr_weights, tmp_path, monkeypatch):
    # FFV1: a deterministic (lossless) encoder, so the files themselves must be equal; libx264's
    # MB-tree rate control is not byte-reproducible even between two uninterrupted runs (see below)
    opts = dict(weights=tiny_sr_weights, device="cpu", progress=False, segment_frames=3, codec="ffv1", **TILE)
    full = tmp_path / "full.mkv"
    rvrt.restore(video_in, full, **opts)
    expected = full.read_bytes()
    assert probe(full).frame_count == N and not workdir_of(full).exists()
    for k in range(N):
        out = tmp_path / f"cut{k}.mkv"
        with monkeypatch.context() as m:
            _interrupt_after(m, SegmentedVideoWriter, k)
            with pytest.raises(Interrupted):
                rvrt.restore(video_in, out, **opts)
        assert not out.exists()  # nothing half-written carries the output's name
        kept = sorted(p.name for p in workdir_of(out).glob("seg-*"))
        assert len(kept) == k // 3, (k, kept)  # the finished segments, and only those
        summary = rvrt.restore(video_in, out, resume=True, **opts)
        assert summary.resumed_from == 3 * (k // 3), k
        assert out.read_bytes() == expected, k  # the very same file, audio included
        assert not workdir_of(out).exists()
    with av.open(str(full)) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]


def test_h264_resume_keeps_the_finished_segments(video_in, tiny_sr_weights, tmp_path, monkeypatch):
    opts = dict(weights=tiny_sr_weights, device="cpu", progress=False, segment_frames=3, **TILE)
    out = tmp_path / "out.mp4"
    with monkeypatch.context() as m:
        _interrupt_after(m, SegmentedVideoWriter, 7)
        with pytest.raises(Interrupted):
            rvrt.restore(video_in, out, **opts)
    kept = [p.read_bytes() for p in sorted(workdir_of(out).glob("seg-*"))]
    assert len(kept) == 2
    summary = rvrt.restore(video_in, out, resume=True, **opts)
    assert summary.resumed_from == 6 and summary.frames == 3 and probe(out).frame_count == N
    with av.open(str(out)) as c:  # the joined video holds the kept segments' packets as they were
        joined = [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]
    for i, seg in enumerate(kept):
        with av.open(io.BytesIO(seg)) as c:
            assert [bytes(p) for p in c.demux(c.streams.video[0]) if p.size] == joined[3 * i : 3 * i + 3]


def test_segments_join_into_every_container(video_in, tiny_sr_weights, tmp_path):
    opts = dict(weights=tiny_sr_weights, device="cpu", progress=False, segment_frames=4, tile=(0, 0, 0))
    whole = [f for _, f in rvrt.restore_iter(video_in, weights=tiny_sr_weights, device="cpu", tile=(0, 0, 0))]
    for name, codec in (("o.mkv", None), ("o.mov", None), ("o.webm", None), ("o.avi", None), ("l.mkv", "ffv1")):
        out = tmp_path / name
        rvrt.restore(video_in, out, codec=codec, **opts)
        info = probe(out)
        assert info.frame_count == N and info.fps == probe(video_in).fps, name
        got = _decoded(out)
        assert len(got) == N
        if codec == "ffv1":  # lossless: the frames are the restored frames
            for g, w in zip(got, whole, strict=True):
                ref = w.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
                assert np.abs(g.astype(int) - ref).max() <= 1, name


def test_resume_refuses_other_settings_and_says_which(frames_in, tiny_sr_weights, tmp_path, monkeypatch):
    out = tmp_path / "out"
    opts = dict(weights=tiny_sr_weights, device="cpu", progress=False)
    with monkeypatch.context() as m:
        _interrupt_after(m, _FramesWriter, 3)
        with pytest.raises(Interrupted):
            rvrt.restore(frames_in, out, **opts, **TILE)
    with pytest.raises(OutputError, match=r"other settings \(stage0.tile: 4 0 0 before, 6 0 0 now"):
        rvrt.restore(frames_in, out, **opts, tile=(6, 0, 0), tile_overlap=(2, 0, 0), resume=True)
    from conftest import write_tiny_sr

    other = write_tiny_sr(tmp_path / "other.safetensors", seed=1)
    with pytest.raises(OutputError, match="stage0.weights"):
        rvrt.restore(frames_in, out, weights=other, device="cpu", progress=False, resume=True, **TILE)
    with pytest.raises(OutputError, match=r"other settings \(start: 0 before, 1 now"):
        rvrt.restore(frames_in, out, **opts, **TILE, start=1, resume=True)
    with pytest.raises(OutputError, match="holds an interrupted run: pass --resume"):
        rvrt.restore(frames_in, out, **opts, **TILE)
    assert len(_pngs(out)) == 3  # nothing was touched


def test_resume_checks_the_frames_it_keeps(frames_in, tiny_sr_weights, tmp_path):
    out = tmp_path / "out"
    opts = dict(weights=tiny_sr_weights, device="cpu", progress=False, **TILE)
    rvrt.restore(frames_in, out, **opts)
    expected = _pngs(out)
    victim = out / "f04.png"
    victim.write_bytes(victim.read_bytes()[:100])  # truncated, as by a full disk or a bad copy
    summary = rvrt.restore(frames_in, out, resume=True, **opts)
    assert summary.resumed_from == 4 and _pngs(out) == expected
    (out / "f06.png").unlink()
    assert rvrt.restore(frames_in, out, resume=True, **opts).resumed_from == 6
    assert _pngs(out) == expected
    summary = rvrt.restore(frames_in, out, resume=True, **opts)
    assert summary.status.startswith("nothing to do") and summary.frames == 0


def test_overwrite_removes_only_what_rvrt_wrote(frames_in, tiny_sr_weights, tmp_path):
    out = tmp_path / "out"
    opts = dict(weights=tiny_sr_weights, device="cpu", progress=False, **TILE)
    rvrt.restore(frames_in, out, **opts)
    (out / "notes.txt").write_text("mine")
    write_png(out / "zz_mine.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(OutputError, match="already exists; pass --overwrite"):
        rvrt.restore(frames_in, out, **opts)
    rvrt.restore(frames_in, out, overwrite=True, start=2, **opts)  # a shorter run: 7 frames
    assert (out / "notes.txt").read_text() == "mine" and (out / "zz_mine.png").exists()
    assert sorted(_pngs(out)) == [f"f{i:02d}.png" for i in range(2, N)] + ["zz_mine.png"]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "f00.png").write_bytes(b"not a frame of mine")
    with pytest.raises(OutputError, match="not empty and was not written by rvrt"):
        rvrt.restore(frames_in, foreign, **opts)
    assert (foreign / "f00.png").read_bytes() == b"not a frame of mine"


def test_a_second_run_to_the_same_output_is_refused_while_the_first_is_alive(frames_in, tiny_sr_weights, tmp_path):
    out = tmp_path / "out.mp4"
    opts = dict(weights=tiny_sr_weights, device="cpu", progress=False)
    with OutputClaim(out):  # another run holds it
        with pytest.raises(OutputError, match="being written by another rvrt run .*pid"):
            rvrt.restore(frames_in, out, **opts)
    assert not out.exists()
    rvrt.restore(frames_in, out, **opts)  # released: fine now
    assert probe(out).frame_count == N


def test_a_dead_runs_claim_and_temporary_files_are_cleaned_up(frames_in, tiny_sr_weights, tmp_path):
    out = tmp_path / "out.mp4"
    # what a SIGKILLed run leaves: its claim (with content, unlocked) and a half-written temporary file
    (tmp_path / ".out.mp4.rvrt-lock").write_text(json.dumps({"pid": 999999, "host": "x", "started": "then"}))
    (tmp_path / ".out.mp4.12345-deadbeef.part").write_bytes(b"half")
    rvrt.restore(frames_in, out, weights=tiny_sr_weights, device="cpu", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_a_file_that_appears_meanwhile_is_never_replaced(frames_in, tiny_sr_weights, tmp_path, monkeypatch):
    out = tmp_path / "out.mp4"
    original = SegmentedVideoWriter.write

    def write(self, data, name=None):
        original(self, data, name)
        if self.written == 2:
            out.write_bytes(b"precious")  # another program saves a file there while rvrt runs

    monkeypatch.setattr(SegmentedVideoWriter, "write", write)
    with pytest.raises(OutputError, match="appeared while this run was writing it"):
        rvrt.restore(frames_in, out, weights=tiny_sr_weights, device="cpu", progress=False)
    assert out.read_bytes() == b"precious"
    assert not list(tmp_path.glob(".out.mp4.*.part"))


@pytest.mark.parametrize(
    ("code", "reason"),
    [(errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system"), (errno.EACCES, "Permission")],
)
def test_operating_system_errors_are_one_line(frames_in, tiny_sr_weights, tmp_path, monkeypatch, capsys, code, reason):
    from rvrt.cli import main

    real_open = open

    def failing_open(file, mode="r", *a, **k):
        if "w" in mode and str(file).endswith(".part"):
            raise OSError(code, os.strerror(code), str(file))
        return real_open(file, mode, *a, **k)

    monkeypatch.setattr("builtins.open", failing_open)
    out = tmp_path / "out"
    assert main(["restore", str(frames_in), "-o", str(out), "--weights", str(tiny_sr_weights), "-q"]) == 2
    err = capsys.readouterr().err
    assert reason in err and len(err.strip().splitlines()) == 1, err
    assert not list(out.glob("*.png"))


def test_a_file_where_a_folder_should_be(frames_in, tiny_sr_weights, tmp_path, capsys):
    from rvrt.cli import main

    (tmp_path / "file").write_text("x")
    assert main(["restore", str(frames_in), "-o", str(tmp_path / "file" / "out.mp4"), "--weights",
                 str(tiny_sr_weights), "-q"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "file is a file, not a folder" in err and len(err.strip().splitlines()) == 1, err
    assert (tmp_path / "file").read_text() == "x"


def _cut(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def _faststart(path: Path, frames: list[np.ndarray]) -> Path:
    return make_video(path, frames, rate=25, options={"preset": "ultrafast", "crf": "12", "g": "5"},
                      container_options={"movflags": "+faststart"})  # fmt: skip


def test_a_truncated_video_is_refused_unless_allowed(tiny_sr_weights, tmp_path, capsys):
    from rvrt.cli import main

    full = _faststart(tmp_path / "full.mp4", smooth_frames(20, 36, 34))
    cut = _cut(full, tmp_path / "cut.mp4", 0.6)
    base = ["restore", str(cut), "--weights", str(tiny_sr_weights), "-q"]
    assert main([*base, "-o", str(tmp_path / "a.mp4")]) == 2
    err = capsys.readouterr().err
    assert "cut.mp4 states 20 frames but holds" in err and "--allow-truncated" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "a.mp4").exists()
    summary = rvrt.restore(cut, tmp_path / "b", weights=tiny_sr_weights, device="cpu", progress=False,
                           allow_truncated=True)  # fmt: skip
    assert 0 < summary.frames < 20 and any("truncated" in n or "damaged" in n for n in summary.notes)
    assert len(_pngs(tmp_path / "b")) == summary.frames


def test_a_truncated_matroska_is_caught_from_its_duration(tiny_sr_weights, tmp_path):
    full = make_video(tmp_path / "full.mkv", smooth_frames(30, 36, 34))
    cut = _cut(full, tmp_path / "cut.mkv", 0.5)
    with pytest.raises(InputError, match=r"cut.mkv lasts .* \(about 30 frames\) but holds \d+"):
        rvrt.restore(cut, tmp_path / "o.mp4", weights=tiny_sr_weights, device="cpu", progress=False)
    whole = make_video(tmp_path / "whole.mkv", smooth_frames(6, 36, 34))  # a complete file passes
    assert rvrt.restore(whole, tmp_path / "w.mp4", weights=tiny_sr_weights, device="cpu", progress=False).frames == 6


def test_a_part_of_a_video_for_a_preview(video_in, tiny_sr_weights, tmp_path):
    out = tmp_path / "part.mp4"
    summary = rvrt.restore(video_in, out, weights=tiny_sr_weights, device="cpu", progress=False, start=3, frames=4)
    assert summary.frames == 4 and probe(out).frame_count == 4
    fps = float(probe(video_in).fps)
    with av.open(str(out)) as c:  # the audio of those frames only
        audio = [p for p in c.demux(c.streams.audio[0]) if p.size]
        duration = sum(float(p.duration * p.time_base) for p in audio)
    assert 0.5 * 4 / fps < duration < 4 / fps + 0.1
    names = tmp_path / "names"
    rvrt.restore(video_in, names, weights=tiny_sr_weights, device="cpu", progress=False, start=5, frames=2)
    assert sorted(_pngs(names)) == ["00000005.png", "00000006.png"]  # frames keep their input numbers
    frames = tmp_path / "frames"
    rvrt.restore(names, frames, weights=tiny_sr_weights, device="cpu", progress=False, frames=1)
    assert sorted(_pngs(frames)) == ["00000005.png"]


def test_progress_moves_inside_a_window_before_any_frame_is_final(frames_in, tiny_sr_weights, tmp_path, monkeypatch):
    from rvrt.inference.jobs import restore_job
    from rvrt.inference.runner import run_job

    moves: list[tuple[float, float]] = []
    original = progress_module.Progress._move

    def record(self, pos):
        moves.append((pos, self.done))
        original(self, pos)

    monkeypatch.setattr(progress_module.Progress, "_move", record)
    run_job(frames_in, tmp_path / "out", restore_job(weights=tiny_sr_weights, device="cpu", tile=(0, 0, 0)))
    before_first = [pos for pos, done in moves if done == 0]
    # one window holds the whole clip: without reports from inside the model the bar would jump 0 -> 9
    assert len(before_first) >= 5 and all(0 < p <= N for p in before_first) and before_first[0] < N / 2
    assert before_first == sorted(before_first) and moves[-1][0] == N


@pytest.fixture(scope="module")
def big_frames(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("big") / "clip"
    folder.mkdir()
    for i, img in enumerate(smooth_frames(3, 96, 96)):
        write_png(folder / f"f{i}.png", img)
    return folder


def _picky(monkeypatch, limit: int | None) -> None:
    """Model calls on tiles above ``limit`` input pixels fail as the CPU allocator fails (None: all fail)."""
    from rvrt.inference import stages

    real_runner = stages.model_runner

    def picky_runner(model, **kw):
        run = real_runner(model, **kw)

        def guarded(x):
            if limit is None or x.shape[-2] * x.shape[-1] > limit:
                raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 123 bytes")
            return run(x)

        return guarded

    monkeypatch.setattr(stages, "model_runner", picky_runner)


def test_out_of_memory_backs_off_once_through_restore(big_frames, tiny_sr_weights, tmp_path, monkeypatch, caplog):
    import logging

    _picky(monkeypatch, 64 * 64)
    with caplog.at_level(logging.WARNING):
        summary = rvrt.restore(big_frames, tmp_path / "out", weights=tiny_sr_weights, device="cpu", progress=False)
    assert summary.frames == 3 and summary.tile.startswith("0 64 64 (")  # whole clip, 64-pixel tiles
    warnings = [r.getMessage() for r in caplog.records if "out of memory" in r.getMessage()]
    assert len(warnings) == 1 and "continuing with 64x64" in warnings[0], warnings
    assert len(list((tmp_path / "out").glob("*.png"))) == 3


def test_out_of_memory_with_nothing_smaller_or_a_given_tile_is_one_error(
    big_frames, tiny_sr_weights, tmp_path, monkeypatch
):
    from rvrt.errors import InsufficientMemoryError

    _picky(monkeypatch, None)
    opts = dict(weights=tiny_sr_weights, device="cpu", progress=False)
    with pytest.raises(InsufficientMemoryError, match=r"even with tiles of 64x64 pixels; .* needs about"):
        rvrt.restore(big_frames, tmp_path / "a", **opts)
    with pytest.raises(InsufficientMemoryError, match=r"with the tile you gave \(0 96 96\)"):
        rvrt.restore(big_frames, tmp_path / "b", tile=(0, 96, 96), **opts)
