"""Training and validation datasets for video super-resolution, deblurring and denoising.

Every dataset returns ``{"lq": (T, C, h, w), "gt": (T, 3, H, W), "key": str}``, float32 in
[0, 1] (the LQ of non-blind denoising has a fourth channel, the constant noise level
``sigma / 255``, and its noise is not clipped).

Training samples follow the BasicSR/KAIR protocol: one item per frame of every sequence (the
clip starts there, or at a random place when too close to the end), a random aligned crop
(``gt_patch`` GT pixels, ``gt_patch / scale`` LQ pixels), random flips/transposition, optional
temporal reversal and mirroring. The randomness of a sample is a pure function of the
dataset seed, the epoch and the index (the samplers of :mod:`rvrt.train` hand out
``(index, epoch)`` keys), so batches do not depend on the number of DataLoader workers and
a resumed run sees exactly the samples of an uninterrupted one.

Datasets are built from a recipe table by :func:`build_dataset` (``type`` picks the layout).
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from rvrt.data.degradations import Degrade, make_degradation
from rvrt.data.realworld import RealDegradation
from rvrt.data.sources import (
    FolderFrames,
    FrameSource,
    MultiSource,
    SyntheticFrames,
    discover_sequences,
    open_source,
)
from rvrt.data.transforms import apply_augment, augment_flags, clip_to_tensor, crop, random_crop_box
from rvrt.errors import InputError

__all__ = [
    "REDS4",
    "REDS_OFFICIAL_VAL",
    "VideoClipDataset",
    "VideoEvalDataset",
    "DATASETS",
    "build_dataset",
]

log = logging.getLogger(__name__)

#: REDS clips held out for testing (REDS4), and the official validation clips after KAIR's
#: regrouping (val 000-029 renamed 240-269 inside the train folders)
REDS4 = ("000", "011", "015", "020")
REDS_OFFICIAL_VAL = tuple(f"{i:03d}" for i in range(240, 270))


# --------------------------------------------------------------------------- degradations
def _sample_rng(seed: int, key: Any) -> tuple[int, np.random.Generator]:
    """``key`` is an index, or ``(index, epoch)`` from the training samplers."""
    if isinstance(key, (tuple, list)):
        index, epoch = int(key[0]), int(key[1])
    else:
        index, epoch = int(key), 0
    return index, np.random.default_rng([seed % 2**32, epoch % 2**32, index])


def _degrade_clip(
    clip: np.ndarray, degrade: Degrade | None, real: RealDegradation | None, rng: np.random.Generator
) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 GT -> LQ: frame by frame, or as a clip by the real-world pipeline
    (its own stream, seeded from the sample's, so that its draws do not shift the others)."""
    if real is not None:
        return real.degrade_uint8(np.ascontiguousarray(clip), np.random.default_rng(int(rng.integers(2**63))))
    return np.stack([degrade(np.ascontiguousarray(f)) for f in clip])


def _check_pair(gt: np.ndarray, lq: np.ndarray, scale: int, where: str) -> None:
    if lq.shape[1] * scale != gt.shape[1] or lq.shape[2] * scale != gt.shape[2]:
        raise InputError(
            f"{where}: LQ frames are {lq.shape[2]}x{lq.shape[1]} and GT frames {gt.shape[2]}x{gt.shape[1]}, "
            f"not {scale}x larger"
        )


def _pair_sources(gt: FrameSource, lq: FrameSource) -> None:
    for seq, names in gt.frames.items():
        if seq not in lq.frames:
            raise InputError(f"sequence {seq} has GT frames in {gt.root} but no LQ frames in {lq.root}")
        if len(lq.frames[seq]) != len(names):
            raise InputError(
                f"sequence {seq}: {len(names)} GT frames in {gt.root} but {len(lq.frames[seq])} LQ frames in {lq.root}"
            )


