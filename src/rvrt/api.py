"""Building models and loading weights: ``create_model``, ``load_model``, ``fetch_weights``."""

from __future__ import annotations

import importlib.resources
import json
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rvrt import zoo
from rvrt.checkpoint import (
    METADATA_ARCH,
    METADATA_CONFIG,
    METADATA_NAME,
    load_into,
    load_state_dict_file,
    read_metadata,
)
from rvrt.errors import InputError, WeightsError
from rvrt.files import loads_toml
from rvrt.hub import download, pin_path, sha256_file, weights_path

__all__ = [
    "create_model",
    "load_model",
    "fetch_weights",
    "verify_weights",
    "resolve_spec",
    "identify_state_dict",
    "model_spec",
    "model_for_scale",
    "select_model",
    "DEFAULT_VFI_MODEL",
]

log = logging.getLogger(__name__)
DEFAULT_WEIGHTS = zoo.DEFAULT_WEIGHTS

#: the model ``rvrt interpolate`` uses when none is named
DEFAULT_VFI_MODEL = "vrt.vfi_vimeo"


def _read_config_file(path: Path) -> dict[str, Any]:
    if path.suffix == ".toml":
        return loads_toml(path.read_text(), where=f"model config {path}")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read model config {path}: {err}") from err


def _task_of(arch: str, kwargs: dict[str, Any]) -> tuple[str, int]:
    if arch == "vrt" and kwargs.get("pa_frames", 2) == 0:
        return "vfi", 1  # VRT without parallel warping is the frame-interpolation model
    scale = int(kwargs.get("upscale", 4))
    if scale > 1:
        return "sr", scale
    return ("denoise" if kwargs.get("nonblind_denoising") else "deblur"), 1


def resolve_spec(model: str | os.PathLike | zoo.ModelSpec) -> zoo.ModelSpec:
    """A registered name or alias, a :class:`~rvrt.zoo.ModelSpec`, or a config file.

    A config file (``.json`` or ``.toml``) holds the official constructor keyword arguments,
    plus an optional ``"arch"`` (``"rvrt"`` by default).
    """
    if isinstance(model, zoo.ModelSpec):
        return model
    text = os.fspath(model)
    path = Path(text)
    if path.suffix in (".json", ".toml"):
        if not path.is_file():
            raise InputError(f"model config file not found: {path}")
        kwargs = _read_config_file(path)
        if not isinstance(kwargs, dict):
            raise InputError(f"model config {path} must be a table/object of constructor arguments")
        kwargs = dict(kwargs)
        arch = kwargs.pop("arch", "rvrt")
        if arch not in zoo.ARCHITECTURES:
            raise InputError(f"{path}: unknown arch {arch!r}; known: {', '.join(zoo.ARCHITECTURES)}")
        task, scale = _task_of(arch, kwargs)
        spec = zoo.ModelSpec(
            name=f"{arch}:{path.stem}",
            arch=arch,
            kwargs=kwargs,
            task=task,
            scale=scale,
            description=f"custom {arch} from {path}",
        )
        try:
            spec.build_config()
        except (TypeError, ValueError) as err:
            raise InputError(f"{path}: invalid {arch} config: {err}") from err
        return spec
    return zoo.get_spec(text)


def fetch_weights(model: str | zoo.ModelSpec, *, progress: bool = True) -> Path:
    """Local path of the published weights of a registered model, downloading them if needed
    (weights shipped with the package are used in place).

    Raises:
        WeightsError: the model has no published weights.
        DownloadError: offline / download failed / checksum mismatch (message says what to do).
    """
    spec = resolve_spec(model)
    if spec.weights is None:
        raise WeightsError(f"{spec.name} has no published weights")
    if spec.weights.bundled:
        path = _bundled_path(spec)
        if not path.is_file():
            raise WeightsError(f"the weights of {spec.name} ({path}) are missing from this installation")
        if spec.weights.sha256 is not None and sha256_file(path) != spec.weights.sha256:
            raise WeightsError(f"{path} (the weights of {spec.name} shipped with rvrt) is damaged: reinstall rvrt")
        return path
    dest = weights_path(spec.weights.filename)
    return download(spec.weights.url, dest, sha256=spec.weights.sha256, progress=progress)


