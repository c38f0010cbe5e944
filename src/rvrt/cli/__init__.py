"""The ``rvrt`` command line.

Each subcommand lives in its own module of this package with two functions:
``add_parser(subparsers)`` registers its arguments and ``run(args) -> int`` executes it.
Errors meant for the user (:class:`rvrt.errors.RVRTError`) are printed as one line on
stderr with exit status 2; nothing else prints a traceback unless ``RVRT_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from rvrt import __version__
from rvrt.errors import RVRTError

#: subcommand name -> module under rvrt.cli (imported lazily, so `rvrt --help` stays fast)
COMMANDS = {
    "restore": "rvrt.cli.restore",
    "interpolate": "rvrt.cli.interpolate",
    "degrade": "rvrt.cli.degrade",
    "eval": "rvrt.cli.eval",
    "weights": "rvrt.cli.weights",
    "train": "rvrt.cli.train",
    "demo": "rvrt.cli.demo",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rvrt",
        description="Video restoration with RVRT, VRT and RVRT Light: super-resolution, deblurring, denoising; "
        "frame interpolation and space-time super-resolution with VRT.",
    )
    parser.add_argument("--version", action="version", version=f"rvrt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    return parser


def torch_oom() -> type[BaseException]:
    """``torch.OutOfMemoryError`` (imported lazily: ``rvrt --help`` does not load torch)."""
    import torch

    return torch.OutOfMemoryError


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rvrt`` script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.run(args) or 0)
    except RVRTError as err:
        if os.environ.get("RVRT_DEBUG"):
            raise
        print(f"rvrt {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rvrt {args.command}: interrupted", file=sys.stderr)
        return 130
    except (MemoryError, torch_oom()) as err:
        if os.environ.get("RVRT_DEBUG"):
            raise
        print(
            f"rvrt {args.command}: error: out of memory ({type(err).__name__}); use smaller tiles "
            "(--tile T H W or --tile auto) or fewer frames per tile",
            file=sys.stderr,
        )
        return 2
    except Exception as err:  # a bug, not bad input: one line and a way to the traceback
        if os.environ.get("RVRT_DEBUG"):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(
            f"rvrt {args.command}: internal error: {type(err).__name__}: {first} "
            "(run with RVRT_DEBUG=1 for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1
