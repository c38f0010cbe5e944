"""``compile``: the repeated blocks through ``torch.compile``, refused on a CPU, eager where it fails.

Fast backends only: test backends registered here (they hand dynamo's graph back to run it as
traced, and count the graphs) and ``aot_eager``; inductor takes minutes on a CPU (that is why
``compile=True`` is refused there).
"""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

import rvrt
from media import smooth_frames
from rvrt import fastpath
from rvrt.cli import main
from rvrt.errors import InputError
from rvrt.inference.compiling import (
    CPU_REFUSAL,
    CompileError,
    CompileSettings,
    compile_settings,
    compile_units,
    compiled_model,
)

GRAPHS: list[int] = []


def _counting(gm, example_inputs):
    GRAPHS.append(len(gm.graph.nodes))
    return gm.forward


def _broken(gm, example_inputs):
    GRAPHS.append(-1)
    raise RuntimeError("C++ compile error: g++ exited with status 1\nsee the log for details")


torch._dynamo.register_backend(_counting, name="rvrt_test_counting")
torch._dynamo.register_backend(_broken, name="rvrt_test_broken")


@pytest.fixture(autouse=True)
def fresh():
    torch._dynamo.reset()
    fastpath.reset()
    GRAPHS.clear()
    yield
    torch._dynamo.reset()
    fastpath.reset()


@pytest.fixture(scope="module")
def model(tiny_sr_weights) -> nn.Module:
    return rvrt.load_model(tiny_sr_weights)


def _frames(n: int = 4, size: int = 34) -> list[torch.Tensor]:
    return [torch.from_numpy(f).permute(2, 0, 1).float() / 255 for f in smooth_frames(n, size, size)]


def test_units_are_the_repeated_blocks(model):
    assert compile_units(model) == [
        "spynet",
        "feat_extract",
        *(f"backbone.{b}" for b in ("backward_1", "forward_1", "backward_2", "forward_2")),
        *(f"deform_align.{b}" for b in ("backward_1", "forward_1", "backward_2", "forward_2")),
        "reconstruction",
    ]


def test_named_backend_gives_the_eager_frames(model):
    """(``aot_eager`` through the runner: tests/cli/test_restore.py::test_compiled_runner_gives_the_same_frames.)"""
    frames = _frames()
    plain = dict(rvrt.restore_iter(frames, model=model, tile=(0, 0, 0)))
    traced = dict(rvrt.restore_iter(frames, model=model, tile=(0, 0, 0), compile="rvrt_test_counting"))
    assert traced.keys() == plain.keys()
    for i in plain:
        torch.testing.assert_close(traced[i], plain[i], rtol=0, atol=2e-6)
    # the blocks, each its own graph without a break (RVRT: 8), not the recurrent model unrolled
    assert 5 <= len(GRAPHS) <= 12 and max(GRAPHS) < 2000, GRAPHS
    assert not any(isinstance(m, torch._dynamo.eval_frame.OptimizedModule) for m in model.modules())


def test_compile_is_refused_on_cpu(model, tiny_sr_weights, tmp_path, capsys):
    with pytest.raises(InputError) as caught:
        list(rvrt.restore_iter(_frames(2), model=model, tile=(0, 0, 0), compile=True))
    assert str(caught.value) == CPU_REFUSAL
    src = tmp_path / "in"
    src.mkdir()
    from rvrt.media.images import write_png

    for i, img in enumerate(smooth_frames(2, 34, 34)):
        write_png(src / f"{i}.png", img)
    argv = ["restore", str(src), "-o", str(tmp_path / "out"), "--weights", str(tiny_sr_weights), "--compile"]
    assert main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"rvrt restore: error: {CPU_REFUSAL}"]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*.png"))


def test_settings_per_device():
    assert compile_settings(False, torch.device("cuda")) is None
    assert compile_settings(True, torch.device("cuda")) == CompileSettings("inductor", None, False, False)
    assert compile_settings("aot_eager", torch.device("cpu")) == CompileSettings("aot_eager", explicit=True)
    with pytest.raises(InputError, match="unknown torch.compile backend 'inductr'"):
        compile_settings("inductr", torch.device("cuda"))


def test_failing_compile_falls_back_to_eager_once(model, caplog):
    x = torch.rand(1, 4, 3, 34, 34, generator=torch.Generator().manual_seed(0))
    run = compiled_model(model, CompileSettings("rvrt_test_broken"), torch.device("cpu"))
    with torch.no_grad():
        want = model(x)
        with caplog.at_level(logging.WARNING):
            outs = [run(x) for _ in range(2)]
    assert all(torch.equal(out, want) for out in outs)
    assert GRAPHS == [-1]  # tried once
    (line,) = [r.getMessage() for r in caplog.records if r.name == "rvrt.fastpath"]
    assert line.startswith("torch.compile failed (") and "C++ compile error: g++ exited with status 1" in line


def test_failing_named_backend_raises(model):
    with pytest.raises(CompileError, match="backend 'rvrt_test_broken' failed: .*C\\+\\+ compile error"):
        list(rvrt.restore_iter(_frames(4), model=model, tile=(0, 0, 0), compile="rvrt_test_broken"))
    assert not fastpath.disabled()
