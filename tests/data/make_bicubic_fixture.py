"""Build tests/data/bicubic/golden.npz: MATLAB-exact bicubic results that every checkout can check.

Usage: PYTHONPATH=src python tests/data/make_bicubic_fixture.py

The real MATLAB reference (``imresize(GT, 1/4, 'bicubic')`` of all 41 Vid4 calendar frames, from the
shared real data) cannot be committed, so this fixture holds what rvrt computes on a small synthetic
image at a commit whose uint8 output equals MATLAB's on every one of those frames
(``tests/test_degradations.py::test_vid4_calendar_bicubic_is_byte_exact``, which the script runs
first and refuses to go on without). The float64 results are kept bit for bit, so any change to the
taps, their order or the summation shows up here even where it would flip no rounded pixel.

Writes ``input`` (uint8 40x30x3: gradients, a sharp edge, seeded noise), ``down4_u8`` and
``down4_f64`` (x1/4 of the uint8 and of the im2double image), ``down3_f64`` (x1/3), ``up4_f64``
(x4 of ``down4_f64``: the bicubic baseline of evaluation) and ``aniso_f64`` (1/2 rows, 1/3 columns).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from rvrt.data.degradations import imresize

HERE = Path(__file__).resolve().parent


def synthetic() -> np.ndarray:
    rng = np.random.default_rng(20261205)
    yy, xx = np.mgrid[0:40, 0:30].astype(np.float64)
    base = np.dstack([4 * xx + 20, 3 * yy + 30, 128 + 100 * np.sin(xx / 5) * np.cos(yy / 7)])
    base[12:28, 8:22] = [250, 5, 128]  # a sharp-edged block: overshoot and clipping
    return (base + rng.normal(0, 12, base.shape)).clip(0, 255).round().astype(np.uint8)


def main() -> int:
    test = "tests/test_degradations.py::test_vid4_calendar_bicubic_is_byte_exact"
    # CI=true: missing real data is an error, not a skip that would count as a pass
    env = dict(os.environ, CI="true")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test]
    proc = subprocess.run(cmd, cwd=HERE.parents[1], env=env)
    if proc.returncode != 0:
        print("the Vid4 MATLAB comparison did not pass here; not writing a golden file", file=sys.stderr)
        return 1
    img = synthetic()
    f = img.astype(np.float64) / 255
    down4 = imresize(f, 1 / 4)
    out = dict(
        input=img,
        down4_u8=imresize(img, 1 / 4),
        down4_f64=down4,
        down3_f64=imresize(f, 1 / 3),
        up4_f64=imresize(down4, 4),
        aniso_f64=imresize(f, (1 / 2, 1 / 3)),
    )
    (HERE / "bicubic").mkdir(exist_ok=True)
    np.savez_compressed(HERE / "bicubic" / "golden.npz", **out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
