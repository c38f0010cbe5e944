"""RVRT reproduces the reference vectors of the official model (../shared/conformance).

Bounds are about 5x the error measured here (float32, CPU) and tighter than the ones recommended
there (output max abs <= 5e-5 and relative L2 <= 5e-6; intermediates max abs <= 1e-4 * max(1,
max|ref|); the raw op call <= 1e-5): output max abs <= 1e-5 (measured 1.6e-6..1.9e-6) and
relative L2 <= 3e-6 (5.4e-7..6.6e-7); intermediates max abs <= 5e-6 * max(1, max|ref|) (measured
0 for the flows, up to 6.5e-7 * max|ref| for the features); the raw op call <= 1e-5 (2.3e-6).
Outputs and features are compared on every third row/column (see tests/data/make_rvrt_fixtures.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rvrt
from conformance_weights import fingerprint, gen_weights
from conftest import DATA, load_case, tiny_rvrt
from rvrt.ops.gda import guided_deformable_attention

S3 = (Ellipsis, slice(None, None, 3), slice(None, None, 3))
CASES = ["tiny_sr", "tiny_sr_mirror", "tiny_deblur", "tiny_denoise"]


def _check(name, got, ref, atol=None):
    ref = ref.to(got.dtype)
    assert got.shape == ref.shape, name
    err = (got - ref).abs().max().item()
    bound = atol if atol is not None else 5e-6 * max(1.0, ref.abs().max().item())
    assert err <= bound, f"{name}: max abs error {err:.3g} > {bound:.3g}"
    return err


@pytest.mark.parametrize("name", ["tiny_sr", "tiny_deblur", "tiny_denoise"])
def test_regenerated_weights_match_fingerprints_and_buffers(rvrt_meta, name):
    params = gen_weights(rvrt_meta["listings"][name], rvrt_meta["seed"])
    fp = fingerprint(params)
    ref = rvrt_meta["fingerprints"][name]
    assert fp["sum"] == pytest.approx(ref["sum"], rel=1e-12, abs=1e-9)
    assert fp["abs_sum"] == pytest.approx(ref["abs_sum"], rel=1e-12)
    model = rvrt.RVRT(**rvrt_meta["configs"][name])
    with np.load(DATA / "rvrt" / f"{name}_buffers.npz") as official:
        for key, value in model.named_buffers():
            ref_key = f"index_{value.shape[0]}" if key.endswith("relative_position_index") else key
            assert torch.equal(value, torch.from_numpy(official[ref_key])), key


@pytest.mark.parametrize("case", CASES)
def test_output_matches_official(rvrt_meta, case):
    d = load_case(case)
    model = tiny_rvrt(rvrt_meta, str(d["config_name"]))
    with torch.no_grad():
        out = model(d["input"])
    s = model.config.upscale
    assert out.shape == (*d["input"].shape[:2], 3, d["input"].shape[3] * s, d["input"].shape[4] * s)
    diff = (out[S3] - d["output_s3"]).double()
    rel = (diff.norm() / d["output_s3"].double().norm()).item()
    assert diff.abs().max().item() <= 1e-5
    assert rel <= 3e-6


@pytest.mark.parametrize("case", CASES)
def test_intermediates_match_official(rvrt_meta, case):
    d = load_case(case)
    model = tiny_rvrt(rvrt_meta, str(d["config_name"]))
    calls = []
    hook = model.deform_align["backward_1"].register_forward_hook(lambda m, i, o: calls.append(o))
    with torch.no_grad():
        feats = model.extract_features(d["input"])
    hook.remove()
    assert feats["mirror"] == bool(d["is_mirror_extended"])
    _check("flows_backward", feats["flows_backward"], d["flows_backward"])
    if "flows_forward" in d:
        _check("flows_forward", feats["flows_forward"], d["flows_forward"])
    else:  # mirror-extended: the official model reuses the backward flows
        assert torch.equal(feats["flows_forward"], feats["flows_backward"].flip(1))
    if "da1_out_s3" in d:
        out, f1, f2 = calls[0]
        _check("da1_out", out[S3], d["da1_out_s3"])
        _check("da1_out_flow_n1", f1, d["da1_out_flow_n1"])
        _check("da1_out_flow_n2", f2, d["da1_out_flow_n2"])
    for key in ("shallow", "backward_1", "forward_1", "backward_2", "forward_2"):
        ref = d.get(f"feat_{key}_s3")
        if ref is not None:
            _check(f"feat_{key}", torch.cat(feats[key], 1)[S3], ref)


def test_mirror_extended_input_computes_backward_flows_only(rvrt_meta):
    d = load_case("tiny_sr_mirror")
    model = tiny_rvrt(rvrt_meta, "tiny_sr")
    calls = []
    model.spynet.register_forward_hook(lambda m, i, o: calls.append(1))
    with torch.no_grad():
        model(d["input"])
    assert len(calls) == 1


def test_first_op_call_matches_official():
    d = load_case("tiny_sr")
    kh, kw, _, _, _, _, _, _, heads, groups, clip = (int(v) for v in d["op_args"])
    kv = d["op_kv"]
    n, _, c2, h, w = kv.shape
    # scatter the stored pixels (every third row/column) into full tensors; other pixels are free
    q = torch.zeros(n * clip, c2 // 2, h, w)
    offset = torch.zeros(n * clip, d["op_offset_s3"].shape[1], h, w)
    q[S3] = d["op_q_s3"].reshape(n * clip, c2 // 2, *d["op_q_s3"].shape[-2:])
    offset[S3] = d["op_offset_s3"]
    out = guided_deformable_attention(
        q,
        kv,
        offset,
        kernel_size=(kh, kw),
        attention_heads=heads,
        deformable_groups=groups,
        clip_size=clip,
        backend="reference",
    )
    ref = d["op_output_s3"].reshape(n * clip, c2 // 2, *d["op_output_s3"].shape[-2:])
    _check("first_op_call", out[S3], ref, atol=1e-5)