def _bundled_path(spec: zoo.ModelSpec) -> Path:
    return Path(str(importlib.resources.files("rvrt") / "weights" / spec.weights.bundled))


def _build(spec: zoo.ModelSpec, **model_kwargs: Any) -> nn.Module:
    try:
        config = spec.build_config()
    except (TypeError, ValueError) as err:
        raise InputError(f"invalid {spec.arch} config for {spec.name}: {err}") from err
    try:
        return spec.architecture.model_class(config, **model_kwargs)
    except TypeError as err:  # an unknown model option (e.g. a misspelt gda_backend=)
        raise InputError(f"cannot build {spec.name}: {err}") from err


@lru_cache(maxsize=64)
def _expected_shapes(spec_name: str) -> dict[str, tuple[int, ...]]:
    spec = zoo.get_spec(spec_name)
    with torch.device("meta"):
        model = _build(spec)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def identify_state_dict(
    state_dict: dict[str, torch.Tensor], *, suffix: str | None = None, filename: str | None = None
) -> zoo.ModelSpec | None:
    """The registered model whose keys and shapes equal those of ``state_dict`` (None: no model).

    Several official tasks share one network (RVRT 002/003, 004/005; VRT 006/007, ...): then the
    file name decides when it is one of theirs (``filename``, e.g. ``003_RVRT_videosr_bd_Vimeo_14frames.pth``),
    and otherwise nothing is guessed. With ``suffix`` (the weights file's, e.g. ``".ckpt"``), models whose
    published weights come in that format are preferred: mindediting's RVRT port has the official RVRT's
    parameters but its own numerics, and its weights are MindSpore checkpoints.

    Raises:
        WeightsError: several models fit and the file name names none of them (the message lists them).
    """
    shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
    fits = [n for n in zoo.list_models() if _expected_shapes(n) == shapes]
    if suffix and any(_published_as(zoo.get_spec(n), suffix) for n in fits):
        fits = [n for n in fits if _published_as(zoo.get_spec(n), suffix)]
    if len(fits) <= 1:
        return zoo.get_spec(fits[0]) if fits else None
    named = [n for n in fits if filename and zoo.get_spec(n).weights and zoo.get_spec(n).weights.filename == filename]
    if len(named) == 1:
        return zoo.get_spec(named[0])
    raise WeightsError(
        f"{filename or 'these weights'} fit{'s' if filename else ''} several models with the same keys and shapes "
        f"({', '.join(fits)}) and the file name is none of their official names: say which with "
        "-m/--model (model=...)"
    )


def _published_as(spec: zoo.ModelSpec, suffix: str) -> bool:
    return spec.weights is not None and spec.weights.filename.endswith(suffix)


def _spec_from_metadata(meta: dict[str, str], path: Path) -> zoo.ModelSpec | None:
    if METADATA_CONFIG not in meta:
        return None
    arch = meta.get(METADATA_ARCH, "rvrt")
    if arch not in zoo.ARCHITECTURES:
        raise WeightsError(f"{path} was written for architecture {arch!r}, unknown to this version of rvrt")
    try:
        kwargs = json.loads(meta[METADATA_CONFIG])
    except ValueError as err:
        raise WeightsError(f"{path}: its model config (metadata {METADATA_CONFIG}) is not valid JSON: {err}") from err
    if not isinstance(kwargs, dict):
        raise WeightsError(f"{path}: its model config (metadata {METADATA_CONFIG}) is not an object of arguments")
    try:
        zoo.ARCHITECTURES[arch].config_class.from_kwargs(**kwargs)
    except (TypeError, ValueError) as err:
        raise WeightsError(f"{path}: its model config (metadata {METADATA_CONFIG}) is invalid: {err}") from err
    name = meta.get(METADATA_NAME) or f"{arch}:{path.stem}"
    try:
        registered = zoo.get_spec(name)
        if registered.arch == arch and registered.build_config() == zoo.ARCHITECTURES[arch].config_class.from_kwargs(
            **kwargs
        ):
            return registered
    except InputError:
        pass
    task, scale = _task_of(arch, kwargs)
    return zoo.ModelSpec(name=name, arch=arch, kwargs=kwargs, task=task, scale=scale, description=f"from {path}")


