"""``rvrt export``: write a model as an ONNX graph (for ONNX Runtime, TensorRT, ...)."""

from __future__ import annotations

import argparse
import re

from rvrt.cli.options import add_quiet
from rvrt.errors import InputError

EPILOG = """The graph takes float32 tiles (1, T, C, H, W) in [0, 1] and returns (1, T, 3, s*H, s*W); its tile is
fixed (the models' padding and windows are resolved at export). Run it through the runner with
  rvrt restore in.mp4 -o out.mp4 --weights model.onnx     (tiles of exactly the exported T H W)
examples:
  rvrt export -m rvrt.sr_bi_reds --onnx rvrt_sr.onnx --frames 6 --size 128x128
  rvrt export --weights my.safetensors --onnx my.onnx
See docs/ONNX.md for TensorRT."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a model to ONNX",
        description="Export a restoration model (RVRT, RVRT Light or VRT; super-resolution, deblurring, denoising) "
        "to an ONNX file with standard operators (GridSample for the deformable sampling).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-m", "--model", help="registered model name or config file (default: what --weights says)")
    p.add_argument("--weights", help="weights file or 'official' (default: the model's published weights)")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="the ONNX file to write")
    p.add_argument("--frames", type=int, default=6, metavar="T", help="frames per tile (default 6)")
    p.add_argument("--size", default="128x128", metavar="HxW", help="tile size in input pixels (default 128x128)")
    p.add_argument("--opset", type=int, default=None, metavar="N", help="ONNX opset (default 17, at least 16)")
    p.add_argument(
        "--dynamic", action="store_true", help="dynamic tile shape (refused: the models fix their shapes at export)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUT.onnx if it exists")
    add_quiet(p)
    p.set_defaults(run=run)


def parse_size(text: str) -> tuple[int, int]:
    """``"HxW"`` (or a single ``N`` for ``NxN``) -> ``(H, W)``, positive."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*", text)
    if not m:
        raise InputError(f"--size must be HxW in pixels, e.g. 128x128; got {text!r}")
    h = int(m.group(1))
    w = int(m.group(2) or h)
    if h < 1 or w < 1:
        raise InputError(f"--size must be positive; got {text!r}")
    return h, w


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rvrt.api import select_model
    from rvrt.export.onnx import DEFAULT_OPSET, export_onnx, is_onnx_file

    h, w = parse_size(args.size)
    if args.frames < 1:
        raise InputError(f"--frames must be at least 1; got {args.frames}")
    out = Path(args.onnx)
    if out.suffix.lower() != ".onnx":
        raise InputError(f"--onnx must name a .onnx file; got {out}")
    if out.exists() and not args.overwrite:
        raise InputError(f"{out} exists: pass --overwrite to replace it")
    if is_onnx_file(args.weights):
        raise InputError("--weights is already an ONNX file; export starts from a PyTorch weights file")
    if args.model is None and args.weights is None:
        raise InputError("name the model: -m NAME (see `rvrt weights list`) and/or --weights FILE")
    net, spec = select_model(args.model, args.weights)
    net = net.to("cpu").float().eval()
    export_onnx(net, spec, out, frames=args.frames, height=h, width=w, opset=args.opset or DEFAULT_OPSET,
                dynamic=args.dynamic)  # fmt: skip
    if not args.quiet:
        print(
            f"{spec.name} -> {out} (ONNX opset {args.opset or DEFAULT_OPSET}, tiles of {args.frames} frames of {h}x{w})"
        )
    return 0
