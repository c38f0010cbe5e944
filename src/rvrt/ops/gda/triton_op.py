"""Launchers and autograd for the fused Triton guided deformable attention.

:func:`gda_triton` is the differentiable entry; :func:`unsupported_reason` says whether it can run.
The forward and backward are registered as ``torch.library.triton_op`` custom ops
(``rvrt::gda_fwd``, ``rvrt::gda_bwd``) tied together with ``register_autograd``, so
``torch.compile`` sees the kernels instead of an opaque Python function.

Setting ``TRITON_INTERPRET=1`` runs the same kernels in Triton's CPU interpreter (slow; for tests).
The flag is read when a kernel is launched, not when this module is imported.
"""

from __future__ import annotations

import contextlib
import importlib
import types

import torch
import triton
from torch.library import triton_op, wrap_triton

from rvrt.fastpath import run_fast
from rvrt.ops.gda import triton_kernels
from rvrt.ops.gda.errors import backend_error, shape_class
from rvrt.ops.gda.reference import gda_reference

__all__ = ["gda_triton", "unsupported_reason"]

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_LOG2E = 1.4426950408889634  # log2(e)
#: the backward's name in the fallback log line and memo (rvrt.fastpath)
BWD_OP = "guided deformable attention backward (Triton)"


def _interpreting() -> bool:
    return bool(triton.knobs.runtime.interpret)


def unsupported_reason(*tensors: torch.Tensor) -> str | None:
    """Why the Triton kernels cannot run on these tensors, or ``None`` if they can.

    They run on CUDA (or ROCm) tensors, and on any device while ``TRITON_INTERPRET=1``.
    """
    for x in tensors:
        if x.dtype not in _DTYPES:
            return f"dtype {x.dtype} is not supported (float32, float16 or bfloat16)"
    for x in tensors:
        # batch offsets are 64-bit in the kernels, offsets inside one batch element 32-bit
        span = sum((size - 1) * abs(stride) for size, stride in zip(x.shape[1:], x.stride()[1:], strict=True))
        if x.dim() > 1 and span >= 2**31:
            return f"a tensor of shape {tuple(x.shape)} is too large for 32-bit indexing; process it in tiles"
    if _interpreting():
        return None
    devices = {x.device for x in tensors}
    if any(dev.type != "cuda" for dev in devices):
        where = ", ".join(sorted(str(dev) for dev in devices))
        return f"tensors are on {where}; the kernels need CUDA tensors (or TRITON_INTERPRET=1 to interpret them)"
    if not torch.cuda.is_available():
        return "CUDA is not available to PyTorch"
    if len(devices) > 1:
        return "tensors are on different CUDA devices"
    if any(x.dtype == torch.bfloat16 for x in tensors) and torch.version.hip is None:
        major, _ = torch.cuda.get_device_capability(next(iter(devices)))
        if major < 8:
            return "bfloat16 needs a GPU of compute capability 8.0 or newer"
    return None


# ---------------------------------------------------------------------------------------------
# kernels, in the mode (compiled or interpreted) that TRITON_INTERPRET asks for at launch time

# (BLOCK_P, num_warps). Compiled offline for sm_90 with C=288, 12 heads, 12 groups (D=24 padded
# to 32), none of these spills: the forward needs 56-186 registers, the backward 113-226 (fewest
# at 4 tile elements per thread: BLOCK_P * BLOCK_D / (32 * num_warps) = 4).
_FWD_CONFIGS = [
    triton.Config({"BLOCK_P": bp}, num_warps=nw, num_stages=1)
    for bp, nw in ((32, 2), (32, 4), (64, 4), (64, 8), (128, 8))
]
_BWD_CONFIGS = [
    triton.Config({"BLOCK_P": bp}, num_warps=nw, num_stages=1) for bp, nw in ((16, 4), (32, 4), (32, 8), (64, 8))
]
# one config in the interpreter: no benchmarking there, and few, large programs
_INTERPRET_CONFIGS = [triton.Config({"BLOCK_P": 64}, num_warps=1, num_stages=1)]
_AUTOTUNE_KEY = ["H", "W", "HEADS", "C", "D", "CG", "G", "CLIP", "KH", "KW"]
_kernel_cache: dict[bool, types.SimpleNamespace] = {}


