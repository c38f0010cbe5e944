"""The common base of the model config dataclasses."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from torch import nn

__all__ = ["ConstructorConfig"]


class ConstructorConfig:
    """Mixin for a frozen dataclass whose fields are the keyword arguments of an official constructor.

    Subclasses call :meth:`_freeze` first in ``__post_init__`` (lists become tuples, so configs are
    hashable and compare equal however they were written) and set :attr:`family` for messages.
    """

    family: ClassVar[str] = "model"

    def _freeze(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, (list, tuple)):
                object.__setattr__(self, f.name, tuple(value))

    @classmethod
    def from_kwargs(cls, **kwargs: Any):
        """Build from the official constructor's keyword arguments.

        ``norm_layer`` is accepted if it is ``nn.LayerNorm`` (the only norm these models use);
        arguments that are not part of the architecture (``spynet_path``) are the caller's.

        Raises:
            ValueError: an unknown option (the message lists the known ones) or an invalid value.
        """
        kwargs = dict(kwargs)
        norm = kwargs.pop("norm_layer", nn.LayerNorm)
        if norm is not nn.LayerNorm:
            raise ValueError(f"only norm_layer=nn.LayerNorm is supported; got {norm!r}")
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise ValueError(f"unknown {cls.family} option(s) {unknown}; known: {sorted(names)}")
        return cls(**kwargs)

    def to_kwargs(self) -> dict[str, Any]:
        """Constructor keyword arguments (JSON-compatible), the inverse of :meth:`from_kwargs`."""
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
        }
