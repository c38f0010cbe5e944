"""The ``rvrt`` entry point: help, version, and one line for every kind of failure."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import rvrt.cli.weights
from rvrt.cli import COMMANDS, main


def test_every_subcommand_has_help(capsys):
    for name in COMMANDS:
        assert main([name, "--help"]) == 0
        assert "usage: rvrt " + name in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("exc", "code", "message"),
    [
        (RuntimeError("boom\nsecond line"), 1, "internal error: RuntimeError: boom (run with RVRT_DEBUG=1"),
        (torch.OutOfMemoryError("CUDA out of memory"), 2, "out of memory"),
        (RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate memory: you tried"), 2, "out of memory"),
        (OSError(28, "No space left on device"), 2, "No space left on device"),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
)
def test_unexpected_failures_are_one_line(monkeypatch, capsys, exc, code, message):
    def fail(args):
        raise exc

    monkeypatch.setattr(rvrt.cli.weights, "_list", fail)
    assert main(["weights", "list"]) == code
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "rvrt", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("rvrt ")
