"""Arguments shared by the subcommands, and the one translation of flags into a job.

One spelling per option across subcommands: ``-q/--quiet`` (warnings and errors only: no
progress bar, no summary), ``--dtype fp32|fp16|bf16``, ``--device``, ``--overwrite``,
``--resume``. This module imports nothing heavy: ``rvrt --help`` does not load PyTorch.
"""

from __future__ import annotations

import argparse
import math

from rvrt.errors import InputError

INPUT_HELP = (
    "video files, folders of frames, folders of videos, quoted globs such as 'frames/*.png' or 'clips/*.mp4', "
    "or - (a y4m stream on stdin, e.g. from vspipe -c y4m or ffmpeg -f yuv4mpegpipe)"
)
DTYPE_CHOICES = ("fp32", "fp16", "bf16")
_DTYPE_ALIASES = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16"}


def dtype_arg(text: str) -> str:
    """``--dtype`` values: auto, fp32, fp16, bf16 (float32, float16, bfloat16 are accepted too)."""
    v = _DTYPE_ALIASES.get(text.lower(), text.lower())
    if v not in DTYPE_CHOICES + ("auto",):
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from auto, fp32, fp16, bf16)")
    return v


def _fixed_dtype(text: str) -> str:
    v = dtype_arg(text)
    if v == "auto":
        raise argparse.ArgumentTypeError("invalid choice: 'auto' (choose from fp32, fp16, bf16)")
    return v


