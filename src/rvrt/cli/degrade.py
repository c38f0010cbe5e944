"""``rvrt degrade``: make benchmark inputs from ground-truth frames (BI, BD, Gaussian noise).

INPUT is a folder of frames, a folder of sequence folders (the structure is mirrored under
OUTPUT), a glob pattern or a single image. File names are kept (lossy formats become PNG).
"""

from __future__ import annotations

import argparse
import glob
import logging
from pathlib import Path

import numpy as np
import torch

from rvrt.data.degradations import BD_VARIANTS, add_gaussian_noise, bd_degrade, imresize
from rvrt.data.frames import find_sequences, image_to_float, is_image, natural_key, read_image, write_image
from rvrt.errors import InputError
from rvrt.metrics import to_uint8

log = logging.getLogger(__name__)

_LOSSY = (".jpg", ".jpeg", ".webp")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "degrade",
        help="make LQ frames from GT frames: MATLAB bicubic (bi), blur-downsampling (bd) or noise",
        description="Degrade frames as the video restoration benchmarks do. 'bi': modcrop to a multiple of "
        "--scale, then MATLAB imresize(img, 1/scale, 'bicubic'). 'bd': Gaussian blur (--sigma, "
        "default 1.6) and subsampling. 'noise': Gaussian noise of level --sigma (0..255 scale), "
        "one draw per sequence from --seed; saving clips and rounds it, so benchmark numbers "
        "should come from 'rvrt eval --sigma', which adds the noise on the fly.",
    )
    p.add_argument("input", help="folder of frames, folder of sequence folders, glob pattern or image file")
    p.add_argument("-o", "--output", required=True, type=Path, help="output folder")
    p.add_argument("--kind", required=True, choices=("bi", "bd", "noise"))
    p.add_argument("--scale", type=int, default=4, help="downscaling factor for bi/bd (default 4)")
    p.add_argument(
        "--sigma", type=float, help="bd: blur sigma in pixels (default 1.6); noise: level on the 0..255 scale"
    )
    p.add_argument(
        "--bd-variant",
        default="matlab",
        choices=tuple(BD_VARIANTS),
        help="bd recipe: 'matlab' = RVRT/KAIR MATLAB scripts (default), 'duf' = VSR-DUF data",
    )
    p.add_argument("--seed", type=int, help="noise: seed, reset for every sequence (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def _collect(spec: str) -> dict[str, list[Path]]:
    """{relative output folder: input frames}."""
    path = Path(spec)
    if path.is_dir():
        return find_sequences(path)
    if path.is_file():
        if not is_image(path):
            raise InputError(f"not an image file: {path}")
        return {"": [path]}
    if glob.has_magic(spec):
        files = [Path(f) for f in glob.glob(spec, recursive=True) if Path(f).is_file() and is_image(Path(f))]
        if not files:
            raise InputError(f"no image files match {spec}")
        names = [f.name for f in files]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise InputError(f"{spec} matches several files named {dup[0]}; degrade each folder separately")
        return {"": sorted(files, key=lambda f: natural_key(f.name))}
    raise InputError(f"input not found: {spec}")


def _out_name(frame: Path) -> str:
    return frame.stem + ".png" if frame.suffix.lower() in _LOSSY else frame.name


def _check_options(args: argparse.Namespace) -> None:
    if args.scale < 1:
        raise InputError(f"--scale must be >= 1; got {args.scale}")
    if args.kind == "bi" and args.sigma is not None:
        raise InputError("--sigma does not apply to --kind bi")
    if args.kind == "noise" and args.sigma is None:
        raise InputError("--kind noise needs --sigma (noise level on the 0..255 scale, e.g. 25)")
    if args.kind != "noise" and args.seed is not None:
        raise InputError("--seed only applies to --kind noise")
    if args.sigma is not None and not args.sigma >= 0:
        raise InputError(f"--sigma must be >= 0; got {args.sigma}")


def _bi(img: np.ndarray, scale: int) -> np.ndarray:
    h, w = img.shape[0] // scale * scale, img.shape[1] // scale * scale
    if h == 0 or w == 0:
        raise InputError(f"a {img.shape[1]}x{img.shape[0]} image is smaller than the scale {scale}")
    return imresize(img[:h, :w], 1.0 / scale)


def _quantise(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype == np.uint8:
        return to_uint8(x)
    return np.rint(np.clip(x, 0.0, 1.0) * 65535.0).astype(np.uint16)


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    _check_options(args)
    sequences = _collect(args.input)
    out_root: Path = args.output
    src = Path(args.input)
    if src.is_dir() and out_root.resolve() == src.resolve():
        raise InputError("OUTPUT must differ from INPUT (file names are kept)")
    targets = {key: [out_root / key / _out_name(f) for f in frames] for key, frames in sequences.items()}
    if not args.overwrite:
        for paths in targets.values():
            for t in paths:
                if t.exists():
                    raise InputError(f"{t} exists; pass --overwrite to replace it")
    for paths in targets.values():
        if len({t.name for t in paths}) != len(paths):
            raise InputError(f"two inputs would both be written as the same file in {paths[0].parent}")

    total = sum(len(f) for f in sequences.values())
    bar = tqdm(total=total, desc=f"degrade {args.kind}", unit="frame", disable=args.quiet)
    for key, frames in sequences.items():
        if args.kind == "noise":
            imgs = [read_image(f) for f in frames]
            shapes = {i.shape for i in imgs}
            if len(shapes) > 1:
                raise InputError(f"frames in {frames[0].parent} differ in size; noise is drawn per sequence")
            clip = torch.from_numpy(np.stack([image_to_float(i) for i in imgs])).permute(0, 3, 1, 2)
            seed = 0 if args.seed is None else args.seed
            noisy = add_gaussian_noise(clip, args.sigma, seed=seed).permute(0, 2, 3, 1).numpy()
            for img, out, target in zip(imgs, noisy, targets[key], strict=True):
                write_image(target, _quantise(out, img.dtype), overwrite=True)
                bar.update()
            continue
        for frame, target in zip(frames, targets[key], strict=True):
            img = read_image(frame)
            if args.kind == "bi":
                out = _bi(img, args.scale)
            else:
                sigma = 1.6 if args.sigma is None else args.sigma
                out = bd_degrade(img, args.scale, sigma, variant=args.bd_variant)
            write_image(target, out, overwrite=True)
            bar.update()
    bar.close()
    print(f"wrote {total} frames to {out_root}")
    return 0
