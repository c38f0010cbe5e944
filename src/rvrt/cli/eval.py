"""``rvrt eval``: restore a benchmark with a model and report PSNR/SSIM the way the papers do."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
from torch import nn

from rvrt.cli.options import add_compute_options
from rvrt.errors import InputError
from rvrt.evaluation import PROTOCOLS, RestoreFn, default_protocol, evaluate, get_protocol, read_sequence_list

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a model on a benchmark (PSNR/SSIM on RGB and Y)",
        description="Restore every sequence of --lq and score it against --gt. Protocols: "
        + "; ".join(f"{k}: {v.title} ({v.task}, {v.channel})" for k, v in PROTOCOLS.items())
        + ". Without --protocol every frame is scored and RGB is reported.",
    )
    p.add_argument("-m", "--model", help="registered model name/alias or a .json/.toml config")
    p.add_argument("--weights", help="weights file, or 'official' (download the published weights)")
    p.add_argument("--lq", type=Path, help="LQ folder (not needed for denoising protocols)")
    p.add_argument("--gt", type=Path, required=True, help="ground-truth folder")
    p.add_argument("--protocol", choices=tuple(PROTOCOLS), help="benchmark protocol")
    p.add_argument("--sigma", type=float, help="noise level (0..255 scale) for denoising protocols")
    p.add_argument(
        "--sequences", type=Path, help="text file of sequence names to evaluate (e.g. Vimeo-90K sep_testlist.txt)"
    )
    p.add_argument("--json", type=Path, help="write all scores as JSON")
    p.add_argument("--csv", type=Path, help="write per-frame scores as CSV")
    p.add_argument("--save", type=Path, help="write the restored frames (PNG) under this folder")
    p.add_argument("--overwrite", action="store_true", help="replace existing --json/--csv/--save files")
    add_compute_options(p)
    p.add_argument(
        "--tile",
        type=int,
        nargs=3,
        metavar=("T", "H", "W"),
        help="test tile in LQ frames/pixels (0 = whole); default: the model's official test tile",
    )
    p.add_argument("--tile-overlap", type=int, nargs=3, metavar=("T", "H", "W"), help="tile overlap")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-sequence log")
    p.set_defaults(run=run)


def build_restore_fn(
    model: nn.Module,
    *,
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
    tile=None,
    tile_overlap=None,
    protocol: str | None = None,
) -> RestoreFn:
    """The function ``rvrt eval`` restores a clip with: ``(T, C, H, W)`` -> ``(T, 3, sH, sW)`` on the CPU.

    It runs the same tiled, blended pipeline as ``rvrt restore``; the default tile is the one of
    the model's official test command for ``protocol`` (``spec.extras["protocol_tiles"]``), else its
    default test tile (a whole clip where that is what the authors did).
    """
    from rvrt.inference.pipeline import model_runner, restore_frames
    from rvrt.inference.restore import plan_tiles

    spec = model.rvrt_spec
    device = torch.device(device)
    run = model_runner(model, device=device, dtype=dtype)
    official = spec.extras.get("protocol_tiles", {}).get(protocol)
    if official is not None and tile is None:
        tile = official[0]
        tile_overlap = official[1] if tile_overlap is None else tile_overlap
        log.info("%s: tile %s, overlap %s (the official test of %s)", spec.name, tile, tile_overlap, protocol)

    def restore(lq: torch.Tensor) -> torch.Tensor:
        t, ov = plan_tiles(
            spec,
            tile if tile is not None else tuple(spec.tile),
            tile_overlap,
            height=lq.shape[-2],
            width=lq.shape[-1],
            device=device,
            dtype=dtype,
        )
        frames = [
            f
            for _, f in restore_frames(run, lq, scale=spec.scale, tile=t, overlap=ov, device=device, total=lq.shape[0])
        ]
        return torch.stack(frames).cpu()

    return restore


def _load(args: argparse.Namespace, device: torch.device):
    from rvrt.inference.restore import prepare_model

    if args.model is None and args.weights in (None, "official"):
        raise InputError("name the model with -m/--model (or give a --weights file to recognise it from)")
    model, _ = prepare_model(args.model, args.weights)
    return model.to(device)


def run(args: argparse.Namespace) -> int:
    from rvrt.inference.restore import resolve_device, resolve_dtype

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype)
    for target in (args.json, args.csv):
        if target is not None and target.exists() and not args.overwrite:
            raise InputError(f"{target} exists; pass --overwrite to replace it")
    sequences = read_sequence_list(args.sequences) if args.sequences else None
    model = _load(args, device)
    spec = model.rvrt_spec
    protocol = get_protocol(args.protocol) if args.protocol else default_protocol(spec.task, spec.scale)
    if protocol.noise != (spec.in_channels == 4):
        kind = "a non-blind denoising" if protocol.noise else "an RGB-input"
        raise InputError(f"protocol {protocol.name} needs {kind} model; {spec.name} is a {spec.task} model")
    if protocol.scale != spec.scale:
        raise InputError(f"{spec.name} restores at x{spec.scale}; protocol {protocol.name} needs x{protocol.scale}")
    if args.lq is None and not protocol.noise:
        raise InputError(f"protocol {protocol.name} needs --lq")

    restore = build_restore_fn(
        model, device=device, dtype=dtype, tile=args.tile, tile_overlap=args.tile_overlap, protocol=protocol.name
    )
    result = evaluate(
        restore,
        args.lq,
        args.gt,
        protocol,
        sigma=args.sigma,
        save_dir=args.save,
        progress=not args.quiet,
        sequences=sequences,
        overwrite=args.overwrite,
    )
    print(result.table())
    if args.json:
        print(f"wrote {result.to_json(args.json, overwrite=args.overwrite)}")
    if args.csv:
        print(f"wrote {result.to_csv(args.csv, overwrite=args.overwrite)}")
    if args.save:
        print(f"restored frames in {args.save}")
    return 0
