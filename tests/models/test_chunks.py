"""Layers that treat frames independently run a few frames at a time (bounded memory); the
result must be that of one call over the whole clip, for every family and task."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import rvrt
import rvrt.models.layers as layers
from conftest import VRT_MICRO_CONFIGS, tiny_rvrt
from rvrt.models.layers import frame_chunks
from rvrt.models.spynet import SpyNet

LIGHT_CONFIG = Path(__file__).resolve().parents[1] / "data" / "rvrt_light" / "tiny_light_config.json"


def test_frame_chunks_cover_every_frame_in_clip_multiples():
    parts = frame_chunks(9, 100, multiple=2, budget=450)
    assert parts == [slice(0, 4), slice(4, 8), slice(8, 9)]
    assert frame_chunks(5, 10**9, multiple=1, budget=10) == [slice(i, i + 1) for i in range(5)]
    assert frame_chunks(4, 1, budget=100) == [slice(0, 4)]


def _both(model: torch.nn.Module, x: torch.Tensor, monkeypatch) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        whole = model(x)
        monkeypatch.setattr(layers, "CHUNK_ELEMENTS", 1)  # one frame or clip per chunk
        chunked = model(x)
    return whole, chunked


@pytest.mark.parametrize(("name", "t"), [("tiny_sr", 6), ("tiny_sr", 3), ("tiny_deblur", 4), ("tiny_denoise", 4)])
def test_rvrt_chunked_equals_whole(rvrt_meta, monkeypatch, name, t):
    model = tiny_rvrt(rvrt_meta, name)
    c = 4 if name == "tiny_denoise" else 3
    size = 64 if name == "tiny_sr" else 160  # 1/4-resolution models need 4 x SpyNet's 33 pixels
    x = torch.rand(1, t, c, size, size - 8, generator=torch.Generator().manual_seed(0))
    whole, chunked = _both(model, x, monkeypatch)
    assert chunked.shape == whole.shape
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-5)


def test_rvrt_light_chunked_equals_whole(monkeypatch):
    model = rvrt.create_model(LIGHT_CONFIG)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    x = torch.rand(1, 4, 3, 24, 32, generator=torch.Generator().manual_seed(1))
    whole, chunked = _both(model, x, monkeypatch)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-5)


def test_vrt_upsampling_head_chunked_equals_whole(monkeypatch):
    torch.manual_seed(0)
    model = rvrt.VRT(**VRT_MICRO_CONFIGS["sr"]).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    x = torch.rand(1, 4, 3, 40, 40, generator=torch.Generator().manual_seed(2))
    whole, chunked = _both(model, x, monkeypatch)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-5)


def test_spynet_pairs_chunked_equal_one_batch(monkeypatch):
    torch.manual_seed(0)
    net = SpyNet(return_levels=(5, 4)).eval()
    a, b = torch.rand(2, 5, 3, 40, 48).unbind(0)
    whole, chunked = _both(lambda x: net(*x), (a, b), monkeypatch)
    for w, c in zip(whole, chunked, strict=True):
        torch.testing.assert_close(c, w, rtol=0, atol=1e-5)


def test_chunking_is_not_a_no_op_in_these_tests(rvrt_meta, monkeypatch):
    # guards the tests above: with the default budget these inputs run as one chunk, with a budget
    # of one pixel the reconstruction runs once per clip
    model = tiny_rvrt(rvrt_meta, "tiny_sr")
    calls = []
    model.reconstruction.register_forward_hook(lambda m, i, o: calls.append(o.shape[1]))
    x = torch.rand(1, 6, 3, 64, 56)
    with torch.no_grad():
        model(x)
        monkeypatch.setattr(layers, "CHUNK_ELEMENTS", 1)
        model(x)
    assert calls == [6, 2, 2, 2]
