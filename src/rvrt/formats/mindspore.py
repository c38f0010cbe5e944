"""MindSpore ``.ckpt`` checkpoints, read without MindSpore (or protobuf).

File format (what ``mindspore.save_checkpoint`` writes):

* A sequence of serialized protobuf messages ``Checkpoint { repeated Value value = 1; }``, one or
  more per parameter, which parses as one ``Checkpoint`` with the values in parameter order.
  ``Value { string tag = 1; oneof { TensorProto tensor = 2; MapTensorProto maptensor = 3; } }``,
  ``TensorProto { repeated int64 dims = 1; string tensor_type = 2; bytes tensor_content = 3; }``
  with the element bytes in C order, little-endian.
* A tensor larger than 512 MiB is split along its first axis into consecutive values with the
  same tag and the full ``dims``; their contents are concatenated.
* ``crc_check=True`` appends ``b"crc_num"`` and a 10-byte big-endian CRC-32 (zlib's, the one of
  ``binascii.crc32``) of all bytes before it; we verify it.
* Encrypted checkpoints (``enc_key``) are not protobuf and cannot be read without the key.

:func:`mindspore_to_torch` maps the parameter names of mindediting's RVRT and RVRT Light to
this package's state dicts (see its docstring).
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from rvrt.errors import WeightsError

__all__ = ["read_ckpt", "mindspore_to_torch", "detect_arch", "looks_like_ckpt", "ARCHES"]

log = logging.getLogger(__name__)

_CRC_MARK = b"crc_num"
_CRC_TRAILER = len(_CRC_MARK) + 10

#: numpy dtypes of the ``tensor_type`` names (BFloat16 and str are handled apart)
_DTYPES = {
    "Float16": "<f2", "Float32": "<f4", "Float64": "<f8",
    "Int8": "i1", "Int16": "<i2", "Int32": "<i4", "Int64": "<i8",
    "UInt8": "u1", "UInt16": "<u2", "UInt32": "<u4", "UInt64": "<u8",
    "Bool": "?",
}  # fmt: skip

#: architectures :func:`mindspore_to_torch` knows
ARCHES = ("rvrt", "rvrt_light")


class _Corrupt(Exception):
    """The bytes are not a well-formed checkpoint (message says where)."""


# --------------------------------------------------------------------------- protobuf wire format
def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end:
            raise _Corrupt("data ends inside a number")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift >= 70:
            raise _Corrupt("a number is longer than 10 bytes")


def _fields(buf: memoryview, pos: int, end: int) -> Iterator[tuple[int, int, int | tuple[int, int]]]:
    """``(field number, wire type, value)`` of one message; length-delimited values are ``(start, stop)``."""
    while pos < end:
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise _Corrupt("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos, end)
        elif wire == 2:
            size, pos = _varint(buf, pos, end)
            if size > end - pos:
                raise _Corrupt(f"a {size}-byte field runs past the end of its message ({end - pos} bytes left)")
            value = (pos, pos + size)
            pos += size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if size > end - pos:
                raise _Corrupt("data ends inside a fixed-size field")
            value = int.from_bytes(buf[pos : pos + size], "little")
            pos += size
        else:
            raise _Corrupt(f"unsupported protobuf wire type {wire}")
        yield field, wire, value


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _text(buf: memoryview, span: tuple[int, int], what: str) -> str:
    try:
        return bytes(buf[span[0] : span[1]]).decode("utf-8")
    except UnicodeDecodeError as err:
        raise _Corrupt(f"{what} is not UTF-8 text") from err


def _tensor(buf: memoryview, start: int, end: int) -> tuple[list[int], str, memoryview]:
    dims: list[int] = []
    dtype: str | None = None
    content = buf[0:0]
    for field, wire, value in _fields(buf, start, end):
        if field == 1 and wire == 0:
            dims.append(_signed64(value))
        elif field == 1 and wire == 2:  # packed encoding
            pos, stop = value
            while pos < stop:
                d, pos = _varint(buf, pos, stop)
                dims.append(_signed64(d))
        elif field == 2 and wire == 2:
            dtype = _text(buf, value, "a tensor type")
        elif field == 3 and wire == 2:
            content = buf[value[0] : value[1]]
        # other fields: unknown to this schema version, skipped as protobuf does
    if dtype is None:
        raise _Corrupt("a tensor has no type")
    if any(d < 0 for d in dims):
        raise _Corrupt(f"a tensor has a negative dimension {dims}")
    return dims, dtype, content


def _values(buf: memoryview, end: int) -> Iterator[tuple[str, tuple[list[int], str, memoryview] | None]]:
    """``(tag, (dims, type, content))`` per stored value; ``None`` for a map parameter."""
    for field, wire, value in _fields(buf, 0, end):
        if field != 1 or wire != 2:
            raise _Corrupt(f"unexpected top-level field {field} (wire type {wire})")
        tag = None
        tensor: tuple[list[int], str, memoryview] | None = None
        is_map = False
        for f2, w2, v2 in _fields(buf, *value):
            if f2 == 1 and w2 == 2:
                tag = _text(buf, v2, "a parameter name")
            elif f2 == 2 and w2 == 2:
                tensor = _tensor(buf, *v2)
            elif f2 == 3 and w2 == 2:
                is_map = True
        if tag is None:
            raise _Corrupt("a value has no parameter name")
        if tensor is None and not is_map:
            raise _Corrupt(f"{tag!r} holds no tensor")
        yield tag, tensor


# --------------------------------------------------------------------------- decoding
def _decode(tag: str, dims: list[int], dtype: str, data: bytes) -> np.ndarray:
    if dtype == "str":  # append_dict strings: numpy unicode (UCS-4) bytes
        if len(data) % 4:
            raise _Corrupt(f"string entry {tag!r} has {len(data)} bytes, not a multiple of 4")
        return np.array(np.frombuffer(data, f"<U{max(len(data) // 4, 1)}")[0] if data else "")
    if dtype == "BFloat16":
        # bfloat16 is the upper half of a float32: widening is exact (numpy has no bfloat16)
        np_dtype = np.dtype("<u2")
    elif dtype in _DTYPES:
        np_dtype = np.dtype(_DTYPES[dtype])
    else:
        raise WeightsError(
            f"tensor {tag!r} has type {dtype!r}, which this reader does not support "
            f"(supported: {', '.join(sorted(_DTYPES))}, BFloat16, str)"
        )
    shape = tuple(dims)
    if shape == (0,) and len(data) == np_dtype.itemsize:
        shape = ()  # MindSpore writes scalars with dims [0]
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if count * np_dtype.itemsize != len(data):
        raise _Corrupt(
            f"tensor {tag!r} of shape {list(shape)} and type {dtype} needs "
            f"{count * np_dtype.itemsize} bytes but holds {len(data)}"
        )
    arr = np.frombuffer(data, np_dtype).reshape(shape).copy()  # copy: aligned and writable
    if dtype == "BFloat16":
        arr = (arr.astype(np.uint32) << 16).view(np.float32)
    return arr


def read_ckpt(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read all tensors of a MindSpore checkpoint, in file order.

    Float16/32/64, (U)Int8-64 and Bool keep their dtype (little-endian); BFloat16 is widened to
    float32 (exactly); ``str`` entries (``append_dict`` strings) become 0-d numpy string arrays;
    map parameters (sparse embedding tables) are skipped with a warning.

    Raises:
        WeightsError: missing file; truncated, corrupt or encrypted data; CRC mismatch;
            an unsupported tensor type.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise WeightsError(f"cannot read {path}: {err}") from err
    end = len(data)
    if end >= _CRC_TRAILER and data[-_CRC_TRAILER:-10] == _CRC_MARK:
        end -= _CRC_TRAILER
        stored = int.from_bytes(data[-10:], "big")
        actual = zlib.crc32(memoryview(data)[:end])
        if stored != actual:
            raise WeightsError(
                f"{path} failed its CRC check (stored {stored:#010x}, computed {actual:#010x}): "
                "the file is damaged or incomplete"
            )
    buf = memoryview(data)
    hint = "truncated, corrupt, encrypted, or not a MindSpore checkpoint"
    out: dict[str, np.ndarray] = {}
    try:
        pending: tuple[str, list[int], str, list[memoryview]] | None = None

        def flush() -> None:
            tag, dims, dtype, parts = pending
            if tag in out:
                raise _Corrupt(f"parameter {tag!r} is stored twice")
            out[tag] = _decode(tag, dims, dtype, b"".join(parts))

        for tag, tensor in _values(buf, end):
            if tensor is None:
                log.warning("%s: skipping map parameter %r (not a dense tensor)", path, tag)
                continue
            dims, dtype, content = tensor
            if pending is not None and pending[0] == tag:  # one piece of a split tensor
                if pending[1] != dims or pending[2] != dtype:
                    raise _Corrupt(f"pieces of {tag!r} disagree on shape or type")
                pending[3].append(content)
                continue
            if pending is not None:
                flush()
            pending = (tag, dims, dtype, [content])
        if pending is not None:
            flush()
    except _Corrupt as err:
        raise WeightsError(f"cannot read {path} as a MindSpore checkpoint ({hint}): {err}") from None
    if not out:
        raise WeightsError(f"{path} holds no tensors ({hint})")
    return out


def looks_like_ckpt(path: str | os.PathLike) -> bool:
    """Whether a ``.ckpt`` file should be read as a MindSpore checkpoint: anything but a PyTorch
    file (a zip archive or a pickle, e.g. a Lightning checkpoint), so that damaged or encrypted
    MindSpore files get this reader's diagnosis."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return True  # let the reader report it
    return not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80")


