"""Guided deformable attention: the reference against a loop version, gradients, checks, dispatch."""

from __future__ import annotations

import pytest
import torch
from gda_cases import Case, gda_loops, make_inputs

from rvrt.errors import InputError, RVRTError
from rvrt.ops.gda import GDABackendError, guided_deformable_attention
from rvrt.ops.gda.reference import gda_reference

LAYOUTS = {
    # (C, heads, groups): head_dim D, channels per group CG = 2C / groups
    "head_per_group": (8, 2, 4),  # D=4, CG=4
    "two_heads_per_group": (8, 2, 2),  # D=4, CG=8 (the official 12 heads / 12 groups pattern)
    "head_spans_two_groups": (12, 2, 8),  # D=6, CG=3
    "heads_straddle_groups": (12, 3, 4),  # D=4, CG=6: head 1 is split 2 + 2 across groups 0 and 1
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("offsets", ["random", "grid"])
def test_reference_matches_loops(layout: str, offsets: str) -> None:
    c, heads, groups = LAYOUTS[layout]
    case = Case(c=c, heads=heads, groups=groups, h=5, w=7, kernel=(3, 3))
    q, kv, off = make_inputs(case, offsets=offsets, seed=hash(layout) % 1000)
    got = guided_deformable_attention(q, kv, off, **case.kwargs, backend="reference")
    want = gda_loops(q, kv, off, **case.kwargs)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "case",
    [
        Case(n=2, clip=1, c=4, heads=1, groups=2, h=4, w=3, kernel=(1, 3)),
        Case(n=1, clip=3, c=6, heads=3, groups=2, h=3, w=5, kernel=(3, 1)),
        Case(n=1, clip=2, c=4, heads=2, groups=4, h=1, w=6, kernel=(3, 5)),
    ],
    ids=["clip1_1x3", "clip3_3x1", "one_row_3x5"],
)
def test_reference_matches_loops_other_windows(case: Case) -> None:
    q, kv, off = make_inputs(case, offsets="random", seed=3)
    got = gda_reference(q, kv, off, **case.kwargs)
    torch.testing.assert_close(got, gda_loops(q, kv, off, **case.kwargs), rtol=1e-12, atol=1e-12)


def test_slot_order_reads_own_frame_first_only_for_t0() -> None:
    # Frame 0: keys 0, values -1. Frame 1: keys 20 (wins the softmax), values +1. Slot 1 is pushed
    # out of the image (its samples are zero). Query t=0 sees frame 0 in slot 0: mean of -1 and 0.
    # Query t=1 sees frame 1 in slot 0 (the official order (m + t) % clip): +1.
    case = Case(n=1, clip=2, c=2, heads=1, groups=2, h=3, w=3, kernel=(1, 1))
    q = torch.ones(2, 2, 3, 3, dtype=torch.float64)
    kv = torch.zeros(1, 2, 4, 3, 3, dtype=torch.float64)
    kv[0, 1, :2] = 20.0
    kv[0, 0, 2:] = -1.0
    kv[0, 1, 2:] = 1.0
    off = torch.zeros(2, 2, 2, 1, 2, 3, 3, dtype=torch.float64)  # (B, clip, groups, taps, (dy, dx), H, W)
    off[:, 1, :, :, 0] = 10.0
    off = off.flatten(1, 4)
    out = gda_reference(q, kv, off, **case.kwargs)
    torch.testing.assert_close(out[0], torch.full_like(out[0], -0.5), rtol=0, atol=1e-12)
    torch.testing.assert_close(out[1], torch.ones_like(out[1]), rtol=0, atol=1e-12)
    torch.testing.assert_close(out, gda_loops(q, kv, off, **case.kwargs), rtol=0, atol=1e-12)


