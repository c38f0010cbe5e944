"""The prepared GPU training run for the built-in model (issue 13): as many iterations as fit a time
budget on one GPU, the learning rate annealed to its floor at the end, float16 weights out.

On the GPU machine (no network): PyAV carried as a wheel (decoding the .mp4 clips and the
pipeline's video compression need it; gpu_suite.py's docstring shows how), the training clips
copied into an ignored folder of the checkout that travels (``carry``), from the repository root::

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl &&
    PYTHONPATH=$PWD/src:/tmp/site PYTHONUNBUFFERED=1 python3 benchmarks/gpu_train.py \
        --roots .train/*.mp4 --out $OUT --work /tmp/gpu_train --budget-s 480

(``.whl/``: ``av-18.1.0-cp311-abi3-manylinux_2_28_x86_64.whl``, 36 MB; ``.train/``: the three clips
of the candidates, 4 MB; with the 21 MB checkout that is 61 of the 64 MiB that may travel.) Only
the candidate (5.8 MB), ``summary.md``, ``metrics.jsonl`` and ``recipe.toml`` go to ``--out``.

Three steps, each a ``rvrt train`` subprocess of ``--recipe`` (default ``realworld_sr_small_ft``:
``rvrt.sr_small``'s network, starting from its weights) with :data:`GPU_SETTINGS` (``--preset gpu``)
and the ``--set`` overrides on top:

1. probe: ``--probe-iters`` iterations, which also decode the clips into the frame cache that the
   run then reuses; the rate is the median of its logged iterations per second after the first log,
   and its start-up time is its wall time less its iterations at that rate;
2. run: the iterations that fit what is left of the budget (less that start-up and ``--export-s``),
   with the cosine schedule's period and the warm-up set to them, so the learning rate reaches its
   floor at the end; a slower run is sent SIGTERM at the budget's end (the trainer finishes the
   step and saves a checkpoint);
3. export: the newest checkpoint as float16 ``candidate.safetensors`` (``rvrt weights convert -m
   --model --dtype fp16``), beside ``summary.md`` (device, versions, commit, command, iterations,
   rates, loss) and the run's ``metrics.jsonl`` and ``recipe.toml``.

Score a candidate on any machine afterwards (docs/DEFAULT_MODEL.md)::

    cd benchmarks && python bench_default_model.py -m rvrt.sr_small_v2 --weights candidate.safetensors

On a CPU the same steps run in seconds (tests/benchmarks/test_gpu_train.py)::

    python benchmarks/gpu_train.py --recipe tiny_cpu --preset none --device cpu --model RECIPE.json \\
        --budget-s 60 --out /tmp/gpu_train
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from gpu_suite import environment, git_commit

#: the GPU settings over the recipe (``--preset gpu``): a batch that keeps one GPU busy, the data
#: workers to feed it (the pipeline costs about 0.1 s per clip on one core, bench_degradations.py),
#: and the mix that kept clean input best on the CPU (the third candidate, docs/DEFAULT_MODEL.md:
#: half the clips clean, a milder first stage)
GPU_SETTINGS: dict[str, str] = {
    "data.batch_size": "16",
    "data.num_workers": "12",
    "data.train.gt_patch": "192",
    "optim.lr": "2e-4",
    "train.amp": "bf16",
    "data.train.real.clean_prob": "0.5",
    "data.train.real.first.blur_prob": "0.15",
    "data.train.real.first.noise": "{gaussian=0.15,poisson=0.15,none=0.7}",
}


def _train(recipe: str, out: Path, sets: list[str], deadline: float | None = None) -> tuple[int, float]:
    """Run ``rvrt train`` as a subprocess; SIGTERM at ``deadline`` (monotonic). Returns (status, wall s)."""
    cmd = [sys.executable, "-m", "rvrt", "train", recipe, "--out", str(out), "--no-progress"]
    for s in sets:
        cmd += ["--set", s]
    print("$", shlex.join(cmd), flush=True)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, start_new_session=True)
    try:
        proc.wait(timeout=None if deadline is None else max(1.0, deadline - t0))
    except subprocess.TimeoutExpired:
        print(f"time is up: SIGTERM to the run (it saves a checkpoint); {out}", flush=True)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
    return proc.returncode, time.monotonic() - t0


def _metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _newest_checkpoint(run: Path) -> Path | None:
    found = sorted((run / "checkpoints").glob("step_*.pt"))
    return found[-1] if found else None


def _environment(device: str) -> str:
    """The device and versions line of the summary (gpu_suite's description of the machine)."""
    import torch

    env = environment("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")
    return f"{env['device']}; Python {env['python']}, PyTorch {env['torch']}, PyAV {env['av']}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="realworld_sr_small_ft", help="recipe name or .toml")
    ap.add_argument("--roots", nargs="+", help="training videos or frame folders (data.train.roots)")
    ap.add_argument("--out", type=Path, required=True, help="folder for the candidate, summary.md and the run's log")
    ap.add_argument("--work", type=Path, help="folder for the runs and their checkpoints (default: OUT/runs)")
    ap.add_argument("--budget-s", type=float, default=480, help="wall time for all three steps")
    ap.add_argument("--probe-iters", type=int, default=30)
    ap.add_argument("--export-s", type=float, default=20, help="time kept for saving and exporting")
    ap.add_argument("--preset", choices=("gpu", "none"), default="gpu", help="apply GPU_SETTINGS")
    ap.add_argument("--device", default="auto", help="train.device: auto, cuda or cpu")
    ap.add_argument("--model", default="rvrt.sr_small", help="model name or config for the export")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more recipe overrides")
    args = ap.parse_args(argv)

    start = time.monotonic()
    deadline = start + args.budget_s - args.export_s
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or args.out / "runs"
    sets = [f"{k}={v}" for k, v in GPU_SETTINGS.items()] if args.preset == "gpu" else []
    if args.roots:
        sets.append("data.train.roots=" + json.dumps([str(Path(r).resolve()) for r in args.roots]))
    sets += [f"train.device={args.device}", "train.tensorboard=false", "train.save_every=0", *args.set]

    # 1. probe
    probe_dir = work / "probe"
    n = args.probe_iters
    log_every = max(1, n // 6)
    probe = [f"train.iterations={n}", f"schedule.periods=[{n}]", "schedule.warmup=0", f"train.log_every={log_every}"]
    status, probe_wall = _train(args.recipe, probe_dir, sets + probe, deadline)
    rates = [m["it_per_s"] for m in _metrics(probe_dir)[1:] if m.get("it_per_s")]
    if status != 0 or not rates:
        print(f"gpu_train: the probe failed (exit {status}, {len(rates)} rates logged); see above", file=sys.stderr)
        return 1
    rate = statistics.median(rates)
    startup = max(0.0, probe_wall - n / rate)

    # 2. the run
    left = deadline - time.monotonic() - startup
    iters = int(left * rate * 0.9)
    if iters < 1:
        print(f"gpu_train: no time left for the run after the probe ({left:.0f} s)", file=sys.stderr)
        return 1
    run_dir = work / "run"
    warmup = max(1, iters // 40)
    run = [
        f"train.iterations={iters}",
        f"schedule.periods=[{iters}]",
        f"schedule.warmup={warmup}",
        f"train.log_every={max(1, iters // 100)}",
    ]
    status, run_wall = _train(args.recipe, run_dir, sets + run, deadline)
    metrics = _metrics(run_dir)
    done = metrics[-1]["step"] if metrics else 0

    # 3. export
    ckpt = _newest_checkpoint(run_dir)
    if ckpt is None:
        print(f"gpu_train: the run left no checkpoint (exit {status})", file=sys.stderr)
        return 1
    candidate = args.out / "candidate.safetensors"
    cmd = [sys.executable, "-m", "rvrt", "weights", "convert", str(ckpt), str(candidate)]
    cmd += ["-m", args.model, "--dtype", "fp16", "--overwrite", "-q"]
    export = subprocess.run(cmd)
    for name in ("metrics.jsonl", "recipe.toml"):
        if (run_dir / name).exists():
            (args.out / name).write_bytes((run_dir / name).read_bytes())

    loss = [m["loss"] for m in metrics[-10:] if "loss" in m]
    lines = [
        "# gpu_train",
        "",
        f"- device: {_environment(args.device)}",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; commit {git_commit()}",
        f"- command: `python {shlex.join(sys.argv)}`" if argv is None else f"- arguments: `{shlex.join(argv)}`",
        f"- recipe: {args.recipe}; overrides: `{' '.join(sets)}`",
        f"- probe: {n} iterations, {rate:.3f} it/s (median of {len(rates)} logs), start-up {startup:.0f} s, "
        f"wall {probe_wall:.0f} s",
        f"- run: {done} of {iters} iterations (exit {status}; 130, -15: stopped at the budget), wall {run_wall:.0f} s",
        f"- loss, mean of the last {len(loss)} logs: {statistics.fmean(loss):.5f}" if loss else "- loss: not logged",
        f"- candidate: {candidate.name} from {ckpt.name} (export exit {export.returncode})",
        f"- total wall time: {time.monotonic() - start:.0f} s of a {args.budget_s:.0f} s budget",
    ]
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    # a SIGTERM that came as the run was ending (-15) still left the checkpoint exported above
    return 0 if export.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
