"""ONNX Runtime (CPU) against PyTorch (CPU) on one official-size model, in the same run.

Exports the model (random weights of the official architecture unless ``--weights`` is given: the
speed does not depend on the values) at one tile, checks the outputs agree, then times both on the
same input with the same number of threads. Prints one table; record results in docs/ONNX.md
(say the machine, the threads and the versions).

    python benchmarks/bench_onnx.py                                 # rvrt.sr_bi_reds, 6 x 64x64
    python benchmarks/bench_onnx.py -m vrt.sr_bi_reds_6f --frames 6 --size 64x64 --threads 8
    python benchmarks/bench_onnx.py -m rvrt.sr_small --frames 4 --size 40x40 --repeats 1   # smoke test
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _time(fn, repeats: int) -> list[float]:
    fn()  # warm-up (ONNX Runtime plans its buffers on the first run)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default="rvrt.sr_bi_reds", help="registered model name (default rvrt.sr_bi_reds)")
    ap.add_argument("--weights", help="weights file (default: random weights of the architecture)")
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--size", default="64x64", help="HxW input pixels (default 64x64)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--opset", type=int, default=17)
    args = ap.parse_args()

    import onnxruntime as ort

    import rvrt
    from rvrt.api import resolve_spec
    from rvrt.export.onnx import export_onnx, load_onnx

    torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.lower().split("x"))
    spec = resolve_spec(args.model)
    net = rvrt.create_model(spec, weights=args.weights).eval() if args.weights else rvrt.create_model(spec).eval()
    x = torch.rand(1, args.frames, spec.in_channels, h, w, generator=torch.Generator().manual_seed(1))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        t0 = time.perf_counter()
        export_onnx(net, spec, path, frames=args.frames, height=h, width=w, opset=args.opset)
        export_s = time.perf_counter() - t0
        size_mb = path.stat().st_size / 2**20
        t0 = time.perf_counter()
        onnx_net = load_onnx(path)
        onnx_net.session  # noqa: B018 - made on first use; timed here (threads: torch.get_num_threads())
        session_s = time.perf_counter() - t0
        with torch.inference_mode():
            ref = net(x)
        err = (onnx_net(x) - ref).abs().max().item()
        with torch.inference_mode():
            t_torch = _time(lambda: net(x), args.repeats)
        t_ort = _time(lambda: onnx_net(x), args.repeats)

    cpu = platform.processor() or platform.machine()
    print(f"{spec.name}: tile {args.frames} x {h}x{w}, {args.threads} threads, {cpu}")
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, opset {args.opset}")
    print(f"export {export_s:.1f} s, file {size_mb:.1f} MB, session {session_s:.1f} s, max abs diff {err:.2e}")
    print("| runtime | median s per tile | frames/s |")
    print("|---|---|---|")
    for name, ts in (("PyTorch CPU", t_torch), ("ONNX Runtime CPU", t_ort)):
        med = statistics.median(ts)
        print(f"| {name} | {med:.2f} | {args.frames / med:.2f} |")


if __name__ == "__main__":
    main()
