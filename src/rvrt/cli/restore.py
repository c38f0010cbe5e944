"""``rvrt restore``: restore videos, folders of frames or globs (one, or many into a folder)."""

from __future__ import annotations

import argparse

from rvrt.cli.options import INPUT_HELP, add_compute_options, add_run_options, parse_tile, run_jobs, run_options
from rvrt.zoo.spec import DEFAULT_WEIGHTS

EPILOG = """exit status: 0 done; 2 bad input or option, an output that exists, not enough memory, or (with several
inputs) any input failed; 130 interrupted by Ctrl-C, 143 by SIGTERM (finished frames are kept: rerun with --resume).
examples:
  rvrt restore in.mp4 -o out.mp4
  rvrt restore in.mp4 -o preview.mp4 --start 300 --frames 60          # two seconds first
  rvrt restore in.mp4 -o out.mp4 --weights sr_x2.safetensors           # a model you trained (x2: recipe sr_x2_small)
  rvrt restore clips/ 'more/*.mov' -o restored/ --name '{stem}_x4.{ext}'
  vspipe script.vpy - -c y4m | rvrt restore - -o out.mkv               # y4m on stdin
  rvrt restore in.mp4 -o - | ffmpeg -i - -c:v libx265 out.mkv           # y4m on stdout"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "restore",
        help="restore videos or folders of frames (super-resolution, deblurring, denoising)",
        description="Restore INPUT (video file, folder of frames, or glob) into OUTPUT (video file or folder of "
        "PNG frames), streaming: memory depends on the tile sizes, not on the video length. With several "
        "inputs (or a folder of videos), OUTPUT is a folder and each input gets an output in it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", nargs="+", help=INPUT_HELP)
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="video file (.mp4/.mkv/.mov/.webm/...), a folder for frames or batches, or - (y4m on stdout)",
    )
    p.add_argument(
        "-m",
        "--model",
        help="registered model name (see `rvrt weights list`) or a config file (.json/.toml of constructor arguments)",
    )
    p.add_argument(
        "--scale",
        type=int,
        metavar="N",
        help="output scale (4: super-resolution x4, 2: x2, 1: same size): without -m/--weights, the built-in "
        "model of that scale (or what to use where there is none yet); with them, refused unless it agrees",
    )
    p.add_argument(
        "--weights",
        help="weights file (.pth/.safetensors/.ckpt), 'official' (download), or a file from `rvrt export` (.onnx: "
        "run by ONNX Runtime at the tile it was exported for)",
    )
    add_compute_options(p, auto_dtype=True)
    p.add_argument(
        "--tile",
        nargs="+",
        metavar="N",
        help="tile T H W in input frames/pixels (0 = whole), or 'auto' (default: the largest that fits "
        "--memory-fraction of the free memory)",
    )
    p.add_argument("--tile-overlap", nargs=3, type=int, metavar=("T", "H", "W"), help="overlap between tiles")
    p.add_argument("--sigma", type=float, help="noise level 0..255 (non-blind denoising models, --add-noise)")
    p.add_argument("--add-noise", action="store_true", help="add seeded Gaussian noise of --sigma to the input first")
    p.add_argument("--seed", type=int, default=0, help="seed of --add-noise (default 0)")
    st = p.add_argument_group(
        "space-time super-resolution",
        "then double the frame rate of the restored frames with a frame-interpolation model (restoration first, "
        "as in the VRT paper): N input frames give 2N output frames at twice the frame rate",
    )
    st.add_argument("--interpolate", action="store_true", help="double the frame rate after restoring")
    st.add_argument("--vfi-model", help="frame-interpolation model name or config file (default: vrt.vfi_vimeo)")
    st.add_argument(
        "--vfi-weights", help="'official' (download; CC-BY-NC-4.0) or a weights file; required with --interpolate"
    )
    st.add_argument(
        "--vfi-tile",
        nargs="+",
        metavar="N",
        help="its spatial tile H W in output pixels, or 'auto' (default: whole frames if they fit)",
    )
    st.add_argument("--vfi-tile-overlap", nargs=2, type=int, metavar=("H", "W"), help="its tile overlap")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (GPU, long videos)")
    add_run_options(
        p,
        fps_help="output frame rate (default: the input's, twice it with --interpolate; frames "
        "folders count as 25 fps)",
    )
    p.set_defaults(run=run, handles_signals=True)


def run(args: argparse.Namespace) -> int:
    from rvrt.inference.jobs import restore_job

    vfi = {}
    if args.interpolate or args.vfi_model or args.vfi_weights or args.vfi_tile or args.vfi_tile_overlap:
        vfi = dict(
            vfi_model=args.vfi_model,
            vfi_weights=args.vfi_weights,
            vfi_tile=parse_tile(args.vfi_tile, 2, "--vfi-tile"),
            vfi_tile_overlap=args.vfi_tile_overlap,
        )
        if not args.interpolate:
            given = [f"--{k.replace('_', '-')}" for k, v in vfi.items() if v not in (None, "auto")]
            from rvrt.errors import InputError

            raise InputError(f"{', '.join(given)} only appl{'ies' if len(given) == 1 else 'y'} with --interpolate")
        if args.vfi_weights is None:
            vfi.pop("vfi_weights")
    model = args.model
    if args.scale is not None:
        from rvrt.api import model_for_scale

        model = model_for_scale(args.scale, model, args.weights or DEFAULT_WEIGHTS)
    job = restore_job(
        model=model,
        weights=args.weights or DEFAULT_WEIGHTS,  # no --weights: those that go with the model
        tile=parse_tile(args.tile, 3),
        tile_overlap=args.tile_overlap,
        sigma=args.sigma,
        add_noise=args.add_noise,
        seed=args.seed,
        interpolate=args.interpolate,
        compile=args.compile,
        **vfi,
        **run_options(args),
    )
    return run_jobs(args, job, "restore")
