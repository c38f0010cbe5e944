"""What a registered model is (:class:`ModelSpec`, its weights, metrics and architecture) and the
registry itself (:func:`register`, :func:`get_spec`, :func:`list_models`); the records are in
:mod:`rvrt.zoo.records`."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from rvrt.errors import InputError

__all__ = [
    "Architecture",
    "ARCHITECTURES",
    "Metric",
    "ModelSpec",
    "WeightsSpec",
    "default_model_for_scale",
    "get_spec",
    "list_models",
    "register",
]


@dataclass(frozen=True)
class Architecture:
    """A model family: where its module and config class live (imported lazily)."""

    name: str
    model: str  # "package.module:Class"
    config: str  # "package.module:ConfigClass" with a ``from_kwargs`` classmethod

    def _load(self, ref: str):
        module, _, attr = ref.partition(":")
        return getattr(importlib.import_module(module), attr)

    @property
    def model_class(self):
        return self._load(self.model)

    @property
    def config_class(self):
        return self._load(self.config)


ARCHITECTURES: dict[str, Architecture] = {
    "rvrt": Architecture("rvrt", "rvrt.models.rvrt:RVRT", "rvrt.models.rvrt:RVRTConfig"),
    "rvrt_light": Architecture(
        "rvrt_light", "rvrt.models.rvrt_light:RVRTLight", "rvrt.models.rvrt_light:RVRTLightConfig"
    ),
    "vrt": Architecture("vrt", "rvrt.models.vrt:VRT", "rvrt.models.vrt:VRTConfig"),
}


@dataclass(frozen=True)
class WeightsSpec:
    """A published weight file: downloaded from ``url``, or shipped inside the package (``bundled``)."""

    url: str = ""
    sha256: str | None = None  # None: not published; the download logs the digest it got
    size: int | None = None  # bytes, when known
    license: str = "CC-BY-NC-4.0"
    source: str = ""
    bundled: str | None = None  # file name under rvrt/weights/ in the installed package

    @property
    def filename(self) -> str:
        return self.bundled or self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Metric:
    """A reference number for these weights: the paper's for official weights, ours (measured with
    ``rvrt eval``, see ``note``) for the weights we train."""

    dataset: str
    channel: str  # "RGB" or "Y"
    psnr: float
    ssim: float | None = None
    note: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """A registered model.

    Attributes:
        name: canonical name, ``<family>.<task>``.
        aliases: other accepted names (the official task name).
        arch: key of :data:`ARCHITECTURES`.
        kwargs: the official constructor keyword arguments of the architecture.
        task: ``"sr"``, ``"deblur"``, ``"denoise"``, ``"vfi"``, ...
        scale: spatial upscaling factor of the output.
        description: one line for listings.
        weights: published weights, if any.
        metrics: the paper's numbers for those weights.
        tile: default test tile ``(frames, height, width)`` (0 = whole), from the official test commands.
        tile_overlap: default tile overlap ``(frames, height, width)``.
        train_frames: clip length the weights were trained with.
        params: number of parameters (checked against the built model by the tests).
        extras: anything else, e.g.
            ``bytes_per_pixel_frame`` (memory estimate behind ``--tile auto``), ``protocol_tiles``
            (``{protocol: (tile, overlap)}`` where the official test of a benchmark used another tile),
            ``recipe`` (the training recipe that made rvrt's own weights), ``average_of`` (the recipes of
            the runs whose weights were averaged into them, see ``rvrt weights average``), ``auto_bf16``
            (``dtype="auto"`` may compute it in bfloat16: measured within 2 levels of float32 on real frames).
    """

    name: str
    arch: str
    kwargs: dict[str, Any]
    task: str
    scale: int
    description: str
    aliases: tuple[str, ...] = ()
    weights: WeightsSpec | None = None
    metrics: tuple[Metric, ...] = ()
    tile: tuple[int, int, int] = (0, 0, 0)
    tile_overlap: tuple[int, int, int] = (2, 20, 20)
    train_frames: int | None = None
    params: int | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def architecture(self) -> Architecture:
        return ARCHITECTURES[self.arch]

    def build_config(self):
        """The frozen config object of this model."""
        return self.architecture.config_class.from_kwargs(**self.kwargs)

    @property
    def in_channels(self) -> int:
        return 4 if self.kwargs.get("nonblind_denoising") else 3


#: the model ``rvrt restore --scale N`` uses when no model is named, per scale; a scale missing here
#: has no built-in model yet and the command says how to get one (:data:`SCALE_RECIPES`)
DEFAULT_MODELS: dict[int, str] = {4: "rvrt.sr_small_v2"}

#: the model ``rvrt restore`` (and ``rvrt demo``) uses when neither a model nor weights are given: the
#: x4 one; its weights ship with the package (Apache-2.0), see docs/DEFAULT_MODEL.md
DEFAULT_MODEL: str | None = DEFAULT_MODELS[4]

#: training recipes (``rvrt train NAME``) that make a model of a scale with no built-in model
SCALE_RECIPES: dict[int, tuple[str, ...]] = {2: ("sr_x2_small", "sr_x2_reds")}

#: ``weights`` of the run functions when none is given: the weights that go with the model
#: (:func:`rvrt.api.select_model`); ``None`` means a randomly initialised model everywhere
DEFAULT_WEIGHTS = "default"

_REGISTRY: dict[str, ModelSpec] = {}
_ALIASES: dict[str, str] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add a model to the zoo (names and aliases must be new)."""
    if spec.arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {spec.arch!r} for {spec.name}")
    for n in (spec.name, *spec.aliases):
        if n in _REGISTRY or n in _ALIASES:
            raise ValueError(f"model name {n!r} is registered twice")
    _REGISTRY[spec.name] = spec
    for a in spec.aliases:
        _ALIASES[a] = spec.name
    return spec


def get_spec(name: str) -> ModelSpec:
    """Look a model up by canonical name or alias.

    Raises:
        InputError: unknown name (the message lists the known ones).
    """
    key = _ALIASES.get(name, name)
    if key not in _REGISTRY:
        raise InputError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _REGISTRY[key]


def default_model_for_scale(scale: int) -> str:
    """The model to use at ``scale`` when none is named (``rvrt restore --scale N``).

    Raises:
        InputError: no built-in model at that scale; the message names the registered models that
            restore at that scale (their weights are downloaded and may be licensed otherwise) and
            the recipes that train one.
    """
    if scale in DEFAULT_MODELS:
        return DEFAULT_MODELS[scale]
    ways = []
    if scale in SCALE_RECIPES:
        ways.append(f"train one (rvrt train {' or '.join(SCALE_RECIPES[scale])}) and pass --weights FILE")
    others = [n for n, s in _REGISTRY.items() if s.scale == scale and s.task != "vfi"]
    if others:
        ways.append(f"name one with -m ({', '.join(others)}; --weights official downloads its weights)")
    if not ways:
        ways.append("pass -m CONFIG.json --weights FILE of a model at that scale")
    raise InputError(f"no built-in x{scale} model: {'; or '.join(ways)}")


def list_models(arch: str | None = None) -> list[str]:
    """Canonical names of the registered models (optionally of one architecture)."""
    return [n for n, s in _REGISTRY.items() if arch is None or s.arch == arch]
