"""The ``rvrt`` command line.

Each subcommand lives in its own module of this package with two functions:
``add_parser(subparsers)`` registers its arguments and ``run(args) -> int`` executes it. Neither
imports PyTorch at module level, so ``rvrt --help`` starts in a fraction of a second.

Errors meant for the user (:class:`rvrt.errors.RVRTError`) and errors of the operating system
(permissions, a full disk, a file where a folder should be) are printed as one line on stderr
with exit status 2; out of memory is one line with status 2 too; anything else is a bug: one
line, status 1, and ``RVRT_DEBUG=1`` shows the traceback. Ctrl-C and SIGTERM stop a run with
status 130 and 143; what it finished stays, and the line says how to continue.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
from collections.abc import Iterator

from rvrt import __version__
from rvrt.errors import RVRTError

#: subcommand name -> module under rvrt.cli (imported when the parser is built; none imports torch)
COMMANDS = {
    "restore": "rvrt.cli.restore",
    "interpolate": "rvrt.cli.interpolate",
    "degrade": "rvrt.cli.degrade",
    "eval": "rvrt.cli.eval",
    "weights": "rvrt.cli.weights",
    "train": "rvrt.cli.train",
    "demo": "rvrt.cli.demo",
    "compare": "rvrt.cli.compare",
    "export": "rvrt.cli.export",
    "ui": "rvrt.cli.ui",
}


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error on one line (the usage itself is one ``--help`` away)."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rvrt",
        description="Video restoration with RVRT, VRT and RVRT Light: super-resolution, deblurring, denoising; "
        "frame interpolation and space-time super-resolution with VRT.",
    )
    parser.add_argument("--version", action="version", version=f"rvrt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an interruption so that runs stop as cleanly as on Ctrl-C."""

    signal_name = "SIGTERM"


@contextlib.contextmanager
def _signals_as_interrupts() -> Iterator[None]:
    """While a run goes, SIGTERM raises :class:`Terminated` (cleanup then happens as on Ctrl-C)."""

    def on_term(signum, frame):
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _oom_types() -> tuple[type[BaseException], ...]:
    """``MemoryError`` and, when PyTorch is loaded, its out-of-memory error (``rvrt --help`` does not load it)."""
    torch = sys.modules.get("torch")
    return (MemoryError, torch.OutOfMemoryError) if torch is not None else (MemoryError,)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rvrt`` script; returns the exit status."""
    # PyTorch's CPU allocator then uses 2 MB-aligned, huge-page backed blocks for large tensors: the
    # same speed, and a third less resident memory (freed activations do not fragment the heap);
    # read once, when PyTorch is loaded, so it is set before anything imports it
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, or a usage error (already printed)
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else 2
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    debug = bool(os.environ.get("RVRT_DEBUG"))
    guard = _signals_as_interrupts() if getattr(args, "handles_signals", False) else contextlib.nullcontext()
    try:
        with guard:
            return int(args.run(args) or 0)
    except RVRTError as err:
        if debug:
            raise
        print(f"rvrt {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        name = getattr(err, "signal_name", "SIGINT")
        output = getattr(err, "output", None)
        if output is not None and not getattr(err, "resumable", True):
            print(f"rvrt {args.command}: interrupted ({name}) after {err.done} frames of {output} (a pipe cannot be "
                  "resumed)", file=sys.stderr)  # fmt: skip
        elif output is not None:
            print(
                f"rvrt {args.command}: interrupted ({name}) after {err.done} finished frames of {output}; "
                "run the same command with --resume to continue",
                file=sys.stderr,
            )
        else:
            print(f"rvrt {args.command}: interrupted ({name})", file=sys.stderr)
        return 143 if name == "SIGTERM" else 130
    except OSError as err:  # the operating system refused: permissions, full disk, a file for a folder
        if debug:
            raise
        where = f" {err.filename}" if getattr(err, "filename", None) else ""
        print(f"rvrt {args.command}: error:{where} {err.strerror or _first_line(err)}", file=sys.stderr)
        return 2
    except _oom_types() as err:
        if debug:
            raise
        return _out_of_memory(args.command, err)
    except Exception as err:  # a bug, not bad input: one line and a way to the traceback
        if debug:
            raise
        if isinstance(err, RuntimeError) and "can't allocate memory" in str(err):  # the CPU allocator
            return _out_of_memory(args.command, err)
        print(
            f"rvrt {args.command}: internal error: {type(err).__name__}: {_first_line(err)} "
            "(run with RVRT_DEBUG=1 for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1


def _out_of_memory(command: str, err: BaseException) -> int:
    print(
        f"rvrt {command}: error: out of memory ({type(err).__name__}); use smaller tiles "
        "(--tile T H W, or --tile auto with a smaller --memory-fraction) or --dtype bf16",
        file=sys.stderr,
    )
    return 2