# --------------------------------------------------------------------------- training clips
class VideoClipDataset(Dataset):
    """Random training clips from GT frames and either stored LQ frames, an on-the-fly
    degradation, or Gaussian noise.

    Args:
        gt: GT frames.
        lq: stored LQ frames, paired with ``gt`` by sequence and position.
        degrade: GT -> LQ function applied on the fly (to the crop plus ``margin`` LQ pixels on
            each side, so the LQ equals that of the whole degraded frame).
        real: the real-world pipeline (:mod:`rvrt.data.realworld`), applied to the whole clip
            (crop plus ``margin``) with parameters drawn once per sample.
        noise: ``(sigma_min, sigma_max)`` on the 0-255 scale: each clip gets Gaussian noise of
            one ``sigma ~ U[min, max]``, unclipped, and the sigma map as a fourth LQ channel.
        scale: GT / LQ size ratio (1 for deblurring and denoising).
        num_frames: clip length read from the sequence (before mirroring).
        gt_patch: crop size in GT pixels (a multiple of ``scale``).
        interval: temporal strides to pick from at random.
        hflip, rot: random horizontal flips; random vertical flips and transpositions.
        reverse: reverse the clip in time with probability 1/2.
        mirror: append the clip reversed (``T`` -> ``2T`` frames, as for Vimeo-90K).
        items: ``"frames"`` (one item per frame, clips start there) or ``"sequences"`` (one item per
            sequence, the centred clip).
        margin: LQ pixels of context degraded around the crop.
        seed: base of the per-sample random streams.
    """

    def __init__(
        self,
        gt: FrameSource,
        *,
        lq: FrameSource | None = None,
        degrade: Degrade | None = None,
        real: RealDegradation | None = None,
        noise: tuple[float, float] | None = None,
        scale: int = 4,
        num_frames: int = 7,
        gt_patch: int = 256,
        interval: Sequence[int] = (1,),
        hflip: bool = True,
        rot: bool = True,
        reverse: bool = False,
        mirror: bool = False,
        items: str = "frames",
        margin: int = 4,
        seed: int = 0,
    ) -> None:
        if sum(x is not None for x in (lq, degrade, real, noise)) != 1:
            raise InputError("a training dataset needs exactly one of: LQ frames, a degradation, a noise range")
        if real is not None and real.scale != scale:
            raise InputError(f"the real-world degradation has scale {real.scale}, the dataset {scale}")
        if noise is not None and scale != 1:
            raise InputError(f"denoising data has scale 1; got scale={scale}")
        if gt_patch % scale:
            raise InputError(f"gt_patch={gt_patch} must be a multiple of scale={scale}")
        if num_frames < 1 or not interval or min(interval) < 1:
            raise InputError(f"num_frames ({num_frames}) and interval ({list(interval)}) must be positive")
        if items not in ("frames", "sequences"):
            raise InputError(f"items must be 'frames' or 'sequences'; got {items!r}")
        if lq is not None:
            _pair_sources(gt, lq)
        self.gt, self.lq, self.degrade, self.real, self.noise = gt, lq, degrade, real, noise
        self.scale, self.num_frames, self.gt_patch = scale, num_frames, gt_patch
        self.interval = tuple(int(i) for i in interval)
        self.hflip, self.rot, self.reverse, self.mirror = hflip, rot, reverse, mirror
        self.items_mode, self.margin, self.seed = items, margin, seed

        need = (num_frames - 1) * max(self.interval) + 1
        short = [s for s, names in gt.frames.items() if len(names) < need]
        if short:
            log.warning("skipping %d sequence(s) shorter than %d frames: %s", len(short), need, ", ".join(short[:5]))
        self.items: list[tuple[str, int]] = []
        for seq, names in gt.frames.items():
            if len(names) >= need:
                self.items += [(seq, i) for i in range(len(names))] if items == "frames" else [(seq, 0)]
        if not self.items:
            raise InputError(f"no sequence in {gt.root} has the {need} frames a training clip needs")

    def __len__(self) -> int:
        return len(self.items)

    def _frame_ids(self, seq: str, pos: int, rng: np.random.Generator) -> list[int]:
        length = len(self.gt.frames[seq])
        step = self.interval[int(rng.integers(len(self.interval)))]
        span = (self.num_frames - 1) * step + 1
        if self.items_mode == "sequences":
            start = (length - span) // 2
        else:
            start = pos if pos <= length - span else int(rng.integers(0, length - span + 1))
        ids = list(range(start, start + span, step))
        if self.reverse and rng.random() < 0.5:
            ids.reverse()
        return ids

    def _crop_pair(self, seq: str, ids: list[int], gt: np.ndarray, rng: np.random.Generator):
        s, lq_patch = self.scale, self.gt_patch // self.scale
        where = f"sequence {seq} of {self.gt.root}"
        if self.lq is not None:
            lq = np.stack(self.lq.read(seq, ids))
            _check_pair(gt, lq, s, where)
            top, left = random_crop_box(lq.shape[1:3], lq_patch, rng, where)
            return crop(lq, top, left, lq_patch), crop(gt, top * s, left * s, self.gt_patch)
        if self.degrade is None and self.real is None:  # denoising: LQ is made from the GT crop later
            top, left = random_crop_box(gt.shape[1:3], self.gt_patch, rng, where)
            return None, crop(gt, top, left, self.gt_patch)
        lh, lw = gt.shape[1] // s, gt.shape[2] // s
        top, left = random_crop_box((lh, lw), lq_patch, rng, where)
        y0, x0 = max(0, top - self.margin), max(0, left - self.margin)
        y1, x1 = min(lh, top + lq_patch + self.margin), min(lw, left + lq_patch + self.margin)
        region = gt[:, y0 * s : y1 * s, x0 * s : x1 * s]
        lq = _degrade_clip(region, self.degrade, self.real, rng)
        if lq.shape[1:3] != (y1 - y0, x1 - x0):
            raise InputError(f"the degradation returned {lq.shape[1:3]} for a {region.shape[1:3]} input at scale {s}")
        return crop(lq, top - y0, left - x0, lq_patch), crop(gt, top * s, left * s, self.gt_patch)

    def __getitem__(self, key: Any) -> dict[str, Any]:
        index, rng = _sample_rng(self.seed, key)
        seq, pos = self.items[index]
        ids = self._frame_ids(seq, pos, rng)
        gt = np.stack(self.gt.read(seq, ids))
        lq, gt = self._crop_pair(seq, ids, gt, rng)
        flags = augment_flags(rng, hflip=self.hflip, rot=self.rot)
        gt_t = clip_to_tensor(apply_augment(gt, flags))
        if lq is None:
            sigma = float(rng.uniform(*self.noise)) / 255.0
            noise = torch.from_numpy(rng.standard_normal(gt_t.shape, dtype=np.float32)).mul_(sigma)
            lq_t = torch.cat([gt_t + noise, torch.full_like(gt_t[:, :1], sigma)], 1)
        else:
            lq_t = clip_to_tensor(apply_augment(lq, flags))
        if self.mirror:
            lq_t = torch.cat([lq_t, lq_t.flip(0)], 0)
            gt_t = torch.cat([gt_t, gt_t.flip(0)], 0)
        return {"lq": lq_t, "gt": gt_t, "key": f"{seq}/{self.gt.frames[seq][min(ids)]}"}


