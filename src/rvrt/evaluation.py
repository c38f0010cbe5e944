"""Benchmark evaluation: the test protocols of the RVRT / VRT papers as data, and :func:`evaluate`.

A :class:`Protocol` says how a benchmark is scored: the scale between LQ and GT, the channel the
paper reports (RGB or the BT.601 Y channel; both are always computed), the border crop (0 for all
of them), whether the LQ input is made from the GT by adding noise (video denoising), whether
only a centre frame is scored (Vimeo-90K-T) and how frame scores are averaged.

Scores follow :mod:`rvrt.metrics`: restored frames are clamped and rounded to 8 bits, PSNR/SSIM are
computed per frame, averaged per sequence, then over sequences (the official script's order; the
mean over all frames is reported too).

Folder layout: ``lq_root`` and ``gt_root`` hold one sub-folder per sequence (at any depth, e.g.
Vimeo-90K's ``00001/0266``) with the frames, natural-sorted; or the frames themselves (one
sequence). The same sequences must exist on both sides with the same number of frames.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rvrt.data.degradations import add_gaussian_noise
from rvrt.data.frames import find_sequences, image_to_float, read_image, write_image
from rvrt.errors import InputError
from rvrt.files import atomic_write
from rvrt.metrics import psnr, ssim, to_uint8
from rvrt.protocols import PROTOCOLS, Protocol, Septuplet, default_protocol, get_protocol, read_sequence_list

__all__ = [
    "Protocol",
    "Septuplet",
    "PROTOCOLS",
    "get_protocol",
    "default_protocol",
    "evaluate",
    "EvalResult",
    "SequenceScore",
    "FrameScore",
    "read_sequence_list",
    "RestoreFn",
]

log = logging.getLogger(__name__)

#: ``restore_fn(lq)``: ``lq`` is ``(T, C, H, W)`` float32 in [0, 1] on the CPU (``C = 4`` for
#: non-blind denoising: RGB + a constant ``sigma / 255`` map); returns ``(T, 3, s*H, s*W)``.
RestoreFn = Callable[[torch.Tensor], torch.Tensor]

METRICS = ("psnr", "ssim", "psnr_y", "ssim_y")


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


@dataclass(frozen=True)
class FrameScore:
    """Scores of one output frame (PSNR in dB)."""

    name: str
    psnr: float
    ssim: float
    psnr_y: float
    ssim_y: float


@dataclass(frozen=True)
class SequenceScore:
    """Scores of one sequence; the properties are means over its frames."""

    name: str
    frames: tuple[FrameScore, ...]

    def mean(self, metric: str) -> float:
        return _mean([getattr(f, metric) for f in self.frames])

    psnr = property(lambda self: self.mean("psnr"))
    ssim = property(lambda self: self.mean("ssim"))
    psnr_y = property(lambda self: self.mean("psnr_y"))
    ssim_y = property(lambda self: self.mean("ssim_y"))


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class EvalResult:
    """Per-frame, per-sequence and overall scores of one evaluation.

    ``psnr``/``ssim``/``psnr_y``/``ssim_y`` are the headline numbers (averaged as the protocol
    says); :meth:`mean` gives either average explicitly.
    """

    protocol: Protocol
    sequences: tuple[SequenceScore, ...]
    sigma: float | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def mean(self, metric: str, over: str | None = None) -> float:
        """Mean of ``metric`` over ``"sequence"`` means or over all ``"frame"`` scores."""
        over = over or self.protocol.aggregate
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}; got {metric!r}")
        if over == "sequence":
            return _mean([s.mean(metric) for s in self.sequences])
        if over == "frame":
            return _mean([getattr(f, metric) for s in self.sequences for f in s.frames])
        raise ValueError(f"over must be 'sequence' or 'frame'; got {over!r}")

    psnr = property(lambda self: self.mean("psnr"))
    ssim = property(lambda self: self.mean("ssim"))
    psnr_y = property(lambda self: self.mean("psnr_y"))
    ssim_y = property(lambda self: self.mean("ssim_y"))

    @property
    def num_frames(self) -> int:
        return sum(len(s.frames) for s in self.sequences)

    @property
    def reported(self) -> tuple[float, float]:
        """(PSNR, SSIM) in the channel the paper reports for this benchmark."""
        if self.protocol.channel == "Y":
            return self.psnr_y, self.ssim_y
        return self.psnr, self.ssim

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; infinite PSNR (identical images) becomes ``None``."""
        p = self.protocol
        means = {over: {m: _finite(self.mean(m, over)) for m in METRICS} for over in ("sequence", "frame")}
        return {
            "protocol": p.name,
            "title": p.title,
            "task": p.task,
            "scale": p.scale,
            "channel": p.channel,
            "border": p.border,
            "sigma": self.sigma,
            "aggregate": p.aggregate,
            "num_sequences": len(self.sequences),
            "num_frames": self.num_frames,
            "overall": means[p.aggregate],
            "mean_over_sequences": means["sequence"],
            "mean_over_frames": means["frame"],
            "reported": {"channel": p.channel, "psnr": _finite(self.reported[0]), "ssim": _finite(self.reported[1])},
            **self.extras,
            "sequences": [
                {
                    "name": s.name,
                    "num_frames": len(s.frames),
                    **{m: _finite(s.mean(m)) for m in METRICS},
                    "frames": [{"name": f.name, **{m: _finite(getattr(f, m)) for m in METRICS}} for f in s.frames],
                }
                for s in self.sequences
            ],
        }

    def to_json(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write :meth:`to_dict` as JSON (atomically)."""
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        return _write_text(path, text, overwrite)

    def to_csv(self, path: str | os.PathLike, *, level: str = "frame", overwrite: bool = False) -> Path:
        """Write one row per frame (``level="frame"``) or per sequence (``"sequence"``), atomically."""
        if level not in ("frame", "sequence"):
            raise ValueError(f"level must be 'frame' or 'sequence'; got {level!r}")
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        if level == "frame":
            writer.writerow(["sequence", "frame", *METRICS])
            for s in self.sequences:
                for f in s.frames:
                    writer.writerow([s.name, f.name, *(repr(float(getattr(f, m))) for m in METRICS)])
        else:
            writer.writerow(["sequence", "num_frames", *METRICS])
            for s in self.sequences:
                writer.writerow([s.name, len(s.frames), *(repr(float(s.mean(m))) for m in METRICS)])
        return _write_text(path, buf.getvalue(), overwrite)

    def table(self) -> str:
        """A human-readable table: one line per sequence, then the averages."""
        p = self.protocol
        head = f"{p.title} ({p.task} x{p.scale}" if p.scale > 1 else f"{p.title} ({p.task}"
        head += f", sigma {self.sigma:g})" if self.sigma is not None else ")"
        head += f": {len(self.sequences)} sequences, {self.num_frames} frames, border {p.border}; "
        head += f"reported channel {p.channel}"
        rows = [("sequence", "frames", "PSNR", "SSIM", "PSNR-Y", "SSIM-Y")]

        def fmt(name: str, n: int | str, vals: Sequence[float]) -> tuple[str, ...]:
            return (name, str(n), f"{vals[0]:.2f}", f"{vals[1]:.4f}", f"{vals[2]:.2f}", f"{vals[3]:.4f}")

        for s in self.sequences:
            rows.append(fmt(s.name, len(s.frames), [s.mean(m) for m in METRICS]))
        rows.append(fmt("mean of sequences", len(self.sequences), [self.mean(m, "sequence") for m in METRICS]))
        rows.append(fmt("mean of frames", self.num_frames, [self.mean(m, "frame") for m in METRICS]))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [head]
        for i, r in enumerate(rows):
            if i == len(rows) - 2:
                lines.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
            pairs = enumerate(zip(r, widths, strict=True))
            cells = (c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in pairs)
            lines.append("  ".join(cells))
        ps, ss = self.reported
        lines.append(f"{p.title} {p.channel}: PSNR {ps:.2f} dB, SSIM {ss:.4f} (mean over {p.aggregate}s)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _write_text(path: str | os.PathLike, text: str, overwrite: bool) -> Path:
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists; pass --overwrite (overwrite=True) to replace it")

    def write(tmp: str) -> None:
        Path(tmp).write_text(text)

    return atomic_write(path, write, overwrite=True)


# ---------------------------------------------------------------------------------------------
# discovery and loading
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pair:
    key: str  # relative folder ("" for a flat root)
    name: str  # display / save name
    lq: tuple[Path, ...]
    gt: tuple[Path, ...]
    out_names: tuple[str, ...]  # file stems of the scored outputs


def _select(found: dict[str, list[Path]], names: Sequence[str] | None, root: Path) -> dict[str, list[Path]]:
    if names is None:
        return found
    missing = [n for n in names if n not in found]
    if missing:
        raise InputError(
            f"{len(missing)} listed sequence(s) not found under {root}: {', '.join(missing[:5])}"
            + (" ..." if len(missing) > 5 else "")
        )
    return {n: found[n] for n in names}


def _pairs(lq_root: Path | None, gt_root: Path, proto: Protocol, names: Sequence[str] | None) -> list[_Pair]:
    gt_found = _select(find_sequences(gt_root), names, gt_root)
    if proto.noise:
        lq_found = gt_found
    else:
        if lq_root is None:
            raise InputError(f"protocol {proto.name} needs an LQ folder")
        lq_found = _select(find_sequences(lq_root), names, lq_root)
        only_lq = [k or "." for k in lq_found if k not in gt_found]
        only_gt = [k or "." for k in gt_found if k not in lq_found]
        if only_lq or only_gt:
            parts = []
            if only_lq:
                parts.append(f"only in LQ ({lq_root}): {', '.join(only_lq[:5])}")
            if only_gt:
                parts.append(f"only in GT ({gt_root}): {', '.join(only_gt[:5])}")
            raise InputError("LQ and GT folders hold different sequences; " + "; ".join(parts))
    pairs = []
    for key, gt_frames in gt_found.items():
        name = key or gt_root.name
        if proto.septuplet is not None:
            sep = proto.septuplet
            folder_lq = (lq_root if not proto.noise else gt_root) / key
            lq = tuple(folder_lq / f for f in sep.lq_frames)
            gt = (gt_root / key / sep.gt_frame,)
            for f in (*lq, *gt):
                if not f.is_file():
                    raise InputError(f"sequence {name}: {f.name} not found in {f.parent}")
            pairs.append(_Pair(key, name, lq, gt, (Path(sep.gt_frame).stem,)))
            continue
        lq_frames = lq_found[key]
        gt_by_name = {p.stem: p for p in gt_frames}
        lq_names = [p.stem for p in lq_frames]
        only_lq = [n for n in lq_names if n not in gt_by_name]
        only_gt = [n for n in gt_by_name if n not in set(lq_names)]
        if only_lq or only_gt or len(gt_by_name) != len(gt_frames):
            parts = [f"{len(lq_frames)} LQ frames, {len(gt_frames)} GT frames"]
            if only_lq:
                parts.append(f"no GT frame for {', '.join(only_lq[:3])}" + (" ..." if len(only_lq) > 3 else ""))
            if only_gt:
                parts.append(f"no LQ frame for {', '.join(only_gt[:3])}" + (" ..." if len(only_gt) > 3 else ""))
            raise InputError(
                f"sequence {name}: LQ and GT frames are paired by name and do not match ({'; '.join(parts)})"
            )
        gt_paired = tuple(gt_by_name[n] for n in lq_names)
        pairs.append(_Pair(key, name, tuple(lq_frames), gt_paired, tuple(lq_names)))
    return pairs


def _load_frames(paths: Sequence[Path], what: str, seq: str) -> list[np.ndarray]:
    frames = [read_image(p) for p in paths]
    shape = frames[0].shape
    for p, f in zip(paths, frames, strict=True):
        if f.shape != shape:
            raise InputError(
                f"sequence {seq}: {what} frame {p.name} is {f.shape[1]}x{f.shape[0]}, "
                f"the first is {shape[1]}x{shape[0]}"
            )
    return frames


def _stack_float(frames: Sequence[np.ndarray]) -> torch.Tensor:
    """(T, 3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.stack([image_to_float(f) for f in frames])).permute(0, 3, 1, 2).contiguous()


def _gt_uint8(frame: np.ndarray) -> np.ndarray:
    return frame if frame.dtype == np.uint8 else to_uint8(image_to_float(frame))


def _make_noisy(gt: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    noisy = add_gaussian_noise(gt, sigma, seed=seed)
    t, _, h, w = gt.shape
    level = torch.full((t, 1, h, w), sigma / 255.0, dtype=torch.float32)
    return torch.cat([noisy, level], 1)


# ---------------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------------


def evaluate(
    restore_fn: RestoreFn,
    lq_root: str | os.PathLike | None,
    gt_root: str | os.PathLike,
    protocol: str | Protocol,
    *,
    sigma: float | None = None,
    save_dir: str | os.PathLike | None = None,
    progress: bool = True,
    sequences: Sequence[str] | None = None,
    scale: int | None = None,
    overwrite: bool = False,
) -> EvalResult:
    """Restore every sequence with ``restore_fn`` and score it against the ground truth.

    Args:
        restore_fn: ``(T, C, H, W)`` float32 [0, 1] CPU tensor -> ``(T, 3, s*H, s*W)`` tensor (any
            device); see :data:`RestoreFn`. It is called once per sequence with the whole clip.
        lq_root: LQ frames (ignored, may be None, for noise protocols: the input is made from GT).
        gt_root: ground-truth frames.
        protocol: a name from :data:`PROTOCOLS` or a :class:`Protocol`.
        sigma: noise level on the 0..255 scale; required by (and only allowed for) noise protocols.
        save_dir: write the restored 8-bit frames as ``save_dir/<sequence>/<LQ frame name>.png``.
        progress: show a progress bar.
        sequences: evaluate only these sequences (relative folder names, e.g. ``00001/0266``).
        scale: override the protocol's scale (custom models).
        overwrite: replace existing files in ``save_dir``.

    Raises:
        InputError: missing/empty folders, different sequences or frame counts, frame sizes that
            do not agree with the scale, a missing or unexpected ``sigma``, existing output files,
            or a ``restore_fn`` result of the wrong shape.
    """
    proto = get_protocol(protocol)
    if scale is not None:
        proto = replace(proto, scale=int(scale))
    if proto.noise:
        if sigma is None:
            raise InputError(f"protocol {proto.name} adds Gaussian noise: give its level as sigma (--sigma)")
        if not (0 <= sigma and math.isfinite(sigma)):
            raise InputError(f"sigma must be >= 0; got {sigma}")
    elif sigma is not None:
        raise InputError(f"sigma is only used by denoising protocols; {proto.name} does not add noise")
    gt_root = Path(gt_root)
    lq_root = Path(lq_root) if lq_root is not None else None
    pairs = _pairs(lq_root, gt_root, proto, sequences)
    save_root = Path(save_dir) if save_dir is not None else None
    if save_root is not None and not overwrite:
        for pr in pairs:
            for stem in pr.out_names:
                target = save_root / pr.name / f"{stem}.png"
                if target.exists():
                    raise InputError(f"{target} exists; pass --overwrite (overwrite=True) to replace it")

    from rvrt.inference.progress import Progress

    # progress counts restored frames over all sequences, and moves inside a sequence as the model works
    per_seq = [len(pr.lq) * (2 if proto.septuplet is not None and proto.septuplet.mirror else 1) for pr in pairs]
    bar = Progress(sum(per_seq), f"eval {proto.title}", enabled=progress)
    results = []
    try:
        for pr, n in zip(pairs, per_seq, strict=True):
            score = _evaluate_sequence(restore_fn, pr, proto, sigma, save_root, bar.at)
            bar.advance(n)
            results.append(score)
            log.info(
                "%s: PSNR %.2f dB, SSIM %.4f, PSNR-Y %.2f dB, SSIM-Y %.4f (%d frames)",
                pr.name,
                score.psnr,
                score.ssim,
                score.psnr_y,
                score.ssim_y,
                len(score.frames),
            )
    finally:
        bar.close()
    return EvalResult(proto, tuple(results), sigma)


def _restore_with_progress(restore_fn: RestoreFn, lq: torch.Tensor, at) -> torch.Tensor:
    """``restore_fn(lq)``; one that takes a ``progress`` argument is given ``at``, to call with how
    many of the clip's frames are done so far (a float: it moves while a window is computed)."""
    import inspect

    try:
        takes = "progress" in inspect.signature(restore_fn).parameters
    except (TypeError, ValueError):
        takes = False
    return restore_fn(lq, progress=at) if takes else restore_fn(lq)


def _evaluate_sequence(
    restore_fn: RestoreFn, pr: _Pair, proto: Protocol, sigma: float | None, save_root: Path | None, at=None
) -> SequenceScore:
    gt_frames = _load_frames(pr.gt, "GT", pr.name)
    if proto.noise:
        lq = _make_noisy(_stack_float(gt_frames), sigma, proto.noise_seed)
    else:
        lq = _stack_float(_load_frames(pr.lq, "LQ", pr.name))
    h, w = lq.shape[-2:]
    gh, gw = gt_frames[0].shape[:2]
    if (gh, gw) != (h * proto.scale, w * proto.scale):
        raise InputError(
            f"sequence {pr.name}: GT frames are {gw}x{gh} but LQ frames are {w}x{h}; "
            f"protocol {proto.name} expects GT = {proto.scale} x LQ"
        )
    if proto.septuplet is not None and proto.septuplet.mirror:
        lq = torch.cat([lq, lq.flip(0)], 0)

    out = _restore_with_progress(restore_fn, lq, at) if at is not None else restore_fn(lq)
    expected = (lq.shape[0], 3, gh, gw)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputError(
            f"sequence {pr.name}: restore_fn returned {got}, expected {expected} (is the model's scale {proto.scale}?)"
        )
    out = out.detach()
    if proto.septuplet is not None:
        picks = [out[i] for i in proto.septuplet.outputs]
        out = (sum(picks[1:], picks[0]) / len(picks))[None]

    frames = []
    for i, stem in enumerate(pr.out_names):
        img = to_uint8(out[i].float().cpu())
        ref = _gt_uint8(gt_frames[i])
        b = proto.border
        frames.append(
            FrameScore(
                stem,
                psnr(img, ref, border=b),
                ssim(img, ref, border=b),
                psnr(img, ref, border=b, y_channel=True),
                ssim(img, ref, border=b, y_channel=True),
            )
        )
        if save_root is not None:
            write_image(save_root / pr.name / f"{stem}.png", img, overwrite=True)
    return SequenceScore(pr.name, tuple(frames))
