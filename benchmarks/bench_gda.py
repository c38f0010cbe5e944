"""Speed, peak memory and accuracy of the guided deformable attention implementations.

Implementations:

* ``reference``: :func:`rvrt.ops.gda.reference.gda_reference` (plain PyTorch, two passes, no im2col).
* ``triton``: the fused kernels (CUDA only; the CPU interpreter is far too slow to time).
* ``im2col``: the official op's algorithm re-expressed in plain PyTorch (autograd for the
  backward): for every query frame and clip slot, an im2col buffer of bilinear samples of all
  ``2C`` key|value channels at every tap, ``(clip, 2C * taps, H * W)``, then per head a batched
  ``q . k`` matmul over the ``clip * taps`` samples, softmax and a matmul with the values.

Errors are measured against the reference run in float64 on the same inputs.

Examples::

    python benchmarks/bench_gda.py --device cpu --size small --repeat 3
    python benchmarks/bench_gda.py --device cuda --dtype bfloat16 --size lr --repeat 20
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout

from baselines import gda_im2col  # noqa: E402

from rvrt.ops.gda import guided_deformable_attention  # noqa: E402
from rvrt.ops.gda.reference import gda_reference  # noqa: E402

# RVRT-001 (video SR): proj channels 288 = 12 heads x 24, 12 deformable groups, 3x3, clip 2
SIZES = {"tiny": (16, 24), "small": (32, 32), "patch": (64, 64), "lr": (180, 320)}


@dataclass(frozen=True)
class Problem:
    n: int = 1
    clip: int = 2
    c: int = 288
    heads: int = 12
    groups: int = 12
    h: int = 64
    w: int = 64
    kernel: tuple[int, int] = (3, 3)

    @property
    def kwargs(self) -> dict:
        return dict(
            kernel_size=self.kernel,
            attention_heads=self.heads,
            deformable_groups=self.groups,
            clip_size=self.clip,
        )


def make_inputs(p: Problem, device: str, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    b = p.n * p.clip
    taps = p.kernel[0] * p.kernel[1]
    q = torch.randn(b, p.c, p.h, p.w, generator=g)
    kv = torch.randn(p.n, p.clip, 2 * p.c, p.h, p.w, generator=g)
    # flow-like offsets: a smooth shift per frame plus residuals of about 1 px
    off = torch.randn(b, p.clip * p.groups * taps * 2, p.h, p.w, generator=g) + 2.0 * torch.randn(
        b, 1, 1, 1, generator=g
    )
    return tuple(x.to(device=device, dtype=dtype) for x in (q, kv, off))


def _triton(q, kv, offset, **kwargs):
    return guided_deformable_attention(q, kv, offset, **kwargs, backend="triton")


IMPLS: dict[str, Callable] = {"reference": gda_reference, "triton": _triton, "im2col": gda_im2col}


try:
    _LIBC = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc
    _LIBC = None


class PeakMemory:
    """Peak memory above the level at entry: CUDA allocator stats, else the process's peak RSS."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")

    @staticmethod
    def _status(key: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise OSError(f"{key} not in /proc/self/status")

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            if _LIBC is not None:  # hand freed heap pages back, or reused pages would hide the peak
                _LIBC.malloc_trim(0)
            Path("/proc/self/clear_refs").write_text("5")  # resets the peak RSS (VmHWM) to the current RSS
            self.base = self._status("VmRSS")
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
        else:
            self.peak = self._status("VmHWM") - self.base


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_ms(fn: Callable[[], object], device: str, repeat: int, warmup: int = 1) -> float:
    """Median milliseconds of ``repeat`` calls after ``warmup`` untimed ones (compilation, autotuning,
    allocator): CUDA events on a CUDA device (the kernels' time, not the host's), else the host clock."""
    for _ in range(warmup):
        fn()
    times = []
    cuda = device.startswith("cuda")
    for _ in range(repeat):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    _sync(device)
    return statistics.median(times)


def triton_skip_reason(device: str, dtype: torch.dtype) -> str | None:
    """Why the Triton row cannot run on ``device`` in ``dtype`` (None: it can)."""
    if not device.startswith("cuda"):
        return "needs CUDA"
    try:
        from rvrt.ops.gda import triton_status

        probe = make_inputs(Problem(c=4, heads=2, groups=2, h=2, w=2), device, dtype)
        return triton_status(*probe)
    except ImportError as err:
        return f"triton cannot be imported ({err})"


def bench_one(name: str, p: Problem, device: str, dtype: torch.dtype, repeat: int, truth) -> dict:
    fn = IMPLS[name]
    q, kv, off = make_inputs(p, device, dtype)
    grad_out = truth["grad_out"].to(dtype)

    def fwd():
        with torch.no_grad():
            return fn(q, kv, off, **p.kwargs)

    leaves = [x.detach().clone().requires_grad_() for x in (q, kv, off)]

    def fwd_bwd():
        for x in leaves:
            x.grad = None
        fn(*leaves, **p.kwargs).backward(grad_out)

    row = {"impl": name}
    row["fwd_ms"] = time_ms(fwd, device, repeat)
    with PeakMemory(device) as mem:
        out = fwd()
    row["fwd_mib"] = mem.peak / 2**20
    row["fwdbwd_ms"] = time_ms(fwd_bwd, device, repeat)
    with PeakMemory(device) as mem:
        fwd_bwd()
    row["fwdbwd_mib"] = mem.peak / 2**20
    row["err_out"] = (out.double() - truth["out"]).abs().max().item()
    row["err_grad"] = max(
        ((x.grad.double() - g).abs().max() / g.abs().max()).item() for x, g in zip(leaves, truth["grads"], strict=True)
    )
    return row


def float64_truth(p: Problem, device: str, dtype: torch.dtype) -> dict:
    q, kv, off = (x.double() for x in make_inputs(p, device, dtype))  # the same rounded inputs
    leaves = [x.requires_grad_() for x in (q, kv, off)]
    out = gda_reference(*leaves, **p.kwargs)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grad_out = grad_out.to(device).to(dtype).double()
    grads = torch.autograd.grad(out, leaves, grad_out)
    return {"out": out.detach(), "grad_out": grad_out, "grads": grads}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--size", default="small", help=f"one of {sorted(SIZES)} or HxW, e.g. 96x128")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--impl", nargs="+", default=list(IMPLS), choices=list(IMPLS))
    ap.add_argument("--clips", type=int, default=1, help="N clip pairs (B = 2N query frames)")
    args = ap.parse_args(argv)

    h, w = SIZES[args.size] if args.size in SIZES else map(int, args.size.lower().split("x"))
    p = Problem(n=args.clips, h=h, w=w)
    dtype = getattr(torch, args.dtype)
    print(
        f"# GDA, B={p.n * p.clip} C={p.c} heads={p.heads} groups={p.groups} {p.kernel[0]}x{p.kernel[1]} "
        f"clip={p.clip} {h}x{w}, {args.dtype} on {args.device}, median of {args.repeat}\n"
    )
    truth = float64_truth(p, args.device, dtype)
    cols = [
        "impl",
        "fwd ms",
        "fwd peak MiB",
        "fwd+bwd ms",
        "fwd+bwd peak MiB",
        "max abs err out",
        "max rel err grads",
    ]
    print("| " + " | ".join(cols) + " |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.impl:
        if name == "triton":
            reason = triton_skip_reason(args.device, dtype)
            if reason:
                print(f"| triton | skipped: {reason} | | | | | |")
                continue
        r = bench_one(name, p, args.device, dtype, args.repeat, truth)
        print(
            f"| {r['impl']} | {r['fwd_ms']:.2f} | {r['fwd_mib']:.1f} | {r['fwdbwd_ms']:.2f} | "
            f"{r['fwdbwd_mib']:.1f} | {r['err_out']:.2e} | {r['err_grad']:.2e} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
