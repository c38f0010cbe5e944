"""Fault injection: a fast path that fails to compile or launch costs speed, never the run.

The rule lives in :mod:`rvrt.fastpath`; every optional fast path goes through it: the fused
Triton GDA (forward and backward), torchvision's deformable convolution and the fused window
attention (``scaled_dot_product_attention``). No GPU here: the GDA dispatch is made to treat CPU
tensors as eligible (``AUTO_DEVICES``, with ``TRITON_INTERPRET=1`` so that the kernels would run
in Triton's interpreter), and the launchers are made to raise what a GPU raises: Triton's
``CompilationError``, ``CUDA error: an illegal memory access``, out of memory.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from gda_cases import Case, make_inputs
from test_dcn import fake_torchvision  # noqa: F401 (a fixture, shared)

import rvrt
from conftest import TINY_SR
from rvrt import fastpath
from rvrt.models import swin
from rvrt.ops import gda
from rvrt.ops.dcn import DCNBackendError, deform_conv2d, deform_conv2d_reference
from rvrt.ops.gda import GDABackendError, guided_deformable_attention
from rvrt.ops.gda.reference import gda_reference

SRC = Path(rvrt.__file__).parents[1]
CASE = Case(n=1, clip=2, c=8, heads=2, groups=4, h=5, w=6)
ILLEGAL = "CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be asynchronously reported"


@pytest.fixture(autouse=True)
def fresh_state():
    """No failure remembered from another test, none left behind."""
    fastpath.reset()
    yield
    fastpath.reset()


def _compilation_error():
    from triton.compiler.errors import CompilationError

    return CompilationError("def kernel():\n    x = tl.load(p)\n", types.SimpleNamespace(), "unsupported layout")


@pytest.fixture
def broken_triton(monkeypatch):
    """``inject(fwd=..., bwd=...)``: CPU tensors go to the Triton path, whose forward and/or backward
    kernel raises the given error at launch; returns the list of kernel look-ups (one per launch)."""
    pytest.importorskip("triton", reason="triton is not installed (pip install rvrt[test])")
    from rvrt.ops.gda import triton_op

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(gda, "AUTO_DEVICES", ("cuda", "cpu"))
    real = triton_op._kernels
    launches = []

    def inject(fwd: BaseException | None = None, bwd: BaseException | None = None):
        class Kernels:
            @property
            def fwd(self):
                launches.append("fwd")
                if fwd is not None:
                    raise fwd
                return real().fwd

            @property
            def bwd(self):
                launches.append("bwd")
                if bwd is not None:
                    raise bwd
                return real().bwd

        monkeypatch.setattr(triton_op, "_kernels", Kernels)
        return launches

    return inject


def _fastpath_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "rvrt.fastpath" and r.levelno == logging.WARNING]


def _grads(fn, inputs, grad_out, **kwargs):
    leaves = [x.detach().clone().requires_grad_() for x in inputs]
    out = fn(*leaves, **kwargs)
    return out.detach(), torch.autograd.grad(out, leaves, grad_out)


# ----------------------------------------------------------------------------- guided deformable attention


def test_gda_compile_failure_falls_back_once(broken_triton, caplog):
    launches = broken_triton(fwd=_compilation_error())
    q, kv, off = make_inputs(CASE, dtype=torch.float32)
    want = gda_reference(q, kv, off, **CASE.kwargs)
    with caplog.at_level(logging.WARNING):
        outs = [guided_deformable_attention(q, kv, off, **CASE.kwargs) for _ in range(3)]
    assert all(torch.equal(out, want) for out in outs)
    assert launches == ["fwd"]  # tried once, not on every call
    (line,) = _fastpath_warnings(caplog)  # one line, with the reason and the shape class
    assert "guided deformable attention (Triton) failed (CompilationError: unsupported layout)" in line
    assert "cpu float32 C=8 heads=2 groups=4 clip=2 kernel=3x3" in line
    # another shape class (here: dtype) tries the kernels again
    q64 = make_inputs(Case(n=1, clip=2, c=16, heads=2, groups=4, h=5, w=6), dtype=torch.float32)
    guided_deformable_attention(*q64, **CASE.kwargs)
    assert launches == ["fwd", "fwd"]


def test_gda_launch_failure_in_backward_recomputes_with_reference(broken_triton, caplog):
    """A real (interpreted) forward, a backward launch that fails: the gradients are the reference's."""
    launches = broken_triton(bwd=RuntimeError(ILLEGAL))
    inputs = make_inputs(CASE, dtype=torch.float32)
    grad_out = torch.randn(CASE.n * CASE.clip, CASE.c, CASE.h, CASE.w, generator=torch.Generator().manual_seed(1))
    want, want_grads = _grads(gda_reference, inputs, grad_out, **CASE.kwargs)
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            got, got_grads = _grads(guided_deformable_attention, inputs, grad_out, **CASE.kwargs)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)  # the kernels' forward
            for g, w in zip(got_grads, want_grads, strict=True):
                assert torch.equal(g, w)  # the reference's own gradients
    assert launches == ["fwd", "bwd", "fwd"]  # the backward kernel is not tried twice
    (line,) = _fastpath_warnings(caplog)
    assert "backward (Triton) failed (RuntimeError: CUDA error: an illegal memory access was encountered)" in line


