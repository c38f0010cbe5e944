"""benchmarks/gpu_train.py on the CPU: the prepared GPU training run must be known to work before a
GPU session spends its minutes on it.

The tiny recipe through all three steps (probe, the run sized from the probe's rate, export), the GPU
preset resolved against the real recipe, and the SIGTERM stop of a run that outlasts its budget.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

import rvrt
from rvrt.checkpoint import load_state_dict_file, read_metadata
from rvrt.files import loads_toml
from rvrt.train.config import load_recipe

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_train.py"
sys.path.insert(0, str(SCRIPT.parent))  # as when it runs as a script: it imports gpu_suite beside it

_spec = importlib.util.spec_from_file_location("gpu_train", SCRIPT)
gpu_train = sys.modules["gpu_train"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_train)

# the model the export names: tiny_cpu's own
TINY = load_recipe("tiny_cpu")["model"]["kwargs"]
FAST = ["data.val={}", "train.threads=1"]  # no validation: the probe's rate is the training rate


def test_the_run_fits_the_budget_and_exports_float16_weights(tmp_path):
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    out, work = tmp_path / "out", tmp_path / "work"
    argv = [sys.executable, str(SCRIPT), "--recipe", "tiny_cpu", "--preset", "none", "--device", "cpu"]
    argv += ["--model", str(cfg), "--budget-s", "40", "--probe-iters", "6", "--export-s", "8"]
    argv += ["--out", str(out), "--work", str(work)]
    for s in FAST:
        argv += ["--set", s]
    t0 = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    wall = time.monotonic() - t0
    assert done.returncode == 0, done.stderr[-3000:]
    # only the results travel back from a device: no checkpoints in --out
    assert sorted(p.name for p in out.iterdir()) == [
        "candidate.safetensors",
        "metrics.jsonl",
        "recipe.toml",
        "summary.md",
    ]

    # the run's length comes from the probe's measured rate and the time left, and it ran to its end
    recipe = loads_toml((out / "recipe.toml").read_text())
    iters = recipe["train"]["iterations"]
    assert iters > 6 and recipe["schedule"]["periods"] == [iters]
    assert recipe["schedule"]["warmup"] == max(1, iters // 40)
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    done_steps = steps[-1]["step"]
    # it ends at its last iteration, or at the budget when this shared machine ran slower than the
    # probe measured (then SIGTERM, and the trainer's checkpoint of the step it had reached)
    assert iters // 2 <= done_steps <= iters
    assert wall < 40 + 30  # the budget, with the interpreter start-ups it does not count

    # the candidate is the run's last checkpoint in float16, loadable on its own
    stored = load_state_dict_file(out / "candidate.safetensors")
    assert {v.dtype for v in stored.values()} == {torch.float16}
    assert json.loads(read_metadata(out / "candidate.safetensors")["rvrt.config"])["embed_dims"] == [12, 12, 12]
    assert [p.name for p in (work / "run" / "checkpoints").iterdir()] == [f"step_{done_steps:08d}.pt"]
    final = load_state_dict_file(work / "run" / f"checkpoints/step_{done_steps:08d}.pt")
    model = rvrt.load_model(out / "candidate.safetensors")
    for k, p in model.named_parameters():
        assert torch.equal(p, final[k].half().float()), k
    summary = (out / "summary.md").read_text()
    assert f"run: {done_steps} of {iters} iterations (exit " in summary and "it/s (median of" in summary


def test_the_gpu_preset_resolves_against_the_real_recipe(tmp_path):
    argv = [sys.executable, "-m", "rvrt", "train", "realworld_sr_small_ft", "--dry-run", "--format", "json"]
    for k, v in gpu_train.GPU_SETTINGS.items():
        argv += ["--set", f"{k}={v}"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    resolved = json.loads(done.stdout[done.stdout.index("{") :])
    assert resolved["data"]["batch_size"] == 16 and resolved["train"]["amp"] == "bf16"
    assert resolved["data"]["train"]["real"]["clean_prob"] == 0.5
    assert resolved["data"]["train"]["real"]["first"]["noise"] == {"gaussian": 0.15, "poisson": 0.15, "none": 0.7}
    assert resolved["model"]["init"] == "zoo:rvrt.sr_small"


def test_a_run_past_its_budget_is_stopped_with_a_checkpoint(tmp_path):
    sets = ["train.device=cpu", "train.iterations=100000", "train.save_every=0", "train.tensorboard=false", *FAST]
    status, wall = gpu_train._train("tiny_cpu", tmp_path / "run", sets, deadline=time.monotonic() + 20)
    assert status == 130 and wall < 60
    ckpt = gpu_train._newest_checkpoint(tmp_path / "run")
    assert ckpt is not None and 0 < int(ckpt.stem.split("_")[1]) < 100000
