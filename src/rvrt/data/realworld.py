"""Real-world degradations for video: the second-order scheme of Real-ESRGAN / RealBasicVSR.

A ground-truth clip ``(T, H, W, 3)`` uint8 becomes a low-quality clip ``(T, 3, H/s, W/s)`` float32
in [0, 1] (on 8-bit levels) by

* stage ``first``: blur (isotropic/anisotropic Gaussian, generalised Gaussian, plateau, motion, or
  a sinc low-pass) -> random resize (up/down/keep, area/bilinear/bicubic) -> Gaussian or Poisson
  noise (colour or grey) -> JPEG (every frame) -> video compression (the whole clip as one stream
  through PyAV: libx264/libx265/mpeg4/mpeg2video at a random CRF, quantiser or bitrate, with a
  random GOP length and B-frames, so that I, P and B frames carry different artefacts);
* stage ``second`` (with probability ``second_order_prob``): the same with milder ranges;
* stage ``final``: [resize to ``H/s x W/s`` + optional sinc filter] and [compression], in a
  random order.

Every range and probability is data (:data:`DEFAULTS`, the ``[data.train.real]`` table of a
recipe); the defaults follow the published Real-ESRGAN x4plus / RealBasicVSR settings (see
docs/TRAINING.md). One set of parameters is drawn per clip (one camera, one encoder); only the
noise draws and the codec's frame types differ between frames. Drawing (:meth:`RealDegradation.sample`)
is separate from applying (:meth:`RealDegradation.apply`): the parameters are a plain dict, and
``apply`` is a pure function of the clip and that dict (the noise has its own seed in it).

This module holds the configuration, the sampling and :class:`RealDegradation`; the blur kernels
are in :mod:`rvrt.data.kernels`, JPEG and video compression in :mod:`rvrt.data.compression`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rvrt.data.compression import CODEC_DECODERS, _to_float, _usable_codec, compress_video, jpeg, to_uint8
from rvrt.data.degradations import imresize
from rvrt.data.kernels import _filter, _kernel
from rvrt.errors import InputError

__all__ = ["DEFAULTS", "KERNELS", "RealDegradation", "check_config"]

#: blur kernel families (Real-ESRGAN's list, plus motion blur)
KERNELS = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso", "motion")
#: torch's area/bilinear/bicubic (the last two without anti-aliasing, as Real-ESRGAN), and "matlab":
#: MATLAB's anti-aliased bicubic (the BI benchmark degradation, close to a camera's or ffmpeg's
#: downscale)
RESIZE_MODES = ("area", "bilinear", "bicubic", "matlab")

_COMPRESSION = {
    "jpeg_prob": 1.0,
    "jpeg_quality": [30, 95],
    "video_prob": 1.0,
    "codecs": {"libx264": 0.4, "libx265": 0.2, "mpeg4": 0.2, "mpeg2video": 0.2},
    "rate_control": {"crf": 0.5, "bitrate": 0.5},
    "crf": [18, 35],  # libx264 / libx265 constant rate factor
    "qscale": [2, 16],  # mpeg4 / mpeg2video fixed quantiser, their "CRF"
    "bpp": [0.02, 0.3],  # bitrate mode: bits per pixel per frame
    "gop": [3, 16],
    "bframes": [0, 2],
}
_STAGE = {
    "blur_prob": 1.0,
    "kernel_size": [7, 21],
    "kernels": {
        "iso": 0.45,
        "aniso": 0.25,
        "generalized_iso": 0.12,
        "generalized_aniso": 0.03,
        "plateau_iso": 0.12,
        "plateau_aniso": 0.03,
        "motion": 0.0,
    },
    "sinc_prob": 0.1,
    "sigma": [0.2, 3.0],
    "beta_gaussian": [0.5, 4.0],
    "beta_plateau": [1.0, 2.0],
    "motion_length": [3.0, 11.0],
    "resize": {"up": 0.2, "down": 0.7, "keep": 0.1},
    "resize_range": [0.15, 1.5],
    "resize_modes": {"area": 1.0, "bilinear": 1.0, "bicubic": 1.0},
    "noise": {"gaussian": 0.5, "poisson": 0.5, "none": 0.0},
    "gaussian_sigma": [1.0, 30.0],
    "poisson_scale": [0.05, 3.0],
    "gray_noise_prob": 0.4,
    **_COMPRESSION,
}

#: the ``[data.train.real]`` table with every key (Real-ESRGAN x4plus / RealBasicVSR numbers;
#: RealBasicVSR's placement of the compressions: JPEG + video in the first stage, JPEG in the
#: second, video in the final one)
DEFAULTS: dict[str, Any] = {
    # share of clips given only MATLAB's bicubic downscale (the BI benchmark degradation) instead of
    # the pipeline, so that a model trained for users' footage still serves clean input
    "clean_prob": 0.0,
    "second_order_prob": 1.0,
    "first": {**_STAGE, "video_prob": 1.0},
    "second": {
        **_STAGE,
        "blur_prob": 0.8,
        "sigma": [0.2, 1.5],
        "resize": {"up": 0.3, "down": 0.4, "keep": 0.3},
        "resize_range": [0.3, 1.2],
        "gaussian_sigma": [1.0, 25.0],
        "poisson_scale": [0.05, 2.5],
        "video_prob": 0.0,
    },
    "final": {
        "resize_modes": {"area": 1.0, "bilinear": 1.0, "bicubic": 1.0},
        "sinc_prob": 0.8,
        "kernel_size": [7, 21],
        "resize_first_prob": 0.5,
        **_COMPRESSION,
        "jpeg_prob": 0.0,
    },
}

# key -> (lowest, highest, integer) for ranges [lo, hi] and probabilities (a single number)
_BOUNDS: dict[str, tuple[float, float, bool]] = {
    "kernel_size": (3, 41, True),
    "sigma": (0.01, 20.0, False),
    "beta_gaussian": (0.05, 10.0, False),
    "beta_plateau": (0.05, 10.0, False),
    "motion_length": (1.0, 40.0, False),
    "resize_range": (0.05, 4.0, False),
    "gaussian_sigma": (0.0, 255.0, False),
    "poisson_scale": (0.0, 20.0, False),
    "jpeg_quality": (1, 100, True),
    "crf": (0, 51, True),
    "qscale": (1, 31, True),
    "bpp": (0.001, 24.0, False),
    "gop": (1, 250, True),
    "bframes": (0, 4, True),
}
_CHOICES = {
    "kernels": KERNELS,
    "resize": ("up", "down", "keep"),
    "resize_modes": RESIZE_MODES,
    "noise": ("gaussian", "poisson", "none"),
    "codecs": tuple(CODEC_DECODERS),
    "rate_control": ("crf", "bitrate"),
}


# --------------------------------------------------------------------------- configuration
def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _check_table(table: Mapping[str, Any], default: Mapping[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(table, Mapping):
        raise InputError(f"{where} must be a table; got {table!r}")
    unknown = sorted(set(table) - set(default))
    if unknown:
        raise InputError(f"{where} has no key(s) {unknown}; known: {sorted(default)}")
    out = copy.deepcopy(dict(default))
    for key, value in table.items():
        name = _join(where, key)
        if key in _CHOICES:  # a weight table: every known choice may be given a weight >= 0
            if not isinstance(value, Mapping):
                raise InputError(f"{name} must be a table of weights, e.g. {default[key]}")
            bad = sorted(set(value) - set(_CHOICES[key]))
            if bad:
                raise InputError(f"{name} has no choice(s) {bad}; known: {list(_CHOICES[key])}")
            if not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in value.values()):
                raise InputError(f"{name}: weights must be numbers >= 0; got {dict(value)}")
            weights = {k: float(value.get(k, 0.0)) for k in _CHOICES[key]}
            if sum(weights.values()) <= 0:
                raise InputError(f"{name}: the weights sum to 0")
            out[key] = weights
        elif key in _BOUNDS:
            lo, hi, integer = _BOUNDS[key]
            ok = (
                isinstance(value, (list, tuple))
                and len(value) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
                and (not integer or all(float(v).is_integer() for v in value))
            )
            if not ok or not (lo <= value[0] <= value[1] <= hi):
                kind = "integers" if integer else "numbers"
                raise InputError(f"{name} must be [low, high], {kind} with {lo} <= low <= high <= {hi}; got {value!r}")
            if key == "kernel_size" and (value[0] % 2 == 0 or value[1] % 2 == 0):
                raise InputError(f"{name} must be odd sizes; got {value!r}")
            out[key] = [int(v) for v in value] if integer else [float(v) for v in value]
        else:  # a probability
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise InputError(f"{name} must be a probability in [0, 1]; got {value!r}")
            out[key] = float(value)
    return out


def check_config(table: Mapping[str, Any] | None, where: str = "data.train.real") -> dict[str, Any]:
    """:data:`DEFAULTS` with ``table`` merged in, checked.

    Raises:
        InputError: an unknown key, a bad range or probability (one line naming the key).
    """
    table = {} if table is None else table
    if not isinstance(table, Mapping):
        raise InputError(f"{where or 'the real-world table'} must be a table; got {table!r}")
    unknown = sorted(set(table) - set(DEFAULTS))
    if unknown:
        raise InputError(f"{where or 'the real-world table'} has no key(s) {unknown}; known: {sorted(DEFAULTS)}")
    out = copy.deepcopy(DEFAULTS)
    for stage in ("first", "second", "final"):
        out[stage] = _check_table(table.get(stage, {}), DEFAULTS[stage], _join(where, stage))
    for key in ("clean_prob", "second_order_prob"):
        p = table.get(key, DEFAULTS[key])
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise InputError(f"{_join(where, key)} must be a probability in [0, 1]; got {p!r}")
        out[key] = float(p)
    return out


# --------------------------------------------------------------------------- sampling
def _uniform(rng: np.random.Generator, r: list[float]) -> float:
    return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])


def _integer(rng: np.random.Generator, r: list[int]) -> int:
    return int(rng.integers(r[0], r[1] + 1))


def _choose(rng: np.random.Generator, weights: Mapping[str, float]) -> str:
    names = list(weights)
    w = np.array([weights[n] for n in names], np.float64)
    return names[int(rng.choice(len(names), p=w / w.sum()))]


def _sample_kernel(rng: np.random.Generator, c: Mapping[str, Any], *, sinc_only: bool = False) -> dict[str, Any]:
    size = 2 * int(rng.integers(c["kernel_size"][0] // 2, c["kernel_size"][1] // 2 + 1)) + 1
    if sinc_only or rng.random() < c["sinc_prob"]:
        # small kernels get the higher cut-offs only (Real-ESRGAN: pi/3 below 13 taps, pi/5 above)
        low = math.pi / 3 if sinc_only or size < 13 else math.pi / 5
        return {"kind": "sinc", "size": size, "omega": float(rng.uniform(low, math.pi))}
    kind = _choose(rng, c["kernels"])
    if kind == "motion":
        return {
            "kind": kind,
            "size": size,
            "length": _uniform(rng, c["motion_length"]),
            "theta": float(rng.uniform(-math.pi, math.pi)),
        }
    sx = _uniform(rng, c["sigma"])
    iso = kind.endswith("iso") and not kind.endswith("aniso")
    p = {
        "kind": kind,
        "size": size,
        "sigma_x": sx,
        "sigma_y": sx if iso else _uniform(rng, c["sigma"]),
        "theta": 0.0 if iso else float(rng.uniform(-math.pi, math.pi)),
    }
    if kind.startswith("generalized"):
        p["beta"] = _uniform(rng, c["beta_gaussian"])
    elif kind.startswith("plateau"):
        p["beta"] = _uniform(rng, c["beta_plateau"])
    return p


def _sample_compression(rng: np.random.Generator, c: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"jpeg": None, "video": None}
    if rng.random() < c["jpeg_prob"]:
        out["jpeg"] = _integer(rng, c["jpeg_quality"])
    if rng.random() < c["video_prob"]:
        requested = _choose(rng, c["codecs"])
        rc = _choose(rng, c["rate_control"])
        out["video"] = {
            "codec_requested": requested,
            "codec": _usable_codec(requested),
            "rate_control": rc,
            "crf": _integer(rng, c["crf"]),
            "qscale": _integer(rng, c["qscale"]),
            "bpp": _uniform(rng, c["bpp"]),
            "gop": _integer(rng, c["gop"]),
            "bframes": _integer(rng, c["bframes"]),
        }
    return out


def _sample_stage(rng: np.random.Generator, c: Mapping[str, Any]) -> dict[str, Any]:
    p: dict[str, Any] = {"blur": _sample_kernel(rng, c) if rng.random() < c["blur_prob"] else None}
    direction = _choose(rng, c["resize"])
    if direction == "up":
        factor = float(rng.uniform(1.0, max(1.0, c["resize_range"][1])))
    elif direction == "down":
        factor = float(rng.uniform(min(1.0, c["resize_range"][0]), 1.0))
    else:
        factor = 1.0
    p["resize"] = {"factor": factor, "mode": _choose(rng, c["resize_modes"])}
    kind = _choose(rng, c["noise"])
    p["noise"] = None
    if kind != "none":
        level = _uniform(rng, c["gaussian_sigma"] if kind == "gaussian" else c["poisson_scale"])
        p["noise"] = {"kind": kind, "level": level, "gray": bool(rng.random() < c["gray_noise_prob"])}
    p.update(_sample_compression(rng, c))
    return p


# --------------------------------------------------------------------------- applying
def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    if mode == "area":
        return F.interpolate(x, size=size, mode="area")
    if mode == "matlab":
        h, w = x.shape[-2:]
        # ceil(h * size / h) may land one above size in floating point: crop to the size asked for
        return imresize(x, (size[0] / h, size[1] / w))[..., : size[0], : size[1]].clamp_(0, 1)
    return F.interpolate(x, size=size, mode=mode, align_corners=False).clamp_(0, 1)


def _noise(x: torch.Tensor, p: Mapping[str, Any], rng: np.random.Generator) -> torch.Tensor:
    """Gaussian (``level`` = sigma on the 0-255 scale) or Poisson (``level`` scales shot noise of
    an 8-bit sensor: variance ``level^2 * x / 255``); ``gray``: one draw for all three channels
    (on the luma for Poisson). Every frame gets its own draw."""
    t, c, h, w = x.shape
    if p["kind"] == "gaussian":
        shape = (t, 1 if p["gray"] else c, h, w)
        noise = torch.from_numpy(rng.standard_normal(shape, dtype=np.float32)) * (p["level"] / 255.0)
    else:
        base = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True) if p["gray"] else x
        lam = base.clamp(0, 1).mul(255).numpy().astype(np.float64)
        noise = torch.from_numpy(((rng.poisson(lam) - lam) / 255.0).astype(np.float32)) * p["level"]
    return (x + noise).clamp_(0, 1)


def _compress(x: torch.Tensor, p: Mapping[str, Any], timings: dict[str, float] | None) -> torch.Tensor:
    if p["jpeg"] is None and p["video"] is None:
        return x
    clip = to_uint8(x)
    if p["jpeg"] is not None:
        with _timed(timings, "jpeg"):
            clip = jpeg(clip, p["jpeg"])
    if p["video"] is not None:
        with _timed(timings, "video"):
            clip, _ = compress_video(clip, p["video"])
    return _to_float(clip)


class _timed:
    """Adds the block's wall time (ms) to ``timings[name]`` (no-op when ``timings`` is None)."""

    def __init__(self, timings: dict[str, float] | None, name: str) -> None:
        self.timings, self.name = timings, name

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        if self.timings is not None:
            ms = (time.perf_counter() - self.start) * 1000
            self.timings[self.name] = self.timings.get(self.name, 0.0) + ms


