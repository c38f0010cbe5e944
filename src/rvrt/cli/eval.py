"""``rvrt eval``: restore a benchmark with a model and report PSNR/SSIM the way the papers do."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from rvrt.cli.options import add_compute_options, add_quiet, parse_tile
from rvrt.errors import InputError
from rvrt.zoo.spec import DEFAULT_WEIGHTS

log = logging.getLogger(__name__)

#: protocols whose numbers come from the official test commands (their tiles are kept)
OFFICIAL_PROTOCOLS = ("reds4", "vid4", "udm10", "vimeo", "dvd", "gopro", "set8", "davis")


def add_parser(sub: argparse._SubParsersAction) -> None:
    from rvrt.protocols import PROTOCOLS  # plain data, no PyTorch

    p = sub.add_parser(
        "eval",
        help="evaluate a model on a benchmark (PSNR/SSIM on RGB and Y)",
        description="Restore every sequence of --lq and score it against --gt. Protocols: "
        + "; ".join(f"{k}: {v.title} ({v.task}, {v.channel})" for k, v in PROTOCOLS.items())
        + ". Without --protocol every frame is scored and RGB is reported. LQ and GT frames are paired by name.",
    )
    p.add_argument(
        "-m", "--model", help="registered model name/alias or a .json/.toml config (default: the built-in model)"
    )
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
    p.add_argument(
        "--plot",
        type=Path,
        metavar="PLOT.png",
        help='draw per-frame PSNR/SSIM of each sequence (.png/.svg/.pdf; needs matplotlib: pip install "rvrt[plot]")',
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing --json/--csv/--save files")
    add_compute_options(p)
    p.add_argument(
        "--tile",
        nargs="+",
        metavar="N",
        help="test tile T H W in LQ frames/pixels (0 = whole) or 'auto'; default: the official test tile of the "
        "model for an official protocol (the papers' numbers), else auto",
    )
    p.add_argument("--tile-overlap", type=int, nargs=3, metavar=("T", "H", "W"), help="tile overlap")
    p.add_argument(
        "--memory-fraction", type=float, default=0.5, metavar="F", help="share of the free memory --tile auto uses"
    )
    p.add_argument(
        "--scene-cuts",
        metavar="auto|off|FILE",
        default="off",
        help="restore each shot of a sequence on its own: off (default: benchmark sequences are one shot), auto "
        "(detect hard cuts in each LQ sequence), or a file of cut frame numbers applied to every sequence",
    )
    add_quiet(p)
    p.set_defaults(run=run, handles_signals=True)


def build_restore_fn(
    model,
    *,
    device="cpu",
    dtype=None,
    tile=None,
    tile_overlap=None,
    protocol: str | None = None,
    memory_fraction: float = 0.5,
    scene_cuts="off",
):
    """The function ``rvrt eval`` restores a clip with: ``(T, C, H, W)`` -> ``(T, 3, sH, sW)`` on the CPU.

    It runs the restoration stage of ``rvrt restore`` (:class:`rvrt.inference.stages.RestoreStage`).
    The default tile is the one of the model's official test command for ``protocol``
    (``spec.extras["protocol_tiles"]``, else its default test tile, a whole clip where that is
    what the authors did), so the numbers are the papers'; for other protocols it is ``auto``.
    The function takes an optional ``progress(frames_done)`` callback (a float of the clip's frames).
    ``scene_cuts``: ``"off"``, ``"auto"`` (detected in each clip) or a cut list (file or frame
    numbers) used for every clip; each shot is restored on its own.
    """
    import torch

    from rvrt.compute import available_memory, resolve_device, resolve_dtype
    from rvrt.inference.options import StageOptions
    from rvrt.inference.planner import plan_stage
    from rvrt.inference.stages import RestoreStage
    from rvrt.media.scenes import detect_cuts, given_cuts

    given = given_cuts(scene_cuts)

    spec = model.rvrt_spec
    device, dtype = resolve_device(device), resolve_dtype(dtype)
    official = None
    if protocol in OFFICIAL_PROTOCOLS:
        official = spec.extras.get("protocol_tiles", {}).get(protocol, (tuple(spec.tile), tuple(spec.tile_overlap)))
    if tile is None and official is not None:
        tile = official[0]
        tile_overlap = official[1] if tile_overlap is None else tile_overlap
        log.info("%s: tile %s, overlap %s (the official test of %s)", spec.name, tile, tile_overlap, protocol)
    options = StageOptions("restore", tile="auto" if tile is None else tile, tile_overlap=tile_overlap)
    model.to(device)
    warned = []

    def restore(lq: torch.Tensor, progress=None) -> torch.Tensor:
        t, _, h, w = lq.shape
        budget = int(memory_fraction * available_memory(device))
        plan = plan_stage(spec, options, height=h, width=w, device=device, dtype=dtype, budget=budget, total=t)
        if official is not None and options.tile != "auto" and plan.predicted_bytes > budget and not warned:
            warned.append(True)
            log.warning(
                "the official test tile %s of %s needs about %.1f GB, more than the %.1f GB planned; it may not fit "
                "(--tile auto fits, and scores differ a little from the paper's protocol)",
                " ".join(map(str, plan.tile)), spec.name, plan.predicted_bytes / 2**30, budget / 2**30,
            )  # fmt: skip
        if scene_cuts == "auto":
            cuts = detect_cuts(f.permute(1, 2, 0).numpy() for f in lq[:, :3])
        else:
            cuts = [c for c in given or () if 0 < c < t]
        stage = RestoreStage(options=options, net=model, spec=spec, plan=plan, device=device, dtype=dtype,
                             scale=spec.scale, cuts=tuple(cuts), total=t)  # fmt: skip
        out: list[torch.Tensor] = []
        report = None
        if progress is not None:

            def report(fraction: float, frames: int) -> None:
                progress(len(out) + fraction * frames)

        for _, f in stage.process(iter(lq), first=0, skip_until=0, total=t, progress=report):
            out.append(f.cpu())
            if progress is not None:
                progress(len(out))
        return torch.stack(out)

    return restore


def run(args: argparse.Namespace) -> int:
    from rvrt.api import select_model
    from rvrt.compute import resolve_device, resolve_dtype
    from rvrt.evaluation import default_protocol, evaluate, get_protocol, read_sequence_list

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype)
    for target in (args.json, args.csv):
        if target is not None and target.exists() and not args.overwrite:
            raise InputError(f"{target} exists; pass --overwrite to replace it")
    if args.plot is not None:  # before hours of restoring, not after
        from rvrt.plots import check_plot_path, require_matplotlib

        require_matplotlib()
        check_plot_path(args.plot, overwrite=args.overwrite)
    sequences = read_sequence_list(args.sequences) if args.sequences else None
    model = args.model
    if args.protocol and model is None and args.weights in (None, DEFAULT_WEIGHTS, "official"):
        from rvrt.api import model_for_scale

        model = model_for_scale(get_protocol(args.protocol).scale)  # the built-in model of that scale
    model, spec = select_model(model, args.weights or DEFAULT_WEIGHTS, kind="restore")
    protocol = get_protocol(args.protocol) if args.protocol else default_protocol(spec.task, spec.scale)
    if protocol.noise != (spec.in_channels == 4):
        kind = "a non-blind denoising" if protocol.noise else "an RGB-input"
        raise InputError(f"protocol {protocol.name} needs {kind} model; {spec.name} is a {spec.task} model")
    if protocol.scale != spec.scale:
        raise InputError(f"{spec.name} restores at x{spec.scale}; protocol {protocol.name} needs x{protocol.scale}")
    if args.lq is None and not protocol.noise:
        raise InputError(f"protocol {protocol.name} needs --lq")

    restore = build_restore_fn(
        model,
        device=device,
        dtype=dtype,
        tile=None if args.tile is None else parse_tile(args.tile, 3),
        tile_overlap=args.tile_overlap,
        protocol=protocol.name,
        memory_fraction=args.memory_fraction,
        scene_cuts=args.scene_cuts,
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
    if args.plot:
        from rvrt.plots import plot_eval

        drawn = plot_eval(result, args.plot, title=spec.name, overwrite=args.overwrite)
        print(f"wrote {drawn.path} (per-frame PSNR/SSIM, {drawn.channel})")
    return 0
