"""How far a model is from its FLOP floor on this CPU, where the rest of the time goes, and bf16.

The floor of a model call is its floating-point work (counted with ``torch.utils.flop_counter``:
convolutions, matrix products and, added here, the CPU's fused attention kernel) divided by the
best rate this machine reaches on one large float32 matrix product (2048^3, ``--threads``
threads). The ratio ``time / floor`` says how much of the time is not spent computing at that
rate. The op breakdown (torch profiler, self time per op kind) then says where the rest goes:
for each kind, its time, its counted work, the rate it reached and the seconds above its floor.

Rows, all from one run on the same input and weights:

* rvrt float32 (the reference precision), rvrt bfloat16 autocast, and the official algorithm in
  float32 (``baselines.py``: the official computation reproduced in PyTorch);
* for bfloat16 the floor is given against the float32 peak (the issue's definition) and, as a
  second figure, against this CPU's own bfloat16 matrix-product peak.

Examples::

    python benchmarks/bench_cpu_floor.py --model rvrt.sr_small --frames 6 --size 180x320
    python benchmarks/bench_cpu_floor.py --model rvrt.sr_bi_reds --frames 4 --size 180x320 --repeat 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines import official_algorithm  # noqa: E402
from bench_model import build, clip  # noqa: E402

import rvrt  # noqa: E402
from rvrt import compute  # noqa: E402

KINDS = {  # op kind -> profiler op names (self time)
    "convolution": ("aten::mkldnn_convolution", "aten::_convolution", "aten::convolution", "aten::conv2d"),
    "matrix products": ("aten::addmm", "aten::mm", "aten::bmm", "aten::matmul", "aten::baddbmm"),
    "attention (SDPA)": ("aten::_scaled_dot_product_flash_attention_for_cpu",),
    "bilinear sampling": ("aten::grid_sampler_2d",),
    "copies and concatenation": ("aten::copy_", "aten::cat", "aten::clone", "aten::contiguous", "aten::fill_"),
}
FLOP_KINDS = {  # flop counter op -> kind
    "convolution": "convolution",
    "addmm": "matrix products",
    "mm": "matrix products",
    "bmm": "matrix products",
    "baddbmm": "matrix products",
    "_scaled_dot_product_flash_attention_for_cpu": "attention (SDPA)",
}


def _cpu_attention_flops(q, k, v, *args, out_shape=None, **kwargs) -> int:
    """The CPU's fused attention kernel, counted like the CUDA ones (``torch.utils.flop_counter``
    has no formula for it, so its work would otherwise count as zero)."""
    return sdpa_flop_count(q, k, v)


def count_flops(model, x) -> tuple[int, dict[str, int]]:
    """Floating-point operations of one call, in total and per op kind."""
    custom = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops}
    with torch.inference_mode(), FlopCounterMode(display=False, custom_mapping=custom) as fc:
        model(x)
    per_op = fc.get_flop_counts()["Global"]
    kinds: dict[str, int] = {}
    for op, n in per_op.items():
        name = str(op).split(".")[-1] if "." in str(op) else str(op)
        name = name.removeprefix("aten.")
        kind = FLOP_KINDS.get(name, FLOP_KINDS.get(str(op).replace("aten.", ""), "other"))
        kinds[kind] = kinds.get(kind, 0) + n
    return fc.get_total_flops(), kinds


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeat: int = 7) -> float:
    """Best FLOP/s of an ``n^3`` matrix product in ``dtype`` on this CPU."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = min(_seconds(lambda: a @ b) for _ in range(repeat))
    return 2 * n**3 / best


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(model, x, dtype) -> torch.Tensor:
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        return model(x).float()


def breakdown(model, x, dtype) -> dict[str, float]:
    """Self CPU seconds per op kind of one call (torch profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run(model, x, dtype)
    out = dict.fromkeys([*KINDS, "other"], 0.0)
    for e in prof.key_averages():
        kind = next((k for k, names in KINDS.items() if e.key in names), "other")
        out[kind] += e.self_cpu_time_total / 1e6
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="rvrt.sr_small")
    ap.add_argument("--weights", default="default", help="weights of the model ('default'; random for official names)")
    ap.add_argument("--size", default="180x320", help="LR input HxW")
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-baseline", action="store_true", help="skip the official-algorithm row")
    ap.add_argument("--no-profile", action="store_true", help="skip the op breakdown")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.lower().split("x"))
    spec = rvrt.get_spec(args.model)
    model = build(spec.name, "cpu", weights=args.weights if spec.weights and spec.weights.bundled else None)
    x = clip(args.frames, h, w, "cpu")
    t = args.frames

    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
    flops, kinds = count_flops(model, x)
    floor32 = flops / peak32
    print(f"# {spec.name}, {t} x {h}x{w} LR, CPU, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(
        f"# matrix-product peak: fp32 {peak32 / 1e9:.0f} GFLOP/s, bf16 {peak16 / 1e9:.0f} GFLOP/s "
        f"(native bf16: {compute.native_bf16(torch.device('cpu'))}); work {flops / 1e9 / t:.1f} GFLOP per frame; "
        f"fp32 floor {floor32 / t:.2f} s per frame\n"
    )
    print("| impl | dtype | s per frame | GFLOP/s | x fp32 floor | x own-dtype floor | max abs diff vs fp32 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    rows = [("rvrt", torch.float32), ("rvrt", torch.bfloat16)]
    if not args.no_baseline:
        rows.append(("official algorithm", torch.float32))
    ref = None
    for impl, dtype in rows:
        ctx = official_algorithm() if impl != "rvrt" else _null()
        with ctx:
            y = run(model, x, dtype)  # warm-up
            sec = statistics.median(_seconds(lambda d=dtype: run(model, x, d)) for _ in range(args.repeat))
        ref = y if ref is None else ref
        own = flops / (peak16 if dtype == torch.bfloat16 else peak32)
        name = {torch.float32: "fp32", torch.bfloat16: "bf16"}[dtype]
        print(
            f"| {impl} | {name} | {sec / t:.3f} | {flops / sec / 1e9:.0f} | {sec / floor32:.2f} | {sec / own:.2f} | "
            f"{(y - ref).abs().max().item():.1e} |",
            flush=True,
        )
    if args.no_profile:
        return 0
    for dtype in (torch.float32, torch.bfloat16):
        name = {torch.float32: "fp32", torch.bfloat16: "bf16"}[dtype]
        peak = peak16 if dtype == torch.bfloat16 else peak32
        times = breakdown(model, x, dtype)
        total = sum(times.values())
        print(f"\nWhere the time goes, rvrt {name} (torch profiler, self time; floors at {peak / 1e9:.0f} GFLOP/s):\n")
        print(
            "| op kind | s per frame | share | GFLOP per frame | GFLOP/s | floor s per frame "
            "| above floor, s per frame |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for kind, sec in sorted(times.items(), key=lambda kv: -kv[1]):
            work = kinds.get(kind, 0)
            rate = f"{work / sec / 1e9:.0f}" if work and sec else "-"
            print(
                f"| {kind} | {sec / t:.3f} | {100 * sec / total:.0f}% | {work / 1e9 / t:.1f} | {rate} | "
                f"{work / peak / t:.3f} | {(sec - work / peak) / t:.3f} |"
            )
    return 0


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    raise SystemExit(main())
