"""The fast training kernels equal their plain PyTorch definitions."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bertmini.ops import Dropout, dropout, linear_cross_entropy


@pytest.mark.parametrize("shape", [(7,), (3, 5, 9), (64, 33)])
def test_dropout_keeps_expected_fraction_and_scales(shape):
    torch.manual_seed(0)
    x = torch.ones(200, *shape)
    y = dropout(x, 0.25)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.01
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.75))
    assert dropout(x, 0.25, training=False) is x and dropout(x, 0.0) is x


def test_dropout_is_seeded_and_differentiable():
    x = torch.randn(4, 10, requires_grad=True)
    torch.manual_seed(1)
    a = dropout(x, 0.5)
    torch.manual_seed(1)
    b = Dropout(0.5)(x)
    torch.testing.assert_close(a, b)
    a.sum().backward()
    torch.testing.assert_close(x.grad, (a != 0).float() * 2.0)
    assert not torch.equal(dropout(x, 0.5), dropout(x, 0.5))


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_linear_cross_entropy_equals_dense(dtype, tol):
    torch.manual_seed(0)
    h = torch.randn(50, 16, requires_grad=True)
    w = torch.randn(1000, 16, requires_grad=True)
    b = torch.randn(1000, requires_grad=True)
    t = torch.randint(0, 1000, (50,))
    with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        ref = F.cross_entropy(F.linear(h, w, b).float(), t)
    grads = torch.autograd.grad(ref * 3.0, (h, w, b))
    with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        out = linear_cross_entropy(h, w, b, t, chunk_bytes=4 * 1000 * 7)  # 7-row chunks
    torch.testing.assert_close(out, ref, atol=tol, rtol=0)
    for got, want in zip(torch.autograd.grad(out * 3.0, (h, w, b)), grads):
        torch.testing.assert_close(got, want, atol=tol * want.abs().max().item(), rtol=0)
