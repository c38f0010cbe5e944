"""Every value of the Python API and the command line is checked once, with a message naming the
argument and the flag; wrong types are RVRTErrors too."""

from __future__ import annotations

import math

import pytest

import rvrt
from rvrt.cli import main
from rvrt.errors import InputError, RVRTError
from rvrt.inference.jobs import interpolate_job, restore_job
from rvrt.inference.options import JobOptions, StageOptions


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(tile="big"), r"tile \(--tile\) needs three non-negative integers"),
        (dict(tile=(4, -1, 0)), r"tile \(--tile\) needs three non-negative integers"),
        (dict(tile_overlap=(1, 2)), r"tile_overlap \(--tile-overlap\) needs three"),
        (dict(sigma=300), r"sigma \(--sigma\) must be a finite number >= 0 and <= 255"),
        (dict(sigma="x"), r"sigma \(--sigma\) must be a number"),
        (dict(fps=math.nan), r"fps \(--fps\) must be a finite number > 0"),
        (dict(fps=0), r"fps \(--fps\) must be a finite number > 0"),
        (dict(crf="18"), r"crf \(--crf\) must be an integer"),
        (dict(bit_depth=10), r"bit_depth \(--bit-depth\) must be 8 or 16"),
        (dict(start=-1), r"start \(--start\) must be an integer >= 0"),
        (dict(frames=0), r"frames \(--frames\) must be an integer >= 1"),
        (dict(memory_fraction=1.5), r"memory_fraction \(--memory-fraction\) must be a finite number > 0"),
        (dict(segment_frames=0), r"segment_frames \(--segment-frames\) must be an integer >= 1"),
        (dict(overwrite="yes"), r"overwrite \(--overwrite\) must be True or False"),
        (dict(overwrite=True, resume=True), "exclude each other"),
        (dict(model=3.5), r"model \(--model\) must be a name, a file path"),
        (dict(vfi_tile=(8, 8)), "vfi_tile only applies with interpolate"),
        (dict(nonsense=1), r"restore\(\) got unknown argument\(s\) nonsense"),
    ],
)
def test_bad_arguments_of_restore_are_input_errors(kwargs, message, tmp_path):
    with pytest.raises(InputError, match=message):
        rvrt.restore(tmp_path / "in", tmp_path / "out", **kwargs)
    if not {"overwrite", "resume"} & set(kwargs):  # output options are not restore_iter's
        with pytest.raises(RVRTError):
            list(rvrt.restore_iter([], **kwargs))


def test_device_and_dtype_are_resolved_before_anything_is_read(tmp_path):
    for kwargs, message in ((dict(dtype="fp8"), "unknown dtype"), (dict(device="tpu"), "unknown device|not supported")):
        with pytest.raises(InputError, match=message):
            rvrt.restore(tmp_path / "missing", tmp_path / "out", **kwargs)


def test_devices_torch_names_are_accepted_where_present_and_refused_with_a_reason(monkeypatch):
    import torch

    from rvrt import compute

    assert compute.resolve_device("cpu") == torch.device("cpu")
    for name in ("mps", "xpu", "xpu:1", "cuda", "cuda:3"):  # none of them on this CPU machine
        kind = name.split(":")[0]
        if compute._ACCELERATORS[kind][0]():
            continue
        with pytest.raises(InputError, match=f"this PyTorch build or machine has no {kind.upper()}; use --device cpu"):
            compute.resolve_device(name)
    # where the backend is there, the device is used (the reference paths run on it)
    monkeypatch.setitem(compute._ACCELERATORS, "mps", (lambda: True, lambda: 1))
    monkeypatch.setitem(compute._ACCELERATORS, "xpu", (lambda: True, lambda: 2))
    assert compute.resolve_device("mps") == torch.device("mps")
    assert compute.resolve_device("xpu:1") == torch.device("xpu", 1)
    with pytest.raises(InputError, match="only 2 XPU device"):
        compute.resolve_device("xpu:2")
    monkeypatch.setitem(compute._ACCELERATORS, "cuda", (lambda: False, lambda: 0))
    assert compute.resolve_device("auto") == torch.device("xpu")  # the first available accelerator
    with pytest.raises(InputError, match="not supported: rvrt runs on cpu, cuda"):
        compute.resolve_device("meta")
    with pytest.raises(InputError, match="unknown device 'gpu'"):
        compute.resolve_device("gpu")


def test_interpolation_arguments():
    with pytest.raises(InputError, match=r"tile \(--tile\) needs two non-negative integers"):
        interpolate_job(tile=(1, 2, 3))
    with pytest.raises(InputError, match="unknown argument"):
        interpolate_job(sigma=3)
    assert interpolate_job(tile=(64, 64)).stages[0].tile == (64, 64)
    with pytest.raises(InputError, match="sigma and add_noise apply to restoration"):
        StageOptions("interpolate", sigma=5)


def test_defaults_are_auto_and_one_dtype_vocabulary():
    job = restore_job()
    assert job.stages[0].tile == "auto" and job.memory_fraction == 0.5 and job.dtype == "auto"
    assert JobOptions(dtype="bfloat16").dtype == "bfloat16"  # accepted, resolved to bf16 by the run


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dtype", "fp64"], "invalid choice: 'fp64' (choose from auto, fp32, fp16, bf16)"),
        (["--fps", "inf"], "must be a finite number > 0"),
        (["--memory-fraction", "-1"], "must be a finite number > 0"),
        (["--segment-frames", "0"], r"segment_frames \(--segment-frames\) must be an integer >= 1"),
        (["--frames", "0"], r"frames \(--frames\) must be an integer >= 1"),
        (["--vfi-tile", "8", "8"], "--vfi-tile only applies with --interpolate"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    (tmp_path / "in").mkdir()
    assert main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err or __import__("re").search(message, err), err
    assert len(err.strip().splitlines()) == 1


def test_quiet_means_the_same_everywhere():
    from rvrt.cli import _parser

    parser = _parser()
    for command in ("restore", "interpolate", "eval", "degrade", "train", "weights list"):
        words = command.split()
        extra = {"restore": ["x", "-o", "y"], "interpolate": ["x", "-o", "y"], "eval": ["--gt", "g"],
                 "degrade": ["x", "-o", "y", "--kind", "bi"], "train": ["r"], "weights list": []}[command]  # fmt: skip
        args = parser.parse_args([*words, *extra, "-q"])
        assert args.quiet is True, command
