"""``dtype="auto"`` (the default of restore): bfloat16 autocast where it was measured to be within
2 levels and the CPU computes it natively, float32 everywhere else; ``eval`` stays float32."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import rvrt
from rvrt import compute, zoo
from rvrt.cli import main
from rvrt.inference import runner
from rvrt.inference.options import JobOptions, StageOptions


def _frames(n=4, h=48, w=48):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (h + n, w + n, 3), dtype=np.uint8)
    return [np.ascontiguousarray(base[i : i + h, i : i + w]) for i in range(n)]  # a diagonal pan


def _job(**kw):
    stages = kw.pop("stages", (StageOptions(),))
    return JobOptions(stages=stages, **kw)


@pytest.fixture
def native(monkeypatch):
    """Pretend (or deny) that this CPU computes bfloat16 natively."""

    def set_native(value: bool) -> None:
        monkeypatch.setattr(runner, "native_bf16", lambda device: value)

    return set_native


def test_the_default_model_is_measured_for_bf16():
    measured = {"rvrt.sr_small", "rvrt.sr_small_v2"}
    assert zoo.DEFAULT_MODEL in measured
    assert all(zoo.get_spec(n).extras.get("auto_bf16") is True for n in measured)
    # official models were not measured on real frames with their weights here: they stay float32
    assert not any(zoo.get_spec(n).extras.get("auto_bf16") for n in zoo.list_models() if n not in measured)


def test_auto_is_bf16_only_for_measured_models_with_their_weights_on_native_hardware(native):
    cpu = torch.device("cpu")
    models = runner.select_models(_job())
    assert _job().dtype == "auto"
    native(True)
    assert runner.job_dtype(_job(), models, cpu) == torch.bfloat16
    assert runner.job_dtype(_job(dtype="fp32"), models, cpu) == torch.float32  # asked: obeyed
    assert runner.job_dtype(_job(dtype="fp16"), models, cpu) == torch.float16
    random_init = _job(stages=(StageOptions(weights=None),))
    assert runner.job_dtype(random_init, runner.select_models(random_init), cpu) == torch.float32
    official = _job(stages=(StageOptions(model="rvrt.sr_bi_reds", weights=None),))
    assert runner.job_dtype(official, runner.select_models(official), cpu) == torch.float32
    native(False)
    assert runner.job_dtype(_job(), models, cpu) == torch.float32


def test_native_bf16_is_a_cpu_property():
    assert compute.native_bf16(torch.device("cuda")) is False
    probes = [getattr(torch.cpu, n)() for n in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    assert compute.native_bf16(torch.device("cpu")) is any(probes)


def test_auto_restores_exactly_as_explicit_bf16_and_says_so(native, caplog):
    frames = _frames()
    native(True)
    with caplog.at_level(logging.INFO, logger="rvrt"):
        auto = dict(rvrt.restore_iter(frames, progress=False))
    explicit = dict(rvrt.restore_iter(frames, dtype="bf16", progress=False))
    fp32 = dict(rvrt.restore_iter(frames, dtype="fp32", progress=False))
    assert all(torch.equal(auto[i], explicit[i]) for i in auto)
    levels = max((auto[i] * 255).round().sub((fp32[i] * 255).round()).abs().max().item() for i in auto)
    assert 0 < levels <= 3, levels  # bf16 really ran, and stays close to float32
    native(False)
    again = dict(rvrt.restore_iter(frames, progress=False))
    assert all(torch.equal(again[i], fp32[i]) for i in fp32)


def test_the_run_log_records_the_resolved_dtype(native, tmp_path):
    from rvrt.media.images import write_png

    src = tmp_path / "in"
    src.mkdir()
    for i, f in enumerate(_frames(2)):
        write_png(src / f"{i:03d}.png", f)
    native(True)
    job = runner.prepare_job(src, tmp_path / "out", _job())
    assert job.dtype == torch.bfloat16 and job.fingerprint["dtype"] == "bf16"
    native(False)
    assert runner.prepare_job(src, tmp_path / "out", _job()).fingerprint["dtype"] == "fp32"


def test_the_command_line_defaults_are_auto_for_restoring_and_fp32_for_eval():
    from rvrt.cli import _parser

    parser = _parser()
    assert parser.parse_args(["restore", "in", "-o", "out"]).dtype == "auto"
    assert parser.parse_args(["interpolate", "in", "-o", "out"]).dtype == "auto"
    assert parser.parse_args(["eval", "--lq", "a", "--gt", "b"]).dtype == "fp32"


def test_eval_has_no_auto_dtype(capsys, tmp_path):
    assert main(["eval", "--lq", str(tmp_path), "--gt", str(tmp_path), "--dtype", "auto"]) == 2
    assert "invalid choice: 'auto' (choose from fp32, fp16, bf16)" in capsys.readouterr().err
