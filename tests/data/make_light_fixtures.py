"""Build the compact RVRT Light / MindSpore fixtures in tests/data/rvrt_light from the conformance data.

Usage: python tests/data/make_light_fixtures.py [CONFORMANCE_DIR]
(default /work/shared/conformance; needs rvrt importable, e.g. PYTHONPATH=src).

Writes:
* ``tiny_light.ckpt``, ``tiny_rvrt_excerpt.ckpt``: the real MindSpore checkpoints, copied as they
  are, after checking that :func:`rvrt.formats.mindspore.read_ckpt` returns exactly the tensors
  of the matching ``.npz`` in file order.
* ``tiny_light_config.json``: the tiny RVRT Light constructor arguments plus ``"arch"``.
* ``tiny_light_case.npz``: inputs in full (``input``, ``attn1_*_in``, ``op1_q``, ``op1_kv``),
  outputs and intermediates subsampled ``[..., ::3, ::3]`` (``output``, ``feat_*``,
  ``attn1_out``, ``op1_out``).
* ``tiny_rvrt_case.npz``: the MindSpore RVRT variant case, ``input`` in full and ``output``
  subsampled ``[..., ::4, ::4]``, with the fingerprint (float64 sum and absolute sum of the
  parameters) of the ``tiny_sr`` weights it was run with, so that a test regenerating those
  weights can tell it got the same ones.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

from rvrt.formats.mindspore import read_ckpt

SUB3 = (..., slice(None, None, 3), slice(None, None, 3))
SUB4 = (..., slice(None, None, 4), slice(None, None, 4))
FEATURES = ("feat_shallow", "feat_backward_1", "feat_forward_1", "feat_backward_2", "feat_forward_2")


def _check_ckpt(ckpt: Path, npz: Path) -> None:
    got = read_ckpt(ckpt)
    ref = np.load(npz)
    assert list(got) == list(ref.files), f"{ckpt.name}: names or order differ from {npz.name}"
    for k in ref.files:
        assert got[k].dtype == ref[k].dtype and np.array_equal(got[k], ref[k]), f"{ckpt.name}: {k} differs"
    print(f"{ckpt.name}: {len(got)} tensors equal to {npz.name}")


def main(conformance: Path, out: Path) -> None:
    src = conformance / "rvrt_light"
    out.mkdir(parents=True, exist_ok=True)
    for name, ref in (("tiny_light", "tiny_light_weights"), ("tiny_rvrt_excerpt", "tiny_rvrt_excerpt")):
        _check_ckpt(src / f"{name}.ckpt", src / f"{ref}.npz")
        shutil.copyfile(src / f"{name}.ckpt", out / f"{name}.ckpt")

    kwargs = json.loads((src / "params_light_tiny.json").read_text())["constructor_kwargs"]
    (out / "tiny_light_config.json").write_text(json.dumps({"arch": "rvrt_light", **kwargs}, indent=1) + "\n")

    z = np.load(src / "tiny_light_case.npz")
    case = {k: z[k] for k in ("input", "attn1_q_in", "attn1_k_in", "attn1_v_in", "op1_q", "op1_kv")}
    case.update({k: z[k][SUB3] for k in ("output", "attn1_out", "op1_out", *FEATURES)})
    np.savez_compressed(out / "tiny_light_case.npz", **case)

    import torch

    weights = torch.load(conformance / "tiny_weights.pt", weights_only=True)
    fp = weights["fingerprints"]["tiny_sr"]
    r = np.load(src / "tiny_rvrt_case.npz")
    official = torch.load(conformance / "tiny_sr.pt", weights_only=True)
    assert np.array_equal(r["input"], official["input"].numpy()), "tiny_rvrt_case input is not tiny_sr's"
    np.savez_compressed(out / "tiny_rvrt_case.npz", input=r["input"], output=r["output"][SUB4],
                        weights_fingerprint=np.array([fp["sum"], fp["abs_sum"]], dtype=np.float64))

    total = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    for p in sorted(out.iterdir()):
        print(f"  {p.name}: {p.stat().st_size:,} bytes")
    print(f"total {total:,} bytes")


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/work/shared/conformance")
    main(root, Path(__file__).resolve().parent / "rvrt_light")