def positive_number(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0; got {text}")
    return v


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only: no progress bar, no summary")


def add_compute_options(p: argparse.ArgumentParser, *, auto_dtype: bool = False) -> None:
    """``--device`` and ``--dtype`` (``auto`` allowed, and the default, where ``auto_dtype``)."""
    p.add_argument(
        "--device",
        default="auto",
        help="auto (default: the first of cuda, xpu, mps found), cpu, cuda[:N], xpu[:N] or mps",
    )
    if auto_dtype:
        p.add_argument(
            "--dtype",
            default="auto",
            type=dtype_arg,
            metavar="{auto,fp32,fp16,bf16}",
            help="compute precision; auto (default): bf16 where the model's output was measured to change by at "
            "most 2 levels and this CPU computes bfloat16 natively (AMX, AVX512-BF16), else fp32",
        )
    else:
        p.add_argument(
            "--dtype", default="fp32", type=_fixed_dtype, metavar="{fp32,fp16,bf16}", help="compute precision"
        )


def add_scene_cuts(p) -> None:
    """``--scene-cuts auto|off|FILE``."""
    p.add_argument(
        "--scene-cuts",
        metavar="auto|off|FILE",
        help="restore each shot on its own: auto (detect hard cuts; the default for videos), off (the default for "
        "frames), or a file of cut frame numbers (one per line, 0-based; or PySceneDetect's scene list CSV)",
    )


def add_run_options(p: argparse.ArgumentParser, *, fps_help: str) -> None:
    """Range, memory, output encoding, and what to do with an existing output; ``--quiet``."""
    g = p.add_argument_group("range and memory")
    g.add_argument("--start", type=int, default=0, metavar="N", help="first input frame to use (0-based)")
    g.add_argument("--frames", type=int, metavar="N", help="use N input frames (a preview of a part)")
    g.add_argument(
        "--memory-fraction",
        type=positive_number,
        default=0.5,
        metavar="F",
        help="share of the free memory (RAM on the CPU, device memory on CUDA) --tile auto plans with (default 0.5)",
    )
    g.add_argument(
        "--allow-truncated",
        action="store_true",
        help="restore the frames a truncated or damaged video holds (default: refuse it, exit 2)",
    )
    add_scene_cuts(g)
    e = p.add_argument_group("output")
    e.add_argument("--codec", help="video encoder (default: libx264 for mp4/mkv/mov/avi, libvpx-vp9 for webm)")
    e.add_argument("--crf", type=int, help="encoder quality (x264/x265 0-51, vp9/av1 0-63; lower is better)")
    e.add_argument("--preset", help="encoder preset (x264/x265: ultrafast ... veryslow)")
    depth_help = "output bit depth: PNG 8/16-bit; video 8-bit or, with 16, 10-bit (default: the input's)"
    e.add_argument("--bit-depth", type=int, choices=[8, 16], help=depth_help)
    e.add_argument("--fps", type=positive_number, help=fps_help)
    e.add_argument(
        "--segment-frames",
        type=int,
        default=250,
        metavar="N",
        help="videos are encoded in segments of N frames, joined at the end: an interrupted run "
        "loses at most one (default 250)",
    )
    e.add_argument("--overwrite", action="store_true", help="replace the output (only files rvrt wrote are removed)")
    e.add_argument("--resume", action="store_true", help="continue an interrupted run (frames folder or video)")
    e.add_argument(
        "--name",
        default="{stem}.{ext}",
        help="with several inputs: output name in -o's folder, from {stem}, {ext}, {name} (default {stem}.{ext})",
    )
    add_quiet(p)


def parse_tile(values: list[str] | None, count: int, option: str = "--tile"):
    """``"auto"`` (also for None) or a tuple of ``count`` integers from the words given to a tile option."""
    if values is None or values == ["auto"]:
        return "auto"
    try:
        nums = tuple(int(v) for v in values)
    except ValueError:
        nums = ()
    if len(nums) != count or min(nums, default=0) < 0:
        names = "T H W" if count == 3 else "H W"
        words = {2: "two", 3: "three"}[count]
        raise InputError(f"{option} takes {words} non-negative integers {names}, or 'auto'; got {' '.join(values)}")
    return nums


def run_options(args: argparse.Namespace) -> dict:
    """The job-level keyword arguments from the shared flags."""
    return dict(
        device=args.device,
        dtype=args.dtype,
        memory_fraction=args.memory_fraction,
        start=args.start,
        frames=args.frames,
        codec=args.codec,
        crf=args.crf,
        preset=args.preset,
        bit_depth=args.bit_depth,
        fps=args.fps,
        segment_frames=args.segment_frames,
        overwrite=args.overwrite,
        resume=args.resume,
        allow_truncated=args.allow_truncated,
        scene_cuts=args.scene_cuts,
        progress=not args.quiet,
    )


def run_jobs(args: argparse.Namespace, job, command: str) -> int:
    """Run ``job`` on ``args.input`` into ``args.output``: one input, or a batch into a folder.

    Prints the summary (one line, or a table per input for a batch) unless ``--quiet``; the exit
    status is 2 when any input failed. Under ``torchrun`` each process does its share
    (:mod:`rvrt.inference.shard`).
    """
    import sys

    from rvrt.inference.batch import expand_inputs, run_batch
    from rvrt.inference.runner import run_job
    from rvrt.inference.shard import run_sharded, world

    where = world()
    who = f" [rank {where.rank} of {where.size}]" if where is not None else ""
    inputs = list(args.input)
    if "-" in inputs or args.output == "-":  # stdin / stdout: one y4m stream, one run
        if len(inputs) > 1:
            raise InputError("'-' (stdin or stdout) takes one input and one output; give several inputs as files")
        if where is not None:
            raise InputError("a pipe cannot be shared by torchrun's processes; run rvrt as one process")
        summary = run_job(inputs[0], args.output, job)
        if not args.quiet:
            print(f"rvrt {command}: {summary.line()}", file=sys.stderr)
        return 0
    expanded = expand_inputs(inputs) if len(inputs) == 1 else []
    if len(expanded) == 1 and expanded[0][1] is not None:
        raise InputError(expanded[0][1])
    if len(expanded) == 1:
        if where is not None:
            summary = run_sharded(inputs[0], args.output, job, where)
        else:
            summary = run_job(inputs[0], args.output, job)
        if not args.quiet:
            print(f"rvrt {command}{who}: {summary.line()}", file=sys.stderr)
        return 0

    def done(item) -> None:
        if item.failed:
            print(f"rvrt {command}{who}: {item.input}: {item.status}", file=sys.stderr)
        elif not args.quiet and item.summary is not None:
            print(f"rvrt {command}{who}: {item.summary.line()}", file=sys.stderr)

    if where is not None:  # every process its share of the inputs
        job = job.replace(device=where.device(job.device))
    report = run_batch(inputs, args.output, job, name=args.name, on_item=done, where=where)
    if not args.quiet or report.failed:
        print(report.table(), file=sys.stderr)
    return 2 if report.failed else 0
