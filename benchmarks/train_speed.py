"""Seconds per training iteration of a recipe, for several batch sizes.

    PYTHONPATH=src python benchmarks/train_speed.py default_sr_small --batch 1 2 3 4 --iters 3 \
        --set model.spynet='""' --set 'data.train={type="synthetic", count=4, length=8, size=[192, 192], \
        degradation="area", num_frames=6, gt_patch=160}'

Runs the real trainer (data loading, forward, backward, optimiser) for ``--iters`` iterations per
batch size and reports the median wall-clock and CPU seconds of the iterations after the first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile

import torch

from rvrt.train import Trainer, load_recipe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 2, 3, 4])
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.1f}")
    print("batch  wall s/it  cpu s/it  (median of iterations 2..N; CPU time of this process, all its threads)")
    for bs in args.batch:
        recipe = load_recipe(
            args.recipe,
            [
                *args.overrides,
                f"data.batch_size={bs}",
                f"train.iterations={args.iters}",
                "train.log_every=1",
                "train.save_every=0",
                "data.val={}",
            ],
        )
        with tempfile.TemporaryDirectory() as out:
            Trainer(recipe, out, progress=False).fit()
            rows = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))][1:]
        wall = statistics.median(1 / r["it_per_s"] for r in rows)
        cpu = statistics.median(r["cpu_s_per_it"] for r in rows)
        print(f"{bs:5d}  {wall:9.2f}  {cpu:8.2f}", flush=True)


if __name__ == "__main__":
    main()