# --------------------------------------------------------------------------- validation clips
class VideoEvalDataset(Dataset):
    """Whole sequences for validation: one item per sequence, deterministic.

    Args:
        gt, lq, degrade: as for :class:`VideoClipDataset`.
        sigma: fixed noise level (0-255) for denoising; the noise of item ``i`` is seeded by ``i``.
        frames: use the first ``frames`` frames of each sequence (0: all).
        crop: centre crop of this many LQ pixels (0: whole frames).
    """

    def __init__(
        self,
        gt: FrameSource,
        *,
        lq: FrameSource | None = None,
        degrade: Degrade | None = None,
        real: RealDegradation | None = None,
        sigma: float | None = None,
        scale: int = 4,
        frames: int = 0,
        crop: int = 0,
        seed: int = 0,
    ) -> None:
        if sum(x is not None for x in (lq, degrade, real, sigma)) != 1:
            raise InputError("a validation dataset needs exactly one of: LQ frames, a degradation, a noise level")
        if lq is not None:
            _pair_sources(gt, lq)
        self.gt, self.lq, self.degrade, self.real, self.sigma = gt, lq, degrade, real, sigma
        self.scale, self.frames, self.crop, self.seed = scale, frames, crop, seed
        self.sequences = list(gt.frames)

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, key: Any) -> dict[str, Any]:
        index, rng = _sample_rng(self.seed, key)
        seq = self.sequences[index]
        n = len(self.gt.frames[seq])
        ids = list(range(min(n, self.frames) if self.frames > 0 else n))
        gt = np.stack(self.gt.read(seq, ids))
        s = self.scale
        if self.lq is not None:
            lq = np.stack(self.lq.read(seq, ids))
            _check_pair(gt, lq, s, f"sequence {seq} of {self.gt.root}")
        elif self.degrade is not None or self.real is not None:
            gt = gt[:, : gt.shape[1] // s * s, : gt.shape[2] // s * s]
            lq = _degrade_clip(gt, self.degrade, self.real, rng)
        else:
            lq = None
        if self.crop > 0:
            lh, lw = gt.shape[1] // s, gt.shape[2] // s
            size = min(self.crop, lh, lw)
            top, left = (lh - size) // 2, (lw - size) // 2
            gt = crop(gt, top * s, left * s, size * s)
            lq = crop(lq, top, left, size) if lq is not None else None
        gt_t = clip_to_tensor(gt)
        if lq is None:
            sigma = float(self.sigma) / 255.0
            noise = torch.from_numpy(rng.standard_normal(gt_t.shape, dtype=np.float32)).mul_(sigma)
            lq_t = torch.cat([gt_t + noise, torch.full_like(gt_t[:, :1], sigma)], 1)
        else:
            lq_t = clip_to_tensor(lq)
        return {"lq": lq_t, "gt": gt_t, "key": seq}


# --------------------------------------------------------------------------- builders
def _sequences_from_list(path: str | os.PathLike) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"sequence list not found: {path}")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def _finish(
    gt: FrameSource,
    *,
    train: bool,
    seed: int,
    lq: FrameSource | None = None,
    degrade: Degrade | None = None,
    real_degrade: RealDegradation | None = None,
    sigma_min: float = 0.0,
    sigma_max: float = 50.0,
    sigma: float | None = None,
    noisy: bool = False,
    scale: int = 4,
    num_frames: int = 7,
    gt_patch: int = 256,
    interval: Sequence[int] = (1,),
    hflip: bool = True,
    rot: bool = True,
    reverse: bool = False,
    mirror: bool = False,
    items: str = "frames",
    margin: int = 4,
    frames: int = 0,
    crop: int = 0,
) -> Dataset:
    if train:
        return VideoClipDataset(
            gt,
            lq=lq,
            degrade=degrade,
            real=real_degrade,
            noise=(sigma_min, sigma_max) if noisy else None,
            scale=scale,
            num_frames=num_frames,
            gt_patch=gt_patch,
            interval=interval,
            hflip=hflip,
            rot=rot,
            reverse=reverse,
            mirror=mirror,
            items=items,
            margin=margin,
            seed=seed,
        )
    if noisy and sigma is None:
        raise InputError("a denoising validation set needs a fixed 'sigma' (0-255)")
    return VideoEvalDataset(
        gt,
        lq=lq,
        degrade=degrade,
        real=real_degrade,
        sigma=sigma if noisy else None,
        scale=scale,
        frames=frames,
        crop=crop,
        seed=seed,
    )


