"""``rvrt demo``: restore a synthetic clip with the default model and compare with bicubic, offline."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="synthesise a clip, degrade it, restore it with the default model, print PSNR vs bicubic",
        description="Synthesises a short clip (text, stripes, a slow pan), makes its x4 bicubic low-resolution "
        "version, restores it and prints PSNR/SSIM (Y) of bicubic upsampling and of the model. Writes "
        "gt.mp4, lq.mp4, bicubic.mp4 and restored.mp4 to OUT. Runs offline.",
    )
    p.add_argument("-o", "--output", default="rvrt-demo", help="folder for the videos (default: ./rvrt-demo)")
    p.add_argument("-m", "--model", help="x4 SR model (default: the model shipped with rvrt)")
    p.add_argument("--frames", type=int, default=12, help="clip length (default 12)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda[:N], xpu[:N] or mps")
    p.add_argument("--overwrite", action="store_true", help="replace the videos in an existing OUT")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rvrt.demo import run_demo
    from rvrt.errors import InputError

    if args.frames < 2:
        raise InputError(f"--frames must be at least 2; got {args.frames}")
    result = run_demo(args.output, model=args.model, frames=args.frames, device=args.device, overwrite=args.overwrite,
                      progress=not args.quiet)  # fmt: skip
    print(result.table())
    print(f"videos in {args.output}: " + ", ".join(sorted(result.files)))
    return 0
