"""RVRT with the fused Triton GDA against RVRT with the reference GDA: whole-model forward passes.

The op-level tests (test_gda_triton.py) compare the kernels with the reference on random
problems; these run the whole network both ways, so the offsets, layouts and clip slots the model
really feeds the op go through the kernels. Everywhere: a micro RVRT on CPU in Triton's interpreter
(``TRITON_INTERPRET=1``, read when a kernel is launched, so a monkeypatched environment is
enough). Where CUDA is available: the 001 (REDS x4) architecture, compiled kernels.

The weights follow the conformance rule (tests/conformance_weights.py), whose last offset layer is
not zero, so the learned offset residual moves the samples by a fraction of a pixel on top of
the flows: a swapped (dy, dx) pair, a wrong clip slot or group in the kernels moves the output by
1e-2..1e-1, five orders of magnitude above the float32 rounding the bounds allow for.
"""

from __future__ import annotations

import gzip
import json

import pytest
import torch

from conformance_weights import state_dict_for
from conftest import DATA, TINY_SR

pytest.importorskip("triton", reason="triton is not installed (pip install rvrt[test])")

import rvrt  # noqa: E402
from rvrt.ops.gda import triton_op  # noqa: E402


def _with_rule_weights(model: rvrt.RVRT, seed: int) -> rvrt.RVRT:
    buffers = dict(model.named_buffers())
    listing = [[k, list(v.shape), k in buffers] for k, v in model.state_dict().items()]
    model.load_state_dict(state_dict_for(model, listing, seed), strict=True)
    return model.eval()


def _run_both(model: rvrt.RVRT, x: torch.Tensor, monkeypatch: pytest.MonkeyPatch) -> dict[str, torch.Tensor]:
    """The model's output with each GDA backend; checks that the Triton run launched the kernels."""
    launches = []
    gda_triton = triton_op.gda_triton

    def counted(*args, **kwargs):
        launches.append(args[0].shape)
        return gda_triton(*args, **kwargs)

    monkeypatch.setattr(triton_op, "gda_triton", counted)
    out = {}
    for backend in ("reference", "triton"):
        for align in model.deform_align.values():
            align.gda_backend = backend
        with torch.no_grad():
            out[backend] = model(x)
    # 4 branches x (clips - 1) alignment steps, all of them through the kernels
    clips = x.shape[1] // model.config.clip_size
    assert len(launches) == 4 * (clips - 1)
    return out


def _errors(got: torch.Tensor, want: torch.Tensor) -> tuple[float, float]:
    diff = got.double() - want.double()
    return diff.abs().max().item(), (diff.norm() / want.double().norm()).item()


def _smooth_flows(t: int, h: int, w: int, dx: float, dy: float, phase: float) -> torch.Tensor:
    """``(1, t - 1, 2, h, w)`` (dx, dy) fields of about 1 px, different along x and y."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    frames = [
        torch.stack([dx + 0.6 * torch.sin(xs / 3 + phase + i), dy + 0.5 * torch.cos(ys / 2 - phase - i)])
        for i in range(t - 1)
    ]
    return torch.stack(frames)[None]


def test_micro_rvrt_interpreted_matches_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """TINY_SR (12 channels, 2 heads in 2 groups, 3x3 window), 4 frames of 8x12: four GDA calls.

    SpyNet needs frames larger than 32 px, and the interpreter costs about 0.4 s per program
    (36x40 frames take five minutes), so smooth synthetic flows replace SpyNet and the size
    padding is switched off; everything after the flows is the model's own code.
    Measured: max abs 1.4e-6, relative L2 4.1e-7 (outputs up to 2); bounds about 7x that. With
    (dy, dx) swapped for the keys in the forward kernel: 0.11 / 3.2e-2.
    """
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    t, h, w = 4, 8, 12
    model = _with_rule_weights(rvrt.RVRT(**TINY_SR), seed=3)
    flows = (_smooth_flows(t, h, w, 1.3, -0.7, 0.0), _smooth_flows(t, h, w, -0.9, 1.1, 5.0))
    monkeypatch.setattr(model, "compute_flows", lambda lq, mirror: flows)
    monkeypatch.setattr(model, "padded_size", lambda t, h, w: (t, h, w))
    x = torch.rand(1, t, 3, h, w, generator=torch.Generator().manual_seed(0))
    out = _run_both(model, x, monkeypatch)
    max_abs, rel = _errors(out["triton"], out["reference"])
    assert max_abs <= 1e-5 and rel <= 3e-6, (max_abs, rel)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (compiled kernels at RVRT 001 sizes)")
def test_rvrt_001_on_gpu_matches_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """The 001 architecture (144 channels, 12 heads in 12 groups), real SpyNet, 6 frames of 64x64.

    TF32 is switched off so that both runs differ by the GDA only. Bounds: the project's output
    tolerances for RVRT (max abs 5e-5, relative L2 5e-6, ../shared/conformance/README.md; a single
    last-offset-layer weight moved by 0.01 shifts full-size outputs by 5e-5..7e-5).
    """
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    official = json.loads(gzip.decompress((DATA / "rvrt" / "official_listings.json.gz").read_bytes()))
    task = "001_RVRT_videosr_bi_REDS_30frames"
    model = rvrt.RVRT(**official["tasks"][task]["constructor_kwargs"]).cuda()
    model.load_state_dict(state_dict_for(model, official["listings"][task], 1), strict=True)
    model.eval()
    x = torch.rand(1, 6, 3, 64, 64, generator=torch.Generator().manual_seed(0)).cuda()
    out = _run_both(model, x, monkeypatch)
    max_abs, rel = _errors(out["triton"], out["reference"])
    assert max_abs <= 5e-5 and rel <= 5e-6, (max_abs, rel)
