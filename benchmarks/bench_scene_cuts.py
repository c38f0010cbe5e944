"""Scene-cut detection quality on generated joins of real clips, and false cuts on real footage.

    python benchmarks/bench_scene_cuts.py --data ../shared/data/real --train ../shared/data/train

One clip per scene of ../shared/data/real and ../shared/data/train (:data:`REAL`, :data:`TRAIN`)
is brought to one size (160x96: block means, then a centre crop) and combined:

* hard cuts: every ordered pair of different clips, the first 10 frames of one then the last 10
  of the other (one cut, at the join); jump cuts: frames 0-9 of a long clip, then 100-109;
* not cuts: a 10-frame dissolve between two clips, a fade to black and back, a one-frame white
  flash, a whip pan (a 160x96 window sweeping over a large frame, 40 pixels a frame), and fast
  motion (every 4th frame of each clip, and every 8th of it forth and back);

and the detector's cuts are compared with the true ones (exact frame). Then each real clip is run
at its own size, forward and at 4x speed, and every cut found is listed (a clip of one shot
should have none). Prints markdown tables for docs/PERFORMANCE.md.

    python benchmarks/bench_scene_cuts.py --restore /tmp/cuts --picture docs/images/scene_cut.png

restores Vid4 calendar joined to city (bicubic x4) with the built-in model, cuts on and off, and
prints the PSNR of the frames around the cut.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np

from rvrt.media import open_reader
from rvrt.media.scenes import detect_cuts

W, H, PIECE = 160, 96, 10
#: one clip per scene (Vid4 calendar and city also come as LR versions of the same frames)
REAL = {
    "calendar": "yhjo09+VSR-DUF/inputs/G/calendar",
    "city": "yhjo09+VSR-DUF/inputs/G/city",
    "demo_000": "ckkelvinchan+BasicVSR_PlusPlus/data/demo_000",
    "realbasicvsr": "ckkelvinchan+RealBasicVSR/data/demo_000",
    "apple": "facebookresearch+co-tracker/assets/apple.mp4",
    "01_dog": "facebookresearch+sam2/demo/data/gallery/01_dog.mp4",
}
TRAIN = {"04_coffee": "04_coffee.mp4", "bigbuckbunny": "bigbuckbunny.mp4"}


def clips(data: Path, train: Path) -> dict[str, list[np.ndarray]]:
    """The clips that exist, 8-bit RGB, by name."""
    out = {}
    for root, names in ((data, REAL), (train, TRAIN)):
        for name, rel in names.items():
            if (root / rel).exists():
                with open_reader(root / rel) as reader:
                    out[name] = [f.data for f in reader]
    return out


def small(frame: np.ndarray) -> np.ndarray:
    k = max(1, min(frame.shape[1] // W, frame.shape[0] // H))
    h, w = frame.shape[0] // k * k, frame.shape[1] // k * k
    f = frame[:h, :w].astype(np.float32).reshape(h // k, k, w // k, k, 3).mean(axis=(1, 3))
    y0, x0 = max(0, (f.shape[0] - H) // 2), max(0, (f.shape[1] - W) // 2)
    f = f[y0 : y0 + H, x0 : x0 + W]
    if f.shape[:2] != (H, W):
        f = np.pad(f, ((0, H - f.shape[0]), (0, W - f.shape[1]), (0, 0)), mode="edge")
    return f.round().astype(np.uint8)


def cases(data: dict[str, list[np.ndarray]]):
    """``(kind, name, frames, true cuts)``."""
    for a, frames in data.items():  # a whip pan: a window sweeping over a frame, a quarter of its width a frame
        f = frames[0]
        if f.shape[1] >= 4 * W:
            step = W // 4
            x0s = list(range(0, f.shape[1] - W, step))
            yield "whip pan", a, [np.ascontiguousarray(f[:H, x : x + W]) for x in x0s + x0s[::-1]], []
    s = {k: [small(f) for f in v] for k, v in data.items()}
    for a, b in itertools.permutations(s, 2):
        yield "hard cut", f"{a} | {b}", s[a][:PIECE] + s[b][-PIECE:], [PIECE]
    for a in s:  # the same place much later (a jump cut): a cut too
        if len(s[a]) >= 120:
            yield "jump cut (same clip)", a, s[a][:PIECE] + s[a][100 : 100 + PIECE], [PIECE]
    names = list(s)
    for a, b in zip(names, names[1:] + names[:1], strict=True):
        x, y = s[a][:PIECE], s[b][:PIECE]
        mix = [((1 - t) * x[i].astype(np.float32) + t * y[i]).round().astype(np.uint8)
               for i, t in enumerate(np.linspace(0, 1, 10))]  # fmt: skip
        yield "dissolve", f"{a} > {b}", x[:4] + mix + y[4:], []
    for a in names:
        x = s[a]
        fade = [(x[i] * (1 - t)).round().astype(np.uint8) for i, t in enumerate(np.linspace(0, 1, 8))]
        back = [(x[8 + i] * t).round().astype(np.uint8) for i, t in enumerate(np.linspace(0, 1, 8))]
        yield "fade to black", a, fade + back + x[16:20], []
        yield "flash", a, x[:8] + [np.full_like(x[0], 255)] + x[8:16], []
        yield "motion x4", a, x[::4], []
        yield "motion x8", a, (x + x[::-1])[::8], []


def restore_across_a_cut(data: Path, work: Path, picture: Path | None) -> None:
    """Vid4 calendar then city (10 GT frames each, 256x192 crops), degraded with ``rvrt degrade``
    (bicubic x4), restored by the built-in model with cuts on and off; PSNR-Y of each frame."""
    import subprocess
    import sys

    from rvrt.data.frames import read_image, write_image
    from rvrt.metrics import psnr

    gt = work / "gt" / "joined"
    for k, rel in enumerate(("yhjo09+VSR-DUF/inputs/G/calendar", "yhjo09+VSR-DUF/inputs/G/city")):
        for i, p in enumerate(sorted((data / rel).glob("*.png"))[:10]):
            write_image(gt / f"{10 * k + i:03d}.png", read_image(p)[128:320, 192:448])
    rvrt = [sys.executable, "-m", "rvrt"]
    subprocess.run([*rvrt, "degrade", str(gt), "-o", str(work / "lq"), "--kind", "bi", "-q"], check=True)
    lq = work / "lq"
    out = {}
    for mode in ("off", "auto"):
        dest = work / f"cuts_{mode}"
        subprocess.run([*rvrt, "restore", str(lq), "-o", str(dest), "--scene-cuts", mode, "--device", "cpu", "-q"],
                       check=True)  # fmt: skip
        out[mode] = [read_image(dest / f"{i:03d}.png") for i in range(20)]
    truth = [read_image(gt / f"{i:03d}.png") for i in range(20)]
    print("\n| frame | PSNR-Y, cuts off (dB) | PSNR-Y, cuts on (dB) | difference |")
    print("|---:|---:|---:|---:|")
    for i in range(6, 14):
        a, b = psnr(out["off"][i], truth[i], y_channel=True), psnr(out["auto"][i], truth[i], y_channel=True)
        print(f"| {i}{' (cut)' if i == 10 else ''} | {a:.2f} | {b:.2f} | {b - a:+.2f} |")
    for name, idx in (("the 4 frames either side of the cut", range(6, 14)), ("all 20 frames", range(20))):
        a = np.mean([psnr(out["off"][i], truth[i], y_channel=True) for i in idx])
        b = np.mean([psnr(out["auto"][i], truth[i], y_channel=True) for i in idx])
        print(f"| mean of {name} | {a:.2f} | {b:.2f} | {b - a:+.2f} |")
    if picture is not None:  # frames 9 (last of calendar) and 10 (first of city), a 128x96 crop:
        # truth, cuts off, cuts on, and their difference x16
        def crop(img):
            return img[48:144, 64:192]

        def diff(i):
            d = np.abs(out["off"][i].astype(np.int16) - out["auto"][i]) * 16
            return crop(d.clip(0, 255).astype(np.uint8))

        rows = [np.concatenate([crop(truth[i]), crop(out["off"][i]), crop(out["auto"][i]), diff(i)], axis=1)
                for i in (9, 10)]  # fmt: skip
        write_image(picture, np.concatenate(rows, axis=0), overwrite=True)
        print(f"\nwrote {picture}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "real")
    ap.add_argument("--train", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "train")
    ap.add_argument("--restore", type=Path, metavar="WORK", help="also restore a joined real clip with cuts on and "
                    "off (the built-in model) in this work folder")  # fmt: skip
    ap.add_argument("--picture", type=Path, help="with --restore: write the frames next to the cut here (PNG)")
    args = ap.parse_args()
    if args.restore is not None:
        restore_across_a_cut(args.data, args.restore, args.picture)
        return
    data = clips(args.data, args.train)
    print(f"{len(data)} clips: {', '.join(f'{k} ({len(v)})' for k, v in data.items())}\n")

    tally: dict[str, list[int]] = {}
    misses = []
    t0 = time.perf_counter()
    frames_seen = 0
    for kind, name, frames, truth in cases(data):
        found = detect_cuts(frames)
        frames_seen += len(frames)
        tp = len(set(found) & set(truth))
        row = tally.setdefault(kind, [0, 0, 0, 0])  # cases, true cuts, found right, found wrong
        row[0] += 1
        row[1] += len(truth)
        row[2] += tp
        row[3] += len(found) - tp
        if found != truth:
            misses.append(f"{kind}: {name}: found {found}, true {truth}")
    secs = time.perf_counter() - t0
    print("| case | joins | true cuts | found (right) | found (wrong) |")
    print("|---|---:|---:|---:|---:|")
    for kind, (n, t, r, w) in tally.items():
        print(f"| {kind} | {n} | {t} | {r} | {w} |")
    t = sum(v[1] for v in tally.values())
    r = sum(v[2] for v in tally.values())
    w = sum(v[3] for v in tally.values())
    print(f"\nprecision {r / max(r + w, 1):.3f}, recall {r / max(t, 1):.3f} ({r} of {t} cuts found, {w} false); "
          f"{frames_seen / secs:.0f} frames/s at {W}x{H}")  # fmt: skip
    for m in misses:
        print("  -", m)

    print("\n| real clip | frames | size | cuts found | cuts found at 4x speed | detection, frames/s |")
    print("|---|---:|---|---|---|---:|")
    for name, frames in data.items():
        h, w = frames[0].shape[:2]
        t0 = time.perf_counter()
        found = detect_cuts(frames)
        rate = len(frames) / (time.perf_counter() - t0)
        print(f"| {name} | {len(frames)} | {w}x{h} | {found or 'none'} | {detect_cuts(frames[::4]) or 'none'} | "
              f"{rate:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
