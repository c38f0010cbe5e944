"""Stopping a real run: SIGTERM and Ctrl-C leave finished frames and no temporary files and say how
to resume; a SIGKILLed run's leftovers are cleaned by the next run, which resumes it exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from media import make_video, smooth_frames

N = 24


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("sig") / "in.mp4", smooth_frames(N, 64, 48), audio=True)


#: a sitecustomize that makes every PNG write take 0.2 s more: a run to be stopped then lasts seconds
#: after its 4th frame however fast or loaded the machine is (without it, a loaded test process could
#: wake up after the whole run had finished and the signal found nothing to stop)
_SLOW_WRITES = """
import time
from rvrt.media import images
_write_png = images.write_png
def write_png(*args, **kwargs):
    time.sleep(0.2)
    return _write_png(*args, **kwargs)
images.write_png = write_png
"""


def _start(clip: Path, out: Path, weights: Path, *extra: str, slow: bool = False) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "rvrt", "restore", str(clip), "-o", str(out), "--weights", str(weights),
           "--tile", "2", "0", "0", "--tile-overlap", "0", "0", "0", "--device", "cpu", "-q", *extra]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if slow:
        hook = out.parent / "slow_hook"
        hook.mkdir(exist_ok=True)
        (hook / "sitecustomize.py").write_text(_SLOW_WRITES)
        env["PYTHONPATH"] = os.pathsep.join([str(hook), env.get("PYTHONPATH", "")])
    # Ctrl-C as a terminal delivers it: whatever this process inherited (a process that ignores SIGINT
    # passes that on, and Python then installs no KeyboardInterrupt handler), the run gets the default
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip


def _wait_for_frames(out: Path, count: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if len(list(out.glob("*.png"))) >= count:
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError("no frames appeared")


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith((".part", ".rvrt-lock")))


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stopped_run_says_how_to_resume_and_resumes_exactly(clip, tiny_sr_weights, tmp_path, sig, code):
    out = tmp_path / "out"
    proc = _start(clip, out, tiny_sr_weights, slow=True)
    _wait_for_frames(out, 4, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "run the same command with --resume to continue" in err and len(err.strip().splitlines()) == 1, err
    assert _leftovers(tmp_path) == []
    kept = len(list(out.glob("*.png")))
    assert 4 <= kept < N
    done = _start(clip, out, tiny_sr_weights, "--resume")
    assert done.wait(timeout=180) == 0, done.communicate()
    full = tmp_path / "full"
    assert _start(clip, full, tiny_sr_weights).wait(timeout=180) == 0
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == {p.name: p.read_bytes() for p in full.glob("*.png")}


def test_a_killed_runs_leftovers_are_cleaned_by_the_next_run(clip, tiny_sr_weights, tmp_path):
    out = tmp_path / "out.mp4"
    proc = _start(clip, out, tiny_sr_weights, "--segment-frames", "4")
    workdir = tmp_path / ".out.mp4.rvrt"
    end = time.monotonic() + 120
    while not list(workdir.glob("seg-000001*")) and time.monotonic() < end:
        time.sleep(0.05)
    proc.kill()  # SIGKILL: no cleanup at all
    proc.wait()
    assert (tmp_path / ".out.mp4.rvrt-lock").exists()  # the dead run's claim
    again = _start(clip, out, tiny_sr_weights, "--segment-frames", "4", "--resume")
    _, err = again.communicate(timeout=180)
    assert again.returncode == 0, err
    assert _leftovers(tmp_path) == [] and not workdir.exists()
    from rvrt.media import probe

    assert probe(out).frame_count == N