def model_spec(model: nn.Module) -> zoo.ModelSpec | None:
    """The spec a model was created from by :func:`create_model` / :func:`load_model`."""
    return getattr(model, "rvrt_spec", None)


def _finish(model: nn.Module, spec: zoo.ModelSpec, device, dtype) -> nn.Module:
    model.rvrt_spec = spec  # a plain attribute (not a buffer): what the model is, for tools
    model.eval()
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model


def create_model(
    model: str | os.PathLike | zoo.ModelSpec,
    *,
    weights: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    **model_kwargs: Any,
) -> nn.Module:
    """Build a registered model (or one described by a config file), in eval mode.

    Args:
        model: registered name or alias (see :func:`rvrt.list_models`), or a ``.json``/``.toml``
            file of constructor keyword arguments.
        weights: ``None`` (random init, the official init scheme; the same in every function that
            takes ``weights``), ``"official"`` or ``"default"`` (the published file of this model: shipped
            with the package, or downloaded into the cache and verified), or a local path
            (``.pth`` with ``{'params': state_dict}`` or a bare state dict, or ``.safetensors``).
        device, dtype: where and in which dtype to put the model.
        **model_kwargs: options of the model class (e.g. ``gda_backend="reference"``).

    Raises:
        InputError: unknown model / bad config. WeightsError: weights missing or for another
        architecture (the message lists missing, unexpected and mis-shaped keys).
        DownloadError: ``"official"`` could not be fetched (offline: the message names the URL,
        the expected file and how to pass a local path instead).
    """
    spec = resolve_spec(model)
    net = _build(spec, **model_kwargs)
    if weights is not None:
        official = os.fspath(weights) in ("official", DEFAULT_WEIGHTS)
        path = fetch_weights(spec) if official else Path(weights)
        try:
            load_into(net, load_state_dict_file(path, arch=spec.arch), source=f"weights {path}")
        except WeightsError as err:
            if official and not spec.weights.bundled:  # the cache holds something else than the release
                raise WeightsError(_not_the_release(spec, path, err)) from err
            raise
    return _finish(net, spec, device, dtype)


def _not_the_release(spec: zoo.ModelSpec, path: Path, err: Exception) -> str:
    reason = str(err).splitlines()[0]
    return (
        f"{path} does not hold the published weights of {spec.name} ({reason}); delete it and "
        f"{pin_path(path).name} to download it again"
    )


def verify_weights(target: str | os.PathLike) -> str:
    """Check a weights file before use and say what was checked (``rvrt weights verify``).

    ``target`` is a registered model (its cached or shipped file) or a path. A registered model's file
    must match its published sha256, or the digest pinned at its first download (trust on first use),
    and hold exactly the keys and shapes of the model; a path must hold the keys and shapes of the model
    it is recognised as (or that its metadata names).

    Returns:
        One line: the file, the model, and what was checked.

    Raises:
        WeightsError, DownloadError, InputError: not downloaded, damaged, replaced or for another model
            (the message names the file and what to do).
    """
    text = os.fspath(target)
    path = Path(text)
    spec = None
    if not path.is_file():
        try:
            spec = zoo.get_spec(text)
        except InputError:
            pass
    if spec is not None:
        if spec.weights is None:
            raise WeightsError(f"{spec.name} has no published weights")
        path = _bundled_path(spec) if spec.weights.bundled else weights_path(spec.weights.filename)
        if not path.is_file() and not spec.weights.bundled:
            raise WeightsError(f"{spec.name} is not downloaded ({path}): `rvrt weights download {spec.name}`")
        create_model(spec, weights="official")  # what every use checks: the digest, then every key and shape
        how = "published sha256" if spec.weights.sha256 else "sha256 pinned at its first download"
        return f"{spec.name}: {path}: {how} and every key and shape of {spec.name} match"
    if not path.is_file():
        raise InputError(f"{text} is neither a weights file nor a registered model (see `rvrt weights list`)")
    net = load_model(path)
    return f"{path}: keys and shapes of {model_spec(net).name}; sha256 {sha256_file(path)}"