# --------------------------------------------------------------------------- name mapping
#: optimizer and training-loop state MindSpore's ModelCheckpoint saves next to the weights
_TRAINING_PREFIXES = (
    "moment1.",
    "moment2.",
    "moments.",
    "accum.",
    "adam_m.",
    "adam_v.",
    "mean_grad.",
    "mean_square.",
    "vhat.",
)
_TRAINING_NAMES = {
    "global_step",
    "learning_rate",
    "beta1_power",
    "beta2_power",
    "scale_sense",
    "epoch_num",
    "step_num",
    "loss_scale",
    "current_iterator_step",
    "last_overflow_iterator_step",
}


def detect_arch(names: list[str] | Mapping[str, object]) -> str | None:
    """``"rvrt"`` if the names have SpyNet or the offset networks of guided deformable
    attention, ``"rvrt_light"`` if they have the propagation modules without those, else None."""
    names = list(names)
    if any(n.startswith("spynet.") or ".conv_offset." in n for n in names):
        return "rvrt"
    if any(n.startswith("deform_align.") for n in names) and any(n.startswith("backbone.") for n in names):
        return "rvrt_light"
    return None


@lru_cache(maxsize=16)
def _position_index(window: tuple[int, int, int]) -> np.ndarray:
    from rvrt.models.swin import relative_position_index

    index = relative_position_index(window).numpy()
    index.flags.writeable = False  # shared by the cache
    return index


