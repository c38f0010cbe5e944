"""What the GDA backends share about failures: the error of an explicitly requested backend and the
key a kernel failure is remembered under (its own module, so that ``triton_op`` and the dispatcher in
``__init__`` both import it without importing each other)."""

from __future__ import annotations

import torch

from rvrt.errors import RVRTError

__all__ = ["GDABackendError", "backend_error", "shape_class"]


class GDABackendError(RVRTError, RuntimeError):
    """An explicitly requested GDA backend cannot run on these inputs."""


def backend_error(reason: str) -> GDABackendError:
    """The error an explicit ``backend="triton"`` raises when the kernels fail."""
    return GDABackendError(f"the Triton GDA backend failed: {reason}")


def shape_class(q: torch.Tensor, *, kernel_size, attention_heads, deformable_groups, clip_size) -> str:
    """What a kernel failure depends on: device, dtype and the compile-time constants (not H, W)."""
    kh, kw = kernel_size
    dtype = str(q.dtype).removeprefix("torch.")
    return (
        f"{q.device} {dtype} C={q.shape[1]} heads={attention_heads} groups={deformable_groups} "
        f"clip={clip_size} kernel={kh}x{kw}"
    )
