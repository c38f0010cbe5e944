"""Is a built-in model worth its name? Vid4 calendar and city, clean x4 and x4 then H.264, against bicubic.

    python benchmarks/bench_default_model.py                                   # rvrt.sr_small, everything
    python benchmarks/bench_default_model.py -m rvrt.sr_small --weights runs/real/final.safetensors \\
        --frames 10 --json results/default_model.json

For each sequence (calendar, city: ``yhjo09+VSR-DUF/inputs/G`` of ../shared/data/real, see its
MANIFEST.txt) and each input kind:

* ``clean``: MATLAB bicubic x1/4 of the GT (BIx4; calendar's is the published
  ``TDAN-VSR-CVPR-2020/data/Vid4/calendar/LR_bicubic``, city's made with
  :func:`rvrt.data.degradations.imresize`, the same function bit for bit);
* ``crf23``, ``crf28``, ``crf33``: that BIx4 clip encoded as one H.264 stream (libx264, yuv420p,
  preset medium, that CRF) with rvrt's own video writer, and decoded back with its reader,

the Y-channel PSNR/SSIM of ``rvrt eval --protocol vid4`` (:func:`rvrt.evaluation.evaluate`: whole
frames, mean over frames) of MATLAB bicubic x4 of the input and of each model, run as ``rvrt eval``
runs it (:func:`rvrt.cli.eval.build_restore_fn`: the restoration stage of ``rvrt restore`` with its
default tiling). Prints a markdown table (the gain is the model's PSNR minus bicubic's) and writes
``--json``. ``-m`` names registered models or config files (their own weights); ``--weights`` adds
weights files (the model from their metadata); neither: the built-in model.

``--save DIR`` keeps the restored frames and adds a table of the detail each output adds in flat
areas of the ground truth (:func:`flat_texture`). The inputs stay in ``--work`` (``lq/``, ``crf28/``, ...,
``gt/``) and later runs with the same sequences, frames and kinds score those same files (libx264
does not give the same stream for city twice, see below; ``--fresh`` makes them again),
and a before/after picture is one ``rvrt compare`` (bicubic | model | ground truth)::

    rvrt compare /tmp/rvrt-default-model/crf28/calendar DIR/rvrt.sr_small/crf28/calendar \
        /tmp/rvrt-default-model/gt/calendar -o calendar_crf28.png --frame 4 --crop 420,420,192,128 \
        --zoom 2 --labels "bicubic (H.264 CRF 28)" "rvrt.sr_small" "ground truth"

Time: about 1.8 s per output frame of the built-in model on 2 quiet CPU cores (Intel Xeon, float32),
so all 75 frames at 4 input kinds take about 9 min per model; ``--frames 10`` (the first 10 of each
sequence) about 2.5 min per model.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from make_figures import CALENDAR_LR, DEFAULT_DATA

from rvrt.data.degradations import imresize
from rvrt.data.frames import list_frames
from rvrt.evaluation import evaluate
from rvrt.media import open_reader, open_writer, probe
from rvrt.media.images import read_image, write_png

SEQUENCES = ("calendar", "city")
GT = "yhjo09+VSR-DUF/inputs/G"
CRFS = (23, 28, 33)


def h264_roundtrip(lq: Path, dest: Path, work: Path, crf: int) -> None:
    """Every sequence of ``lq`` encoded as one H.264 stream at ``crf`` and decoded back into ``dest``
    (PNG frames with the names of the input frames)."""
    for seq in sorted(p for p in lq.iterdir() if p.is_dir()):
        files = list_frames(seq)
        info = probe(seq)
        video = work / f"{seq.name}_crf{crf}.mp4"
        with open_writer(video, like=info, width=info.width, height=info.height, fps=25, codec="libx264", crf=crf,
                         preset="medium", pix_fmt="yuv420p", overwrite=True) as writer:  # fmt: skip
            with open_reader(seq) as reader:
                for frame in reader:
                    writer.write(frame.data)
        (dest / seq.name).mkdir(parents=True)
        with open_reader(video) as reader:
            decoded = [f.data for f in reader]
        if len(decoded) != len(files):
            sys.exit(f"{video}: decoded {len(decoded)} frames of {len(files)}")
        for f, img in zip(files, decoded, strict=True):
            write_png(dest / seq.name / f.name, img)


def prepare(data: Path, work: Path, sequences: list[str], frames: int) -> tuple[Path, Path]:
    """``work/lq/<seq>`` (BIx4) and ``work/gt/<seq>``: the first ``frames`` frames (0: all) of each."""
    lq, gt = work / "lq", work / "gt"
    for seq in sequences:
        files = list_frames(data / GT / seq)[: frames or None]
        (lq / seq).mkdir(parents=True)
        (gt / seq).mkdir(parents=True)
        for f in files:
            shutil.copyfile(f, gt / seq / f.name)
            write_png(lq / seq / f.name, imresize(read_image(f)[0], 0.25))
    if "calendar" in sequences:  # the published BIx4 frames are these, bit for bit
        first = list_frames(lq / "calendar")[0].name
        if not np.array_equal(read_image(lq / "calendar" / first)[0], read_image(data / CALENDAR_LR / first)[0]):
            sys.exit(f"{first}: imresize differs from the published {data / CALENDAR_LR}")
    return lq, gt


def bicubic(x: torch.Tensor) -> torch.Tensor:
    """MATLAB imresize x4 of each frame of a ``(T, 3, H, W)`` [0, 1] clip (the baseline)."""
    frames = x.permute(0, 2, 3, 1).double().numpy()
    return torch.from_numpy(np.stack([imresize(f, 4.0) for f in frames])).permute(0, 3, 1, 2).float()


def _box(y: torch.Tensor, k: int) -> torch.Tensor:
    return torch.nn.functional.avg_pool2d(y, k, stride=1, padding=k // 2, count_include_pad=False)


def flat_texture(out_dir: Path, gt_dir: Path, threshold: float = 1.5) -> tuple[float, float, float]:
    """Detail added where the ground truth is flat (the faint blotchy texture a model may paint on
    walls and sky): the mean ``|Y - box5(Y)|`` (8-bit levels) of the output over the pixels whose 7x7
    ground-truth neighbourhood has a Y standard deviation under ``threshold`` levels, the same of
    the ground truth there, and the share of such pixels."""
    from rvrt.metrics import rgb_to_y

    def y(path: Path) -> torch.Tensor:
        return torch.from_numpy(rgb_to_y(read_image(path)[0])).double()[None, None]

    out_hf = gt_hf = count = total = 0.0
    for o, g in zip(list_frames(out_dir), list_frames(gt_dir), strict=True):
        yo, yg = y(o), y(g)
        std = (_box(yg * yg, 7) - _box(yg, 7) ** 2).clamp(min=0).sqrt()
        flat = std < threshold
        out_hf += float((yo - _box(yo, 5)).abs()[flat].sum())
        gt_hf += float((yg - _box(yg, 5)).abs()[flat].sum())
        count += float(flat.sum())
        total += flat.numel()
    n = max(count, 1.0)
    return out_hf / n, gt_hf / n, count / total


def candidates(models: list[str], weights: list[str]):
    """``(label, restore_fn)`` of each model, loaded as ``rvrt eval`` loads it."""
    from rvrt.api import select_model
    from rvrt.cli.eval import build_restore_fn

    asked = [(m, "default") for m in models] + [(None, w) for w in weights]
    for model, w in asked or [(None, "default")]:
        net, spec = select_model(model, w)
        label = spec.name if w == "default" else f"{spec.name} ({Path(w).name})"
        yield label, build_restore_fn(net, device="cpu", protocol="vid4")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", action="append", default=[], help="registered model or config (repeatable)")
    ap.add_argument("--weights", action="append", default=[], help="weights file with rvrt metadata (repeatable)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data/real folder")
    ap.add_argument("--work", type=Path, default=Path("/tmp/rvrt-default-model"), help="scratch folder")
    ap.add_argument("--frames", type=int, default=0, help="the first N frames of each sequence (0: all)")
    ap.add_argument("--sequences", nargs="+", choices=SEQUENCES, default=list(SEQUENCES))
    ap.add_argument("--kinds", nargs="+", choices=("clean", *(f"crf{c}" for c in CRFS)),
                    default=["clean", *(f"crf{c}" for c in CRFS)], help="input kinds")  # fmt: skip
    ap.add_argument("--json", type=Path, help="write every score as JSON")
    ap.add_argument("--fresh", action="store_true", help="make the inputs again even if --work has them")
    ap.add_argument("--save", type=Path, help="keep the restored frames: SAVE/<model>/<input>/<sequence>/")
    args = ap.parse_args()

    # libx264 (x264 core 165 in PyAV's FFmpeg) does not give the same stream twice for city: with
    # MB-tree and B-frames on, its lookahead reads an uninitialised stack value (valgrind; it happens
    # with PyAV alone and one thread), up to 66 levels apart on a decoded pixel at CRF 33 (calendar's
    # are identical). So runs compared with each other score the same encoded inputs: kept in --work
    # and reused while these settings match
    stamp = {"data": str(args.data.resolve()), "sequences": sorted(args.sequences), "frames": args.frames,
             "kinds": sorted(args.kinds)}  # fmt: skip
    lq, gt = args.work / "lq", args.work / "gt"
    inputs = {"clean": lq, **{f"crf{crf}": args.work / f"crf{crf}" for crf in CRFS}}
    inputs = {k: v for k, v in inputs.items() if k in args.kinds}
    kept = args.work / "inputs.json"
    if not args.fresh and kept.exists() and json.loads(kept.read_text()) == stamp:
        print(f"reusing the inputs in {args.work} (--fresh encodes them again)", file=sys.stderr)
    else:
        shutil.rmtree(args.work, ignore_errors=True)
        prepare(args.data, args.work, args.sequences, args.frames)
        for kind, root in inputs.items():
            if kind != "clean":
                h264_roundtrip(lq, root, args.work, int(kind[3:]))
        kept.write_text(json.dumps(stamp))

    torch.set_grad_enabled(False)
    rows: dict[tuple[str, str], dict[str, tuple[float, float]]] = {}
    runs = [("bicubic", bicubic)] + list(candidates(args.model, args.weights))
    labels = [label for label, _ in runs]
    for label, fn in runs:
        for kind, root in inputs.items():
            t0 = time.perf_counter()
            save = args.save / label.replace(" ", "_") / kind if args.save else None
            result = evaluate(fn, root, gt, "vid4", progress=False, save_dir=save, overwrite=True)
            print(f"{label} on {kind}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
            for s in result.sequences:
                rows.setdefault((s.name, kind), {})[label] = (s.psnr_y, s.ssim_y)

    head = ["sequence", "input", *(f"{x} PSNR/SSIM (Y)" for x in labels), *(f"gain {x}" for x in labels[1:])]
    what = f"first {args.frames} frames" if args.frames else "all frames"
    print(f"Vid4, {what}, Y channel, whole frames (rvrt eval --protocol vid4)\n")
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for (seq, kind), scores in rows.items():
        cells = [f"{scores[x][0]:.2f} / {scores[x][1]:.4f}" for x in labels]
        gains = [f"{scores[x][0] - scores['bicubic'][0]:+.2f} dB" for x in labels[1:]]
        print("| " + " | ".join([seq, kind, *cells, *gains]) + " |")
    texture = {}
    if args.save:
        print("\nFlat areas (7x7 GT std < 1.5 levels): mean |Y - box5(Y)| of the output (levels); GT's own in ()\n")
        print("| sequence | input | share of pixels | " + " | ".join(labels) + " |\n|" + "---|" * (3 + len(labels)))
        for seq, kind in rows:
            cells = []
            for label in labels:
                out = args.save / label.replace(" ", "_") / kind / seq
                hf, gt_hf, share = flat_texture(out, gt / seq)
                texture.setdefault((seq, kind), {})[label] = hf
                cells.append(f"{hf:.3f} ({gt_hf:.3f})")
            print(f"| {seq} | {kind} | {share:.1%} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        data = [
            dict(sequence=seq, input=kind, frames=args.frames or None, scores={x: dict(psnr_y=p, ssim_y=s)
                                                                               for x, (p, s) in sc.items()},
                 flat_texture=texture.get((seq, kind)))
            for (seq, kind), sc in rows.items()
        ]  # fmt: skip
        args.json.write_text(json.dumps(data, indent=2) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
