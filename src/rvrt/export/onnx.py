"""ONNX export of RVRT, RVRT Light and VRT, and an ONNX Runtime model the runner can use.

The exported graph uses standard ONNX operators only (``GridSample`` for the flow warping and the
deformable sampling, ``Gather`` for VRT's nearest-pixel alignment; no custom op), so any ONNX
runtime that implements opset 16 or later can run it.

The tile shape is fixed: the graph is traced at one input shape ``(1, T, C, H, W)`` and the
networks' shape logic (padding to window multiples, SpyNet's pyramid size, the shift masks of
the Swin windows, the clip and frame loops) is resolved at that shape, so a graph run at another
shape would compute something else. :func:`export_onnx` therefore refuses dynamic axes, and the
runner (:class:`OnnxNet`) uses exactly the tile the file was exported for.

What the file holds besides the graph (ONNX ``metadata_props``): the model's architecture,
constructor arguments and name (the keys of rvrt's safetensors metadata), and the tile.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import json
import logging
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from rvrt import zoo
from rvrt.checkpoint import METADATA_ARCH, METADATA_CONFIG, METADATA_NAME
from rvrt.errors import InputError, WeightsError

__all__ = ["DEFAULT_OPSET", "METADATA_TILE", "OnnxNet", "export_onnx", "is_onnx_file", "load_onnx", "onnx_status"]

log = logging.getLogger(__name__)

#: opset of the exported graphs: 17 has GridSample (16) and LayerNormalization (17)
DEFAULT_OPSET = 17
#: lowest opset the graphs can use (GridSample)
MIN_OPSET = 16
#: metadata key of the tile ``"T H W"`` a file was exported for
METADATA_TILE = "rvrt.tile"
METADATA_CHANNELS = "rvrt.in_channels"
INPUT_NAME = "lq"
OUTPUT_NAME = "out"


def is_onnx_file(path: str | os.PathLike | None) -> bool:
    """Whether ``path`` names an ONNX file (by its suffix)."""
    return path is not None and Path(os.fspath(path)).suffix.lower() == ".onnx"


def onnx_status() -> str | None:
    """Why ONNX export or ONNX Runtime cannot be used here, or ``None``."""
    missing = []
    for module in ("onnx", "onnxruntime"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        return f"{' and '.join(missing)} not installed: pip install 'rvrt[onnx]'"
    return None


def _require(module: str):
    try:
        return __import__(module)
    except ImportError as err:
        raise InputError(f"{module} is not installed ({err}): pip install 'rvrt[onnx]'") from err


class _Graph(nn.Module):
    """The model as a one-input graph (keyword options of ``forward`` left at their defaults)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def export_onnx(
    net: nn.Module,
    spec: zoo.ModelSpec,
    path: str | os.PathLike,
    *,
    frames: int,
    height: int,
    width: int,
    opset: int = DEFAULT_OPSET,
    dynamic: bool = False,
) -> Path:
    """Write ``net`` as an ONNX graph for float32 tiles of ``frames x height x width`` input pixels.

    Args:
        net: an RVRT, RVRT Light or VRT model (any weights), on the CPU.
        spec: its spec (name, architecture and constructor arguments go into the file's metadata).
        path: the ``.onnx`` file to write (replaced atomically).
        frames, height, width: the tile; the graph's input is ``(1, frames, C, height, width)`` and
            its output ``(1, frames, 3, s * height, s * width)``.
        opset: ONNX opset, at least 16 (GridSample).
        dynamic: ask for dynamic axes; refused (see the module docstring).

    Raises:
        InputError: a tile or opset the export cannot take, dynamic shapes, onnx missing.
    """
    if dynamic:
        raise InputError(
            "dynamic tile shapes are not supported: the models' padding, window partition, shift masks and "
            "SpyNet pyramid are resolved at the traced shape; export one file per tile (--frames T --size HxW)"
        )
    if opset < MIN_OPSET:
        raise InputError(f"--opset must be at least {MIN_OPSET} (GridSample); got {opset}")
    if frames < 1 or height < 1 or width < 1:
        raise InputError(
            f"the tile must have at least one frame and one pixel; got {frames} frames of {height}x{width}"
        )
    if spec.task == "vfi":
        raise InputError(f"{spec.name} interpolates frames; ONNX export covers the restoration models")
    onnx = _require("onnx")
    channels = spec.in_channels
    x = torch.rand(1, frames, channels, height, width, generator=torch.Generator().manual_seed(0))
    path = Path(path)
    buf = io.BytesIO()
    net = net.eval()
    # PyTorch before 2.5 has only the TorchScript exporter and no `dynamo` argument
    choose = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        # the TorchScript exporter: the torch.export-based one (PyTorch 2.13) captures RVRT but fails in
        # its decomposition step (docs/ONNX.md); deprecation and tracer warnings are expected
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Graph(net).eval(),
            (x,),
            buf,
            **choose,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            do_constant_folding=True,
        )
    model = onnx.load_from_string(buf.getvalue())
    meta = {
        METADATA_ARCH: spec.arch,
        METADATA_CONFIG: json.dumps(dict(spec.kwargs), sort_keys=True),
        METADATA_NAME: spec.name,
        METADATA_TILE: f"{frames} {height} {width}",
        METADATA_CHANNELS: str(channels),
    }
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    model.producer_name = "rvrt"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(model.SerializeToString())
    os.replace(tmp, path)
    return path


