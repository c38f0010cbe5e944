"""Single still images: reading 8/16-bit frames as RGB, writing 8/16-bit RGB PNG, natural sorting.

Reading goes through Pillow, except for 16-bit colour images (48/64-bit PNG and TIFF), which
Pillow silently truncates to 8 bits; those are decoded with PyAV (FFmpeg's png/tiff decoders).
Writing uses a small PNG encoder (numpy + zlib) because Pillow cannot write 48-bit RGB PNG; it
uses the "Up" row filter for every row, which compresses camera and restored footage about as
well as Pillow's adaptive filtering at a fraction of the cost, and zlib releases the GIL, so
frames can be written from a background thread.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rvrt.errors import InputError

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageHeader",
    "natural_key",
    "read_image_header",
    "read_image",
    "to_rgb",
    "encode_png",
    "write_png",
]

#: file name endings read as frames (lower case, with the dot)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")

GRAY_NOTE = "grayscale converted to RGB"
ALPHA_NOTE = "alpha channel dropped"

_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key that orders embedded numbers by value: ``"frame2" < "frame10"``.

    Text is compared case-insensitively; names equal under that rule (``"f01"`` / ``"f1"``)
    fall back to plain string order so the order is total and repeatable.
    """
    name = os.fspath(name)
    # re.split with a capturing group alternates text, digits, text, ... so at every position
    # both keys hold the same type and tuples compare without TypeError
    parts = tuple(int(p) if i % 2 else p.casefold() for i, p in enumerate(_DIGITS.split(name)))
    return parts, name


@dataclass(frozen=True)
class ImageHeader:
    """What an image holds, read from its header without decoding the pixels."""

    width: int
    height: int
    bit_depth: int  # 8 or 16
    gray: bool
    alpha: bool


def _pil_open(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(path)
    except FileNotFoundError as err:
        raise InputError(f"frame not found: {path}") from err
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise InputError(f"cannot read image {path}: not a supported image or corrupt ({err})") from err


def _is_16bit(im) -> bool:
    if im.mode.startswith("I;16"):
        return True
    # Pillow opens 48/64-bit PNG and TIFF as "RGB"/"RGBA" and only the raw mode of the
    # decoder tile ("RGB;16B", "RGBA;16N", "LA;16B", ...) tells that the file holds 16 bits
    return any(";16" in str(tile.args) for tile in getattr(im, "tile", ()) or ())


def _header_of(im, path: Path) -> ImageHeader:
    mode = im.mode
    if mode in ("F", "I") and not _is_16bit(im):
        raise InputError(f"{path}: {mode!r} (32-bit) images are not supported; use 8 or 16-bit images")
    alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in im.info)
    gray = mode in ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N")
    return ImageHeader(im.width, im.height, 16 if _is_16bit(im) else 8, gray, alpha)


def read_image_header(path: str | os.PathLike) -> ImageHeader:
    """Size, bit depth and channels of an image, from its header only.

    Raises:
        InputError: missing, unreadable or unsupported (32-bit) file.
    """
    path = Path(path)
    with _pil_open(path) as im:
        return _header_of(im, path)


def to_rgb(arr: np.ndarray) -> tuple[np.ndarray, set[str]]:
    """Turn ``(H, W)``, ``(H, W, 1|2|3|4)`` pixels into ``(H, W, 3)`` RGB of the same dtype.

    Returns the array and the notes on what was changed (:data:`GRAY_NOTE`, :data:`ALPHA_NOTE`).
    """
    notes: set[str] = set()
    if arr.ndim == 2:
        arr = arr[:, :, None]
    channels = arr.shape[2]
    if channels in (2, 4):
        notes.add(ALPHA_NOTE)
        arr = arr[:, :, : channels - 1]
    if arr.shape[2] == 1:
        notes.add(GRAY_NOTE)
        arr = np.repeat(arr, 3, axis=2)
    if arr.shape[2] != 3:
        raise InputError(f"cannot use an image with {channels} channels")
    return np.ascontiguousarray(arr), notes


# packed 16-bit pixel formats FFmpeg's png/tiff decoders produce, with their channel counts
_PACKED16 = {"rgb48": 3, "rgba64": 4, "gray16": 1, "ya16": 2}


