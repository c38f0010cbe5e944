"""The README's pictures, from real footage: a bicubic | rvrt | ground truth crop, and a per-frame plot.

    python benchmarks/make_figures.py --data ../shared/data/real --work /tmp/rvrt-figures

Vid4 (Liu & Sun, TPAMI 2014; research use) from ../shared/data/real (see its MANIFEST.txt):

* calendar: LR ``YapengTian+TDAN-VSR-CVPR-2020/data/Vid4/calendar/LR_bicubic`` (MATLAB bicubic x1/4
  of the GT, byte-exact), GT ``yhjo09+VSR-DUF/inputs/G/calendar``;
* city: GT ``yhjo09+VSR-DUF/inputs/G/city``; its LR is made here with
  :func:`rvrt.data.degradations.imresize` (the same MATLAB bicubic x1/4).

The first ``--frames`` frames of each are copied to ``--work`` and the built-in model restores
them with ``rvrt eval --protocol vid4 --save ... --plot docs/images/eval_plot.png``; then
``rvrt compare`` shows frame ``--frame`` of calendar (the LR upscaled with MATLAB bicubic, the
restored frame, the GT) as a crop magnified with nearest neighbour:
``docs/images/compare_calendar.png``. Only these two derived pictures belong in the repository;
the frames stay in ``--work``. Every command run is printed. On 2 CPU cores it takes a few minutes
(about 10 s a frame).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from pathlib import Path

from rvrt.cli import main as rvrt
from rvrt.data.degradations import imresize
from rvrt.data.frames import list_frames
from rvrt.media.images import read_image, write_png

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("RVRT_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))
CALENDAR_LR = "YapengTian+TDAN-VSR-CVPR-2020/data/Vid4/calendar/LR_bicubic"
CALENDAR_GT = "yhjo09+VSR-DUF/inputs/G/calendar"
CITY_GT = "yhjo09+VSR-DUF/inputs/G/city"
#: the calendar crop: the dates of the calendar sheet (x, y, w, h in GT pixels)
CROP = "420,420,192,128"


def _run(*args: str | Path) -> None:
    argv = [str(a) for a in args]
    print("$ rvrt " + shlex.join(argv), flush=True)
    code = rvrt(argv)
    if code:
        sys.exit(f"rvrt {argv[0]} failed with status {code}")


def prepare(data: Path, work: Path, frames: int) -> tuple[Path, Path]:
    """``work/lq/{calendar,city}`` and ``work/gt/{calendar,city}``: the first ``frames`` frames of each."""
    lq, gt = work / "lq", work / "gt"
    for folder in (lq, gt):
        shutil.rmtree(folder, ignore_errors=True)
    for src, dst in ((CALENDAR_LR, lq / "calendar"), (CALENDAR_GT, gt / "calendar"), (CITY_GT, gt / "city")):
        files = list_frames(data / src)[:frames]
        if len(files) < frames:
            sys.exit(f"{data / src}: {len(files)} frames, {frames} wanted (is --data the shared data/real folder?)")
        dst.mkdir(parents=True)
        for f in files:
            shutil.copyfile(f, dst / f.name)
    (lq / "city").mkdir()
    for f in list_frames(gt / "city"):  # MATLAB bicubic x1/4, as the published BI sets are made
        write_png(lq / "city" / f.name, imresize(read_image(f)[0], 0.25))
    return lq, gt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data/real folder")
    ap.add_argument("--work", type=Path, default=Path("/tmp/rvrt-figures"), help="scratch folder for the frames")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images", help="where the pictures go")
    ap.add_argument("--frames", type=int, default=10, help="frames of each sequence to restore")
    ap.add_argument("--frame", type=int, default=4, help="the calendar frame shown (0-based)")
    ap.add_argument("--crop", default=CROP, help="x,y,w,h of the crop, in GT pixels")
    ap.add_argument("--zoom", default="2", help="magnification of the crop")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    lq, gt = prepare(args.data, args.work, args.frames)
    restored = args.work / "restored"
    shutil.rmtree(restored, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    _run("eval", "--lq", lq, "--gt", gt, "--protocol", "vid4", "--save", restored, "--json", args.work / "eval.json",
         "--plot", args.out / "eval_plot.png", "--device", args.device, "--overwrite")  # fmt: skip
    _run("compare", lq / "calendar", restored / "calendar", gt / "calendar", "-o", args.out / "compare_calendar.png",
         "--frame", args.frame, "--crop", args.crop, "--zoom", args.zoom, "--overwrite",
         "--labels", "bicubic", "rvrt (built-in model)", "ground truth")  # fmt: skip
    for name in ("compare_calendar.png", "eval_plot.png"):
        print(f"{args.out / name}: {(args.out / name).stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