def _paired(
    *, gt_root: str, lq_root: str, io: str = "folder", meta_file: str = "", train: bool, seed: int, **opts: Any
) -> Dataset:
    """Generic paired folders ``<root>/<seq>/<frame>`` (DVD, GoPro, REDS, your own)."""
    seqs = _sequences_from_list(meta_file) if meta_file else None
    gt = open_source(gt_root, io_backend=io, sequences=seqs)
    lq = open_source(lq_root, io_backend=io, sequences=list(gt.frames))
    return _finish(gt, lq=lq, train=train, seed=seed, **opts)


def _reds(
    *,
    gt_root: str,
    lq_root: str,
    partition: str = "REDS4",
    io: str = "folder",
    meta_file: str = "",
    train: bool,
    seed: int,
    **opts: Any,
) -> Dataset:
    """REDS after KAIR's regrouping (val clips 000-029 moved to 240-269 of the train folders).
    Training leaves out the ``partition`` clips; validation uses only them."""
    held = {"REDS4": REDS4, "official": REDS_OFFICIAL_VAL, "none": ()}
    if partition not in held:
        raise InputError(f"REDS partition must be one of {list(held)}; got {partition!r}")
    seqs = _sequences_from_list(meta_file) if meta_file else None
    gt = open_source(gt_root, io_backend=io, sequences=seqs)
    keep = [s for s in gt.frames if (s in held[partition]) != train]
    if not keep:
        raise InputError(
            f"no REDS clips left in {gt_root} for {'training' if train else 'validation'} with partition {partition!r}"
        )
    gt = gt.subset(keep)
    lq = open_source(lq_root, io_backend=io, sequences=keep)
    return _finish(gt, lq=lq, train=train, seed=seed, **opts)