@pytest.mark.parametrize(
    "error",
    [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), RuntimeError("CUDA error: out of memory")],
    ids=["OutOfMemoryError", "RuntimeError"],
)
@pytest.mark.parametrize("where", ["fwd", "bwd"])
def test_gda_out_of_memory_propagates_unchanged(broken_triton, caplog, error, where):
    broken_triton(**{where: error})
    leaves = [x.requires_grad_() for x in make_inputs(CASE, dtype=torch.float32)]
    with caplog.at_level(logging.WARNING), pytest.raises(type(error)) as caught:
        guided_deformable_attention(*leaves, **CASE.kwargs).sum().backward()
    assert caught.value is error
    assert not fastpath.disabled() and not _fastpath_warnings(caplog)


@pytest.mark.parametrize("where", ["fwd", "bwd"])
def test_gda_explicit_triton_raises_the_reason(broken_triton, where):
    broken_triton(**{where: _compilation_error()})
    leaves = [x.requires_grad_() for x in make_inputs(CASE, dtype=torch.float32)]
    with pytest.raises(GDABackendError, match="Triton GDA backend failed: CompilationError: unsupported layout"):
        guided_deformable_attention(*leaves, **CASE.kwargs, backend="triton").sum().backward()
    assert not fastpath.disabled()  # an explicit request never switches anything off


# ----------------------------------------------------------------------------- deformable convolution


def _dcn_case():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 4, 5, 6, generator=g)
    offset = (torch.rand(1, 2 * 2 * 9, 5, 6, generator=g) - 0.5) * 6
    weight = torch.rand(6, 2, 3, 3, generator=g) - 0.5
    mask = torch.rand(1, 2 * 9, 5, 6, generator=g)
    return x, offset, weight, torch.rand(6, generator=g), 1, 1, 1, mask


def _failing(error: BaseException):
    """A torchvision stand-in that passes its start-up check (float64: it is the reference there)
    and raises ``error`` on the float32 inputs of the real call."""

    def op(input, offset, weight, bias, stride, padding, dilation, mask):
        if input.dtype == torch.float32:
            raise error
        return deform_conv2d_reference(input, offset, weight, bias, stride, padding, dilation, mask)

    return op


def test_dcn_launch_failure_falls_back_once(fake_torchvision, caplog):  # noqa: F811 (the fixture)
    calls = fake_torchvision(_failing(RuntimeError(ILLEGAL)))
    args = _dcn_case()
    with caplog.at_level(logging.WARNING):
        outs = [deform_conv2d(*args) for _ in range(3)]
    assert all(torch.equal(out, deform_conv2d_reference(*args)) for out in outs)
    assert len(calls) == 2  # the start-up check, one failed call
    (line,) = _fastpath_warnings(caplog)
    assert "deformable convolution (torchvision) failed (RuntimeError: CUDA error: an illegal memory" in line
    with pytest.raises(DCNBackendError, match="illegal memory access"):
        deform_conv2d(*args, backend="torchvision")  # asked for by name: raised, even now


def test_dcn_out_of_memory_propagates(fake_torchvision):  # noqa: F811 (the fixture)
    error = torch.OutOfMemoryError("CUDA out of memory")
    fake_torchvision(_failing(error))
    with pytest.raises(torch.OutOfMemoryError) as caught:
        deform_conv2d(*_dcn_case())
    assert caught.value is error and not fastpath.disabled()


# ----------------------------------------------------------------------------- fused window attention


def _no_kernel(monkeypatch, error: BaseException) -> list[int]:
    calls = []

    def sdpa(*args, **kwargs):
        calls.append(1)
        raise error

    monkeypatch.setattr(swin.F, "scaled_dot_product_attention", sdpa)
    return calls


