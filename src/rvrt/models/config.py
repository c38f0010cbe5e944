"""The common base of the model config dataclasses."""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from typing import Any, ClassVar

from torch import nn

__all__ = ["ConstructorConfig", "check_clip_recurrent"]


class ConstructorConfig:
    """Mixin for a frozen dataclass whose fields are the keyword arguments of an official constructor.

    Subclasses call :meth:`_freeze` first in ``__post_init__`` (lists become tuples, so configs are
    hashable and compare equal however they were written) and set :attr:`family` for messages.
    """

    family: ClassVar[str] = "model"

    def _freeze(self) -> None:
        """Lists become tuples, then every value is checked against its field's type (a string
        where a number belongs, a negative size, a NaN ...: ``ValueError`` naming the field)."""
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, (list, tuple)):
                object.__setattr__(self, f.name, tuple(value))
            _check_type(self.family, f.name, str(f.type), getattr(self, f.name))

    def _check_divides(self, what: str, channels: int, parts: int) -> None:
        if parts < 1 or channels % parts:
            raise ValueError(f"{self.family}: {what} = {parts} must divide the {channels} channels it splits")

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


_TUPLE = re.compile(r"^tuple\[(.*)\]$")


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check_type(family: str, name: str, annotation: str, value: Any) -> None:
    """``value`` fits the field annotation (``int``, ``float``, ``bool``, ``float | None``,
    ``tuple[int, ...]``, ``tuple[int, int]``); integers (also inside tuples) are not negative."""
    ann = annotation.replace(" ", "")
    optional = ann.endswith("|None")
    if optional:
        if value is None:
            return
        ann = ann[: -len("|None")]
    bad = f"{family} option {name} must be "
    if ann == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{bad}true or false; got {value!r}")
    elif ann == "int":
        if not _is_int(value) or value < 0:
            raise ValueError(f"{bad}a non-negative integer; got {value!r}")
    elif ann == "float":
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"{bad}a finite number; got {value!r}")
    elif (m := _TUPLE.match(ann)) is not None:
        items = m.group(1).split(",")
        if not isinstance(value, tuple):
            raise ValueError(f"{bad}a list of integers; got {value!r}")
        if not (len(items) == 2 and items[1] == "...") and len(value) != len(items):
            raise ValueError(f"{bad}a list of {len(items)} integers; got {list(value)}")
        if not all(_is_int(v) and v >= 0 for v in value):
            raise ValueError(f"{bad}a list of non-negative integers; got {list(value)}")


def check_clip_recurrent(cfg: ConstructorConfig, *, extract_in: int) -> None:
    """The sizes RVRT and RVRT Light share: widths split into heads, windows of at least one
    element, input convolutions whose groups split their channels (``extract_in``: channels into
    the feature extractor's Swin block)."""
    dim = cfg.embed_dims[0]
    if dim < 1:
        raise ValueError(f"{cfg.family}: embed_dims must be positive; got {cfg.embed_dims}")
    for i, (c, h) in enumerate(zip(cfg.embed_dims, cfg.num_heads, strict=True)):
        cfg._check_divides(f"num_heads[{i}] (embed_dims[{i}])", c, h)
    for name in ("window_size", "attention_window", "img_size"):
        if any(v < 1 for v in getattr(cfg, name)):
            raise ValueError(f"{cfg.family}: {name} entries must be at least 1; got {list(getattr(cfg, name))}")
    ins = [extract_in, 2 * dim, 3 * dim, 4 * dim, 5 * dim, 5 * dim]
    for i, (g, cin) in enumerate(zip(cfg.inputconv_groups, ins, strict=True)):
        cfg._check_divides(f"inputconv_groups[{i}] (input {cin}, output {dim})", cin, g)
        cfg._check_divides(f"inputconv_groups[{i}] (input {cin}, output {dim})", dim, g)
