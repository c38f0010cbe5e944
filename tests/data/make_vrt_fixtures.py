"""Write the compact VRT conformance fixtures in tests/data/vrt from ../shared/conformance/vrt.

Run from the repository root: ``python tests/data/make_vrt_fixtures.py [CONFORMANCE_VRT_DIR]``.

The published VRT cases are ~21 MB; the fixtures keep what the tests need in ~2.7 MB:

* ``meta.json``: seed, tiny configs, weight fingerprints, and which official buffer value each
  buffer key of each tiny config has (an index into ``buffers.npz``, which stores every
  distinct buffer once).
* ``listings.json.gz``: the ``(key, shape, is_buffer)`` listings and constructor arguments of
  the nine official task configs and the six tiny ones.
* ``tiny_*.npz``: inputs in full; flows and feature maps on every third row and column, and
  outputs on every third (x1 models) or fifth (x4 models) row and column (3 and 5 are coprime
  with the x2 steps of the pixel shuffles and of the U-net stages, so every sub-pixel phase is
  still checked); the first raw deformable-convolution call of tiny_sr with
  its full input and the offsets, masks and outputs of the first rows only (an output pixel
  depends only on its own offsets and masks).

Weights are not stored: tests regenerate them from the documented rule (tests/conformance_weights.py).
"""

import gzip
import json
import sys
from pathlib import Path

import numpy as np
import torch

SRC = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/conformance/vrt")
DST = Path(__file__).parent / "vrt"
S3 = (Ellipsis, slice(None, None, 3), slice(None, None, 3))
S5 = (Ellipsis, slice(None, None, 5), slice(None, None, 5))
OP_ROWS = 12  # rows of the raw op call kept in full resolution

OFFICIAL = [
    "001_VRT_videosr_bi_REDS_6frames",
    "002_VRT_videosr_bi_REDS_16frames",
    "003_VRT_videosr_bi_Vimeo_7frames",
    "004_VRT_videosr_bd_Vimeo_7frames",
    "005_VRT_videodeblurring_DVD",
    "006_VRT_videodeblurring_GoPro",
    "007_VRT_videodeblurring_REDS",
    "008_VRT_videodenoising_DAVIS",
    "009_VRT_videofi_Vimeo_4frames",
]
CASES = ["tiny_sr", "tiny_sr_pa4", "tiny_sr_pa6", "tiny_deblur", "tiny_denoise", "tiny_vfi"]


def arr(t):
    return t.detach().cpu().numpy()


def main():
    DST.mkdir(parents=True, exist_ok=True)
    weights = torch.load(SRC / "tiny_weights.pt", weights_only=True)
    listings = {}
    for name in OFFICIAL + list(weights["configs"]):
        d = json.loads((SRC / f"keys_{name}.json").read_text())
        listings[name] = {
            "task": d["task"],
            "constructor_kwargs": d["constructor_kwargs"],
            "state_dict": d["state_dict"],
        }
    with gzip.open(DST / "listings.json.gz", "wt", compresslevel=9) as f:
        json.dump(listings, f, separators=(",", ":"))

    distinct: list[torch.Tensor] = []
    buffer_ids: dict[str, dict[str, int]] = {}
    for name, bufs in weights["buffers"].items():
        buffer_ids[name] = {}
        for key, value in bufs.items():
            same = [
                i
                for i, seen in enumerate(distinct)
                if seen.dtype == value.dtype and seen.shape == value.shape and torch.equal(seen, value)
            ]
            if not same:
                distinct.append(value)
                same = [len(distinct) - 1]
            buffer_ids[name][key] = same[0]
    np.savez_compressed(DST / "buffers.npz", **{f"b{i}": arr(v) for i, v in enumerate(distinct)})
    meta = {
        "seed": weights["seed"],
        "configs": weights["configs"],
        "fingerprints": weights["fingerprints"],
        "buffers": buffer_ids,
    }
    (DST / "meta.json").write_text(json.dumps(meta))

    for case in CASES:
        d = torch.load(SRC / f"{case}.pt", weights_only=True)
        out = {"config_name": np.array(d["config_name"]), "input": arr(d["input"])}
        if d["output"].shape[-1] > d["input"].shape[-1]:
            out["output_s5"] = arr(d["output"][S5])
        else:
            out["output_s3"] = arr(d["output"][S3])
        for k in ("flows_backward", "flows_forward"):
            for i, f in enumerate(d.get(k) or []):
                out[f"{k}_{i}_s3"] = arr(f[S3])
        for k in (
            "conv_first_input",
            "conv_first_output",
            "stage1_output",
            "stage4_output",
            "stage7_output",
            "features_output",
            "pa1_out",
            "pa1_in_x",
            "pa1_in_x_current",
            "op1_offset",
        ):
            if k in d:
                out[k + "_s3"] = arr(d[k][S3])
        for k in ("pa1_in_x_flow_warpeds", "pa1_in_flows"):
            if k in d:
                out[k + "_s3"] = arr(torch.stack([t[S3] for t in d[k]]))
        if "op1_input" in d and "op1_mask" in d:
            out["op1_input"] = arr(d["op1_input"])
            for k in ("op1_offset", "op1_mask", "op1_output"):
                out[k + "_rows"] = arr(d[k][..., :OP_ROWS, :])
            a = d["op1_args"]
            out["op1_args"] = np.array([a["stride"], a["padding"], a["dilation"]])
        np.savez_compressed(DST / f"{case}.npz", **out)
    total = sum(p.stat().st_size for p in DST.iterdir())
    print(f"wrote {DST} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
