"""Milliseconds per clip of the real-world degradation pipeline, per stage, against one training
iteration of the small model: does the trainer starve?

    PYTHONPATH=src python benchmarks/bench_degradations.py [--clips 20] [--iters 2]

Each case degrades ``--clips`` clips of procedural GT video (one parameter draw per clip, as in
training) on one thread, as a DataLoader worker runs, and reports the mean total and per-stage
milliseconds (blur = blur and sinc filters, resize, noise, jpeg, video = encode + decode) for:

* ``6x256x256 x4``: six frames of 256x256 GT, the pipeline's defaults (the published ranges);
* ``realworld_sr_small``: that recipe's region (``gt_patch`` plus the margin, its ranges);
* ``realworld_x1_small``: the same for the x1 recipe;
* ``realworld_sr_rvrt``: the official-size recipe (16 frames of 256x256 plus margin).

Then it times training iterations of realworld_sr_small's model (batch of the recipe, two threads,
the real trainer on procedural data without degradation) and prints the ratio: the CPU time
the data loading needs per iteration (``batch`` clips) over the iteration's wall time. Below 1 with
``num_workers`` workers on spare cores, the model never waits for data. Timings on a shared machine
are noisy: compare the numbers of one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np
import torch

from rvrt.data.realworld import RealDegradation
from rvrt.data.sources import SyntheticFrames
from rvrt.train import Trainer, load_recipe

STAGES = ("blur", "resize", "noise", "jpeg", "video")


def _case(name: str, table: dict, scale: int, frames: int, size: int, clips: int) -> float:
    deg = RealDegradation(table, scale=scale)
    src = SyntheticFrames(count=1, frames=frames, size=(size, size), seed=1)
    clip = np.stack(src.read("synthetic_000", range(frames)))
    timings: dict[str, float] = {}
    start = time.perf_counter()
    for i in range(clips):
        deg.apply(clip, deg.sample(np.random.default_rng([0, i])), timings=timings)
    total = (time.perf_counter() - start) * 1000 / clips
    parts = "  ".join(f"{s} {timings.get(s, 0.0) / clips:6.1f}" for s in STAGES)
    print(f"{name:22s} {frames:2d}x{size}x{size} x{scale}  {total:7.1f} ms/clip   {parts}", flush=True)
    return total


def _region(recipe: dict) -> tuple[int, int, int, dict]:
    t = recipe["data"]["train"]
    scale = int(t["scale"])
    return scale, int(t["num_frames"]), int(t["gt_patch"]) + 2 * int(t.get("margin", 4)) * scale, t.get("real", {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=20, help="clips per case (default 20)")
    ap.add_argument("--iters", type=int, default=2, help="training iterations timed (default 2; 0: skip)")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, load {os.getloadavg()[0]:.1f}; degradation on 1 thread (a DataLoader worker)")
    torch.set_num_threads(1)
    _case("defaults", {}, 4, 6, 256, args.clips)
    per_clip = {}
    for name in ("realworld_sr_small", "realworld_x1_small", "realworld_sr_rvrt"):
        scale, frames, size, table = _region(load_recipe(name))
        per_clip[name] = _case(name, table, scale, frames, size, args.clips)

    if args.iters < 1:
        return
    torch.set_num_threads(2)
    recipe = load_recipe(
        "realworld_sr_small",
        [
            'data.train={type="synthetic", count=2, length=8, size=[192, 192], degradation="area", '
            "num_frames=6, gt_patch=160}",
            "data.val={}",
            "data.num_workers=0",
            f"train.iterations={args.iters}",
            "train.log_every=1",
            "train.save_every=0",
            "train.threads=2",
        ],
    )
    with tempfile.TemporaryDirectory() as out:
        Trainer(recipe, out, progress=False).fit()
        rows = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))][1:]
    it_s = statistics.median(1 / r["it_per_s"] for r in rows if "it_per_s" in r)
    batch = recipe["data"]["batch_size"]
    need = per_clip["realworld_sr_small"] * batch / 1000
    print(
        f"realworld_sr_small: one iteration (batch {batch}, 2 threads) {it_s:.2f} s; degrading its {batch} clips "
        f"{need:.2f} s on one core: ratio {need / it_s:.2f} (data time / iteration time)"
    )


if __name__ == "__main__":
    main()
