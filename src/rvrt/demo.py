"""``rvrt demo``: synthesise a short clip, degrade it (MATLAB bicubic x4), restore it with the
default model, and compare with bicubic upsampling, all offline.

The scene is procedural (text, stripes, discs and a smooth texture) and the camera pans one
ground-truth pixel per frame, a quarter of a pixel in the low-resolution clip, so that a video
model has sub-pixel detail to gather from neighbouring frames.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from rvrt import zoo
from rvrt.data.degradations import imresize
from rvrt.errors import InputError
from rvrt.media.pixels import tensor_to_frame
from rvrt.metrics import psnr, ssim

__all__ = ["DemoResult", "synthetic_scene", "run_demo"]

log = logging.getLogger(__name__)


@dataclass
class DemoResult:
    """PSNR/SSIM (Y channel, the video SR convention) of bicubic and of the model against the ground truth."""

    model: str
    frames: int
    size: tuple[int, int]
    bicubic_psnr: float
    bicubic_ssim: float
    model_psnr: float
    model_ssim: float
    files: dict[str, str]

    def table(self) -> str:
        w, h = self.size
        n = max(len("bicubic"), len(self.model))
        return "\n".join(
            [
                f"{self.frames} frames, {w // 4}x{h // 4} -> {w}x{h} (x4), Y channel:",
                f"  {'bicubic':<{n}} PSNR {self.bicubic_psnr:6.2f} dB  SSIM {self.bicubic_ssim:.4f}",
                f"  {self.model:<{n}} PSNR {self.model_psnr:6.2f} dB  SSIM {self.model_ssim:.4f}"
                f"  ({self.model_psnr - self.bicubic_psnr:+.2f} dB)",
            ]
        )


def synthetic_scene(frames: int = 12, width: int = 256, height: int = 192, seed: int = 0) -> list[np.ndarray]:
    """Ground-truth frames ``(H, W, 3)`` uint8 of a procedural scene under a slow camera pan."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    cw, ch = width + 2 * frames + 8, height + frames + 8
    yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)
    base = np.zeros((ch, cw, 3), np.float32)
    for c in range(3):  # a smooth colour field
        for _ in range(3):
            fy, fx = rng.uniform(0.005, 0.04, 2)
            base[..., c] += np.sin(fy * yy + fx * xx + rng.uniform(0, 6.3)) * rng.uniform(15, 35)
    base = np.clip(base + 140, 0, 255).astype(np.uint8)
    img = Image.fromarray(base)
    draw = ImageDraw.Draw(img)
    for _ in range(6):  # stripes of several frequencies
        x0 = int(rng.integers(0, cw - 60))
        y0 = int(rng.integers(0, ch - 40))
        period = int(rng.integers(3, 9))
        for k in range(0, 60, period):
            draw.line(
                [(x0 + k, y0), (x0 + k + 10, y0 + 40)],
                fill=tuple(int(v) for v in rng.integers(0, 90, 3)),
                width=max(1, period // 3),
            )
    for _ in range(8):  # discs
        r = int(rng.integers(4, 20))
        x, y = int(rng.integers(r, cw - r)), int(rng.integers(r, ch - r))
        draw.ellipse([x - r, y - r, x + r, y + r], outline=tuple(int(v) for v in rng.integers(0, 255, 3)), width=2)
    words = ["RVRT", "video", "restore", "x4", "recurrent", "2022", "attention", "frames"]
    for i in range(14):  # text, the classic hard case for upsampling
        draw.text(
            (int(rng.integers(0, cw - 70)), int(rng.integers(0, ch - 12))),
            words[i % len(words)],
            fill=tuple(int(v) for v in rng.integers(0, 70, 3)),
        )
    canvas = np.asarray(img)
    return [canvas[t // 2 : t // 2 + height, 2 * t : 2 * t + width].copy() for t in range(frames)]


def _write_video(path: Path, frames: list[np.ndarray], fps: Fraction) -> None:
    from rvrt.media import MediaInfo, open_writer

    h, w = frames[0].shape[:2]
    like = MediaInfo(
        kind="frames",
        width=w,
        height=h,
        fps=fps,
        frame_count=len(frames),
        bit_depth=8,
        names=None,
        color={},
        channels_note=None,
        path="",  # not made from a file: nothing to protect or copy streams from
    )
    with open_writer(path, like=like, width=w, height=h, fps=fps, crf=12, overwrite=True) as writer:
        for f in frames:
            writer.write(f)


def run_demo(
    out_dir: str | os.PathLike | None = "rvrt-demo",
    *,
    model: str | None = None,
    frames: int = 12,
    device: str = "auto",
    overwrite: bool = False,
    progress: bool = False,
) -> DemoResult:
    """Synthesise, degrade, restore and score a clip.

    Args:
        out_dir: where ``gt.mp4``, ``lq.mp4``, ``bicubic.mp4`` and ``restored.mp4`` are written
            (``None``: write nothing).
        model: x4 SR model (default: the default model shipped with the package).
        frames: clip length.
        device: ``auto``, ``cpu`` or ``cuda``.
        overwrite: replace files in an existing ``out_dir``.
        progress: a progress bar on stderr while the model runs.
    """
    from rvrt.api import select_model
    from rvrt.inference.jobs import restore_iter

    net, spec = select_model(model or zoo.DEFAULT_MODEL)
    if spec.scale != 4 or spec.task != "sr":
        raise InputError(f"the demo needs an x4 super-resolution model; {spec.name} is {spec.task} x{spec.scale}")
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out} exists and is not empty; pass --overwrite (or another -o)")
    gt = synthetic_scene(frames)
    lq = [imresize(f, 1 / 4) for f in gt]
    bicubic = [imresize(f, 4) for f in lq]
    restored = [None] * len(lq)
    for i, frame in restore_iter(lq, model=net, device=device, tile=(0, 0, 0), progress=progress):
        restored[i] = tensor_to_frame(frame)
    score = lambda fn, xs: float(np.mean([fn(x, g, y_channel=True) for x, g in zip(xs, gt)]))  # noqa: E731
    files: dict[str, str] = {}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for name, clip in (("gt", gt), ("lq", lq), ("bicubic", bicubic), ("restored", restored)):
            _write_video(out / f"{name}.mp4", clip, Fraction(10))
            files[name] = str(out / f"{name}.mp4")
    h, w = gt[0].shape[:2]
    return DemoResult(
        model=spec.name,
        frames=len(gt),
        size=(w, h),
        bicubic_psnr=score(psnr, bicubic),
        bicubic_ssim=score(ssim, bicubic),
        model_psnr=score(psnr, restored),
        model_ssim=score(ssim, restored),
        files=files,
    )
