"""Write the compact RVRT conformance fixtures in tests/data/rvrt from ../shared/conformance.

Run from the repository root: ``python tests/data/make_rvrt_fixtures.py [CONFORMANCE_DIR]``.

The published cases are ~30 MB; the fixtures keep what the tests need in ~5 MB:
inputs in full; outputs and feature maps subsampled with stride 3 in H and W (3 is coprime with
the x2 pixel shuffles, so every sub-pixel position of the upsampler is still checked); flows in
full; the first raw op call with the full key/value tensor and the queries, offsets and outputs
of every third pixel (an output pixel depends only on its own query and offsets). Weights are not
stored: tests regenerate them from the documented rule (tests/conformance_weights.py); the
fingerprints and the listings are kept to check that.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

SRC = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/conformance")
DST = Path(__file__).parent / "rvrt"
S = (Ellipsis, slice(None, None, 3), slice(None, None, 3))


def arr(t):
    return t.detach().cpu().numpy()


def main():
    DST.mkdir(parents=True, exist_ok=True)
    weights = torch.load(SRC / "tiny_weights.pt", weights_only=True)
    meta = {
        "seed": weights["seed"],
        "configs": weights["configs"],
        "fingerprints": weights["fingerprints"],
        "listings": {},
    }
    for name in weights["configs"]:
        meta["listings"][name] = json.loads((SRC / f"keys_{name}.json").read_text())["state_dict"]
        sd = weights["state_dicts"][name]
        # official buffer values, to check ours: one index table per distinct window volume
        bufs = {"spynet.mean": sd["spynet.mean"], "spynet.std": sd["spynet.std"]}
        for k, v in sd.items():
            if k.endswith("relative_position_index") and f"index_{v.shape[0]}" not in bufs:
                bufs[f"index_{v.shape[0]}"] = v
        np.savez_compressed(DST / f"{name}_buffers.npz", **{k: arr(v) for k, v in bufs.items()})
    (DST / "meta.json").write_text(json.dumps(meta))

    for case in ("tiny_sr", "tiny_sr_mirror", "tiny_deblur", "tiny_denoise"):
        d = torch.load(SRC / f"{case}.pt", weights_only=True)
        out = {
            "input": arr(d["input"]),
            "output_s3": arr(d["output"][S]),
            "is_mirror_extended": np.array(d["is_mirror_extended"]),
        }
        for k in ("flows_backward", "flows_forward", "da1_out_flow_n1", "da1_out_flow_n2"):
            if d.get(k) is not None:
                out[k] = arr(d[k])
        for k in ("da1_out", "feat_shallow", "feat_backward_1", "feat_forward_1", "feat_backward_2", "feat_forward_2"):
            if d.get(k) is not None:
                out[k + "_s3"] = arr(d[k][S])
        if "first_op_call" in d:
            op = d["first_op_call"]
            out["op_kv"] = arr(op["kv"])
            out["op_q_s3"] = arr(op["q"][S])
            out["op_offset_s3"] = arr(op["offset"][S])
            out["op_output_s3"] = arr(op["output"][S])
            out["op_args"] = np.array(op["args"])
        np.savez_compressed(DST / f"{case}.npz", config_name=np.array(d["config_name"]), **out)
    total = sum(p.stat().st_size for p in DST.iterdir())
    print(f"wrote {DST} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