def _read_16bit_with_av(path: Path) -> np.ndarray:
    import av

    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
    except (av.FFmpegError, StopIteration, OSError) as err:
        raise InputError(f"cannot decode 16-bit image {path}: {err}") from err
    name = frame.format.name
    base, endian = name[:-2], name[-2:]
    if base in _PACKED16 and endian in ("le", "be"):
        # read the plane directly: PyAV has no ndarray conversion for every one of these
        # (ya16), and swscale would apply a video range conversion to the gray ones
        plane = frame.planes[0]
        channels = _PACKED16[base]
        row = np.frombuffer(plane, dtype=">u2" if endian == "be" else "<u2")
        row = row.reshape(frame.height, plane.line_size // 2)[:, : frame.width * channels]
        return row.reshape(frame.height, frame.width, channels).astype(np.uint16)
    # planar RGB(A) TIFFs (gbrp16, gbrap16) and other layouts: let swscale repack them
    return frame.to_ndarray(format="rgba64le" if frame.format.name.startswith("gbra") else "rgb48le")


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, ImageHeader, set[str]]:
    """Decode one image as RGB.

    Returns:
        ``(pixels, header, notes)``: pixels ``(H, W, 3)`` uint8 for 8-bit files, uint16 (full
        0..65535 range) for 16-bit files; notes say whether grayscale was expanded or alpha dropped.

    Raises:
        InputError: missing, unreadable, corrupt or unsupported file.
    """
    path = Path(path)
    with _pil_open(path) as im:
        header = _header_of(im, path)
        try:
            if header.bit_depth == 16 and not im.mode.startswith("I"):
                arr = None  # colour or gray+alpha at 16 bits: Pillow would truncate it
            elif im.mode.startswith("I"):
                arr = np.asarray(im)
                arr = np.clip(arr, 0, 65535).astype(np.uint16) if arr.dtype != np.uint16 else arr
            elif im.mode in ("RGB", "RGBA", "L", "LA"):
                arr = np.asarray(im)
            elif im.mode == "1":
                arr = np.asarray(im.convert("L"))
            elif header.alpha:
                arr = np.asarray(im.convert("RGBA"))  # palette with transparency, premultiplied modes
            else:
                arr = np.asarray(im.convert("RGB"))  # palette, CMYK, YCbCr, ...
        except (OSError, ValueError, SyntaxError, EOFError) as err:
            raise InputError(f"cannot decode image {path}: corrupt or truncated ({err})") from err
    if arr is None:
        arr = _read_16bit_with_av(path)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("="))
    rgb, notes = to_rgb(arr)
    return rgb, header, notes


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(kind)) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def encode_png(rgb: np.ndarray, *, compress_level: int = 3) -> bytes:
    """Encode ``(H, W, 3)`` RGB, uint8 (24-bit PNG) or uint16 (48-bit PNG), as PNG bytes.

    Args:
        rgb: ``(H, W, 3)`` uint8 or uint16 array.
        compress_level: zlib level 0..9 (3: close to the size of level 6 at about half the time).
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected (H, W, 3) uint8 or uint16 RGB, got {rgb.shape} {rgb.dtype}")
    height, width = rgb.shape[:2]
    depth = 16 if rgb.dtype == np.uint16 else 8
    # PNG stores 16-bit samples big-endian; work on the bytes of each row
    raw = np.ascontiguousarray(rgb, dtype=">u2" if depth == 16 else np.uint8).view(np.uint8)
    raw = raw.reshape(height, -1)
    filtered = np.empty((height, raw.shape[1] + 1), dtype=np.uint8)
    filtered[:, 0] = 2  # filter type "Up": each byte minus the byte above (mod 256)
    filtered[0, 1:] = raw[0]
    np.subtract(raw[1:], raw[:-1], out=filtered[1:, 1:])
    ihdr = struct.pack(">IIBBBBB", width, height, depth, 2, 0, 0, 0)  # colour type 2 = RGB
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", ihdr),
            _png_chunk(b"IDAT", zlib.compress(filtered.data, compress_level)),
            _png_chunk(b"IEND", b""),
        )
    )


def write_png(path: str | os.PathLike, rgb: np.ndarray, *, compress_level: int = 3, overwrite: bool = True) -> Path:
    """Write ``rgb`` as PNG atomically (:func:`rvrt.files.atomic_write`): a crash or an exception
    never leaves a partial file under ``path``; without ``overwrite`` an existing file is kept
    (:class:`~rvrt.errors.OutputError`)."""
    from rvrt.files import atomic_write

    data = encode_png(rgb, compress_level=compress_level)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)

    return atomic_write(path, write, overwrite=overwrite)