def _vimeo(
    *,
    gt_root: str,
    lq_root: str,
    list_file: str = "",
    io: str = "folder",
    train: bool,
    seed: int,
    num_frames: int = 7,
    mirror: bool = True,
    reverse: bool = True,
    **opts: Any,
) -> Dataset:
    """Vimeo-90K septuplets: ``<root>/<00001>/<0001>/im1.png .. im7.png``; ``list_file`` defaults
    to ``sep_trainlist.txt`` next to ``gt_root`` (``sep_testlist.txt`` for validation)."""
    if not list_file:
        list_file = str(Path(gt_root).parent / ("sep_trainlist.txt" if train else "sep_testlist.txt"))
    seqs = _sequences_from_list(list_file)
    names = [f"im{i}.png" for i in range(1, 8)]
    if io == "folder":
        gt, lq = FolderFrames(gt_root, seqs, names), FolderFrames(lq_root, seqs, names)
    else:
        gt = open_source(gt_root, io_backend=io, sequences=seqs)
        lq = open_source(lq_root, io_backend=io, sequences=seqs)
    return _finish(
        gt,
        lq=lq,
        train=train,
        seed=seed,
        num_frames=num_frames,
        mirror=mirror and train,
        reverse=reverse,
        items="sequences",
        **opts,
    )


def _noisy(*, gt_root: str, io: str = "folder", meta_file: str = "", train: bool, seed: int, **opts: Any) -> Dataset:
    """GT-only sequence folders with Gaussian noise added on the fly (DAVIS, Set8)."""
    seqs = _sequences_from_list(meta_file) if meta_file else None
    gt = open_source(gt_root, io_backend=io, sequences=seqs)
    return _finish(gt, train=train, seed=seed, noisy=True, **{"scale": 1, **opts})


def _degradations(
    degradation: str, scale: int, real: dict[str, Any] | None, train: bool, blur_sigma: float = 1.6
) -> dict[str, Any]:
    """``degrade=`` / ``real_degrade=`` for :func:`_finish`: ``"real"`` is the real-world pipeline
    configured by the ``real`` table; the other names are per-frame degradations."""
    if degradation == "real":
        where = f"data.{'train' if train else 'val'}.real"
        return {"real_degrade": RealDegradation(real, scale=scale, where=where)}
    if real is not None:
        raise InputError(f"a 'real' table needs degradation = \"real\"; got degradation = {degradation!r}")
    return {"degrade": make_degradation(degradation, scale, blur_sigma=blur_sigma)}


