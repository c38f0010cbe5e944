"""``torch.compile`` for the runner: the repeated blocks of a model, not its Python loops.

RVRT and its relatives are recurrent: Python loops over clips, branches and frame chunks call the
same few blocks (Swin groups, guided deformable attention, SpyNet) dozens of times. Compiling the
whole model unrolls those loops into one huge graph (the default inductor backend did not finish
within 480 s on a CPU for a tiny model); compiling each block once gives a few small graphs that
every iteration reuses. The loops stay eager.

What ``compile`` means (:func:`compile_settings`):

* ``True`` on CUDA: inductor, default mode, ``dynamic=False`` (a tile size compiles once; border
  tiles of another size once more), kernels cached under rvrt's cache folder.
* ``True`` on a CPU: refused with :class:`~rvrt.errors.InputError` (see :data:`CPU_REFUSAL`).
* a backend name (``"inductor"``, ``"aot_eager"``, ``"eager"``, ...): that backend on any device.

A compile that fails at run time (anything but out of memory, :mod:`rvrt.fastpath`) falls back to
the eager model with one warning, unless a backend was named: then it raises :class:`CompileError`.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from rvrt.errors import InputError, RVRTError
from rvrt.fastpath import run_fast

__all__ = ["CompileSettings", "CompileError", "compile_settings", "compiled_model", "compile_units", "CPU_REFUSAL"]

#: classes whose instances are compiled as units: the blocks the recurrent loops call again and again
UNIT_CLASSES = ("RSTBWithInputConv", "SwinGroup", "SpyNet", "GuidedDeformableAttention", "ClipWindowAlignment")
#: graphs per compiled function: units x tile sizes (a full tile, the right, bottom and corner borders)
RECOMPILE_LIMIT = 64
#: the op's name in the fallback log line and memo (rvrt.fastpath)
OP = "torch.compile"
#: measured on a shared 2-core CPU, 4 frames of 48x48, same-process ratios: a small RVRT (32 channels)
#: 311 s to compile, then 1.07x eager; TINY (12 channels) about 3 min cold (29 s from a warm cache), 0.95x
CPU_REFUSAL = (
    "compile (--compile) is refused on a CPU: inductor takes minutes to compile the model there and the "
    "result is no faster; on a CPU use --dtype bf16 (where it has native bfloat16), or compile on a GPU"
)


class CompileError(RVRTError, RuntimeError):
    """The ``torch.compile`` backend that was asked for by name fails on this model or device."""


@dataclass(frozen=True)
class CompileSettings:
    """Arguments of ``torch.compile`` for the units of a model."""

    backend: str
    mode: str | None = None
    dynamic: bool = False
    #: the backend was named by the caller: a failure raises instead of falling back to eager
    explicit: bool = False


def compile_settings(compile: bool | str, device: torch.device) -> CompileSettings | None:
    """What ``compile`` means on ``device`` (``None``: run eagerly).

    Raises:
        InputError: ``compile=True`` on a CPU (:data:`CPU_REFUSAL`), or an unknown backend name.
    """
    if compile is False:
        return None
    if isinstance(compile, str):
        known = torch._dynamo.list_backends(exclude_tags=())
        if compile not in known:
            raise InputError(f"unknown torch.compile backend {compile!r}; known: {', '.join(sorted(known))}")
        return CompileSettings(backend=compile, explicit=True)
    if device.type == "cpu":
        raise InputError(CPU_REFUSAL)
    return CompileSettings(backend="inductor")


def compile_units(model: nn.Module) -> list[str]:
    """Names of the submodules compiled as units (outermost first; none nested in another)."""
    names: list[str] = []

    def walk(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            if type(child).__name__ in UNIT_CLASSES:
                names.append(prefix + name)
            else:
                walk(child, f"{prefix}{name}.")

    walk(model, "")
    return names


def _with_units_compiled(module: nn.Module, wrap: Callable[[nn.Module], nn.Module]) -> nn.Module:
    """A shallow copy of ``module`` whose units are wrapped; parameters and buffers are shared and
    ``module`` itself is left as it was (the caller's model stays eager)."""
    view = copy.copy(module)
    view._modules = {}
    for name, child in module.named_children():
        if type(child).__name__ in UNIT_CLASSES:
            view._modules[name] = wrap(child)
        elif compile_units(child):
            view._modules[name] = _with_units_compiled(child, wrap)
        else:
            view._modules[name] = child
    return view


def _cache_dir() -> None:
    """Inductor's kernels go under rvrt's cache (``$RVRT_HOME/inductor``) unless set already."""
    from rvrt.hub import cache_dir

    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir() / "inductor"))


def compiled_model(model: nn.Module, settings: CompileSettings, device: torch.device) -> Callable[..., torch.Tensor]:
    """``model`` with its units compiled (the whole model where it has none), falling back to ``model``
    itself, eagerly, where compiling or running the compiled code fails (see the module doc)."""
    if settings.backend == "inductor":
        _cache_dir()
    # one block class serves several instances of different widths (RVRT: six RSTBWithInputConv), each
    # compiled per tile size: dynamo's default of 8 graphs per function would send the rest to eager
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)

    def wrap(unit: nn.Module) -> nn.Module:
        return torch.compile(unit, backend=settings.backend, mode=settings.mode, dynamic=settings.dynamic)

    fast = _with_units_compiled(model, wrap) if compile_units(model) else wrap(model)
    key = f"backend {settings.backend} on {device.type}"

    def strict(reason: str) -> CompileError:
        return CompileError(f"torch.compile with backend {settings.backend!r} failed: {reason}")

    def run(*args, **kwargs) -> torch.Tensor:
        return run_fast(
            OP,
            key,
            lambda: fast(*args, **kwargs),
            lambda: model(*args, **kwargs),
            strict=strict if settings.explicit else None,
        )

    return run
