"""Frame folders: natural-sorted listing, sequence discovery, reading and (atomic) writing of images.

Images are numpy arrays ``(H, W, 3)`` RGB, uint8, or uint16 for 16-bit PNG files. Grey images are
expanded to RGB and an alpha channel is dropped (as OpenCV's default ``imread`` does in the
official scripts).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rvrt.errors import InputError
from rvrt.files import atomic_write
from rvrt.media.images import IMAGE_EXTENSIONS, encode_png, natural_key
from rvrt.media.images import read_image as _decode
from rvrt.media.pixels import to_float as image_to_float

__all__ = [
    "IMAGE_EXTENSIONS",
    "natural_key",
    "is_image",
    "list_frames",
    "find_sequences",
    "read_image",
    "write_image",
    "image_to_float",
]

_PIL_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP", ".webp": "WEBP"}


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_frames(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder``, in natural order (hidden files skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"not a folder: {folder}")
    frames = [p for p in folder.iterdir() if p.is_file() and is_image(p)]
    return sorted(frames, key=lambda p: natural_key(p.name))


def find_sequences(root: str | os.PathLike) -> dict[str, list[Path]]:
    """The frame sequences under ``root``: every folder that directly holds images is one sequence.

    Returns:
        ``{relative folder (posix, "" for root itself): frames}``, keys in natural order.
        ``root/seq/*.png`` gives ``{"seq": ...}``; Vimeo-90K's ``root/00001/0266/im*.png`` gives
        ``{"00001/0266": ...}``; a folder of frames gives ``{"": ...}``.

    Raises:
        InputError: ``root`` is missing or holds no images at any depth.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"folder not found: {root}")
    found: dict[str, list[Path]] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        frames = [Path(dirpath) / f for f in filenames if is_image(Path(f))]
        if frames:
            rel = Path(dirpath).relative_to(root).as_posix()
            found["" if rel == "." else rel] = sorted(frames, key=lambda p: natural_key(p.name))
    if not found:
        raise InputError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) found under {root}")
    return {k: found[k] for k in sorted(found, key=natural_key)}


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as ``(H, W, 3)`` RGB uint8 (uint16 for 16-bit files).

    Raises:
        InputError: missing or unreadable file.
    """
    return _decode(path)[0]


def write_image(path: str | os.PathLike, img: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write ``(H, W, 3)`` / ``(H, W)`` uint8 (any format PIL knows) or uint16 (PNG only), atomically.

    Raises:
        InputError: the file exists and ``overwrite`` is False, or the dtype/format cannot be written.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists; pass --overwrite (overwrite=True) to replace it")
    img = np.ascontiguousarray(img)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.dtype == np.uint16 or (img.dtype == np.uint8 and path.suffix.lower() == ".png"):
        if path.suffix.lower() != ".png":
            raise InputError(f"16-bit images can only be written as PNG; got {path}")
        data = encode_png(img)

        def writer(tmp: str) -> None:
            with open(tmp, "wb") as f:
                f.write(data)
    elif img.dtype == np.uint8:
        from PIL import Image

        kind = _PIL_FORMATS.get(path.suffix.lower(), "PNG")
        extra = {"quality": 95} if kind == "JPEG" else {}
        pil = Image.fromarray(img)

        def writer(tmp: str) -> None:
            pil.save(tmp, format=kind, **extra)
    else:
        raise InputError(f"cannot write a {img.dtype} image (uint8 or uint16 expected): {path}")
    return atomic_write(path, writer, overwrite=True)
