"""Real clips with default options: wall time, peak memory, tile chosen, frames out; and ``--tile auto``
against fixed tiles on the same frames.

    python benchmarks/bench_real_video.py --data ../shared/data/real --out results/real_video
    python benchmarks/bench_real_video.py --data ../shared/data/real --sweep 60     # tiles on 60 frames

Each run is ``rvrt restore IN -o OUT.mp4`` in a fresh process (as a user runs it); peak memory is
the child's peak resident set size. Inputs: the 21 frames of BasicVSR++'s demo_000 (320x180), and
sam2's 01_dog.mp4 (1280x720, 289 frames) reduced to 320x180 with MATLAB bicubic first. Prints
markdown tables for docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = "ckkelvinchan+BasicVSR_PlusPlus/data/demo_000"
DOG = "facebookresearch+sam2/demo/data/gallery/01_dog.mp4"


def dog_320x180(data: Path, work: Path, frames: int | None = None) -> Path:
    """01_dog.mp4 at 320x180 (MATLAB bicubic x1/4), as a lossless-ish H.264 file (crf 10)."""
    import itertools

    from rvrt.data.degradations import imresize
    from rvrt.media import open_reader, open_writer, probe

    dest = work / (f"dog_320x180_{frames}.mp4" if frames else "dog_320x180.mp4")
    if dest.exists():
        return dest
    src = data / DOG
    info = probe(src)
    with open_reader(src) as reader, open_writer(dest, like=info, width=320, height=180, crf=10) as writer:
        for f in itertools.islice(reader, frames):
            writer.write(imresize(f.data, 0.25))
    return dest


def run(input: Path, output: Path, *extra: str) -> dict:
    """``rvrt restore`` in a fresh process: seconds, peak RSS (MB), frames, tile, frames/s."""
    import tempfile

    cmd = [sys.executable, "-m", "rvrt", "restore", str(input), "-o", str(output), "--overwrite", *extra]
    with tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak resident memory
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{text[-3000:]}")
    line = text.strip().splitlines()[-1]
    frames = int(re.search(r"restore: (\d+) frames", line).group(1))
    tile = re.search(r"tile (.*?) \(overlap", line).group(1)
    return dict(seconds=seconds, peak_mb=usage.ru_maxrss / 1024, frames=frames, tile=tile, fps=frames / seconds,
                line=line)  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "real")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "real_video")
    p.add_argument("--sweep", type=int, default=0, metavar="N", help="also compare tiles on the first N dog frames")
    p.add_argument("--skip-full", action="store_true", help="only the sweep")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs", file=sys.stderr)
    if not args.skip_full:
        rows = []
        for name, src in (("demo_000 (21 frames, 320x180 PNG)", args.data / DEMO),
                          ("01_dog (289 frames, 320x180 mp4)", dog_320x180(args.data, args.out))):  # fmt: skip
            r = run(src, args.out / (src.stem + "_x4.mp4"))
            rows.append((name, r))
            print(f"{name}: {r['line']}", file=sys.stderr)
        print("| input | frames out | wall time | frames/s | peak RSS | tile chosen |")
        print("|---|---:|---:|---:|---:|---|")
        for name, r in rows:
            print(f"| {name} | {r['frames']} | {r['seconds']:.0f} s | {r['fps']:.3f} | {r['peak_mb']:.0f} MB | "
                  f"{r['tile']} |")  # fmt: skip
    if args.sweep:
        src = dog_320x180(args.data, args.out, args.sweep)
        # auto first and last: the two runs bracket whatever drifts on the machine meanwhile
        tiles = [None, ("10", "0", "0"), ("20", "0", "0"), ("30", "0", "0"), ("45", "0", "0"), ("30", "96", "96"),
                 ("30", "128", "128"), None]  # fmt: skip
        rows = []
        for tile in tiles:
            extra = ["--tile", *tile] if tile else []
            r = run(src, args.out / "sweep.mp4", *extra)
            rows.append(("auto" if tile is None else " ".join(tile), r))
            print(f"tile {rows[-1][0]}: {r['line']}", file=sys.stderr)
        best = max(r["fps"] for name, r in rows if name != "auto")
        print(f"\n| tile (first {args.sweep} frames of 01_dog, 320x180) | frames/s | vs best fixed | peak RSS |")
        print("|---|---:|---:|---:|")
        for name, r in rows:
            print(f"| {name}{' (' + r['tile'] + ')' if name == 'auto' else ''} | {r['fps']:.3f} | "
                  f"{r['fps'] / best:.2f} | {r['peak_mb']:.0f} MB |")  # fmt: skip


if __name__ == "__main__":
    main()
