"""``rvrt degrade``: make benchmark inputs from ground-truth frames (BI, BD, Gaussian noise, real-world).

INPUT is a folder of frames, a folder of sequence folders (the structure is mirrored under
OUTPUT), a glob pattern, a single image or a video file (its frames become ``OUTPUT/<video
name>/00000000.png``...). File names are kept (lossy formats become PNG).

``--kind real`` runs the real-world pipeline of :mod:`rvrt.data.realworld` on each sequence as
a clip: one parameter set per sequence, drawn from ``--seed`` and the sequence's position, applied
in chunks of :data:`REAL_CHUNK` frames (each chunk one video stream, with its own noise draws);
the parameters drawn are recorded in the run log.

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
#: frames degraded (and video-encoded) together by --kind real: bounds the memory for long videos
REAL_CHUNK = 30


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "degrade",
        help="make LQ frames from GT frames: MATLAB bicubic (bi), blur-downsampling (bd), noise or real-world (real)",
        description="Degrade frames as the video restoration benchmarks do. 'bi': modcrop to a multiple of "
        "--scale, then MATLAB imresize(img, 1/scale, 'bicubic'). 'bd': Gaussian blur (--sigma, "
        "default 1.6) and subsampling. 'noise': Gaussian noise of level --sigma (0..255 scale), "
        "one draw per sequence from --seed; saving clips and rounds it, so benchmark numbers "
        "should come from 'rvrt eval --sigma', which adds the noise on the fly. 'real': the "
        "real-world pipeline (blur, resize, noise, JPEG, video compression, twice; see "
        "docs/TRAINING.md), ranges from --config, one draw per sequence from --seed.",
    )
    p.add_argument("input", help="folder of frames, folder of sequence folders, glob pattern, image or video file")
    p.add_argument("-o", "--output", required=True, type=Path, help="output folder")
    p.add_argument("--kind", required=True, choices=("bi", "bd", "noise", "real"))
    p.add_argument("--scale", type=int, default=4, help="downscaling factor for bi/bd/real (default 4)")
    p.add_argument(
        "--sigma", type=float, help="bd: blur sigma in pixels (default 1.6); noise: level on the 0..255 scale"
    )
    p.add_argument(
        "--bd-variant",
        default="matlab",
        choices=BD_VARIANT_NAMES,
        help="bd recipe: 'matlab' = RVRT/KAIR MATLAB scripts (default), 'duf' = VSR-DUF data",
    )
    p.add_argument("--seed", type=int, help="noise, real: seed, reset for every sequence (default 0)")
    p.add_argument(
        "--config",
        type=Path,
        help="real: a TOML file with the ranges (the keys of a recipe's [data.train.real] table)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace output files rvrt did not write with these options"
    )
    add_quiet(p)
    p.set_defaults(run=run, handles_signals=True)


def _collect(spec: str) -> dict[str, list[Path]]:
    """{relative output folder: input frames}."""
    from rvrt.data.frames import find_sequences, is_image, natural_key
    from rvrt.media.info import VIDEO_EXTENSIONS

    path = Path(spec)
    if path.is_dir():
        return find_sequences(path)
    if path.is_file():
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            return {path.stem: [path]}
        if not is_image(path):
            raise InputError(f"not an image or video file: {path}")
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


def _is_video(frames: list[Path]) -> bool:
    from rvrt.media.info import VIDEO_EXTENSIONS

    return len(frames) == 1 and frames[0].suffix.lower() in VIDEO_EXTENSIONS


def _out_names(frames: list[Path]) -> list[str]:
    """Output file names of a sequence: its frames' names, or a video's numbered frames."""
    if _is_video(frames):
        from rvrt.media import open_reader

        with open_reader(frames[0]) as reader:
            return [f"{frame.index:08d}.png" for frame in reader]
    return [_out_name(f) for f in frames]


def _read(frames: list[Path]):
    """The images of a sequence, in order: frame files, or a video's decoded frames."""
    from rvrt.data.frames import read_image

    if _is_video(frames):
        from rvrt.media import open_reader

        with open_reader(frames[0]) as reader:
            for frame in reader:
                yield frame.data
    else:
        for f in frames:
            yield read_image(f)


def _real(args: argparse.Namespace):
    """The real-world pipeline configured by ``--config`` (checked before any file is written)."""
    from rvrt.data.realworld import RealDegradation
    from rvrt.files import loads_toml

    table = {}
    if args.config is not None:
        if not args.config.is_file():
            raise InputError(f"--config file not found: {args.config}")
        table = loads_toml(args.config.read_text(), str(args.config))
    try:
        return RealDegradation(table, scale=args.scale, where="")
    except InputError as err:
        raise InputError(f"--config {args.config}: {err}") from err


