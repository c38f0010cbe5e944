"""RVRT inference speed and memory: this package against the official algorithm, side by side.

Runs RVRT-001 (x4 video SR, 144 channels; random weights with non-zero offset heads, so the
deformable sampling is exercised; speed does not depend on the weight values) on clips of
``T`` frames of an ``H x W`` LR input, and reports frames per second, latency per frame, peak
device memory and peak host memory, for:

* ``rvrt``: this package (fused SDPA window attention, grid-sample GDA on CPU / Triton GDA on CUDA),
* ``official-algorithm``: the same network computed the way the official code computes it
  (im2col GDA with a per-frame loop, explicit attention math), see ``baselines.py``,

in float32 and, with ``--dtype bf16``, bfloat16 autocast (rvrt only). Both rows of one run use
the same inputs; the last column is the largest output difference from the rvrt float32 output.

Examples::

    python benchmarks/bench_model.py --device cpu --size 64x64 --frames 4 --repeat 2
    python benchmarks/bench_model.py --device cuda --size 180x320 --frames 16 30 100 --dtype fp32 bf16
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines import official_algorithm  # noqa: E402

import rvrt  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def build(model, device: str, weights=None) -> torch.nn.Module:
    """``model`` (a name or a :class:`rvrt.zoo.ModelSpec`) with ``weights`` (see :func:`rvrt.create_model`),
    or seeded random weights whose offset heads are not zero."""
    torch.manual_seed(0)
    model = rvrt.create_model(model, weights=weights)
    if weights is None:
        with torch.no_grad():  # the published init zeroes the offset heads; real weights do not
            for name in model.deform_align:
                torch.nn.init.normal_(model.deform_align[name].conv_offset[-1].weight, std=1e-3)
    return model.to(device).eval()


def clip(t: int, h: int, w: int, device: str) -> torch.Tensor:
    """Smooth moving content (so that flows and offsets are realistic), ``(1, T, 3, H, W)``."""
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    frames = [
        torch.stack([0.5 + 0.3 * torch.sin((xx + 1.5 * i) / (7 + c)) * torch.cos((yy - 0.8 * i) / 9) for c in range(3)])
        for i in range(t)
    ]
    return torch.stack(frames)[None].to(device)


def run_once(model, x, dtype, device):
    with torch.inference_mode(), torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32):
        y = model(x)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return y.float()


def measure(model, x, dtype, device, repeat):
    run_once(model, x, dtype, device)  # warm-up (allocator, autotuning)
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        y = run_once(model, x, dtype, device)
        times.append(time.perf_counter() - t0)
    peak_dev = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None
    peak_host = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return statistics.median(times), peak_dev, peak_host, y


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--model", default="rvrt.sr_bi_reds")
    ap.add_argument("--size", default="64x64", help="LR input HxW")
    ap.add_argument("--frames", type=int, nargs="+", default=[4])
    ap.add_argument("--dtype", nargs="+", default=["fp32"], choices=list(DTYPES))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-baseline", action="store_true", help="skip the official-algorithm rows")
    args = ap.parse_args(argv)
    h, w = (int(v) for v in args.size.lower().split("x"))
    model = build(args.model, args.device)
    threads = torch.get_num_threads()
    print(f"# {args.model}, LR {h}x{w}, {args.device} ({threads} threads), median of {args.repeat}\n")
    print(
        "| impl | dtype | frames | s per clip | frames/s | ms per frame | peak device MiB | peak host MiB | "
        "max abs diff vs rvrt fp32 |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for t in args.frames:
        x = clip(t, h, w, args.device)
        ref = None
        rows = [("rvrt", d) for d in args.dtype] + ([] if args.no_baseline else [("official-algorithm", "fp32")])
        for impl, dname in rows:
            dtype = DTYPES[dname]
            if impl == "official-algorithm":
                with official_algorithm():
                    sec, dev_mb, host_mb, y = measure(model, x, dtype, args.device, args.repeat)
            else:
                sec, dev_mb, host_mb, y = measure(model, x, dtype, args.device, args.repeat)
            if ref is None and impl == "rvrt" and dname == "fp32":
                ref = y
            diff = "-" if ref is None else f"{(y - ref).abs().max().item():.2e}"
            dev = "-" if dev_mb is None else f"{dev_mb:.0f}"
            print(
                f"| {impl} | {dname} | {t} | {sec:.3f} | {t / sec:.2f} | {1000 * sec / t:.1f} | {dev} | "
                f"{host_mb:.0f} | {diff} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