def load_model(
    weights: str | os.PathLike,
    *,
    model: str | os.PathLike | zoo.ModelSpec | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    **model_kwargs: Any,
) -> nn.Module:
    """Build the model a weights file belongs to and load it.

    The architecture comes from ``model`` when given; otherwise from the file's metadata
    (``.safetensors`` written by rvrt) or by recognising an official checkpoint from its keys
    and shapes.
    """
    path = Path(weights)
    if model is not None:
        return create_model(model, weights=path, device=device, dtype=dtype, **model_kwargs)
    sd = load_state_dict_file(path)
    spec = _file_spec(path, sd)
    if spec is None:
        raise WeightsError(
            f"cannot tell which model {path} belongs to (no rvrt metadata, and its keys/shapes match no "
            f"registered model); name it with -m/--model. Known models: {', '.join(zoo.list_models())}"
        )
    net = _build(spec, **model_kwargs)
    load_into(net, sd, source=f"weights {path}")
    return _finish(net, spec, device, dtype)


def _file_spec(path: Path, sd: dict[str, torch.Tensor]) -> zoo.ModelSpec | None:
    """What a weights file is: its rvrt metadata, else the registered model its keys and shapes fit."""
    return _spec_from_metadata(read_metadata(path), path) or identify_state_dict(
        sd, suffix=path.suffix, filename=path.name
    )


def model_for_scale(
    scale: int, model: str | os.PathLike | None = None, weights: str | os.PathLike | None = DEFAULT_WEIGHTS
) -> str | os.PathLike | None:
    """The ``model`` to run when the user asked for an output scale (``rvrt restore --scale N``).

    No model and no weights file: the built-in model of that scale
    (:func:`rvrt.zoo.default_model_for_scale`, which says what to do where there is none). A model or
    a weights file whose scale is another: refused. Otherwise ``model`` unchanged. (An ``.onnx``
    file or a file that cannot be read is left to the run, which explains it.)

    Raises:
        InputError: no model at that scale, or the named one restores at another scale.
    """
    if scale < 1:
        raise InputError(f"--scale must be 1 or more; got {scale}")
    named = weights is None or os.fspath(weights) in ("official", DEFAULT_WEIGHTS)
    if model is None and named:
        return zoo.default_model_for_scale(scale)
    if model is not None:
        spec = resolve_spec(model)
    else:
        path = Path(weights)
        if path.suffix == ".onnx" or not path.is_file():
            return model
        try:
            spec = _file_spec(path, load_state_dict_file(path))
        except WeightsError:
            return model
        if spec is None:
            return model
    if spec.scale != scale:
        raise InputError(
            f"--scale {scale} disagrees with {spec.name}, which restores at x{spec.scale}: "
            f"leave --scale out or give a model at x{scale}"
        )
    return model


def _check_kind(spec: zoo.ModelSpec, kind: str) -> None:
    if kind == "restore" and spec.task == "vfi":
        raise InputError(
            f"{spec.name} interpolates frames: use `rvrt interpolate` (rvrt.interpolate), or "
            "`rvrt restore --interpolate` after a restoration model for space-time super-resolution"
        )
    if kind == "interpolate" and spec.task != "vfi":
        raise InputError(
            f"{spec.name} is a {spec.task} model; frame interpolation needs a frame-interpolation model "
            f"such as {DEFAULT_VFI_MODEL} (use `rvrt restore` for {spec.task})"
        )


