"""The one rule for optional fast paths: a failure costs speed, never the run.

A fast path (the fused Triton GDA kernels, torchvision's deformable convolution, a fused
``scaled_dot_product_attention`` kernel, ``torch.compile``) is an optimisation of a reference
that always works. :func:`run_fast` runs the fast callable; if it raises at compile or launch
time, the reason is logged once (one warning line naming the op), the fast path is switched off
for that op and key (device, dtype, shape class: whatever the caller says the failure depends
on), and the reference gives the result, now and on every later call with that key.

Two things are never swallowed:

* out of memory (:func:`is_out_of_memory`): it propagates unchanged, so that the runner can
  retry with smaller tiles (the reference would need at least as much memory);
* a fast path the caller asked for by name (``strict``): its failure is raised as the
  caller's error class with the reason, instead of silently running something else.

Errors meant for the user (:class:`~rvrt.errors.RVRTError`: bad input), ``KeyboardInterrupt`` and
other non-``Exception`` errors propagate as well.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from typing import TypeVar

import torch

from rvrt.errors import RVRTError

__all__ = ["run_fast", "is_out_of_memory", "is_disabled", "disabled", "reset", "reason_of"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: (op, key) -> the one-line reason its fast path was switched off
_DISABLED: dict[tuple[str, Hashable], str] = {}


def is_out_of_memory(err: BaseException) -> bool:
    """Out of memory on any device: ``torch.OutOfMemoryError``, ``MemoryError``, a RuntimeError
    saying so (CUDA's "out of memory" from older code paths, the CPU allocator's "can't allocate
    memory"). Triton's ``OutOfResources`` (shared memory or registers of one kernel) is not: the
    reference does not need those."""
    if isinstance(err, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def reason_of(err: BaseException) -> str:
    """``Type: first line of the message``: the reason as one line (for Triton's compilation
    errors, whose message starts with the source excerpt, the compiler's own message)."""
    text = getattr(err, "error_message", None) or str(err)
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    # a heading such as torch.compile's "backend='inductor' raised:" needs the line it announces
    first = f"{lines[0]} {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]
    return f"{type(err).__name__}: {first}"


def is_disabled(op: str, key: Hashable) -> bool:
    """Whether the fast path of ``op`` failed before for ``key`` (then :func:`run_fast` skips it)."""
    return (op, key) in _DISABLED


def disabled() -> dict[tuple[str, Hashable], str]:
    """A copy of the switched-off fast paths: ``(op, key) -> reason``."""
    return dict(_DISABLED)


def reset() -> None:
    """Forget every failure (tests; or after the cause, e.g. a driver, was fixed in-process)."""
    _DISABLED.clear()


def run_fast(
    op: str,
    key: Hashable,
    fast: Callable[[], T],
    reference: Callable[[], T],
    *,
    strict: Callable[[str], Exception] | None = None,
) -> T:
    """``fast()``, or ``reference()`` where the fast path fails or failed before for ``(op, key)``.

    Args:
        op: what runs, for the log line and the memo (``"guided deformable attention (Triton)"``).
        key: what a failure depends on (device, dtype, shape class); other keys still try.
        fast: the optimised computation.
        reference: the computation it stands in for (same result up to rounding).
        strict: the fast path was asked for explicitly: its failure is raised as
            ``strict(reason)`` (chained to the original error) instead of falling back.

    Raises:
        Out of memory, unchanged (see :func:`is_out_of_memory`); ``strict(reason)``.
    """
    if strict is None and (op, key) in _DISABLED:
        return reference()
    if torch.compiler.is_compiling():
        # traced by torch.compile: a failure shows when the graph compiles or runs, and the
        # compile fallback (eager, rvrt.inference.compiling) handles it there
        return fast()
    try:
        return fast()
    except Exception as err:
        if is_out_of_memory(err) or isinstance(err, RVRTError):  # RVRTError: the user's to fix
            raise
        reason = reason_of(err)
        if strict is not None:
            raise strict(reason) from err
        _DISABLED[(op, key)] = reason
        log.warning("%s failed (%s); using the reference implementation from now on for %s", op, reason, key)
    return reference()
