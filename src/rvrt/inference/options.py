"""What a run is asked to do, as typed, validated objects.

A job is a list of stages (:class:`StageOptions`: restore, then maybe interpolate) and the
options of the run around them (:class:`JobOptions`: device, range, output encoding, safety,
progress). The command line builds these objects from its flags; the Python functions
(:func:`rvrt.restore`, :func:`rvrt.interpolate`) build them from their keyword arguments. Every
value is checked here once, with a message naming both the Python argument and the command-line
flag, so bad values never reach the models.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from rvrt.errors import InputError
from rvrt.zoo.spec import DEFAULT_WEIGHTS

__all__ = ["StageOptions", "JobOptions", "TileArg", "flag"]

#: a tile: ``"auto"`` (from the memory model), or numbers of frames/pixels (0 = whole)
TileArg = Any

# python argument -> command-line flag, for messages
_FLAGS = {
    "tile_overlap": "--tile-overlap",
    "add_noise": "--add-noise",
    "bit_depth": "--bit-depth",
    "hold_last": "--no-hold-last",
    "allow_truncated": "--allow-truncated",
    "memory_fraction": "--memory-fraction",
    "segment_frames": "--segment-frames",
}


def flag(name: str, prefix: str = "") -> str:
    """``"tile_overlap"`` -> ``"tile_overlap (--tile-overlap)"``; ``prefix`` for a second stage's flags (``vfi-``)."""
    cli = _FLAGS.get(name, "--" + name.replace("_", "-"))
    if prefix:
        cli = "--" + prefix + cli[2:]
    return f"{prefix.replace('-', '_')}{name} ({cli})"


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check_bool(name: str, value: Any, prefix: str = "") -> None:
    if not isinstance(value, bool):
        raise InputError(f"{flag(name, prefix)} must be True or False; got {value!r}")


def _int(name: str, value: Any, *, low: int, prefix: str = "") -> int:
    if not _is_int(value) or value < low:
        raise InputError(f"{flag(name, prefix)} must be an integer >= {low}; got {value!r}")
    return int(value)