def _degraded(
    *,
    roots: Sequence[str] | str,
    degradation: str = "bi",
    blur_sigma: float = 1.6,
    real: dict[str, Any] | None = None,
    video_cache: bool = True,
    train: bool,
    seed: int,
    **opts: Any,
) -> Dataset:
    """GT-only videos (files or frame folders, see :func:`rvrt.data.sources.discover_sequences`)
    degraded on the fly: ``degradation`` ``"bi"``, ``"bd"``, ``"area"``, or ``"real"`` (the
    real-world pipeline, ranges in the ``real`` table). Video files are decoded once into rvrt's
    frame cache unless ``video_cache`` is false (see :class:`rvrt.data.sources.VideoFileFrames`)."""
    roots = [roots] if isinstance(roots, (str, os.PathLike)) else list(roots)
    if not roots:
        raise InputError("'roots' lists no dataset folders or video files")
    made = _degradations(degradation, int(opts.get("scale", 4)), real, train, blur_sigma)  # checked first
    sources = [discover_sequences(r, video_cache=video_cache) for r in roots]
    gt = sources[0] if len(sources) == 1 else MultiSource(sources)
    return _finish(gt, train=train, seed=seed, **made, **opts)


def _synthetic(
    *,
    count: int = 4,
    length: int = 8,
    size: Sequence[int] = (128, 128),
    speed: int = 3,
    degradation: str = "area",
    real: dict[str, Any] | None = None,
    sigma_min: float = 0.0,
    sigma_max: float = 50.0,
    sigma: float | None = None,
    train: bool,
    seed: int,
    **opts: Any,
) -> Dataset:
    """Procedural videos (no files): ``degradation`` ``"area"``/``"bi"``/``"bd"``/``"real"``, or ``"noise"``."""
    gt = SyntheticFrames(count=count, frames=length, size=size, speed=speed, seed=seed)
    if degradation == "noise":
        return _finish(
            gt,
            train=train,
            seed=seed,
            noisy=True,
            sigma_min=sigma_min,
            sigma_max=sigma_max,
            sigma=sigma,
            **{"scale": 1, **opts},
        )
    made = _degradations(degradation, int(opts.get("scale", 4)), real, train)
    return _finish(gt, train=train, seed=seed, **made, **opts)


#: dataset ``type`` -> builder(train=..., seed=..., **options)
DATASETS: dict[str, Callable[..., Dataset]] = {
    "paired": _paired,
    "dvd": _paired,
    "gopro": _paired,
    "reds": _reds,
    "vimeo": _vimeo,
    "davis": _noisy,
    "noisy": _noisy,
    "degraded": _degraded,
    "synthetic": _synthetic,
}


def _accepted(builder: Callable) -> list[str]:
    own = [
        p
        for p, v in inspect.signature(builder).parameters.items()
        if v.kind is inspect.Parameter.KEYWORD_ONLY and p not in ("train", "seed")
    ]
    shared = [
        p
        for p, v in inspect.signature(_finish).parameters.items()
        if v.kind is inspect.Parameter.KEYWORD_ONLY
        and p not in ("train", "seed", "lq", "degrade", "real_degrade", "noisy")
    ]
    return sorted(set(own + shared))


def build_dataset(cfg: dict[str, Any], *, train: bool, seed: int = 0) -> Dataset:
    """A dataset from a recipe table (``data.train`` or ``data.val``).

    ``cfg["type"]`` is a key of :data:`DATASETS`; the other entries are its options.

    Raises:
        InputError: unknown type or option, missing or malformed data.
    """
    cfg = dict(cfg)
    kind = cfg.pop("type", "")
    if kind not in DATASETS:
        raise InputError(f"unknown dataset type {kind!r}; known: {', '.join(DATASETS)}")
    builder = DATASETS[kind]
    accepted = _accepted(builder)
    unknown = sorted(set(cfg) - set(accepted))
    if unknown:
        raise InputError(f"dataset type {kind!r} has no option(s) {unknown}; it accepts {accepted}")
    if "interval" in cfg and isinstance(cfg["interval"], int):
        cfg["interval"] = [cfg["interval"]]
    try:
        return builder(train=train, seed=seed, **cfg)
    except TypeError as err:  # a required option is missing
        raise InputError(f"dataset type {kind!r}: {err}") from err
