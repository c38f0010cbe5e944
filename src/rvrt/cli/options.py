"""Arguments shared by the subcommands that read and write videos (``restore``, ``interpolate``)."""

from __future__ import annotations

import argparse

from rvrt.errors import InputError

INPUT_HELP = "video file, folder of frames, or a quoted glob such as 'frames/*.png'"


def add_compute_options(p: argparse.ArgumentParser) -> None:
    """``--device`` and ``--dtype``."""
    p.add_argument("--device", default="auto", help="auto (default: cuda if available), cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"], help="compute precision")


def add_output_options(p: argparse.ArgumentParser, *, fps_help: str) -> None:
    """Encoding of the output, and what to do with an existing one; ``--quiet``."""
    p.add_argument("--codec", help="video encoder (default: libx264 for mp4/mkv/mov, libvpx-vp9 for webm)")
    p.add_argument("--crf", type=int, help="encoder quality (x264/x265/vp9 CRF; lower is better)")
    p.add_argument("--preset", help="encoder preset (e.g. x264: ultrafast ... veryslow)")
    p.add_argument("--bit-depth", type=int, choices=[8, 16], help="PNG output bit depth (default: the input's)")
    p.add_argument("--fps", type=float, help=fps_help)
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run into a frames folder")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")


def parse_tile(values: list[str] | None, count: int, option: str = "--tile"):
    """``None``, ``"auto"`` or a tuple of ``count`` integers from the words given to a tile option."""
    if values is None:
        return None
    if values == ["auto"]:
        return "auto"
    try:
        nums = tuple(int(v) for v in values)
    except ValueError:
        nums = ()
    if len(nums) != count:
        names = "T H W" if count == 3 else "H W"
        words = {2: "two", 3: "three"}[count]
        raise InputError(f"{option} takes {words} integers {names}, or 'auto'; got {' '.join(values)}")
    return nums
