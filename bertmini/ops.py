"""Two training kernels, in plain PyTorch, that make BERT pretraining fast on a CPU (chapter 8).

* `dropout`: torch's CPU dropout draws a Bernoulli sample per element, a large share of a small
  BERT's step. Thresholding 15-bit integers from the same generator (two per 32-bit draw) is
  several times cheaper and gives the same distribution to within 2^-15 in p. Other devices keep
  `F.dropout`.
* `linear_cross_entropy`: the MLM loss over a 30k vocabulary. Materializing (n, V) logits, casting
  them to fp32, then running log-softmax forward and backward passes over them several times. Here
  each chunk of rows is projected and turned into its loss and its gradient in place (in cache for
  16-bit chunks); only the gradient (in the compute dtype) is kept for backward (the idea of
  Liger's and Apple's "cut cross-entropy" kernels).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bertmini.precision import autocast_dtype

__all__ = ["dropout", "Dropout", "linear_cross_entropy"]
_INT15 = 2**15


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Inverted dropout: zero each element with probability p and scale the rest by 1 / (1 - p)."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or torch.compiler.is_compiling():
        return F.dropout(x, p, training=True)
    return x * _keep_mask(x.shape, p) * (1.0 / (1.0 - p))


def _keep_mask(shape: torch.Size, p: float) -> torch.Tensor:
    """Bool mask with P(True) = 1 - p (to within 2^-15), from 15 random bits per element.

    `random_()` fills an int32 with 31 uniform bits: seen as two int16 halves, the low 15 bits of
    each are uniform, so one draw serves two elements.
    """
    n = math.prod(shape)
    bits = torch.empty((n + 1) // 2, dtype=torch.int32).random_().view(torch.int16)
    return (bits.bitwise_and_(0x7FFF)[:n] >= round(p * _INT15)).view(shape)


class Dropout(nn.Module):
    """Drop-in `nn.Dropout` using `dropout` above (no parameters, so checkpoints are unchanged)."""

    def __init__(self, p: float = 0.1) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, target, chunk_rows):  # type: ignore[override]
        n = hidden.size(0)
        grad_logits = torch.empty(n, weight.size(0), dtype=hidden.dtype, device=hidden.device)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, n, chunk_rows):
            rows = slice(start, start + chunk_rows)
            if hidden.dtype == torch.float32:  # project straight into the gradient buffer
                logits = torch.addmm(bias, hidden[rows], weight.t(), out=grad_logits[rows])  # (c, V)
            else:  # 16-bit logits, softmax in fp32
                logits = torch.addmm(bias, hidden[rows], weight.t()).float()
            lse = logits.logsumexp(-1)
            picked = logits.gather(1, target[rows, None]).squeeze(1)
            total += (lse - picked).sum()
            probs = logits.sub_(lse[:, None]).exp_()  # softmax, in place
            probs.scatter_add_(1, target[rows, None], probs.new_full((probs.size(0), 1), -1.0))
            probs.mul_(1.0 / n)  # d(mean loss)/d logits = (softmax - onehot) / n
            if probs.dtype != grad_logits.dtype:
                grad_logits[rows] = probs
        ctx.save_for_backward(hidden, weight, grad_logits)
        return total / n

    @staticmethod
    def backward(ctx, grad_loss):  # type: ignore[override]
        hidden, weight, grad_logits = ctx.saved_tensors
        if not torch.equal(grad_loss, torch.ones_like(grad_loss)):
            grad_logits = grad_logits * grad_loss.to(grad_logits.dtype)
        grad_hidden = grad_logits @ weight
        grad_weight = grad_logits.t() @ hidden
        grad_bias = grad_logits.sum(0)
        return grad_hidden, grad_weight, grad_bias, None, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                         target: torch.Tensor, chunk_bytes: int = 8 << 20) -> torch.Tensor:
    """mean CE(hidden @ weight.T + bias, target), without keeping the (n, V) logits.

    hidden (n, H), weight (V, H), bias (V,), target (n,). Follows autocast: under bf16/fp16 autocast
    the projections run in that dtype and the softmax in fp32, as `F.cross_entropy` would.
    """
    device = hidden.device.type
    dtype = autocast_dtype(device) or hidden.dtype
    # 16-bit: chunks whose fp32 softmax stays in cache; fp32: one large GEMM is faster than many small.
    chunk_rows = max(1, chunk_bytes // (4 * weight.size(0))) if dtype != torch.float32 else hidden.size(0)
    with torch.autocast(device, enabled=False):
        return _LinearCrossEntropy.apply(hidden.to(dtype), weight.to(dtype), bias.to(dtype), target, chunk_rows)