class RealDegradation:
    """The real-world pipeline for one recipe table and scale.

    Args:
        config: the ``[data.train.real]`` table (merged over :data:`DEFAULTS` and checked).
        scale: GT / LQ size ratio (1, 2, 4, ...); 1 keeps the size (restoration of compressed
            footage at its own resolution).
    """

    def __init__(self, config: Mapping[str, Any] | None = None, *, scale: int = 4, where: str = "data.train.real"):
        if int(scale) < 1:
            raise InputError(f"scale must be >= 1; got {scale}")
        self.config = check_config(config, where)
        self.scale = int(scale)

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """One clip's parameters (a plain, JSON-serialisable dict)."""
        c = self.config
        if c["clean_prob"] > 0 and rng.random() < c["clean_prob"]:  # no draw at all when it is 0
            return {"clean": True}
        p: dict[str, Any] = {"first": _sample_stage(rng, c["first"])}
        p["second"] = _sample_stage(rng, c["second"]) if rng.random() < c["second_order_prob"] else None
        fin = c["final"]
        p["final"] = {
            "resize_mode": _choose(rng, fin["resize_modes"]),
            "sinc": _sample_kernel(rng, fin, sinc_only=True) if rng.random() < fin["sinc_prob"] else None,
            "resize_first": bool(rng.random() < fin["resize_first_prob"]),
            **_sample_compression(rng, fin),
        }
        p["noise_seed"] = int(rng.integers(0, 2**63))
        return p

    def apply(
        self, clip: np.ndarray, params: Mapping[str, Any], *, timings: dict[str, float] | None = None
    ) -> torch.Tensor:
        """``(T, H, W, 3)`` uint8 GT (H, W multiples of the scale) -> ``(T, 3, H/s, W/s)`` float32 in
        [0, 1] on 8-bit levels. ``timings``: milliseconds per stage are added to it."""
        if clip.ndim != 4 or clip.shape[-1] != 3 or clip.dtype != np.uint8:
            raise InputError(f"expected a (T, H, W, 3) uint8 clip; got {clip.dtype} {clip.shape}")
        t, h, w, _ = clip.shape
        s = self.scale
        if h % s or w % s:
            raise InputError(f"a {w}x{h} clip is not a multiple of the scale {s}")
        out_hw = (h // s, w // s)
        if params.get("clean"):  # MATLAB bicubic only, exactly as the "bi" degradation
            with _timed(timings, "resize"):
                lq = clip if s == 1 else np.stack([imresize(f, 1 / s) for f in clip])
            return _to_float(lq)
        noise_rng = np.random.default_rng(params["noise_seed"])
        x = _to_float(clip)
        for name, ref in (("first", (h, w)), ("second", out_hw)):
            p = params[name]
            if p is None:
                continue
            with _timed(timings, "blur"):
                if p["blur"] is not None:
                    x = _filter(x, _kernel(p["blur"]))
            with _timed(timings, "resize"):
                size = tuple(max(8, round(r * p["resize"]["factor"])) for r in ref)
                x = _resize(x, size, p["resize"]["mode"]).clamp_(0, 1)
            with _timed(timings, "noise"):
                if p["noise"] is not None:
                    x = _noise(x, p["noise"], noise_rng)
            x = _compress(x, p, timings)
        fin = params["final"]

        def resize_and_sinc(x: torch.Tensor) -> torch.Tensor:
            with _timed(timings, "resize"):
                x = _resize(x, out_hw, fin["resize_mode"])
            with _timed(timings, "blur"):
                if fin["sinc"] is not None:
                    x = _filter(x, _kernel(fin["sinc"])).clamp_(0, 1)
            return x

        if fin["resize_first"]:
            x = _compress(resize_and_sinc(x), fin, timings)
        else:
            x = resize_and_sinc(_compress(x, fin, timings))
        # stored LQ frames are 8-bit: the output is rounded the same way
        return x.clamp(0, 1).mul(255).round().div(255)

    def __call__(self, clip: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """Sample parameters from ``rng`` and apply them to ``clip``."""
        return self.apply(clip, self.sample(rng))

    def degrade_uint8(self, clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """As :meth:`__call__`, as a ``(T, H/s, W/s, 3)`` uint8 clip (for the datasets' crops)."""
        return to_uint8(self(clip, rng))