def _number(name: str, value: Any, *, low: float, high: float, prefix: str = "", low_open: bool = False) -> float:
    if not isinstance(value, (numbers.Real, Fraction)) or isinstance(value, bool):
        raise InputError(f"{flag(name, prefix)} must be a number; got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v > high or v < low or (low_open and v == low):
        side = f"> {low:g}" if low_open else f">= {low:g}"
        raise InputError(f"{flag(name, prefix)} must be a finite number {side} and <= {high:g}; got {value!r}")
    return v


def _tuple(name: str, value: Any, n: int, prefix: str, *, allow_auto: bool) -> Any:
    words = {2: "two", 3: "three"}[n]
    dims = "(height, width)" if n == 2 else "(frames, height, width)"
    if value is None or (allow_auto and value == "auto"):
        return "auto" if allow_auto else None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != n:
        more = " or 'auto'" if allow_auto else ""
        raise InputError(f"{flag(name, prefix)} needs {words} non-negative integers {dims}{more}; got {value!r}")
    if not all(_is_int(v) and v >= 0 for v in value):
        raise InputError(f"{flag(name, prefix)} needs {words} non-negative integers {dims}; got {value!r}")
    return tuple(int(v) for v in value)


def _path_like(name: str, value: Any, prefix: str = "", *, module_ok: bool = False) -> None:
    if value is None or isinstance(value, (str, os.PathLike)):
        return
    if module_ok:
        from rvrt.zoo import ModelSpec

        if isinstance(value, ModelSpec) or hasattr(value, "rvrt_spec"):
            return
    kind = "a name, a file path" + (", a ModelSpec or a model from rvrt.create_model" if module_ok else "")
    raise InputError(f"{flag(name, prefix)} must be {kind}; got {type(value).__name__}")


def _scene_cuts(value: Any) -> Any:
    """None, "auto", "off", a path, or a sorted tuple of frame numbers."""
    if value is None or value in ("auto", "off"):
        return value
    if isinstance(value, os.PathLike) or (isinstance(value, str) and value):
        return value
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise InputError(f"{flag('scene_cuts')} must be 'auto', 'off', a cut list file or a list of frame numbers; "
                         f"got {value!r}")  # fmt: skip
    cuts = list(value)
    if not all(_is_int(c) and c >= 0 for c in cuts):
        raise InputError(f"{flag('scene_cuts')}: frame numbers must be integers >= 0; got {cuts!r}")
    return tuple(sorted({int(c) for c in cuts}))


@dataclass(frozen=True)
class StageOptions:
    """One model stage of a job.

    Attributes:
        kind: ``"restore"`` (super-resolution, deblurring, denoising) or ``"interpolate"``
            (double the frame rate).
        model: registered name, config file, :class:`~rvrt.zoo.ModelSpec` or a model from
            :func:`rvrt.create_model`; None: the default model of the stage.
        weights: weights file, ``"official"``, ``"default"`` (the weights that go with the model, the
            default) or ``None`` (random init); see :func:`rvrt.api.select_model`.
        tile: ``"auto"`` (the largest tile the memory model says fits, the default), or
            ``(frames, height, width)`` in input frames/pixels for restoration, ``(height,
            width)`` for interpolation (0 = whole).
        tile_overlap: overlap of neighbouring tiles (default: the model's).
        sigma: noise level 0..255 of non-blind denoising models (and of ``add_noise``).
        add_noise: add seeded Gaussian noise of ``sigma`` to the input first (synthetic tests).
        seed: noise seed.
        hold_last: interpolation: end with the last frame held (``2n`` frames out of ``n``).
        prefix: flag prefix in messages (``"vfi-"`` for the interpolation stage of ``restore``).
    """

    kind: str = "restore"
    model: Any = None
    weights: str | os.PathLike | None = DEFAULT_WEIGHTS
    tile: TileArg = "auto"
    tile_overlap: tuple[int, ...] | None = None
    sigma: float | None = None
    add_noise: bool = False
    seed: int = 0
    hold_last: bool = True
    prefix: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("restore", "interpolate"):
            raise InputError(f"stage kind must be 'restore' or 'interpolate'; got {self.kind!r}")
        p = self.prefix
        n = 3 if self.kind == "restore" else 2
        _path_like("model", self.model, p, module_ok=True)
        _path_like("weights", self.weights, p)
        object.__setattr__(self, "tile", _tuple("tile", self.tile, n, p, allow_auto=True))
        object.__setattr__(self, "tile_overlap", _tuple("tile_overlap", self.tile_overlap, n, p, allow_auto=False))
        if self.sigma is not None:
            object.__setattr__(self, "sigma", _number("sigma", self.sigma, low=0, high=255, prefix=p))
        _check_bool("add_noise", self.add_noise, p)
        _check_bool("hold_last", self.hold_last, p)
        _int("seed", self.seed, low=-(2**62), prefix=p)
        if self.kind == "interpolate" and (self.sigma is not None or self.add_noise):
            raise InputError("sigma and add_noise apply to restoration, not to frame interpolation")


@dataclass(frozen=True)
class JobOptions:
    """Everything about a run but its input and output.

    Attributes:
        stages: the model stages, in order (at least one).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        dtype: ``auto`` (the default: ``bf16`` where it is measured to change the saved output by at
            most 2 levels and the CPU computes it natively, else ``fp32``; see
            :func:`rvrt.inference.runner.job_dtype`), ``fp32``, ``fp16`` or ``bf16`` (half precision
            runs under autocast).
        compile: ``torch.compile`` the models (True, or a backend name).
        memory_fraction: share of the available memory (free RAM on the CPU, free device memory
            on CUDA) that ``tile="auto"`` plans to use.
        start: first input frame to use (0-based).
        frames: number of input frames to use (None: to the end).
        codec, crf, preset, bit_depth, fps: output encoding (see :func:`rvrt.media.open_writer`).
        segment_frames: a video output is encoded in segments of this many frames, joined at the
            end; an interrupted run resumes from its last finished segment.
        overwrite: replace an existing output (only what rvrt wrote is removed from a folder).
        resume: continue an interrupted run (frames folder or video).
        allow_truncated: restore what a truncated or damaged input holds instead of refusing it.
        scene_cuts: where shots begin (each shot is restored on its own, :mod:`rvrt.media.scenes`):
            ``"auto"`` (detect them), ``"off"``, a cut list file (one frame per line, or
            PySceneDetect's CSV) or a list of frame numbers (0-based, of the whole input); None
            (the default): ``"auto"`` for a video input, ``"off"`` for frames.
        progress: progress bar on stderr; or a callable ``(desc, done, total)`` told instead
            (:data:`rvrt.inference.progress.ProgressCallback`; what it raises stops the run).
    """

    stages: tuple[StageOptions, ...] = (StageOptions(),)
    device: Any = "auto"
    dtype: Any = "auto"
    compile: bool | str = False
    memory_fraction: float = 0.5
    start: int = 0
    frames: int | None = None
    codec: str | None = None
    crf: int | None = None
    preset: str | None = None
    bit_depth: int | None = None
    fps: float | Fraction | None = None
    segment_frames: int = 250
    overwrite: bool = False
    resume: bool = False
    allow_truncated: bool = False
    scene_cuts: Any = None
    progress: Any = True  # bool, or a ProgressCallback
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.stages or not all(isinstance(s, StageOptions) for s in self.stages):
            raise InputError("a job needs at least one stage (StageOptions)")
        object.__setattr__(self, "stages", tuple(self.stages))
        if not isinstance(self.compile, (bool, str)):
            raise InputError(f"{flag('compile')} must be True, False or a backend name; got {self.compile!r}")
        object.__setattr__(
            self,
            "memory_fraction",
            _number("memory_fraction", self.memory_fraction, low=0.0, high=1.0, low_open=True),
        )
        _int("start", self.start, low=0)
        if self.frames is not None:
            _int("frames", self.frames, low=1)
        for name in ("codec", "preset"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, str) or not v):
                raise InputError(f"{flag(name)} must be a non-empty string; got {v!r}")
        if self.crf is not None:
            _int("crf", self.crf, low=0)
        if self.bit_depth is not None and (not _is_int(self.bit_depth) or self.bit_depth not in (8, 16)):
            raise InputError(f"{flag('bit_depth')} must be 8 or 16; got {self.bit_depth!r}")
        if self.fps is not None:
            _number("fps", self.fps, low=0.0, high=1000.0, low_open=True)
        _int("segment_frames", self.segment_frames, low=1)
        for name in ("overwrite", "resume", "allow_truncated"):
            _check_bool(name, getattr(self, name))
        if not callable(self.progress):
            _check_bool("progress", self.progress)
        object.__setattr__(self, "scene_cuts", _scene_cuts(self.scene_cuts))
        if self.overwrite and self.resume:
            raise InputError("overwrite (--overwrite) and resume (--resume) exclude each other: choose one")

    def replace(self, **changes: Any) -> JobOptions:
        return dataclasses.replace(self, **changes)