def _kernels() -> types.SimpleNamespace:
    interpret = _interpreting()
    if interpret not in _kernel_cache:
        module = triton_kernels
        if isinstance(module.gda_fwd_kernel, triton.runtime.JITFunction) == interpret:
            # @triton.jit makes compiled or interpreted functions when it runs, i.e. at import.
            # Re-executing the module gives functions of the mode asked for now; the kernels of
            # the other mode would resolve their helpers to the new objects, so drop them.
            module = importlib.reload(triton_kernels)
            _kernel_cache.clear()
        fwd_configs = _INTERPRET_CONFIGS if interpret else _FWD_CONFIGS
        bwd_configs = _INTERPRET_CONFIGS if interpret else _BWD_CONFIGS
        _kernel_cache[interpret] = types.SimpleNamespace(
            fwd=triton.autotune(fwd_configs, key=_AUTOTUNE_KEY)(module.gda_fwd_kernel),
            # the backward accumulates with atomics: benchmark runs must start from zero
            bwd=triton.autotune(bwd_configs, key=_AUTOTUNE_KEY, reset_to_zero=["dkv_ptr", "doff_ptr"])(
                module.gda_bwd_kernel
            ),
        )
    return _kernel_cache[interpret]


def _meta(q: torch.Tensor, heads: int, groups: int) -> dict[str, int | bool]:
    c = q.shape[1]
    d = c // heads
    cg = 2 * c // groups
    return dict(
        C=c,
        D=d,
        CG=cg,
        G=groups,
        HEAD_IN_GROUP=(cg % d == 0),
        BLOCK_D=max(triton.next_power_of_2(d), 2),
    )


def _grid(b: int, hw: int, heads: int):
    return lambda meta: (triton.cdiv(hw, meta["BLOCK_P"]) * heads, b)


# ---------------------------------------------------------------------------------------------
# custom ops


