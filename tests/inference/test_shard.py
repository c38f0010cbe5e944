"""Sharded runs under torchrun (2 CPU processes): one video split among ranks equals the
one-process run byte for byte (audio kept, frames in order, scene cuts honoured), a rank that
dies loses only its segment and --resume finishes the rest, and a batch deals inputs to ranks."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import av
import pytest

import rvrt
from media import REAL, REAL_MISSING, make_video, smooth_frames
from rvrt.data.frames import read_image
from rvrt.inference.outputs import LOG_NAME, workdir_of
from rvrt.inference.shard import World, split_parts, world
from rvrt.media import open_reader, probe

CALENDAR = REAL / "YapengTian+TDAN-VSR-CVPR-2020" / "data" / "Vid4" / "calendar" / "LR_bicubic"
CITY = REAL / "jiangsutx+SPMC_VideoSR" / "data" / "test" / "city" / "input4"
N = 23
TILE = ["--tile", "4", "0", "0", "--tile-overlap", "2", "0", "0", "--device", "cpu"]
OPTS = dict(tile=(4, 0, 0), tile_overlap=(2, 0, 0), device="cpu", progress=False)


def torchrun(*args: str, nproc: int = 2, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "rvrt",
           *args]  # fmt: skip
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=300)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """23 frames with audio: 12 of Vid4 calendar, then 11 of city (a scene cut at frame 12)."""
    if not (CALENDAR.is_dir() and CITY.is_dir()):
        pytest.skip(REAL_MISSING)
    frames = [read_image(p)[:40, :48] for p in sorted(CALENDAR.glob("*.png"))[:12]]
    frames += [read_image(p)[:40, :48] for p in sorted(CITY.glob("*.png"))[:11]]
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", frames, audio=True)


def _frame_hashes(path: Path) -> list[str]:
    with open_reader(path) as reader:
        return [hashlib.sha256(f.data.tobytes()).hexdigest() for f in reader]


def _audio_seconds(path: Path) -> float:
    with av.open(str(path)) as c:
        return sum(f.samples for f in c.decode(audio=0)) / c.streams.audio[0].rate


def test_parts_are_contiguous_and_about_equal():
    units = [(0, 5), (5, 5), (10, 5), (15, 5), (20, 3)]
    assert split_parts(units, 2) == [[(0, 10)], [(10, 23)]]
    assert split_parts(units, 3) == [[(0, 10)], [(10, 15)], [(15, 23)]]
    assert split_parts([(0, 5), (10, 5)], 2) == [[(0, 5)], [(10, 15)]]  # what a resume left
    assert split_parts([(0, 5)], 3) == [[], [(0, 5)], []]
    every = [r for part in split_parts(units, 4) for r in part]
    assert sum(b - a for a, b in every) == 23


def test_world_comes_from_torchruns_environment(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert world() is None
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert world() == World(3, 4, 1)
    assert World(3, 4, 1).device("cpu") == "cpu"
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert world() is None


def test_two_processes_write_the_one_process_video_byte_for_byte(clip, tiny_sr_weights, tmp_path):
    one = tmp_path / "one.mkv"
    summary = rvrt.restore(clip, one, weights=tiny_sr_weights, codec="ffv1", segment_frames=5, **OPTS)
    assert summary.cuts == [12]
    two = tmp_path / "two.mkv"
    run = torchrun("restore", str(clip), "-o", str(two), "--weights", str(tiny_sr_weights), "--codec", "ffv1",
                   "--segment-frames", "5", *TILE)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "[rank 0 of 2]: 23 frames" in run.stderr and "1 scene cut (frame 12)" in run.stderr
    assert two.read_bytes() == one.read_bytes()  # frames, order, audio and timing all the same
    assert not workdir_of(two).exists()
    assert probe(two).frame_count == N
    with av.open(str(two)) as out, av.open(str(clip)) as src:
        assert [s.type for s in out.streams] == ["video", "audio"]
        assert abs(out.duration - src.duration) / 1e6 < 1.5 / 30  # in sync: as long as the input
    assert abs(_audio_seconds(two) - _audio_seconds(clip)) < 0.03  # all the audio, once
    assert len(set(_frame_hashes(two))) == N  # no frame dropped or repeated


def test_a_dead_rank_loses_only_its_segment_and_resume_finishes(clip, tiny_sr_weights, tmp_path):
    one = tmp_path / "one.mkv"
    rvrt.restore(clip, one, weights=tiny_sr_weights, codec="ffv1", segment_frames=4, scene_cuts="off", **OPTS)
    hook = tmp_path / "hook"
    hook.mkdir()
    # rank 1 is killed (SIGKILL) as it finishes its second segment, before recording it
    (hook / "sitecustomize.py").write_text(
        textwrap.dedent("""
        import os, signal
        if os.environ.get("RANK") == "1":
            from rvrt.media import segments
            original = segments.SegmentedVideoWriter._finish_segment
            def finish(self):
                if self._index > 3:
                    os.kill(os.getpid(), signal.SIGKILL)
                original(self)
            segments.SegmentedVideoWriter._finish_segment = finish
    """)
    )
    out = tmp_path / "out.mkv"
    args = ["restore", str(clip), "-o", str(out), "--weights", str(tiny_sr_weights), "--codec", "ffv1",
            "--segment-frames", "4", "--scene-cuts", "off", *TILE]  # fmt: skip
    path = os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])
    dead = torchrun(*args, env={"PYTHONPATH": path})
    assert dead.returncode != 0 and not out.exists()
    log = [json.loads(line) for line in (workdir_of(out) / "run.jsonl").read_text().splitlines()]
    kept = sorted(r["segment"]["index"] for r in log if "segment" in r)
    # 6 segments: rank 0 writes 0-2, rank 1 writes 3-5 and dies finishing 4 (segment 3 stays)
    assert 3 in kept and 4 not in kept and 5 not in kept, kept
    resumed = torchrun(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert out.read_bytes() == one.read_bytes()
    assert not workdir_of(out).exists()
    # only the missing segments were computed again: the ranks wrote 23 frames less the kept ones
    kept_frames = sum(min(4, 23 - 4 * k) for k in kept)
    assert f"[rank 0 of 2]: {23 - kept_frames} frames" in resumed.stderr, (kept, resumed.stderr[-2000:])


def test_two_processes_write_the_same_frames_folder(clip, tiny_sr_weights, tmp_path):
    one = tmp_path / "one"
    rvrt.restore(clip, one, weights=tiny_sr_weights, segment_frames=6, **OPTS)
    two = tmp_path / "two"
    run = torchrun("restore", str(clip), "-o", str(two), "--weights", str(tiny_sr_weights), "--segment-frames",
                   "6", *TILE)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    names = sorted(p.name for p in one.glob("*.png"))
    assert len(names) == N and sorted(p.name for p in two.glob("*.png")) == names
    assert all((one / n).read_bytes() == (two / n).read_bytes() for n in names)
    log = [json.loads(line) for line in (two / LOG_NAME).read_text().splitlines()]
    assert log[-1] == {"complete": True, "frames": N}


def test_a_batch_deals_its_inputs_to_the_ranks(tiny_sr_weights, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for k in range(3):
        make_video(src / f"v{k}.mp4", smooth_frames(4 + k, 32, 24))
    out = tmp_path / "out"
    run = torchrun("restore", str(src), "-o", str(out), "--weights", str(tiny_sr_weights), *TILE)
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["v0.mp4", "v1.mp4", "v2.mp4"]
    assert [probe(out / f"v{k}.mp4").frame_count for k in range(3)] == [4, 5, 6]
    lines = [ln for ln in run.stderr.splitlines() if ln.startswith("rvrt restore [rank")]
    assert sorted(ln.split("]")[0] + ln.split("-> ")[-1][-6:] for ln in lines) == [
        "rvrt restore [rank 0 of 2v0.mp4",
        "rvrt restore [rank 0 of 2v2.mp4",
        "rvrt restore [rank 1 of 2v1.mp4",
    ]