def _window_of_index(index: np.ndarray, table_rows: int) -> tuple[int, int, int] | None:
    """The window whose relative position index (as this package builds it) equals ``index``."""
    n = index.shape[0]
    for wd in range(1, n + 1):
        if n % wd:
            continue
        for wh in range(1, n // wd + 1):
            if (n // wd) % wh:
                continue
            ww = n // (wd * wh)
            if (2 * wd - 1) * (2 * wh - 1) * (2 * ww - 1) == table_rows and np.array_equal(
                _position_index((wd, wh, ww)), index
            ):
                return wd, wh, ww
    return None


def _rebuild_table(name: str, table: np.ndarray | None, index: np.ndarray | None, bias: np.ndarray) -> np.ndarray:
    """Relative position bias table from MindSpore's expanded copy ``bias = table[index[:N, :N]]``."""
    if index is None or table is None:
        raise WeightsError(
            f"{name}.relative_position_bias needs {name}.relative_position_bias_table and "
            f"{name}.relative_position_index to be rebuilt into a table; the checkpoint lacks them"
        )
    n, heads = bias.shape[0], bias.shape[-1]
    if bias.shape != (n, n, heads) or table.ndim != 2 or table.shape[1] != heads or n > index.shape[0]:
        raise WeightsError(
            f"{name}: relative_position_bias {list(bias.shape)} does not fit the table "
            f"{list(table.shape)} and index {list(index.shape)}"
        )
    idx = index[:n, :n].reshape(-1)
    vals = bias.reshape(-1, heads)
    rebuilt = table.copy()
    uniq, first = np.unique(idx, return_index=True)
    rebuilt[uniq] = vals[first]
    if not np.array_equal(rebuilt[idx], vals):
        spread = float(np.abs(rebuilt[idx] - vals).max())
        log.warning(
            "%s.relative_position_bias is not one bias per relative position (spread %.3g); "
            "the table keeps the first value of each position",
            name,
            spread,
        )
    if not np.array_equal(rebuilt, table):
        diff = float(np.abs(rebuilt - table).max())
        log.warning(
            "%s: relative_position_bias_table and its copy relative_position_bias differ (max %.3g); "
            "using the copy (the table is stale in checkpoints trained on Ascend)",
            name,
            diff,
        )
    return rebuilt


def mindspore_to_torch(tensors: Mapping[str, np.ndarray], arch: str | None = None) -> dict[str, torch.Tensor]:
    """Map the tensors of a mindediting RVRT / RVRT Light checkpoint to this package's names.

    * LayerNorm ``<x>.gamma`` / ``<x>.beta`` become ``<x>.weight`` / ``<x>.bias``; all other
      names are already ours (same module paths, same Dense/Conv3d layouts).
    * ``<x>.attn.relative_position_bias`` (MindSpore's trainable expanded copy
      ``table[index[:N, :N]]``, used instead of the table when training on Ascend) is folded
      back into ``<x>.attn.relative_position_bias_table`` and dropped; disagreements are logged.
    * ``<x>.relative_position_index`` (Int64) is checked to be the index of a window and kept
      as our buffer.
    * Optimizer and training-loop state (``moment1.*``, ``global_step``, ...) and string
      entries are dropped.

    Args:
        tensors: as returned by :func:`read_ckpt`.
        arch: ``"rvrt"`` or ``"rvrt_light"``; ``None`` detects it from the names.

    Returns:
        a state dict (CPU tensors; float tensors keep their dtype).

    Raises:
        WeightsError: unknown architecture, inconsistent relative position tensors.
    """
    if arch is None:
        arch = detect_arch(tensors)
        if arch is None:
            raise WeightsError(
                "the checkpoint's parameter names are not those of mindediting's RVRT or RVRT Light "
                f"(first names: {', '.join(list(tensors)[:5])})"
            )
    elif arch not in ARCHES:
        raise WeightsError(f"no MindSpore name mapping for architecture {arch!r}; known: {', '.join(ARCHES)}")

    kept: dict[str, np.ndarray] = {}
    dropped = []
    for name, arr in tensors.items():
        if name.startswith(_TRAINING_PREFIXES) or name in _TRAINING_NAMES or arr.dtype.kind == "U":
            dropped.append(name)
            continue
        base, _, leaf = name.rpartition(".")
        if leaf == "gamma":
            name = f"{base}.weight"
        elif leaf == "beta":
            name = f"{base}.bias"
        kept[name] = arr
    if dropped:
        log.info("dropped %d training-state entries (%s, ...)", len(dropped), ", ".join(dropped[:3]))

    suffix = ".relative_position_bias"
    for name in [k for k in kept if k.endswith(suffix)]:
        owner = name[: -len(suffix)]
        table_key, index_key = f"{owner}.relative_position_bias_table", f"{owner}.relative_position_index"
        kept[table_key] = _rebuild_table(owner, kept.get(table_key), kept.get(index_key), kept.pop(name))

    out: dict[str, torch.Tensor] = {}
    for name, arr in kept.items():
        if name.endswith(".relative_position_index"):
            table = kept.get(name.replace("_index", "_bias_table"))
            rows = table.shape[0] if table is not None else -1
            if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or _window_of_index(arr, rows) is None:
                raise WeightsError(
                    f"{name} ({list(arr.shape)}) is not the relative position index of any window "
                    "with its bias table; the checkpoint is corrupt"
                )
            arr = arr.astype(np.int64)
        out[name] = torch.from_numpy(np.ascontiguousarray(arr))
    return out
