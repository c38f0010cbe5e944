"""``rvrt degrade``: make benchmark inputs from ground-truth frames (BI, BD, Gaussian noise).

INPUT is a folder of frames, a folder of sequence folders (the structure is mirrored under
OUTPUT), a glob pattern or a single image. File names are kept (lossy formats become PNG).

Each frame is written atomically, and OUTPUT keeps a run log (``.rvrt-run.jsonl``, as ``rvrt
restore`` does) of the options and the files written: a run that failed or was interrupted is
simply run again (the files it wrote are replaced), while a finished run's files and files rvrt
did not write are replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import glob
import logging
from pathlib import Path

from rvrt.cli.options import add_quiet
from rvrt.errors import InputError, OutputError

log = logging.getLogger(__name__)

_LOSSY = (".jpg", ".jpeg", ".webp")
#: the keys of rvrt.data.degradations.BD_VARIANTS (named here so that the parser needs no PyTorch)
BD_VARIANT_NAMES = ("matlab", "duf")


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
        choices=BD_VARIANT_NAMES,
        help="bd recipe: 'matlab' = RVRT/KAIR MATLAB scripts (default), 'duf' = VSR-DUF data",
    )
    p.add_argument("--seed", type=int, help="noise: seed, reset for every sequence (default 0)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace output files rvrt did not write with these options"
    )
    add_quiet(p)
    p.set_defaults(run=run, handles_signals=True)


def _collect(spec: str) -> dict[str, list[Path]]:
    """{relative output folder: input frames}."""
    from rvrt.data.frames import find_sequences, is_image, natural_key

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


def _bi(img, scale: int):
    from rvrt.data.degradations import imresize

    h, w = img.shape[0] // scale * scale, img.shape[1] // scale * scale
    if h == 0 or w == 0:
        raise InputError(f"a {img.shape[1]}x{img.shape[0]} image is smaller than the scale {scale}")
    return imresize(img[:h, :w], 1.0 / scale)


def _fingerprint(args: argparse.Namespace, sequences: dict[str, list[Path]]) -> dict:
    import hashlib

    files = [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for frames in sequences.values() for f in frames]
    return {
        "kind": args.kind,
        "scale": args.scale,
        "sigma": args.sigma,
        "bd_variant": args.bd_variant if args.kind == "bd" else None,
        "seed": args.seed,
        "input_files": hashlib.sha256(repr(files).encode()).hexdigest()[:16],
    }


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from rvrt.data.degradations import add_gaussian_noise, bd_degrade
    from rvrt.data.frames import image_to_float, read_image, write_image
    from rvrt.files import OutputClaim
    from rvrt.inference.outputs import LOG_NAME, RunLog
    from rvrt.media.pixels import quantize

    _check_options(args)
    sequences = _collect(args.input)
    out_root: Path = args.output
    src = Path(args.input)
    if src.is_dir() and out_root.resolve() == src.resolve():
        raise InputError("OUTPUT must differ from INPUT (file names are kept)")
    if out_root.exists() and not out_root.is_dir():
        raise OutputError(f"output {out_root} exists and is not a folder")
    targets = {key: [out_root / key / _out_name(f) for f in frames] for key, frames in sequences.items()}
    for paths in targets.values():
        if len({t.name for t in paths}) != len(paths):
            raise InputError(f"two inputs would both be written as the same file in {paths[0].parent}")
    fingerprint = _fingerprint(args, sequences)
    with OutputClaim(out_root):
        runlog = RunLog.read(out_root / LOG_NAME)
        if runlog is not None and runlog.complete and not args.overwrite:
            raise OutputError(f"{out_root} holds a finished run of rvrt degrade; pass --overwrite to write it again")
        # the files an unfinished run wrote are this command's to replace: a rerun is never blocked
        ours = set(runlog.frames) if runlog is not None else set()
        if not args.overwrite:
            for paths in targets.values():
                for t in paths:
                    if t.exists() and t.relative_to(out_root).as_posix() not in ours:
                        raise OutputError(f"{t} exists; pass --overwrite to replace it, or choose another -o")
        if runlog is None or args.overwrite:
            runlog = RunLog.create(out_root / LOG_NAME, {"fingerprint": fingerprint, "command": "degrade"})
        else:
            runlog.append({"rerun": fingerprint})

        total = sum(len(f) for f in sequences.values())
        bar = tqdm(total=total, desc=f"degrade {args.kind}", unit="frame", disable=args.quiet)
        try:
            for key, frames in sequences.items():
                outs = []
                if args.kind == "noise":
                    imgs = [read_image(f) for f in frames]
                    if len({i.shape for i in imgs}) > 1:
                        raise InputError(f"frames in {frames[0].parent} differ in size; noise is drawn per sequence")
                    clip = torch.from_numpy(np.stack([image_to_float(i) for i in imgs])).permute(0, 3, 1, 2)
                    seed = 0 if args.seed is None else args.seed
                    noisy = add_gaussian_noise(clip, args.sigma, seed=seed).permute(0, 2, 3, 1).numpy()
                    outs = (quantize(o, 16 if i.dtype == np.uint16 else 8) for i, o in zip(imgs, noisy, strict=True))
                else:

                    def one(frame: Path):
                        img = read_image(frame)
                        if args.kind == "bi":
                            return _bi(img, args.scale)
                        sigma = 1.6 if args.sigma is None else args.sigma
                        return bd_degrade(img, args.scale, sigma, variant=args.bd_variant)

                    outs = (one(f) for f in frames)
                for out, target in zip(outs, targets[key], strict=True):
                    write_image(target, out, overwrite=True)
                    runlog.append({"frame": target.relative_to(out_root).as_posix()})
                    bar.update()
            runlog.append({"complete": True, "frames": total})
        finally:
            bar.close()
    print(f"wrote {total} frames to {out_root}")
    return 0
