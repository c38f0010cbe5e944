"""The fused Triton GDA kernels against the reference.

Everywhere they run on CPU tensors in Triton's interpreter; where CUDA is available, compiled on
the GPU as well. ``TRITON_INTERPRET=1`` is read when a kernel is launched (``triton_op`` rebuilds
the kernels in interpreted mode if they were first built compiled), so a monkeypatched
environment is enough. The interpreter runs Python per program and per op: sizes stay tiny.
"""

from __future__ import annotations

import pytest
import torch
from gda_cases import Case, make_inputs

pytest.importorskip("triton", reason="triton is not installed (pip install rvrt[test])")

from rvrt.ops.gda import (  # noqa: E402
    GDABackendError,
    guided_deformable_attention,
    triton_op,  # noqa: E402
)
from rvrt.ops.gda.reference import gda_reference  # noqa: E402


@pytest.fixture(params=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def device(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``cpu``: the interpreter; ``cuda``: the compiled kernels."""
    if request.param == "cpu":
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    else:
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    return request.param


def _run(fn, q, kv, off, case: Case, grad_out: torch.Tensor):
    leaves = [x.detach().clone().requires_grad_() for x in (q, kv, off)]
    out = fn(*leaves, **case.kwargs)
    grads = torch.autograd.grad(out, leaves, grad_out.to(device=out.device, dtype=out.dtype))
    return out.detach(), grads


def _triton(*args, **kwargs):
    return guided_deformable_attention(*args, **kwargs, backend="triton")


def _rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.double() - want.double()).abs().max() / want.double().abs().max().clamp_min(1e-30)).item()


def _compare(case: Case, q, kv, off, *, tol: float, ref_dtype=torch.float64, seed: int = 1) -> None:
    """Forward and the gradients of q, kv and offset: max error relative to the largest value."""
    g = torch.Generator().manual_seed(seed)
    grad_out = torch.randn(q.shape, generator=g, dtype=torch.float64)
    want, want_grads = _run(gda_reference, q.to(ref_dtype), kv.to(ref_dtype), off.to(ref_dtype), case, grad_out)
    got, got_grads = _run(_triton, q, kv, off, case, grad_out)
    assert got.dtype == q.dtype and got.shape == want.shape
    errors = {"out": _rel_err(got, want)}
    for name, gt, wt, x in zip(("dq", "dkv", "doffset"), got_grads, want_grads, (q, kv, off), strict=True):
        assert gt.dtype == x.dtype and gt.shape == x.shape
        errors[name] = _rel_err(gt, wt)
    assert max(errors.values()) < tol, errors


LAYOUTS = {
    "head_per_group": (8, 2, 4),  # D=4, CG=4
    "two_heads_per_group": (16, 2, 2),  # D=8, CG=16: the official pattern
    "head_spans_two_groups": (12, 2, 8),  # D=6 (padded to 8), CG=3: per-channel groups
    "heads_straddle_groups": (12, 3, 4),  # D=4, CG=6
}


def test_float32_full_window_matches_reference(device: str) -> None:
    # the official pattern (two heads per group) with a 3x3 window and 2-frame clips
    c, heads, groups = LAYOUTS["two_heads_per_group"]
    case = Case(c=c, heads=heads, groups=groups, h=5, w=7, kernel=(3, 3))
    q, kv, off = make_inputs(case, dtype=torch.float32, offsets="random", seed=10, device=device)
    _compare(case, q, kv, off, tol=1e-5)


# The interpreter costs time per program and per sample: the other cases use 1x3 / 3x1 windows.
@pytest.mark.parametrize("layout", LAYOUTS)
def test_float32_layouts_match_reference(layout: str, device: str) -> None:
    c, heads, groups = LAYOUTS[layout]
    case = Case(c=c, heads=heads, groups=groups, h=5, w=7, kernel=(1, 3))
    q, kv, off = make_inputs(case, dtype=torch.float32, offsets="random", seed=11, device=device)
    _compare(case, q, kv, off, tol=1e-5)


@pytest.mark.parametrize("layout, kernel", [("two_heads_per_group", (3, 1)), ("heads_straddle_groups", (1, 3))])
def test_float32_exact_borders_and_integers(layout: str, kernel: tuple[int, int], device: str) -> None:
    # half-pixel offsets: samples on pixel centres, on the last row/column, on -1 and on H/W;
    # the position gradient there is the one-sided derivative that the reference takes too
    c, heads, groups = LAYOUTS[layout]
    case = Case(c=c, heads=heads, groups=groups, h=6, w=5, kernel=kernel)
    q, kv, off = make_inputs(case, dtype=torch.float32, offsets="grid", seed=12, device=device)
    _compare(case, q, kv, off, tol=1e-5)


@pytest.mark.parametrize(
    "case",
    [
        Case(n=2, clip=1, c=8, heads=2, groups=2, h=9, w=9, kernel=(1, 3)),  # 81 px: more than one pixel block
        Case(n=1, clip=3, c=6, heads=1, groups=2, h=4, w=3, kernel=(3, 1)),  # D=6, 3-frame clips
    ],
    ids=["clip1_two_blocks", "clip3_one_head"],
)
def test_float32_other_shapes(case: Case, device: str) -> None:
    q, kv, off = make_inputs(case, dtype=torch.float32, offsets="random", seed=13, device=device)
    _compare(case, q, kv, off, tol=1e-5)


def test_non_contiguous_inputs(device: str) -> None:
    case = Case(c=8, heads=2, groups=2, h=5, w=6, kernel=(1, 3))
    q, kv, off = make_inputs(case, dtype=torch.float32, seed=14, device=device)
    q_nc = q.transpose(2, 3).contiguous().transpose(2, 3)  # W-major memory
    kv_nc = torch.cat([kv, kv], 2)[:, :, ::2]  # every other channel of a wider tensor
    kv_nc[:] = kv
    off_nc = off.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # channels-last offsets
    assert not (q_nc.is_contiguous() or kv_nc.is_contiguous() or off_nc.is_contiguous())
    _compare(case, q_nc, kv_nc, off_nc, tol=1e-5)


def test_channels_last_kv_is_read_in_place(device: str) -> None:
    case = Case(c=8, heads=2, groups=2, h=4, w=5, kernel=(1, 3))
    q, kv, off = make_inputs(case, dtype=torch.float32, seed=15, device=device)
    kv_cl = kv.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    _compare(case, q, kv_cl, off, tol=1e-5)


@pytest.mark.parametrize("dtype, tol", [(torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)])
def test_half_precision(dtype: torch.dtype, tol: float, device: str) -> None:
    # the kernels accumulate in float32: compare with the (exact, float64) reference on the same
    # rounded inputs; what is left is the rounding of the outputs and gradients. bfloat16 offsets
    # often land exactly on pixels, where only the exact path takes the same one-sided gradient
    case = Case(c=16, heads=2, groups=2, h=5, w=7, kernel=(1, 3))
    q, kv, off = make_inputs(case, dtype=dtype, seed=16, device=device)
    _compare(case, q, kv, off, tol=tol)


def test_float64_is_refused_with_a_reason() -> None:
    case = Case()
    q, kv, off = make_inputs(case, dtype=torch.float64)
    assert "float64" in triton_op.unsupported_reason(q, kv, off)
    with pytest.raises(GDABackendError, match="float64 is not supported"):
        _triton(q, kv, off, **case.kwargs)


def test_unsupported_without_interpreter_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    q, kv, off = make_inputs(Case(), dtype=torch.float32)
    assert "CUDA" in triton_op.unsupported_reason(q, kv, off)


def test_sum_backward_with_expanded_output_gradient(device: str) -> None:
    # out.sum().backward() hands the backward a stride-0 (expanded) gradient
    case = Case(c=8, heads=2, groups=4, h=4, w=5, kernel=(1, 1))
    q, kv, off = make_inputs(case, dtype=torch.float32, seed=17, device=device)
    grads = []
    for fn, dtype in ((_triton, torch.float32), (gda_reference, torch.float64)):
        leaves = [x.detach().to(dtype).requires_grad_() for x in (q, kv, off)]
        fn(*leaves, **case.kwargs).sum().backward()
        grads.append([x.grad for x in leaves])
    for got, want in zip(*grads, strict=True):
        assert _rel_err(got, want) < 1e-5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (compiled kernels, real RVRT sizes)")
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 1.6e-2)])
def test_rvrt_sizes_on_gpu(dtype: torch.dtype, tol: float, monkeypatch: pytest.MonkeyPatch) -> None:
    # C=288 in 12 heads of 24 channels (padded to 32), 12 groups: two heads per group
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    case = Case(n=1, clip=2, c=288, heads=12, groups=12, h=37, w=53, kernel=(3, 3))
    q, kv, off = make_inputs(case, dtype=dtype, offsets="random", seed=18, device="cuda")
    _compare(case, q, kv, off, tol=tol, ref_dtype=torch.float64 if dtype == torch.float32 else torch.float32)


def test_half_features_with_float32_offsets(device: str) -> None:
    # what the model feeds the op under autocast: bfloat16 q/kv, float32 sampling offsets
    case = Case(c=16, heads=2, groups=2, h=5, w=7, kernel=(1, 3))
    q, kv, off = make_inputs(case, dtype=torch.float32, seed=17, device=device)
    args = dict(kernel_size=case.kernel, attention_heads=case.heads, deformable_groups=case.groups, clip_size=case.clip)
    want = gda_reference(q.double(), kv.double(), off.double(), **args)
    qb, kb = q.bfloat16().requires_grad_(), kv.bfloat16().requires_grad_()
    o = off.clone().requires_grad_()
    got = _triton(qb, kb, o, **args)
    got.float().square().sum().backward()
    assert got.dtype == torch.bfloat16 and o.grad.dtype == torch.float32 and qb.grad.dtype == torch.bfloat16
    assert _rel_err(got.double(), want) < 1.6e-2
