"""Guided deformable attention: public entry point and backend dispatch.

``reference.py`` is the specification (pure PyTorch, any device, differentiable);
``triton_op.py`` is a fused kernel for CUDA tensors. ``backend="auto"`` picks Triton for
supported CUDA inputs and the reference elsewhere; asking for ``"triton"`` where it cannot
run raises :class:`GDABackendError` instead of silently falling back. A kernel that fails
to compile or launch under ``auto`` costs speed, not the run: one warning, then the reference
for that device, dtype and shape class (forward and backward alike; :mod:`rvrt.fastpath`). With
``TRITON_INTERPRET=1`` the Triton backend also runs on CPU tensors in Triton's interpreter
(slow; for tests), but ``auto`` keeps CPU tensors on the reference.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch

from rvrt.errors import InputError
from rvrt.fastpath import run_fast
from rvrt.ops.gda.errors import GDABackendError, backend_error, shape_class
from rvrt.ops.gda.reference import gda_reference

__all__ = ["guided_deformable_attention", "GDABackendError", "triton_status", "Backend"]

Backend = Literal["auto", "reference", "triton"]
logger = logging.getLogger(__name__)
_logged_fallbacks: set[str] = set()
#: device types that ``backend="auto"`` sends to the Triton kernels (tests add "cpu", with
#: ``TRITON_INTERPRET=1``, to reach the dispatch and its fallback without a GPU)
AUTO_DEVICES: tuple[str, ...] = ("cuda",)
#: the op's name in the fallback log line and memo (rvrt.fastpath)
OP = "guided deformable attention (Triton)"


def triton_status(*tensors: torch.Tensor) -> str | None:
    """Why the Triton backend cannot run on these tensors, or ``None`` if it can."""
    from rvrt.ops.gda import triton_op  # local import: triton is an optional dependency

    return triton_op.unsupported_reason(*tensors)


def _check_shapes(q, kv, offset, kernel_size, attention_heads, deformable_groups, clip_size):
    if q.dim() != 4:
        raise InputError(f"q must be (B, C, H, W) with B = N * clip_size; got shape {tuple(q.shape)}")
    bsz, c, h, w = q.shape
    if clip_size < 1 or bsz % clip_size:
        raise InputError(f"q batch {bsz} must be a multiple of clip_size={clip_size}")
    n = bsz // clip_size
    if tuple(kv.shape) != (n, clip_size, 2 * c, h, w):
        raise InputError(f"kv must be (N, clip_size, 2C, H, W) = {(n, clip_size, 2 * c, h, w)}; got {tuple(kv.shape)}")
    kh, kw = kernel_size
    if kh % 2 == 0 or kw % 2 == 0:
        raise InputError(f"kernel_size must be odd (padding is kernel // 2); got {kernel_size}")
    expect = (bsz, clip_size * deformable_groups * kh * kw * 2, h, w)
    if tuple(offset.shape) != expect:
        raise InputError(
            f"offset must be (B, clip_size * groups * kh * kw * 2, H, W) = {expect}; got {tuple(offset.shape)}"
        )
    if attention_heads < 1 or c % attention_heads:
        raise InputError(f"channels C={c} must be divisible by attention_heads={attention_heads}")
    if deformable_groups < 2 or deformable_groups % 2 or c % (deformable_groups // 2):
        raise InputError(
            f"deformable_groups={deformable_groups} must be even and split the C={c} key channels "
            "(and the C value channels) evenly"
        )
    if q.dtype != kv.dtype or not q.is_floating_point() or offset.dtype not in (q.dtype, torch.float32, torch.float64):
        raise InputError(
            f"q and kv must share one floating dtype and offset must have it too or be float32; "
            f"got {q.dtype}, {kv.dtype}, {offset.dtype}"
        )
    if not (q.device == kv.device == offset.device):
        raise InputError(f"q, kv and offset must be on one device; got {q.device}, {kv.device}, {offset.device}")


def guided_deformable_attention(
    q: torch.Tensor,
    kv: torch.Tensor,
    offset: torch.Tensor,
    *,
    kernel_size: tuple[int, int] = (3, 3),
    attention_heads: int,
    deformable_groups: int,
    clip_size: int,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Guided deformable attention.

    Args:
        q: ``(B, C, H, W)`` queries, one frame per batch element ``b = n * clip_size + t``.
        kv: ``(N, clip_size, 2C, H, W)``: keys (first ``C`` channels) and values of each clip.
        offset: ``(B, clip_size * deformable_groups * kh * kw * 2, H, W)`` sampling offsets in
            pixels, ``(dy, dx)`` pairs laid out ``(clip_size, groups, kh * kw, 2)``; float32 (or
            the dtype of ``q``): half precision cannot address pixels of a large frame exactly.
        kernel_size: ``(kh, kw)``, odd; the window is centred (padding ``k // 2``).
        attention_heads: heads over the ``C`` channels; scale ``(C / heads) ** -0.5``.
        deformable_groups: groups over the ``2C`` key|value channels (keys use the first half).
        clip_size: frames per clip.
        backend: ``"auto"``, ``"reference"`` or ``"triton"``.

    Returns:
        ``(B, C, H, W)``, the attention output for every query pixel.

    Raises:
        InputError: a shape, dtype, device or option does not fit (the message names the
            expected shape).
        GDABackendError: ``backend="triton"`` where the kernels cannot run (CPU tensors without
            ``TRITON_INTERPRET=1``, float64, triton missing, ...), or where a kernel fails to
            compile or launch (forward or backward); ``backend="auto"`` then logs the reason once
            and uses the reference for this device, dtype and shape class (:mod:`rvrt.fastpath`).
        torch.OutOfMemoryError: out of memory is never turned into a fallback.
    """
    kernel_size = (int(kernel_size[0]), int(kernel_size[1]))
    _check_shapes(q, kv, offset, kernel_size, attention_heads, deformable_groups, clip_size)
    args = dict(
        kernel_size=kernel_size,
        attention_heads=attention_heads,
        deformable_groups=deformable_groups,
        clip_size=clip_size,
    )
    if backend == "reference":
        return gda_reference(q, kv, offset, **args)
    if backend not in ("auto", "triton"):
        raise InputError(f"backend must be 'auto', 'reference' or 'triton'; got {backend!r}")
    if backend == "auto" and q.device.type not in AUTO_DEVICES:
        return gda_reference(q, kv, offset, **args)
    try:
        from rvrt.ops.gda import triton_op
    except ImportError as err:  # triton missing or broken
        if backend == "triton":
            raise GDABackendError(f"the Triton GDA backend is unavailable: {err}") from err
        reason = f"triton cannot be imported ({err})"
    else:
        reason = triton_op.unsupported_reason(q, kv, offset)
        if reason is None:
            # a kernel that fails to compile or launch: the reference (auto), or the reason (triton)
            return run_fast(
                OP,
                shape_class(q, **args),
                lambda: triton_op.gda_triton(q, kv, offset, strict=backend == "triton", **args),
                lambda: gda_reference(q, kv, offset, **args),
                strict=backend_error if backend == "triton" else None,
            )
        if backend == "triton":
            raise GDABackendError(f"the Triton GDA backend cannot run here: {reason}")
    if reason not in _logged_fallbacks:  # CUDA inputs on the slow path: say why, once
        _logged_fallbacks.add(reason)
        logger.info("guided deformable attention uses the PyTorch reference: %s", reason)
    return gda_reference(q, kv, offset, **args)