_PASS_A_FILE = "pass a weights file (weights=PATH, --weights PATH)"


def select_model(
    model: str | os.PathLike | zoo.ModelSpec | nn.Module | None = None,
    weights: str | os.PathLike | None = DEFAULT_WEIGHTS,
    *,
    kind: str = "restore",
) -> tuple[nn.Module, zoo.ModelSpec]:
    """The model a run uses and its spec, from what the user named: the one place where names,
    config files and weights files become a loaded model.

    ``weights`` means what it means in :func:`create_model`: a file, ``"official"`` (the published
    file), ``None`` (a randomly initialised model, said in a warning: its output is noise), or
    ``"default"`` (the default of every run function: the weights that go with the model, below).

    With ``"default"``, restoration (``kind="restore"``): a registered model with published weights
    uses them (shipped with the package, or downloaded); no model: the default model
    (``zoo.DEFAULT_MODEL``), whose weights ship with the package. Frame interpolation
    (``kind="interpolate"``): the published weights are licensed for non-commercial use only
    (CC-BY-NC-4.0), so they are never fetched unasked: pass ``"official"`` or a file. The model
    defaults to :data:`DEFAULT_VFI_MODEL`, or to what a weights file with rvrt metadata says it is.

    Args:
        model: registered name, config file, spec, or a model from :func:`create_model` /
            :func:`load_model` (it carries its spec).
        weights: a weights file, ``"official"``, ``"default"`` or ``None``.
        kind: ``"restore"`` or ``"interpolate"``.

    Raises:
        InputError: a model of the other kind, no weights where they are needed.
        WeightsError, DownloadError: the weights cannot be loaded or fetched.
    """
    if kind not in ("restore", "interpolate"):
        raise InputError(f"kind must be 'restore' or 'interpolate'; got {kind!r}")
    if isinstance(model, nn.Module):
        spec = getattr(model, "rvrt_spec", None)
        if spec is None:
            raise InputError("pass a model created by rvrt.create_model / rvrt.load_model (it carries its spec)")
        _check_kind(spec, kind)
        return model, spec
    named = weights is not None and os.fspath(weights) in ("official", DEFAULT_WEIGHTS)
    if model is None and weights is not None and not named:
        net = load_model(weights)
        _check_kind(net.rvrt_spec, kind)
        return net, net.rvrt_spec
    if model is None:
        model = zoo.DEFAULT_MODEL if kind == "restore" else DEFAULT_VFI_MODEL
        if model is None:
            raise InputError("no model given: pass -m NAME (see `rvrt weights list`) and/or --weights FILE")
        if kind == "restore":
            log.info(
                "no model given: using %s, %s. For the official RVRT models see `rvrt weights list` "
                "(e.g. -m rvrt.sr_bi_reds --weights official; their weights are CC-BY-NC-4.0).",
                model,
                zoo.get_spec(model).description,
            )
    spec = resolve_spec(model)
    _check_kind(spec, kind)
    if weights is None:
        log.warning("weights=None: %s is randomly initialised, its output is noise", spec.name)
        return create_model(spec, weights=None), spec
    if os.fspath(weights) == DEFAULT_WEIGHTS:
        if kind == "interpolate":
            if spec.weights is not None:
                raise InputError(
                    f"{spec.name} needs weights: pass weights='official' (--weights official) to download the "
                    f"published ones ({spec.weights.license}, non-commercial use only; {spec.weights.url}) or a "
                    "weights file"
                )
            raise InputError(
                f"{spec.name} has no published weights: pass a weights file (weights=PATH, --weights PATH)"
            )
        if spec.weights is None:
            raise InputError(
                f"{spec.name} has no published weights: pass a weights file (weights=PATH, --weights PATH)"
            )
        weights = "official"
        if not spec.weights.bundled:
            log.info("using the published weights of %s (%s)", spec.name, spec.weights.url)
    return create_model(spec, weights=weights), spec
