"""Measure the peak memory of model calls and compare it with the memory model behind ``--tile auto``.

Each point runs in a fresh process: build the model (random weights: they do not change memory),
then one call on a random ``(1, T, C, H, W)`` input under ``torch.inference_mode`` (and autocast
for bf16/fp16), and report the growth of the resident set size (``ru_maxrss`` after the call minus
the resident size before it) on the CPU, or ``torch.cuda.max_memory_allocated`` on CUDA. That is
what :mod:`rvrt.inference.memory` predicts.

    python benchmarks/bench_memory_model.py --grid rvrt --out results/memory_rvrt.jsonl
    python benchmarks/bench_memory_model.py --grid all --quick           # a few points per family
    python benchmarks/bench_memory_model.py --fit results/memory_*.jsonl  # fit the coefficients (needs scipy)

Prints a markdown table: measured MB, predicted MB, predicted / measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# families of configurations: (arch, constructor kwargs) x sizes; widths cover the registered models
_HEADS = {16: 2, 24: 2, 32: 2, 48: 4, 64: 4, 96: 6, 120: 6, 144: 6, 180: 6}


def _rvrt(dim: int, upscale: int = 4) -> dict:
    kw = dict(
        upscale=upscale,
        embed_dims=[dim] * 3,
        num_heads=[_HEADS[dim]] * 3,
        attention_heads=_HEADS[dim],
        deformable_groups=_HEADS[dim],
    )
    if upscale == 1:
        kw["inputconv_groups"] = [1, 1, 1, 1, 1, 1]
    return kw


def _light(dim: int) -> dict:
    return dict(embed_dims=[dim] * 3, num_heads=[_HEADS[dim]] * 3, attention_heads=_HEADS[dim])


def _vrt(dim: int, dim8: int, upscale: int = 4, frames: int = 6) -> dict:
    kw = dict(
        upscale=upscale,
        img_size=[frames, 64, 64],
        window_size=[frames, 8, 8],
        depths=[1] * 7 + [1, 1],  # depth does not change the peak: layers free their activations
        indep_reconsts=[8],
        embed_dims=[dim] * 7 + [dim8] * 2,
        num_heads=[_HEADS[dim]] * 9,
        pa_frames=2,
        deformable_groups=_HEADS[dim] * 2,
    )
    if upscale == 1:
        kw["img_size"] = [frames, 192, 192]
    return kw


def _vfi(dim: int) -> dict:
    return dict(
        upscale=1,
        out_chans=3,
        img_size=[4, 192, 192],
        window_size=[4, 8, 8],
        depths=[1] * 7 + [1],
        indep_reconsts=[],
        embed_dims=[dim] * 7 + [dim],
        num_heads=[_HEADS[dim]] * 8,
        pa_frames=0,
    )


def grid(name: str, quick: bool) -> list[dict]:
    pts = []
    if name in ("rvrt", "all"):
        dims = (32,) if quick else (16, 48, 96)
        sizes = ((64, 96),) if quick else ((64, 64), (128, 96), (180, 320))
        frames = (4,) if quick else (2, 6, 12)
        for d in dims:
            for h, w in sizes:
                for t in frames:
                    pts.append(dict(arch="rvrt", kwargs=_rvrt(d), t=t, h=h, w=w, dtype="fp32"))
        if not quick:
            for h, w, t in ((128, 96, 6), (180, 320, 6)):
                pts.append(dict(arch="rvrt", kwargs=_rvrt(48), t=t, h=h, w=w, dtype="bf16"))
    if name in ("long", "all") and not quick:  # long windows, where the planner's choices are made
        for d, (h, w), t in ((16, (128, 96), 30), (48, (128, 96), 30), (96, (128, 96), 24), (16, (180, 320), 24),
                             (48, (180, 320), 20), (32, (180, 320), 30)):  # fmt: skip
            pts.append(dict(arch="rvrt", kwargs=_rvrt(d), t=t, h=h, w=w, dtype="fp32"))
    if name in ("rvrt1", "all"):
        dims = (32,) if quick else (16, 48)
        sizes = ((160, 160),) if quick else ((160, 160), (256, 384))
        frames = (4,) if quick else (2, 8)
        for d in dims:
            for h, w in sizes:
                for t in frames:
                    pts.append(dict(arch="rvrt", kwargs=_rvrt(d, upscale=1), t=t, h=h, w=w, dtype="fp32"))
    if name in ("light", "all"):
        dims = (24,) if quick else (24, 48)
        sizes = ((64, 96),) if quick else ((64, 64), (180, 320))
        frames = (4,) if quick else (2, 8)
        for d in dims:
            for h, w in sizes:
                for t in frames:
                    pts.append(dict(arch="rvrt_light", kwargs=_light(d), t=t, h=h, w=w, dtype="fp32"))
    if name in ("vrt", "all"):
        sets = [(16, 24)] if quick else [(16, 24), (48, 64), (120, 180)]
        sizes = ((64, 64),) if quick else ((64, 64), (128, 128))
        frames = (6,) if quick else (6, 12)
        for d, d8 in sets:
            for h, w in sizes:
                for t in frames:
                    pts.append(dict(arch="vrt", kwargs=_vrt(d, d8), t=t, h=h, w=w, dtype="fp32"))
    if name in ("vrt_big", "all") and not quick:  # VRT at the sizes of its official tiles
        for d, d8 in ((48, 64), (120, 180)):
            for h, w in ((192, 192), (256, 256)):
                for t in (6, 12):
                    pts.append(dict(arch="vrt", kwargs=_vrt(d, d8), t=t, h=h, w=w, dtype="fp32"))
    if name in ("vfi", "all"):
        dims = (16,) if quick else (16, 96)
        sizes = ((64, 64),) if quick else ((64, 64), (192, 192), (256, 448))
        for d in dims:
            for h, w in sizes:
                pts.append(dict(arch="vrt", kwargs=_vfi(d), t=4, h=h, w=w, dtype="fp32"))
    return pts


def child(point: dict, device: str, threads: int) -> dict:
    import torch

    import rvrt
    from rvrt.compute import host_memory_mb, peak_host_memory_mb, resolve_dtype
    from rvrt.zoo import ARCHITECTURES

    torch.set_num_threads(threads)
    arch = ARCHITECTURES[point["arch"]]
    model = arch.model_class(arch.config_class.from_kwargs(**point["kwargs"])).eval().to(device)
    cin = 4 if point["kwargs"].get("nonblind_denoising") else 3
    x = torch.rand(1, point["t"], cin, point["h"], point["w"], device=device)
    dt = resolve_dtype(point["dtype"])
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = host_memory_mb() * 2**20
    t0 = time.perf_counter()
    with torch.inference_mode(), torch.autocast(dev.type, dtype=dt, enabled=dt != torch.float32):
        model(x)
    seconds = time.perf_counter() - t0
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = peak_host_memory_mb() * 2**20 - base
    del rvrt
    thp = os.environ.get("THP_MEM_ALLOC_ENABLE", "") not in ("", "0")
    return dict(point, device=dev.type, measured=int(peak), seconds=round(seconds, 2), thp=thp)


def predict(point: dict, device: str) -> int | None:
    try:
        import torch

        from rvrt.inference.memory import model_peak_bytes
        from rvrt.zoo import ARCHITECTURES
    except ImportError:
        return None
    arch = ARCHITECTURES[point["arch"]]
    cfg = arch.config_class.from_kwargs(**point["kwargs"])
    from rvrt.compute import resolve_dtype

    # predicted for the allocator the measurement ran with (the rvrt command's, unless recorded otherwise)
    os.environ["THP_MEM_ALLOC_ENABLE"] = "1" if point.get("thp", True) else "0"
    return model_peak_bytes(
        point["arch"], cfg, point["t"], point["h"], point["w"], dtype=resolve_dtype(point["dtype"]),
        device=torch.device(device),
    )  # fmt: skip


def run_point(point: dict, device: str, threads: int, src: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps(point), "--device", device, "--threads", str(threads)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]))
    env.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # as the rvrt command sets it (see rvrt.cli)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"measurement failed: {point}\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def fit(rows: list[dict]) -> None:
    """Fit the coefficients of rvrt.inference.memory on measurements (relative error, non-negative)."""
    import numpy as np
    from scipy.optimize import least_squares

    from rvrt.inference import memory
    from rvrt.zoo import ARCHITECTURES

    def config(r):
        a = ARCHITECTURES[r["arch"]]
        return a.config_class.from_kwargs(**r["kwargs"])

    clip = [r for r in rows if r["arch"] in ("rvrt", "rvrt_light") and r["dtype"] == "fp32"]
    names = list(memory.CLIP_RECURRENT)

    def residual(theta):
        memory.CLIP_RECURRENT.update(zip(names, theta, strict=True))
        return [memory._clip_recurrent(config(r), r["t"], r["h"], r["w"]) / r["measured"] - 1 for r in clip]

    if clip:
        sol = least_squares(residual, [memory.CLIP_RECURRENT[n] for n in names], bounds=(0, np.inf))
        print("CLIP_RECURRENT =", {n: round(float(v), 3) for n, v in zip(names, sol.x, strict=True)})
    for name, vfi in (("VRT_COEFFICIENTS", False), ("VFI_COEFFICIENTS", True)):
        vrt = [r for r in rows if r["arch"] == "vrt" and (r["kwargs"].get("pa_frames", 2) == 0) == vfi]
        if not vrt:
            continue
        from scipy.optimize import nnls

        x = np.array([memory.vrt_terms(config(r), r["t"], r["h"], r["w"]) for r in vrt])
        y = np.array([r["measured"] for r in vrt], dtype=float)
        coef, _ = nnls(x / y[:, None], np.ones(len(y)))
        worst = float(np.max(np.abs(x @ coef / y - 1)))
        print(f"{name} =", tuple(round(float(c), 3) for c in coef), f"(worst error {worst:.0%})")


def table(rows: list[dict]) -> str:
    lines = [
        "| arch | config | T x H x W | dtype | measured MB | predicted MB | predicted / measured | s |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        kw = r["kwargs"]
        cfg = f"C={kw['embed_dims'][0]}" + (f", x{kw['upscale']}" if "upscale" in kw else "")
        if kw.get("pa_frames") == 0:
            cfg += ", vfi"
        pred = r.get("predicted")
        ratio = f"{pred / r['measured']:.2f}" if pred and r["measured"] > 0 else "-"
        lines.append(
            f"| {r['arch']} | {cfg} | {r['t']}x{r['h']}x{r['w']} | {r['dtype']} | {r['measured'] / 2**20:.0f} | "
            f"{pred / 2**20 if pred else float('nan'):.0f} | {ratio} | {r['seconds']} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", default="all", choices=("all", "rvrt", "long", "rvrt1", "light", "vrt", "vrt_big", "vfi"))
    p.add_argument("--quick", action="store_true", help="a few small points per family")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, help="append each measurement to this JSON-lines file")
    p.add_argument("--table", nargs="*", type=Path, help="print the table of earlier JSON-lines results")
    p.add_argument("--fit", nargs="*", type=Path, help="fit the memory model's coefficients to JSON-lines results")
    p.add_argument("--src", type=Path, default=ROOT / "src", help="rvrt sources to measure (default: this checkout)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child), args.device, args.threads)))
        return
    if args.fit:
        fit([json.loads(line) for f in args.fit for line in f.read_text().splitlines() if line.strip()])
        return
    if args.table:
        rows = [json.loads(line) for f in args.table for line in f.read_text().splitlines() if line.strip()]
        for r in rows:
            r["predicted"] = predict(r, r.get("device", "cpu"))
        print(table(rows))
        return
    rows = []
    for point in grid(args.grid, args.quick):
        r = run_point(point, args.device, args.threads, args.src)
        r["predicted"] = predict(r, args.device)
        rows.append(r)
        print(f"{r['arch']} {r['t']}x{r['h']}x{r['w']} {r['dtype']}: {r['measured'] / 2**20:.0f} MB", file=sys.stderr)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with args.out.open("a") as f:
                f.write(json.dumps({k: v for k, v in r.items() if k != "predicted"}) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
