"""The memory model against measured peaks, and the planner that sizes tiles with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import rvrt
from rvrt.errors import InsufficientMemoryError
from rvrt.inference.memory import model_peak_bytes
from rvrt.inference.options import StageOptions
from rvrt.inference.planner import plan_stage
from rvrt.zoo import ARCHITECTURES

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_memory_model.py"
sys.path.insert(0, str(BENCH.parent))
from bench_memory_model import _light, _rvrt, _vfi, _vrt  # noqa: E402

# one point per family, at sizes the planner chooses between (each a fresh process, a few seconds)
POINTS = [
    dict(arch="rvrt", kwargs=_rvrt(32), t=8, h=96, w=128, dtype="fp32"),
    dict(arch="rvrt", kwargs=_rvrt(48, upscale=1), t=8, h=256, w=384, dtype="fp32"),
    dict(arch="rvrt_light", kwargs=_light(24), t=6, h=128, w=160, dtype="fp32"),
    dict(arch="vrt", kwargs=_vrt(16, 24), t=6, h=128, w=128, dtype="fp32"),
    dict(arch="vrt", kwargs=_vfi(16), t=4, h=192, w=192, dtype="fp32"),
]


def _measure(point: dict) -> int:
    env = dict(os.environ, THP_MEM_ALLOC_ENABLE="1")  # as the rvrt command runs
    src = Path(rvrt.__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, str(BENCH), "--child", json.dumps(point), "--threads", "2"],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])["measured"]


@pytest.mark.parametrize(
    "point", POINTS, ids=lambda p: f"{p['arch']}-C{p['kwargs']['embed_dims'][0]}-{p['t']}x{p['h']}"
)
def test_predicted_peak_is_within_30_percent_of_the_measured_one(point):
    measured = _measure(point)
    arch = ARCHITECTURES[point["arch"]]
    config = arch.config_class.from_kwargs(**point["kwargs"])
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    predicted = model_peak_bytes(point["arch"], config, point["t"], point["h"], point["w"])
    assert 0.7 <= predicted / measured <= 1.3, (predicted / 2**20, measured / 2**20)


def test_the_model_grows_with_every_dimension():
    cfg = rvrt.get_spec("rvrt.sr_bi_reds").build_config()
    base = model_peak_bytes("rvrt", cfg, 10, 128, 128)
    assert model_peak_bytes("rvrt", cfg, 20, 128, 128) > base
    assert model_peak_bytes("rvrt", cfg, 10, 256, 128) > base
    small = rvrt.get_spec("rvrt.sr_small").build_config()
    assert model_peak_bytes("rvrt", small, 10, 128, 128) < base


def _plan(name: str, budget_gb: float, h: int, w: int, total: int | None = None, tile="auto"):
    spec = rvrt.get_spec(name)
    return plan_stage(spec, StageOptions(tile=tile), height=h, width=w, device=torch.device("cpu"),
                      dtype=torch.float32, budget=int(budget_gb * 2**30), total=total)  # fmt: skip


def test_auto_prefers_whole_frames_and_the_models_window_when_they_fit():
    plan = _plan("rvrt.sr_small", 10, 180, 320, total=289)
    assert plan.tile == (30, 0, 0) and plan.overlap == (2, 20, 20) and plan.auto
    assert _plan("rvrt.sr_small", 10, 180, 320, total=21).tile == (0, 0, 0)  # a short clip in one window
    reds = _plan("rvrt.sr_bi_reds", 200, 180, 320, total=500)
    assert reds.tile == (100, 0, 0)  # the official test's 100 frames, whole frames when memory allows


def test_auto_shrinks_the_window_before_the_frame_and_never_below_what_fits():
    roomy = _plan("rvrt.sr_small", 10, 180, 320, total=289)
    tight = _plan("rvrt.sr_small", 1.3, 180, 320, total=289)
    assert tight.predicted_bytes <= 1.3 * 2**30 < roomy.predicted_bytes
    assert tight.tile[1:] == (0, 0) and tight.tile[0] < 30  # fewer frames, still whole frames
    hd = _plan("rvrt.sr_small", 4, 1080, 1920, total=289)
    assert 0 < hd.tile[1] == hd.tile[2] < 1080 and hd.predicted_bytes <= 4 * 2**30
    # the largest tile that fits: a tile one step larger would not
    bigger = _plan("rvrt.sr_small", 4, 1080, 1920, total=289, tile=(hd.tile[0], hd.tile[1] + 64, hd.tile[2] + 64))
    assert bigger.predicted_bytes > 4 * 2**30 or hd.tile[0] < 16


def test_nothing_fits_is_one_line_naming_the_memory_needed():
    with pytest.raises(InsufficientMemoryError, match=r"does not fit .* need about \d+\.\d GB"):
        _plan("rvrt.sr_bi_reds", 0.05, 180, 320)


def test_a_denoiser_and_vrt_are_planned_too():
    assert _plan("rvrt.denoise_davis", 8, 480, 854, total=100).predicted_bytes <= 8 * 2**30
    plan = _plan("vrt.sr_bi_reds_6f", 8, 180, 320, total=100)
    assert plan.predicted_bytes <= 8 * 2**30 and plan.tile[0] >= 6
