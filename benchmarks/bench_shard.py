"""One video restored by one process against N processes under torchrun: wall time and agreement.

    python benchmarks/bench_shard.py --nproc 2 --segment-frames 5
    python benchmarks/bench_shard.py --nproc 8 --device cuda --input long.mp4    # on a GPU machine

Default input: the 21 frames of BasicVSR++'s demo_000 (320x180) from ../shared/data/real, with the
built-in model and default options (tile auto). The N-process run uses torchrun's default of one
thread per process on the CPU, the one-process run all cores, so on a CPU the outputs agree to
rounding (reported as the largest pixel difference), not bit for bit. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DEMO = "ckkelvinchan+BasicVSR_PlusPlus/data/demo_000"


def run(cmd: list[str], env: dict | None = None) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    root = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
    ap.add_argument("--input", type=Path, default=root / DEMO)
    ap.add_argument("--out", type=Path, default=Path("results/shard"))
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--segment-frames", type=int, default=250)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    from rvrt.data.frames import read_image

    args.out.mkdir(parents=True, exist_ok=True)
    common = ["--device", args.device, "--segment-frames", str(args.segment_frames), "--overwrite", "-q"]
    one, many = args.out / "one", args.out / f"x{args.nproc}"
    t1 = run([sys.executable, "-m", "rvrt", "restore", str(args.input), "-o", str(one), *common])
    tn = run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
              "-m", "rvrt", "restore", str(args.input), "-o", str(many), *common])  # fmt: skip
    names = sorted(p.name for p in one.glob("*.png"))
    diff = max(int(np.abs(read_image(one / n).astype(int) - read_image(many / n)).max()) for n in names)
    print("| processes | wall time (s) | speed-up | frames | largest difference (8-bit levels) |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| 1 | {t1:.1f} | 1.00 | {len(names)} | - |")
    print(f"| {args.nproc} | {tn:.1f} | {t1 / tn:.2f} | {len(list(many.glob('*.png')))} | {diff} |")


if __name__ == "__main__":
    main()