def test_sdpa_failure_falls_back_to_the_math_once(monkeypatch, caplog):
    torch.manual_seed(0)
    attn = swin.WindowAttention(8, (2, 2, 2), 2).eval()
    with torch.no_grad():
        attn.relative_position_bias_table.normal_()
    x = torch.randn(4, 8, 8)
    mask = swin.shift_mask((2, 4, 4), (2, 2, 2), (1, 1, 1), x.device)
    monkeypatch.setattr(swin, "_FUSED", False)
    with torch.no_grad():
        want = attn(x, mask)
    monkeypatch.setattr(swin, "_FUSED", True)
    calls = _no_kernel(monkeypatch, RuntimeError("No available kernel. Aborting execution."))
    with caplog.at_level(logging.WARNING), torch.no_grad():
        outs = [attn(x, mask) for _ in range(3)]
    assert all(torch.equal(out, want) for out in outs)
    assert len(calls) == 1
    (line,) = _fastpath_warnings(caplog)
    assert "window attention (scaled_dot_product_attention) failed (RuntimeError: No available kernel" in line
    fastpath.reset()
    _no_kernel(monkeypatch, torch.OutOfMemoryError("CUDA out of memory"))
    with pytest.raises(torch.OutOfMemoryError):
        attn(x, mask)


# ----------------------------------------------------------------------------- a whole model, the command line


def test_tiny_rvrt_with_every_fast_path_broken_equals_the_reference(broken_triton, monkeypatch, caplog):
    torch.manual_seed(0)
    model = rvrt.RVRT(**TINY_SR).eval()
    x = torch.rand(1, 4, 3, 36, 36, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(swin, "_FUSED", False)
    for align in model.deform_align.values():
        align.gda_backend = "reference"
    with torch.no_grad():
        want = model(x)
    for align in model.deform_align.values():
        align.gda_backend = "auto"
    monkeypatch.setattr(swin, "_FUSED", True)
    launches = broken_triton(fwd=RuntimeError(ILLEGAL))
    sdpa_calls = _no_kernel(monkeypatch, RuntimeError("No available kernel. Aborting execution."))
    with caplog.at_level(logging.WARNING), torch.no_grad():
        got = model(x)
    assert torch.equal(got, want)
    assert launches == ["fwd"] and len(sdpa_calls) == 1
    assert len(_fastpath_warnings(caplog)) == 2  # one per op


INJECT = """
import sys
import rvrt.ops.gda as gda
from rvrt.cli import main
from rvrt.ops.gda import triton_op

gda.AUTO_DEVICES = ("cuda", "cpu")  # CPU tensors take the Triton path, whose launch fails
def broken():
    raise RuntimeError("CUDA error: an illegal memory access was encountered")
triton_op._kernels = broken
sys.exit(main(sys.argv[1:]))
"""


def test_restore_cli_survives_a_broken_kernel(tiny_sr_weights, tmp_path):
    """``rvrt restore`` with the Triton launch failing: exit 0, the frames of the reference, one warning line."""
    pytest.importorskip("triton", reason="triton is not installed (pip install rvrt[test])")
    from media import smooth_frames
    from rvrt.media.images import read_image, write_png

    src = tmp_path / "in"
    src.mkdir()
    for i, img in enumerate(smooth_frames(4, 34, 34)):
        write_png(src / f"{i:03d}.png", img)
    argv = ["restore", str(src), "--weights", str(tiny_sr_weights), "--tile", "0", "0", "0", "--quiet"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    env.update(TRITON_INTERPRET="1", RVRT_FUSED_ATTENTION="1")
    run = subprocess.run(
        [sys.executable, "-c", INJECT, *argv, "-o", str(tmp_path / "out")], env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert lines[0].startswith("guided deformable attention (Triton) failed (RuntimeError: CUDA error: an illegal")
    model = rvrt.load_model(tiny_sr_weights)
    frames = [torch.from_numpy(f).permute(2, 0, 1).float() / 255 for f in smooth_frames(4, 34, 34)]
    want = dict(rvrt.restore_iter(frames, model=model, tile=(0, 0, 0)))
    for i in range(4):
        got = read_image(tmp_path / "out" / f"{i:03d}.png")[0]
        diff = np.abs(got.astype(np.float32) - want[i].permute(1, 2, 0).numpy() * 255)
        assert diff.max() <= 0.5 + 1e-3, (i, diff.max())  # the reference's frames, rounded to 8 bits
