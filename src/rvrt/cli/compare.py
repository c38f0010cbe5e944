"""``rvrt compare``: a side-by-side or wipe picture (or video) of two or three results."""

from __future__ import annotations

import argparse
from pathlib import Path

from rvrt.cli.options import add_quiet, positive_number
from rvrt.errors import InputError, OutputError

#: picture outputs (anything else with a video ending is a comparison video)
PICTURE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")


def _crop(text: str) -> tuple[int, int, int, int]:
    parts = text.replace(" ", "").split(",")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or values[0] < 0 or values[1] < 0 or values[2] <= 0 or values[3] <= 0:
        raise argparse.ArgumentTypeError(f"expected x,y,w,h (whole numbers, w and h > 0); got {text!r}")
    return values


def _zoom(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 16:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to 16; got {text!r}")
    return int(text)


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"a wipe position is a fraction of the width between 0 and 1; got {text}")
    return v


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1; got {text!r}")
    return int(text)


def _index(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a frame number >= 0; got {text!r}")
    return int(text)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="side-by-side or wipe comparison of two or three results (picture or video)",
        description="Put two or three results side by side (or in a wipe) with a label over each: e.g. the input "
        "upscaled with bicubic, the model's output and the ground truth. Inputs are videos, folders of frames, globs "
        "or single images (a single image stands for every frame). Frames smaller than the largest are upscaled to "
        "its size (MATLAB bicubic, or --upscale nearest). A picture output (.png/.jpg/.webp) shows frame --frame; "
        "a video output (.mp4/.mkv/.webm/...) shows every frame from --frame on, until the shortest input ends.",
        epilog="examples:\n"
        "  rvrt compare lr/ restored/ gt/ -o compare.png --frame 10 --crop 200,150,160,120 --zoom 3\n"
        "  rvrt compare in.mp4 out.mp4 -o wipe.mp4 --wipe --labels input rvrt\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="two or three videos, frame folders, globs or images")
    p.add_argument("-o", "--output", required=True, type=Path, help="picture (.png/.jpg/.webp) or video (.mp4/...)")
    p.add_argument("--frame", type=_index, default=0, metavar="N", help="frame to show, or the first one (0-based)")
    p.add_argument("--frames", type=_count, metavar="N", help="video output: at most N frames")
    p.add_argument(
        "--crop", type=_crop, metavar="x,y,w,h", help="region to show, in pixels of the largest input (default: all)"
    )
    p.add_argument("--zoom", type=_zoom, default=1, metavar="Z", help="magnify the region Z times, nearest neighbour")
    p.add_argument(
        "--wipe",
        type=_fraction,
        nargs="*",
        metavar="POS",
        help="one picture split into bands instead of panels side by side; POS: where each boundary lies, as a "
        "fraction of the width (default: equal bands)",
    )
    p.add_argument("--labels", nargs="+", metavar="TEXT", help="text over each panel (default: the file stems)")
    p.add_argument(
        "--upscale", choices=("bicubic", "nearest"), default="bicubic", help="how smaller inputs are brought to size"
    )
    p.add_argument("--gap", type=int, default=4, metavar="PX", help="pixels between side-by-side panels (default 4)")
    p.add_argument("--fps", type=positive_number, help="video output frame rate (default: the first video's, or 25)")
    p.add_argument("--overwrite", action="store_true", help="replace the output")
    add_quiet(p)
    p.set_defaults(run=run, handles_signals=True)


def run(args: argparse.Namespace) -> int:
    from rvrt.media.compare import Layout, Source, compare_video, compose
    from rvrt.media.info import VIDEO_EXTENSIONS

    n = len(args.inputs)
    if n not in (2, 3):
        raise InputError(f"compare takes two or three inputs; got {n}")
    labels = args.labels
    if labels is not None and len(labels) != n:
        raise InputError(f"--labels needs one text per input ({n}); got {len(labels)}")
    out: Path = args.output
    ext = out.suffix.lower()
    picture = ext in PICTURE_EXTENSIONS
    if not picture and (ext not in VIDEO_EXTENSIONS or out.is_dir()):
        raise InputError(
            f"output {out}: give a picture ({' '.join(PICTURE_EXTENSIONS)}) or a video ({' '.join(VIDEO_EXTENSIONS)})"
        )
    if picture and out.exists() and not args.overwrite:
        raise OutputError(f"output {out} already exists; pass --overwrite to replace it")
    layout = Layout(
        crop=args.crop,
        zoom=args.zoom,
        wipe=None if args.wipe is None else tuple(args.wipe),
        gap=args.gap,
        upscale=args.upscale,
    )
    sources = [Source.open(p) for p in args.inputs]
    labels = labels or [s.label for s in sources]

    if picture:
        comparison = compose([s.frame(args.frame) for s in sources], labels, layout)
        _write_picture(out, comparison.image, args.overwrite)
        if not args.quiet:
            h, w = comparison.image.shape[:2]
            print(f"wrote {out} ({w}x{h}, frame {args.frame})")
        return 0

    bar = None
    if not args.quiet:
        from tqdm import tqdm

        counts = [s.info.frame_count - args.frame for s in sources if not s.still and s.info.frame_count]
        total = min([*counts, args.frames] if args.frames else counts) if counts else None
        bar = tqdm(total=total, unit="frame", desc="compare", leave=False)
    try:
        written = compare_video(
            sources,
            out,
            labels,
            layout,
            start=args.frame,
            count=args.frames,
            fps=args.fps,
            overwrite=args.overwrite,
            progress=None if bar is None else (lambda k: bar.update(1)),
        )
    finally:
        if bar is not None:
            bar.close()
    if not args.quiet:
        print(f"wrote {out} ({written} frames from frame {args.frame})")
    return 0


def _write_picture(path: Path, image, overwrite: bool) -> None:
    from rvrt.files import atomic_write
    from rvrt.media.images import write_png

    if path.suffix.lower() == ".png":
        write_png(path, image, compress_level=9, overwrite=overwrite)
        return
    from PIL import Image

    fmt = "WEBP" if path.suffix.lower() == ".webp" else "JPEG"
    atomic_write(path, lambda tmp: Image.fromarray(image).save(tmp, format=fmt, quality=95), overwrite=overwrite)
