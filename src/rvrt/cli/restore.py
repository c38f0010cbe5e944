"""``rvrt restore``: restore a video file, a folder of frames or a glob."""

from __future__ import annotations

import argparse
import sys

from rvrt.cli.options import INPUT_HELP, add_compute_options, add_output_options, parse_tile


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "restore",
        help="restore a video or a folder of frames (super-resolution, deblurring, denoising)",
        description="Restore INPUT (video file, folder of frames, or glob) into OUTPUT (video file or folder of "
        "PNG frames), streaming: memory depends on the tile sizes, not on the video length.",
    )
    p.add_argument("input", help=INPUT_HELP)
    p.add_argument("-o", "--output", required=True, help="video file (.mp4/.mkv/.mov/.webm/...) or a folder")
    p.add_argument(
        "-m",
        "--model",
        help="registered model name (see `rvrt weights list`) or a config file (.json/.toml of constructor arguments)",
    )
    p.add_argument("--weights", help="weights file (.pth/.safetensors/.ckpt) or 'official' (download)")
    add_compute_options(p)
    p.add_argument(
        "--tile",
        nargs="+",
        metavar="N",
        help="tile size T H W in input frames/pixels (0 = whole), or 'auto' (from free memory); "
        "default: the model's official test tile",
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
    add_output_options(
        p,
        fps_help="output frame rate (default: the input's, twice it with --interpolate; frames "
        "folders count as 25 fps)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rvrt.inference.restore import restore

    summary = restore(
        args.input,
        args.output,
        model=args.model,
        weights=args.weights,
        device=args.device,
        dtype=args.dtype,
        tile=parse_tile(args.tile, 3),
        tile_overlap=args.tile_overlap,
        sigma=args.sigma,
        add_noise=args.add_noise,
        seed=args.seed,
        interpolate=args.interpolate,
        vfi_model=args.vfi_model,
        vfi_weights=args.vfi_weights,
        vfi_tile=parse_tile(args.vfi_tile, 2, "--vfi-tile"),
        vfi_tile_overlap=args.vfi_tile_overlap,
        overwrite=args.overwrite,
        resume=args.resume,
        progress=not args.quiet,
        codec=args.codec,
        crf=args.crf,
        preset=args.preset,
        bit_depth=args.bit_depth,
        fps=args.fps,
        compile=args.compile,
    )
    if not args.quiet:
        print(f"rvrt restore: {summary.line()}", file=sys.stderr)
    return 0
