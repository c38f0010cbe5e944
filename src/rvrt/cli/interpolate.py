"""``rvrt interpolate``: double the frame rate of videos or folders of frames."""

from __future__ import annotations

import argparse

from rvrt.cli.options import INPUT_HELP, add_compute_options, add_run_options, parse_tile, run_jobs, run_options
from rvrt.zoo.spec import DEFAULT_WEIGHTS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "interpolate",
        help="double the frame rate of videos or folders of frames (VRT frame interpolation)",
        description="Write INPUT at exactly twice its frame rate: every input frame is kept and a frame is "
        "predicted between each pair. N input frames give 2N output frames (the last frame is held "
        "for its interval, so the duration and the copied audio match the input; --no-hold-last "
        "gives 2N-1). The published weights are CC-BY-NC-4.0 (non-commercial): pass --weights "
        "official to download them, or --weights PATH.",
    )
    p.add_argument("input", nargs="+", help=INPUT_HELP)
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="video file (.mp4/.mkv/.mov/.webm/...), a folder (PNG frames 00000000.png, ...; or batches), or - "
        "(y4m on stdout)",
    )
    p.add_argument("-m", "--model", help="frame-interpolation model name or config file (default: vrt.vfi_vimeo)")
    p.add_argument("--weights", help="'official' (download the published weights) or a weights file; required")
    add_compute_options(p, auto_dtype=True)
    p.add_argument(
        "--tile",
        nargs="+",
        metavar="N",
        help="spatial tile H W in pixels (0 0 = whole frames), or 'auto' (default: whole frames "
        "when they fit in memory, else the largest square tile that does)",
    )
    p.add_argument(
        "--tile-overlap", nargs=2, type=int, metavar=("H", "W"), help="overlap between tiles in pixels (default 20 20)"
    )
    p.add_argument(
        "--no-hold-last",
        dest="hold_last",
        action="store_false",
        help="end on the last input frame (2N-1 frames) instead of holding it (2N frames)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the model (GPU, long videos)")
    add_run_options(
        p, fps_help="output frame rate (default: exactly twice the input's; frames folders count as 25 fps)"
    )
    p.set_defaults(run=run, handles_signals=True)


def run(args: argparse.Namespace) -> int:
    from rvrt.inference.jobs import interpolate_job

    job = interpolate_job(
        model=args.model,
        weights=args.weights or DEFAULT_WEIGHTS,  # no --weights: those that go with the model
        tile=parse_tile(args.tile, 2),
        tile_overlap=args.tile_overlap,
        hold_last=args.hold_last,
        compile=args.compile,
        **run_options(args),
    )
    return run_jobs(args, job, "interpolate")
