"""What reduced precision and tiling change in the output, on real frames.

Restores one LR sequence (a folder of frames) in several ways and compares each result with the
float32 whole-clip result (largest absolute difference, and mean absolute difference in 8-bit
levels, after rounding to 8 bits) and, with ``--gt``, with the ground truth (PSNR on Y):

* float32, whole frames and all frames at once (the reference),
* bfloat16 / float16 autocast, whole frames,
* float32 in spatial tiles (``--tile-size``/``--tile-overlap``) and in temporal tiles.

    python benchmarks/bench_precision.py --lq Vid4/BIx4/calendar --gt Vid4/GT/calendar --frames 12

Default model: the built-in ``rvrt.sr_small`` (``--model``/``--weights`` for others).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from rvrt.data.frames import find_sequences, read_image
from rvrt.inference.jobs import restore_iter
from rvrt.metrics import psnr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lq", required=True, help="folder of LR frames")
    ap.add_argument("--gt", help="folder of ground-truth frames (same names)")
    ap.add_argument("--frames", type=int, default=12, help="first N frames")
    ap.add_argument("--model")
    ap.add_argument("--weights", default="default")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tile-size", type=int, default=48, help="spatial tile (LR pixels)")
    ap.add_argument("--tile-overlap", type=int, default=16, help="spatial tile overlap (LR pixels)")
    ap.add_argument("--temporal", type=int, nargs=2, default=(6, 2), metavar=("FRAMES", "OVERLAP"))
    ap.add_argument("--dtype", nargs="+", default=["bf16", "fp16"], choices=["bf16", "fp16"])
    ap.add_argument("--no-tiles", action="store_true", help="precision rows only")
    args = ap.parse_args()
    torch.manual_seed(0)

    (lq_paths,) = find_sequences(args.lq).values()
    lq_paths = lq_paths[: args.frames]
    lq = [read_image(p) for p in lq_paths]
    gt = [read_image(p) for p in sorted(find_sequences(args.gt).values())[0][: args.frames]] if args.gt else None
    h, w = lq[0].shape[:2]
    ts, to = args.tile_size, args.tile_overlap
    t_frames, t_overlap = args.temporal
    runs = [("fp32, whole", "fp32", (0, 0, 0), (0, 0, 0))]
    runs += [(f"{d}, whole", d, (0, 0, 0), (0, 0, 0)) for d in args.dtype]
    runs += (
        []
        if args.no_tiles
        else [
            (f"fp32, tiles {ts}x{ts} overlap {to}", "fp32", (0, ts, ts), (0, to, to)),
            (f"fp32, {t_frames}-frame tiles overlap {t_overlap}", "fp32", (t_frames, 0, 0), (t_overlap, 0, 0)),
        ]
    )

    print(f"# {args.lq}: {len(lq)} frames of {w}x{h}, model {args.model or 'built-in'}, {args.device}\n")
    head = "| run | max abs diff (8-bit levels) | mean abs diff (8-bit levels) |"
    head += " PSNR Y (dB) |" if gt else ""
    print(head)
    print("|---|---:|---:|" + ("---:|" if gt else ""))
    ref = None
    for name, dtype, tile, overlap in runs:
        out = [None] * len(lq)
        for i, frame in restore_iter(
            lq, model=args.model, weights=args.weights, device=args.device, dtype=dtype, tile=tile, tile_overlap=overlap
        ):
            out[i] = (frame * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        stack = np.stack(out).astype(np.int16)
        if ref is None:
            ref = stack
        diff = np.abs(stack - ref)
        row = f"| {name} | {diff.max()} | {diff.mean():.4f} |"
        if gt:
            row += f" {np.mean([psnr(o, g, y_channel=True) for o, g in zip(out, gt)]):.3f} |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
