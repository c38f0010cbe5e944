"""Window attention: the fused (SDPA) path equals the explicit reference math; bias memo is safe."""

from __future__ import annotations

import pytest
import torch

from rvrt.models import swin
from rvrt.models.swin import SwinGroup, WindowAttention


@pytest.fixture
def explicit_then_fused():
    yield
    swin.set_fused_attention(True)


def _run(module, x, fused, grad=False):
    swin.set_fused_attention(fused)
    x = x.clone().requires_grad_(grad)
    module.zero_grad()
    y = module(x)
    if grad:
        y.square().sum().backward()
        return y.detach(), x.grad, {k: p.grad.clone() for k, p in module.named_parameters()}
    return y


@pytest.mark.parametrize("size", [(2, 16, 16), (3, 10, 13), (1, 5, 8)])
def test_fused_equals_explicit_forward_and_gradients(explicit_then_fused, size):
    torch.manual_seed(0)
    group = SwinGroup(24, 2, 3, (2, 8, 8))
    for blk in group.blocks:
        torch.nn.init.normal_(blk.attn.relative_position_bias_table, std=0.5)
    x = torch.randn(2, *size, 24)
    y0, gx0, gp0 = _run(group, x, fused=False, grad=True)
    y1, gx1, gp1 = _run(group, x, fused=True, grad=True)
    torch.testing.assert_close(y1, y0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx1, gx0, rtol=1e-4, atol=1e-5)
    for k in gp0:
        torch.testing.assert_close(gp1[k], gp0[k], rtol=1e-4, atol=1e-5)


def test_bias_memo_follows_weight_updates():
    attn = WindowAttention(8, (2, 4, 4), 2)
    with torch.no_grad():
        first = attn.bias(32).clone()
        attn.load_state_dict(
            {**attn.state_dict(), "relative_position_bias_table": torch.ones_like(attn.relative_position_bias_table)}
        )
        assert torch.equal(attn.bias(32), torch.ones(2, 32, 32)) and not torch.equal(first, attn.bias(32))
    # with autograd on, the bias stays connected to the table
    attn.bias(32).sum().backward()
    assert attn.relative_position_bias_table.grad is not None


def test_cached_constants_from_inference_are_usable_in_training(empty_model_caches):
    group = SwinGroup(8, 2, 2, (2, 4, 4))
    x = torch.randn(1, 2, 6, 6, 8)
    with torch.inference_mode():
        group(x)  # fills the shift-mask and bias caches inside inference mode
    group.train()
    group(x.requires_grad_()).sum().backward()
    assert x.grad is not None