class OnnxNet(nn.Module):
    """An exported ONNX file run by ONNX Runtime, called like the model: ``(1, T, C, H, W) -> (1, T, 3, sH, sW)``.

    It only takes the tile it was exported for (:attr:`tile`); the runner plans exactly that tile.
    Its one buffer, the file's sha256, makes the runner's weights fingerprint tell files apart.
    """

    def __init__(self, path: Path, spec: zoo.ModelSpec, tile: tuple[int, int, int], in_channels: int) -> None:
        super().__init__()
        self.path = path
        self.rvrt_spec = spec
        self.tile = tile
        self.in_channels = in_channels
        digest = hashlib.sha256(path.read_bytes()).digest()
        self.register_buffer("onnx_sha256", torch.frombuffer(bytearray(digest), dtype=torch.uint8))
        self._session = None  # made on the first call: a run the runner refuses never pays for it

    @property
    def session(self):
        """The ONNX Runtime session (CPU, as many threads as PyTorch uses)."""
        if self._session is None:
            ort = _require("onnxruntime")
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = torch.get_num_threads()
            try:
                self._session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
            except Exception as err:  # onnxruntime raises its own exception types for a bad file
                raise WeightsError(f"{self.path}: ONNX Runtime cannot load it: {str(err).splitlines()[0]}") from err
        return self._session

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, h, w = self.tile
        want = (1, t, self.in_channels, h, w)
        if tuple(x.shape) != want:
            raise InputError(
                f"{self.path.name} was exported for tiles of {t} frames of {h}x{w} pixels (input {want}); "
                f"got {tuple(x.shape)}: export again with --frames/--size for this input"
            )
        y = self.session.run([OUTPUT_NAME], {INPUT_NAME: x.detach().to("cpu", torch.float32).numpy()})[0]
        return torch.from_numpy(y).to(x.device)


def load_onnx(path: str | os.PathLike, *, model: str | os.PathLike | None = None, kind: str = "restore") -> OnnxNet:
    """An :class:`OnnxNet` for a file written by :func:`export_onnx` (its spec from the file's metadata).

    Args:
        model: the model the user named, if any: it must be the one the file was exported from.
        kind: the runner stage, ``"restore"`` (exported graphs are restoration models).

    Raises:
        WeightsError: the file is missing, not ONNX, or lacks rvrt's metadata.
        InputError: a frame-interpolation stage, or ``model`` names another model.
    """
    if kind != "restore":
        raise InputError("ONNX files run restoration stages only; frame interpolation runs in PyTorch")
    onnx = _require("onnx")
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"ONNX file not found: {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # onnx raises DecodeError and others for a damaged file
        raise WeightsError(
            f"{path} is not a readable ONNX file: {str(err).splitlines()[0] if str(err) else err}"
        ) from err
    meta = {p.key: p.value for p in proto.metadata_props}
    if METADATA_TILE not in meta or METADATA_CONFIG not in meta:
        raise WeightsError(f"{path} was not written by `rvrt export` (no rvrt metadata): export it with rvrt export")
    from rvrt.api import _spec_from_metadata

    spec = _spec_from_metadata(meta, path)
    if model is not None:
        from rvrt.api import resolve_spec

        named = resolve_spec(model)
        if named.name != spec.name and named.build_config() != spec.build_config():
            raise InputError(f"{path} holds {spec.name}, not {named.name}: drop -m or export {named.name}")
    tile = tuple(int(v) for v in meta[METADATA_TILE].split())
    return OnnxNet(path, spec, tile, int(meta.get(METADATA_CHANNELS, spec.in_channels)))
