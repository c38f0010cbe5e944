"""Host memory of `rvrt restore` against video length: it must not grow with the number of frames.

Makes synthetic videos of several lengths, restores each in a fresh process and reports the
peak resident memory (the summary line of `rvrt restore`) and the throughput.

    python benchmarks/bench_memory.py --frames 100 1000 --size 64x48 [--model M --weights W]

Without --model/--weights a small random RVRT x4 (embed 12) is used: the point is the memory
behaviour of the streaming pipeline, which does not depend on the weights.

``--trace N`` instead restores N synthetic frames in this process (no video decoding or
encoding) and prints the current and the peak resident memory every 50 frames: the steady
state, which a peak figure alone cannot show.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

SMALL = dict(upscale=4, embed_dims=[12, 12, 12], num_heads=[2, 2, 2], attention_heads=2, deformable_groups=2)


def make_video(path: Path, frames: int, width: int, height: int) -> Path:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "18"}
        for t in range(frames):
            img = np.dstack([128 + 100 * np.sin((xx + 2 * t) / 7), 128 + 90 * np.cos((yy - t) / 5), 60 + xx + yy])
            frame = av.VideoFrame.from_ndarray(img.clip(0, 255).astype(np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--size", default="64x48", help="input WxH")
    ap.add_argument("--tile", default="10 0 0", help="tile T H W passed to rvrt restore")
    ap.add_argument("--model")
    ap.add_argument("--weights")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--trace", type=int, metavar="N", help="trace resident memory over N frames in-process")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    if args.trace:
        trace(args.trace, width, height, args.tile)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_args = []
        if args.model:
            model_args += ["-m", args.model]
        if args.weights:
            model_args += ["--weights", args.weights]
        if not model_args:
            import torch

            import rvrt
            from rvrt.checkpoint import save_safetensors

            (tmp / "small.json").write_text(json.dumps(SMALL))
            torch.manual_seed(0)
            net = rvrt.create_model(tmp / "small.json")
            save_safetensors(net, tmp / "small.safetensors", arch="rvrt", config=net.config.to_kwargs(), name="small")
            model_args = ["--weights", str(tmp / "small.safetensors")]
        for n in args.frames:
            src = make_video(tmp / f"in_{n}.mp4", n, width, height)
            cmd = [
                sys.executable,
                "-m",
                "rvrt",
                "restore",
                str(src),
                "-o",
                str(tmp / f"out_{n}.mp4"),
                "--device",
                args.device,
                "--tile",
                *args.tile.split(),
                *model_args,
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                sys.exit(proc.stderr)
            line = proc.stderr.strip().splitlines()[-1]
            mem = float(re.search(r"peak host memory (\d+) MB", line).group(1))
            fps = float(re.search(r"\(([\d.]+) frames/s\)", line).group(1))
            rows.append((n, mem, fps))
            print(f"{n} frames: {line}", file=sys.stderr)
    print(f"| frames ({width}x{height} -> x4) | peak host RSS (MB) | fps |")
    print("|---|---|---|")
    for n, mem, fps in rows:
        print(f"| {n} | {mem:.0f} | {fps:.2f} |")


def trace(frames: int, width: int, height: int, tile: str) -> None:
    import resource

    import torch

    import rvrt
    from rvrt.inference.jobs import restore_iter

    torch.set_num_threads(1)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "small.json").write_text(json.dumps(SMALL))
        net = rvrt.create_model(Path(tmp) / "small.json")

    def source():
        rng = np.random.default_rng(0)
        for _ in range(frames):
            yield rng.integers(0, 256, (height, width, 3), dtype=np.uint8)

    def rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20

    print(f"| frame ({width}x{height} -> x4) | resident MB | peak resident MB |")
    print("|---:|---:|---:|")
    for i, _ in restore_iter(source(), model=net, device="cpu", tile=tuple(int(v) for v in tile.split())):
        if i % 50 == 0 or i == frames - 1:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"| {i} | {rss_mb():.0f} | {peak:.0f} |", flush=True)


if __name__ == "__main__":
    main()
