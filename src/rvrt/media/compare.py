"""Pictures of results: side-by-side and wipe comparisons of two or three frames, with labels.

A comparison takes one frame from each input (the bicubic input, a restored frame, the ground
truth, ...), brings every frame to the size of the largest (MATLAB bicubic, :func:`rvrt.data.
degradations.imresize`, or nearest neighbour), cuts the same region out of each (``crop``),
magnifies it by a whole factor with nearest neighbour (``zoom``, so single pixels stay visible)
and lays the panels out:

* side by side (default): panels left to right with a ``gap`` between them;
* wipe: one picture split into vertical bands, band ``k`` showing input ``k``, with a one-pixel
  line at each boundary.

A strip above the pictures holds the labels, so no text ever covers a pixel being compared.
:class:`Comparison` says where each panel landed (:attr:`Panel.box`) and which region of the
common frame it shows (:attr:`Panel.source`). Frames are shown at 8 bits (16-bit inputs are
rounded). :func:`compare_video` does the same for every frame of the inputs and writes a video.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from rvrt.errors import InputError
from rvrt.media.images import read_image
from rvrt.media.info import MediaInfo
from rvrt.media.pixels import quantize, to_float
from rvrt.media.readers import open_reader, probe

__all__ = ["Layout", "Panel", "Comparison", "Source", "common_size", "fit", "compose", "compare_video"]

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]  # x, y, width, height

BACKGROUND = (24, 24, 24)
TEXT = (240, 240, 240)
LINE = (255, 255, 255)
UPSCALE_METHODS = ("bicubic", "nearest")
MAX_ZOOM = 16


@dataclass(frozen=True)
class Layout:
    """How the panels are cut and placed.

    Attributes:
        crop: ``(x, y, width, height)`` of the region shown, in pixels of the common (largest)
            frame; None shows whole frames.
        zoom: whole magnification of the crop, nearest neighbour (1..16).
        wipe: None for side by side; else the boundaries between the bands as fractions of the
            width (``n - 1`` increasing values in (0, 1) for ``n`` inputs; empty: equal bands).
        gap: pixels between side-by-side panels.
        upscale: how a smaller frame is brought to the common size: ``"bicubic"`` (MATLAB's) or
            ``"nearest"``.
    """

    crop: Box | None = None
    zoom: int = 1
    wipe: tuple[float, ...] | None = None
    gap: int = 4
    upscale: str = "bicubic"

    def __post_init__(self) -> None:
        if not (isinstance(self.zoom, int) and 1 <= self.zoom <= MAX_ZOOM):
            raise InputError(f"zoom must be a whole number from 1 to {MAX_ZOOM}; got {self.zoom}")
        if self.upscale not in UPSCALE_METHODS:
            raise InputError(f"upscale must be one of {', '.join(UPSCALE_METHODS)}; got {self.upscale!r}")
        if self.gap < 0:
            raise InputError(f"gap must be >= 0; got {self.gap}")
        if self.crop is not None:
            x, y, w, h = self.crop
            if x < 0 or y < 0 or w <= 0 or h <= 0:
                raise InputError(f"crop x,y,w,h needs x, y >= 0 and w, h > 0; got {x},{y},{w},{h}")
        if self.wipe is not None:
            pos = self.wipe
            if any(not (0 < p < 1) for p in pos) or any(b <= a for a, b in zip(pos, pos[1:])):
                raise InputError(f"wipe positions must increase strictly within (0, 1); got {', '.join(map(str, pos))}")


@dataclass(frozen=True)
class Panel:
    """Where one input landed in the picture.

    Attributes:
        label: the text over it.
        box: ``(x, y, width, height)`` of its pixels in the picture (a wipe line is not part of it).
        source: ``(x, y, width, height)`` of the region of the common frame those pixels show
            (before the zoom): picture pixel ``(box.x + i, box.y + j)`` shows common-frame pixel
            ``(source.x + i // zoom, source.y + j // zoom)``.
        label_box: ``(x, y, width, height)`` of the strip part its label is drawn in.
    """

    label: str
    box: Box
    source: Box
    label_box: Box


@dataclass(frozen=True)
class Comparison:
    """A composed picture: ``image`` is ``(H, W, 3)`` uint8; ``size`` the common frame ``(W, H)``."""

    image: np.ndarray
    panels: tuple[Panel, ...]
    size: tuple[int, int]
    strip: int  # height of the label strip at the top
    zoom: int


# ---------------------------------------------------------------------------------------------
# sizes
# ---------------------------------------------------------------------------------------------


def common_size(sizes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The size ``(W, H)`` every frame is brought to: the largest by area (the first one on a tie)."""
    return max(sizes, key=lambda s: s[0] * s[1])


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    # output pixel centres mapped back onto the input grid: a whole factor repeats each pixel
    return np.minimum(((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.int64), n_in - 1)


def fit(frame: np.ndarray, width: int, height: int, method: str = "bicubic") -> np.ndarray:
    """Resize an ``(H, W, 3)`` uint8 frame to ``width x height``: MATLAB bicubic or nearest neighbour.

    A frame already of that size is returned as it is. Bicubic uses a scale of its own per axis
    (``width / W``, ``height / H``), as MATLAB's ``imresize(img, [height width], 'bicubic')``.
    """
    h, w = frame.shape[:2]
    if (w, h) == (width, height):
        return frame
    if method == "nearest":
        return frame[_nearest_index(h, height)][:, _nearest_index(w, width)]
    if method != "bicubic":
        raise InputError(f"upscale must be one of {', '.join(UPSCALE_METHODS)}; got {method!r}")
    from rvrt.data.degradations import imresize

    out = imresize(frame, (height / h, width / w))
    # ceil(n * (m / n)) can land one past m in floating point: trim, or repeat the edge
    out = out[:height, :width]
    if out.shape[:2] != (height, width):
        out = np.pad(out, ((0, height - out.shape[0]), (0, width - out.shape[1]), (0, 0)), mode="edge")
    return out


def to_uint8(frame: np.ndarray) -> np.ndarray:
    """8-bit frames as they are; 16-bit ones rounded to 8 bits."""
    return frame if frame.dtype == np.uint8 else quantize(to_float(frame), 8)


# ---------------------------------------------------------------------------------------------
# labels
# ---------------------------------------------------------------------------------------------


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # a scalable font (Pillow >= 10.1 with FreeType)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()  # Pillow's small bitmap font


def _font_size(panel_width: int) -> int:
    return max(10, min(28, panel_width // 12))


def _strip_height(font) -> int:
    left, top, right, bottom = font.getbbox("Agjy|")
    return int(bottom) + max(4, int(bottom) // 3) * 2


def _fitted_text(draw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..." if text else ""


def _draw_labels(image: np.ndarray, panels: Sequence[Panel], font, align: Sequence[str]) -> np.ndarray:
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    for panel, how in zip(panels, align):
        x, y, w, h = panel.label_box
        pad = max(2, h // 6)
        text = _fitted_text(draw, panel.label, font, w - 2 * pad)
        if not text:
            continue
        length = draw.textlength(text, font=font)
        if how == "right":
            tx = x + w - pad - length
        elif how == "center":
            tx = x + (w - length) / 2
        else:
            tx = x + pad
        top = font.getbbox("Agjy|")[1]
        ty = y + (h - (font.getbbox("Agjy|")[3] - top)) / 2 - top
        draw.text((tx, ty), text, font=font, fill=TEXT)
    return np.asarray(canvas).copy()


# ---------------------------------------------------------------------------------------------
# composing
# ---------------------------------------------------------------------------------------------


def _region(frame: np.ndarray, crop: Box | None, zoom: int) -> np.ndarray:
    if crop is not None:
        x, y, w, h = crop
        frame = frame[y : y + h, x : x + w]
    if zoom > 1:
        frame = np.repeat(np.repeat(frame, zoom, axis=0), zoom, axis=1)
    return frame


def check_crop(crop: Box | None, width: int, height: int) -> Box:
    """``crop`` checked against a ``width x height`` frame (the whole frame when None)."""
    if crop is None:
        return (0, 0, width, height)
    x, y, w, h = crop
    if x + w > width or y + h > height:
        raise InputError(f"crop {x},{y},{w},{h} (x,y,w,h) reaches past the {width}x{height} frames compared")
    return crop


def compose(frames: Sequence[np.ndarray], labels: Sequence[str], layout: Layout = Layout()) -> Comparison:
    """Compose one comparison picture.

    Args:
        frames: two or three ``(H, W, 3)`` uint8 or uint16 RGB frames, sizes may differ (each is
            brought to the largest, see :func:`fit`).
        labels: one text per frame, drawn in the strip above its panel.
        layout: crop, zoom, side by side or wipe, see :class:`Layout`.

    Raises:
        InputError: not two or three frames, labels that do not match, a crop outside the frames,
            wipe positions that do not match the number of frames.
    """
    n = len(frames)
    if n not in (2, 3):
        raise InputError(f"compare takes two or three frames; got {n}")
    if len(labels) != n:
        raise InputError(f"{n} frames need {n} labels; got {len(labels)}")
    for f in frames:
        if f.ndim != 3 or f.shape[2] != 3 or f.dtype not in (np.uint8, np.uint16):
            raise InputError(f"frames must be (H, W, 3) uint8 or uint16; got {f.shape} {f.dtype}")
    width, height = common_size([(f.shape[1], f.shape[0]) for f in frames])
    crop = check_crop(layout.crop, width, height)
    z = layout.zoom
    shown = [_region(fit(to_uint8(f), width, height, layout.upscale), crop, z) for f in frames]
    ph, pw = shown[0].shape[:2]
    font = _font(_font_size(pw if layout.wipe is None else pw // n))
    strip = _strip_height(font)
    cx, cy = crop[0], crop[1]

    if layout.wipe is None:
        gap = layout.gap
        image = np.empty((strip + ph, n * pw + (n - 1) * gap, 3), np.uint8)
        image[...] = BACKGROUND
        panels = []
        for k, pic in enumerate(shown):
            x = k * (pw + gap)
            image[strip:, x : x + pw] = pic
            panels.append(Panel(labels[k], (x, strip, pw, ph), (cx, cy, crop[2], crop[3]), (x, 0, pw, strip)))
        return Comparison(_draw_labels(image, panels, font, ["left"] * n), tuple(panels), (width, height), strip, z)

    positions = layout.wipe or tuple((k + 1) / n for k in range(n - 1))
    if len(positions) != n - 1:
        raise InputError(f"a wipe of {n} inputs needs {n - 1} position(s); got {len(positions)}")
    # boundaries on whole source pixels, so every band starts on a pixel of its own input
    cuts = [0, *(round(p * crop[2]) * z for p in positions), pw]
    if any(b - a < 2 * z for a, b in zip(cuts, cuts[1:])):
        raise InputError(f"wipe positions {', '.join(map(str, positions))} leave a band too narrow to see")
    image = np.empty((strip + ph, pw, 3), np.uint8)
    image[...] = BACKGROUND
    panels = []
    for k, pic in enumerate(shown):
        a, b = cuts[k], cuts[k + 1]
        image[strip:, a:b] = pic[:, a:b]
        if k > 0:
            image[strip:, a] = LINE
        # the line covers the first column of the band: its box starts at the next whole source pixel
        start = a if k == 0 else a + z
        panels.append(
            Panel(labels[k], (start, strip, b - start, ph), (cx + start // z, cy, (b - start) // z, crop[3]),
                  (a, 0, b - a, strip))
        )  # fmt: skip
    align = ["left", *(["center"] * (n - 2)), "right"]
    return Comparison(_draw_labels(image, panels, font, align), tuple(panels), (width, height), strip, z)


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One input of a comparison: a video, a folder of frames (or glob), or a single image."""

    path: str
    info: MediaInfo

    @classmethod
    def open(cls, path: str | os.PathLike) -> Source:
        return cls(os.fspath(path), probe(path))

    @property
    def still(self) -> bool:
        """A single image file: it stands for every frame."""
        return self.info.kind == "frames" and self.info.frame_count == 1 and Path(self.path).is_file()

    @property
    def label(self) -> str:
        """The file stem (video, image), or the folder name (a folder, or the folder of a glob)."""
        p = Path(self.path.rstrip("/" + os.sep))
        if p.is_dir():
            return p.name
        return p.parent.name if any(c in p.name for c in "*?[") else p.stem

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` (0-based); a still image for any index."""
        if self.still:
            return read_image(self.info.files[0])[0]
        count = self.info.frame_count
        if index < 0 or (count is not None and index >= count):
            raise InputError(f"{self.path} has {count} frames; frame {index} does not exist (frames count from 0)")
        if self.info.kind == "frames":
            return read_image(self.info.files[index])[0]
        with open_reader(self.path, start=index, info=self.info) as reader:
            for f in reader:
                return f.data
        raise InputError(f"{self.path} ends before frame {index}")

    def frames(self, start: int) -> Iterator[np.ndarray]:
        """Frames from ``start`` on (a still image: the same frame for ever)."""
        if self.still:
            data = read_image(self.info.files[0])[0]
            while True:
                yield data
        with open_reader(self.path, start=start, info=self.info) as reader:
            for f in reader:
                yield f.data


def compare_video(
    sources: Sequence[Source],
    dest: str | os.PathLike,
    labels: Sequence[str],
    layout: Layout = Layout(),
    *,
    start: int = 0,
    count: int | None = None,
    fps: Fraction | float | None = None,
    overwrite: bool = False,
    progress=None,
) -> int:
    """Write a comparison of every frame from ``start`` on (until the shortest input ends, or
    ``count`` frames) as a video; returns the number of frames written.

    The frame rate is ``fps``, else that of the first video input, else 25. ``progress(n)`` is
    called after each frame.
    """
    from rvrt.media.writers import open_writer

    moving = [s for s in sources if not s.still]
    if not moving:
        raise InputError("a comparison video needs at least one video or frames folder; all inputs are single images")
    for s in moving:
        if s.info.frame_count is not None and start >= s.info.frame_count:
            raise InputError(f"{s.path} has {s.info.frame_count} frames; --frame {start} is past its end")
    like = next((s.info for s in moving if s.info.kind == "video"), moving[0].info)
    iterators = [s.frames(start) for s in sources]
    writer = None
    written = 0
    try:
        for frames in zip(*iterators):
            if count is not None and written >= count:
                break
            pic = compose(frames, labels, layout).image
            if writer is None:
                writer = open_writer(dest, like=like, width=pic.shape[1], height=pic.shape[0], fps=fps,
                                     copy_streams=False, overwrite=overwrite)  # fmt: skip
            writer.write(pic)
            written += 1
            if progress is not None:
                progress(written)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        for it in iterators:
            it.close()
    if writer is None:
        raise InputError(f"no frames to compare from frame {start} on")
    writer.close()
    return written