def _degrade_real(deg, imgs, seed: int, index: int, key: str):
    """One sequence through the real-world pipeline: one parameter draw, chunks of REAL_CHUNK frames."""
    import numpy as np

    from rvrt.data.compression import to_uint8

    imgs = list(imgs)
    if len({i.shape for i in imgs}) > 1:
        raise InputError(f"frames of {key or 'the input'} differ in size; a sequence is degraded as one clip")
    s = deg.scale
    h, w = imgs[0].shape[0] // s * s, imgs[0].shape[1] // s * s
    if h == 0 or w == 0:
        raise InputError(f"a {imgs[0].shape[1]}x{imgs[0].shape[0]} image is smaller than the scale {s}")
    # 16-bit inputs are degraded on 8 bits, as the training data is
    clip = np.stack([i if i.dtype == np.uint8 else np.rint(i / 257.0).astype(np.uint8) for i in imgs])[:, :h, :w]
    params = deg.sample(np.random.default_rng([seed % 2**32, index]))
    outs = []
    for k, start in enumerate(range(0, len(clip), REAL_CHUNK)):
        chunk_params = {**params, "noise_seed": (params["noise_seed"] + k) % 2**63}
        outs.append(to_uint8(deg.apply(clip[start : start + REAL_CHUNK], chunk_params)))
    return params, np.concatenate(outs)


def _check_options(args: argparse.Namespace) -> None:
    if args.scale < 1:
        raise InputError(f"--scale must be >= 1; got {args.scale}")
    if args.kind == "bi" and args.sigma is not None:
        raise InputError("--sigma does not apply to --kind bi")
    if args.kind == "noise" and args.sigma is None:
        raise InputError("--kind noise needs --sigma (noise level on the 0..255 scale, e.g. 25)")
    if args.kind not in ("noise", "real") and args.seed is not None:
        raise InputError("--seed only applies to --kind noise and real")
    if args.kind == "real" and args.sigma is not None:
        raise InputError("--sigma does not apply to --kind real (its ranges come from --config)")
    if args.kind != "real" and args.config is not None:
        raise InputError("--config only applies to --kind real")
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
        "config": hashlib.sha256(args.config.read_bytes()).hexdigest()[:16] if args.config else None,
        "input_files": hashlib.sha256(repr(files).encode()).hexdigest()[:16],
    }


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from rvrt.data.degradations import add_gaussian_noise, bd_degrade
    from rvrt.data.frames import image_to_float, write_image
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
    real = _real(args) if args.kind == "real" else None
    targets = {key: [out_root / key / n for n in _out_names(frames)] for key, frames in sequences.items()}
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

        total = sum(len(t) for t in targets.values())
        bar = tqdm(total=total, desc=f"degrade {args.kind}", unit="frame", disable=args.quiet)
        try:
            for index, (key, frames) in enumerate(sequences.items()):
                outs = []
                seed = 0 if args.seed is None else args.seed
                if args.kind == "real":
                    params, outs = _degrade_real(real, _read(frames), seed, index, key)
                    runlog.append({"sequence": key, "params": params})
                elif args.kind == "noise":
                    imgs = list(_read(frames))
                    if len({i.shape for i in imgs}) > 1:
                        raise InputError(f"frames in {frames[0].parent} differ in size; noise is drawn per sequence")
                    clip = torch.from_numpy(np.stack([image_to_float(i) for i in imgs])).permute(0, 3, 1, 2)
                    noisy = add_gaussian_noise(clip, args.sigma, seed=seed).permute(0, 2, 3, 1).numpy()
                    outs = (quantize(o, 16 if i.dtype == np.uint16 else 8) for i, o in zip(imgs, noisy, strict=True))
                else:

                    def one(img):
                        if args.kind == "bi":
                            return _bi(img, args.scale)
                        sigma = 1.6 if args.sigma is None else args.sigma
                        return bd_degrade(img, args.scale, sigma, variant=args.bd_variant)

                    outs = (one(img) for img in _read(frames))
                for out, target in zip(outs, targets[key], strict=True):
                    write_image(target, out, overwrite=True)
                    runlog.append({"frame": target.relative_to(out_root).as_posix()})
                    bar.update()
            runlog.append({"complete": True, "frames": total})
        finally:
            bar.close()
    print(f"wrote {total} frames to {out_root}")
    return 0