@triton_op("rvrt::gda_fwd", mutates_args=())
def _gda_fwd(
    q: torch.Tensor,
    kv_cl: torch.Tensor,
    offset: torch.Tensor,
    kh: int,
    kw: int,
    heads: int,
    groups: int,
    clip: int,
    strict: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``q`` (B, C, H, W), ``kv_cl`` (N, clip, H, W, 2C), ``offset`` (B, clip*G*kh*kw*2, H, W)
    -> output (B, C, H, W) and the base-2 log-sum-exp (B, heads, H*W) float32.

    ``strict`` (the Triton backend was asked for by name) only travels to the backward: it then
    raises where the backward kernel fails, instead of computing the gradients with the reference."""
    bsz, c, h, w = q.shape
    out = torch.empty((bsz, c, h, w), dtype=q.dtype, device=q.device)
    lse = torch.empty((bsz, heads, h * w), dtype=torch.float32, device=q.device)
    if out.numel() == 0:
        return out, lse
    meta = _meta(q, heads, groups)
    # fmt: off
    wrap_triton(_kernels().fwd)[_grid(bsz, h * w, heads)](
        q, kv_cl, offset, out, lse,
        h, w, heads,
        *q.stride(), *kv_cl.stride(), *offset.stride(), *out.stride(),
        (c // heads) ** -0.5 * _LOG2E,
        CLIP=clip, KH=kh, KW=kw, **meta,
    )
    # fmt: on
    return out, lse


@triton_op("rvrt::gda_bwd", mutates_args=())
def _gda_bwd(
    q: torch.Tensor,
    kv_cl: torch.Tensor,
    offset: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    dout: torch.Tensor,
    kh: int,
    kw: int,
    heads: int,
    groups: int,
    clip: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of q, kv_cl (channels-last) and offset, in the dtypes of those inputs."""
    bsz, c, h, w = q.shape
    dq = torch.empty((bsz, c, h, w), dtype=q.dtype, device=q.device)
    # float32 accumulators for the atomic scatter; cast once at the end
    dkv = torch.zeros(kv_cl.shape, dtype=torch.float32, device=q.device)
    doff = torch.zeros(offset.shape, dtype=torch.float32, device=q.device)
    if dq.numel() > 0:
        meta = _meta(q, heads, groups)
        d = c // heads
        # fmt: off
        wrap_triton(_kernels().bwd)[_grid(bsz, h * w, heads)](
            q, kv_cl, offset, out, dout, lse, dq, dkv, doff,
            h, w, heads,
            *q.stride(), *kv_cl.stride(), *offset.stride(), *out.stride(), *dout.stride(),
            *dq.stride(), *dkv.stride(),
            d**-0.5 * _LOG2E, d**-0.5,
            CLIP=clip, KH=kh, KW=kw, **meta,
        )
        # fmt: on
    return dq, dkv.to(kv_cl.dtype), doff.to(offset.dtype)


def _setup_context(ctx, inputs, output) -> None:
    q, kv_cl, offset, kh, kw, heads, groups, clip, strict = inputs
    out, lse = output
    ctx.save_for_backward(q, kv_cl, offset, out, lse)
    ctx.args = (kh, kw, heads, groups, clip)
    ctx.strict = strict


def _reference_grads(q, kv_cl, offset, dout, **args) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradients of q, kv_cl and offset through the reference (recomputes its forward)."""
    with torch.enable_grad():
        leaves = [x.detach().requires_grad_() for x in (q, kv_cl.permute(0, 1, 4, 2, 3), offset)]
        dq, dkv, doff = torch.autograd.grad(gda_reference(*leaves, **args), leaves, dout)
    return dq, dkv.permute(0, 1, 3, 4, 2), doff


def _backward(ctx, dout, dlse):
    # dlse is ignored: the log-sum-exp is an internal output, never exposed by gda_triton
    q, kv_cl, offset, out, lse = ctx.saved_tensors
    kh, kw, heads, groups, clip = ctx.args
    args = dict(kernel_size=(kh, kw), attention_heads=heads, deformable_groups=groups, clip_size=clip)
    # a backward kernel that fails to compile or launch: the reference recomputes the gradients
    dq, dkv, doff = run_fast(
        BWD_OP,
        shape_class(q, **args),
        lambda: _gda_bwd(q, kv_cl, offset, out, lse, dout, *ctx.args),
        lambda: _reference_grads(q, kv_cl, offset, dout, **args),
        strict=backend_error if ctx.strict else None,
    )
    return dq, dkv, doff, None, None, None, None, None, None


_gda_fwd.register_autograd(_backward, setup_context=_setup_context)


def gda_triton(
    q: torch.Tensor,
    kv: torch.Tensor,
    offset: torch.Tensor,
    *,
    kernel_size: tuple[int, int],
    attention_heads: int,
    deformable_groups: int,
    clip_size: int,
    strict: bool = False,
) -> torch.Tensor:
    """Fused guided deformable attention (differentiable). Same contract as ``gda_reference``.

    Shapes are checked by :func:`rvrt.ops.gda.guided_deformable_attention`; call that.

    Args:
        q: ``(B, C, H, W)``, ``B = N * clip_size``.
        kv: ``(N, clip_size, 2C, H, W)``. Gathers read it channels-last; a ``kv`` whose
            memory is already channels-last (channel stride 1) is used without a copy.
        offset: ``(B, clip_size * deformable_groups * kh * kw * 2, H, W)``, ``(dy, dx)`` pairs.
        strict: raise :class:`GDABackendError` where the backward kernel fails (the Triton
            backend was asked for by name); otherwise the reference computes the gradients.

    Returns:
        ``(B, C, H, W)`` in the dtype of ``q``; float32 accumulation inside.
    """
    kv_cl = kv.permute(0, 1, 3, 4, 2)
    if kv_cl.stride(-1) != 1:
        kv_cl = kv_cl.contiguous()
    kh, kw = kernel_size
    # Triton launches on the current device; autograd's backward thread sets it by itself
    with torch.cuda.device(q.device) if q.is_cuda else contextlib.nullcontext():
        out, _ = _gda_fwd(q, kv_cl, offset, kh, kw, attention_heads, deformable_groups, clip_size, strict)
    return out