def test_reference_gradcheck() -> None:
    case = Case(n=1, clip=2, c=4, heads=2, groups=2, h=3, w=4, kernel=(3, 3))
    q, kv, off = make_inputs(case, offsets="random", seed=5)
    inputs = tuple(x.clone().requires_grad_() for x in (q, kv, off))
    assert torch.autograd.gradcheck(
        lambda *a: gda_reference(*a, **case.kwargs), inputs, eps=1e-6, atol=1e-6, fast_mode=True
    )


def _bad_inputs():
    case = Case()
    q, kv, off = make_inputs(case, dtype=torch.float32)
    return case, q, kv, off


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda q, kv, off: (q[0], kv, off), r"q must be \(B, C, H, W\)"),
        (
            lambda q, kv, off: (q, kv[:, :, :-1], off),
            r"kv must be .* = \(1, 2, 16, 5, 7\); got \(1, 2, 15, 5, 7\)",
        ),
        (
            lambda q, kv, off: (q, kv, off[:, :-2]),
            r"offset must be .* = \(2, 144, 5, 7\); got \(2, 142, 5, 7\)",
        ),
        (lambda q, kv, off: (q[:1], kv, off), r"batch 1 must be a multiple of clip_size=2"),
        (lambda q, kv, off: (q, kv.double(), off), r"share one floating dtype"),
    ],
    ids=["q_dims", "kv_channels", "offset_channels", "batch", "dtype"],
)
def test_shape_errors_name_the_expected_shape(mutate, message: str) -> None:
    case, q, kv, off = _bad_inputs()
    with pytest.raises(InputError, match=message):
        guided_deformable_attention(*mutate(q, kv, off), **case.kwargs, backend="reference")


def test_option_errors() -> None:
    case, q, kv, off = _bad_inputs()
    with pytest.raises(InputError, match="divisible by attention_heads=3"):
        guided_deformable_attention(q, kv, off, **{**case.kwargs, "attention_heads": 3})
    with pytest.raises(InputError, match="kernel_size must be odd"):
        guided_deformable_attention(q, kv, off, **{**case.kwargs, "kernel_size": (2, 2)})
    with pytest.raises(InputError, match="backend must be"):
        guided_deformable_attention(q, kv, off, **case.kwargs, backend="cuda")


def test_triton_backend_on_cpu_raises_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    case, q, kv, off = _bad_inputs()
    with pytest.raises(GDABackendError, match="Triton GDA backend .*(CUDA|unavailable)") as info:
        guided_deformable_attention(q, kv, off, **case.kwargs, backend="triton")
    assert isinstance(info.value, RVRTError)  # the CLI prints it as one line


def test_auto_on_cpu_uses_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    case, q, kv, off = _bad_inputs()
    triton_op = pytest.importorskip("rvrt.ops.gda.triton_op", reason="triton is not installed")

    def fail(*args, **kwargs):
        raise AssertionError("auto must not call the Triton kernels for CPU tensors")

    monkeypatch.setattr(triton_op, "gda_triton", fail)
    for interpret in ("0", "1"):  # even when the interpreter could run them
        monkeypatch.setenv("TRITON_INTERPRET", interpret)
        out = guided_deformable_attention(q, kv, off, **case.kwargs, backend="auto")
        assert torch.equal(out, gda_reference(q, kv, off, **case.kwargs))


def test_float32_path_matches_the_exact_float64_path() -> None:
    # float32 samples through grid_sample; float64 takes the exact floor/fraction arithmetic
    case = Case(c=16, heads=2, groups=4, h=13, w=11, kernel=(3, 3))
    q, kv, off = make_inputs(case, dtype=torch.float64, offsets="random", seed=21)
    args = dict(kernel_size=case.kernel, attention_heads=case.heads, deformable_groups=case.groups, clip_size=case.clip)
    exact = gda_reference(q, kv, off, **args)
    fast = gda_reference(q.float(), kv.float(), off.float(), **args)
    torch.testing.assert_close(fast.double(), exact, rtol=1e-5, atol=1e-5)
