"""Scaled dot-product and multi-head self-attention (Vaswani et al. 2017, §3.2; BERT §3).

`scaled_dot_product_attention` is the formula written out, for reading and for returning the
attention probabilities. `BertSelfAttention` uses `torch.nn.functional.scaled_dot_product_attention`
(fused kernels) unless the caller asks for the probabilities, which the fused kernels do not return,
or it trains on a CPU, where SDPA's dropout falls back to a slow path (see `ops.dropout`).
Q, K and V come from one fused projection; the three weights keep HF's names (query, key, value).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bertmini.config import BertConfig
from bertmini.ops import Dropout, dropout

__all__ = ["scaled_dot_product_attention", "padding_mask", "pad_rows", "selected_rows", "BertSelfAttention",
           "BertSelfOutput", "BertAttention"]


def scaled_dot_product_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
    dropout_p: float = 0.0, training: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q kᵀ / √d_k + mask) v, returning (output, probabilities).

    q, k, v: (..., T, d_k). `mask` is additive (0 to keep, a large negative to drop) or boolean
    (True to keep), broadcastable to (..., T_q, T_k).
    """
    scores = (q / math.sqrt(q.size(-1))) @ k.transpose(-2, -1)  # (B, heads, T, T); scaling q is cheaper
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + mask
    probs = scores.softmax(dim=-1)
    out = dropout(probs, dropout_p, training) @ v  # (B, heads, T, d_k)
    return out, probs


def padding_mask(attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """(B, T) 1/0 mask -> additive (B, 1, 1, T) mask, or None when nothing is padded.

    Returning None lets SDPA pick its fastest kernel. The large negative (not -inf) keeps a row of
    all-padding finite, as in HF.
    """
    if attention_mask is None or (not torch.compiler.is_compiling() and bool(attention_mask.all())):
        return None
    keep = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - keep) * torch.finfo(dtype).min


class BertSelfAttention(nn.Module):
    """Multi-head attention: h heads of size d_k = H / h, each attending in its own subspace."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob

    def _heads(self, x: torch.Tensor, n: int, keep: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """(B, T, n*H), or the (n_real, n*H) rows of `keep`'s True positions, -> n tensors of (B, heads, T, d_k)."""
        x = x if keep is None else pad_rows(x, keep)
        b, t, _ = x.shape
        return x.view(b, t, n, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)

    def forward(
        self, hidden: torch.Tensor, mask: torch.Tensor | None = None, output_attentions: bool = False,
        select: torch.Tensor | None = None, keep: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`select` (B, T) bool: compute outputs only for those positions, returned as (n_selected, H).
        `keep` (B, T) bool, the real tokens (unpadding): `hidden` and the output are their (n_real, H) rows,
        and only the attention itself sees the padded (B, T) layout. Not both."""
        if select is None and not _plain(self.query, self.key, self.value):  # e.g. int8 modules (chapter 13)
            q, k, v = (self._heads(proj(hidden), 1, keep)[0] for proj in (self.query, self.key, self.value))
        elif select is None:  # one fused projection for Q, K and V
            weight = torch.cat([self.query.weight, self.key.weight, self.value.weight])  # (3H, H)
            bias = torch.cat([self.query.bias, self.key.bias, self.value.bias])
            q, k, v = self._heads(F.linear(hidden, weight, bias), 3, keep)
        else:  # keys and values for every token, queries for the selected ones only
            if _plain(self.key, self.value):
                weight = torch.cat([self.key.weight, self.value.weight])
                k, v = self._heads(F.linear(hidden, weight, torch.cat([self.key.bias, self.value.bias])), 2)
            else:
                k, v = (self._heads(proj(hidden), 1)[0] for proj in (self.key, self.value))
            rows, valid = selected_rows(select)  # (B, S) positions, padded
            (q,) = self._heads(self.query(hidden.gather(1, rows[..., None].expand(-1, -1, hidden.size(-1)))), 1)
        if mask is not None and mask.dtype != q.dtype:  # under autocast q is bf16/fp16
            mask = mask.to(q.dtype)
        dropout_p = self.dropout_p if self.training else 0.0
        if output_attentions or (dropout_p > 0 and hidden.device.type == "cpu"):
            ctx, probs = scaled_dot_product_attention(q, k, v, mask, dropout_p, self.training)
        else:
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        ctx = ctx.transpose(1, 2).flatten(2)  # (B, T or S, H)
        rows = valid if select is not None else keep
        return (ctx if rows is None else ctx[rows]), (probs if output_attentions else None)


def _plain(*modules: nn.Module) -> bool:
    """True when every module is an nn.Linear with ordinary float weights, which can be concatenated."""
    return all(type(m) is nn.Linear and type(m.weight) is nn.Parameter for m in modules)


def _keep_rows(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    """A smaller copy of `linear` keeping `index` along `dim` of its weight (0: outputs, 1: inputs)."""
    weight = linear.weight.detach().index_select(dim, index)
    out = nn.Linear(weight.size(1), weight.size(0), bias=linear.bias is not None,
                    device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        out.weight.copy_(weight)
        if linear.bias is not None:
            out.bias.copy_(linear.bias if dim == 1 else linear.bias.index_select(0, index))
    return out


def pad_rows(rows: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """(n, D) rows of the True entries of `keep` (B, T), in row-major order -> (B, T, D), zeros elsewhere."""
    out = rows.new_zeros(keep.numel(), rows.size(-1))
    return out.index_copy(0, keep.flatten().nonzero().squeeze(1), rows).view(*keep.shape, -1)


def selected_rows(select: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of the True entries of each row, left-aligned and padded: (B, S) indices, (B, S) valid.

    `ctx[valid]` then lists the selected tokens in the same (row-major) order as `hidden[select]`.
    """
    counts = select.sum(1)
    order = (~select).to(torch.uint8).argsort(dim=1, stable=True)[:, : int(counts.max())]
    return order, torch.arange(order.size(1), device=select.device) < counts[:, None]


class BertSelfOutput(nn.Module):
    """Project the heads back to H, then dropout, residual and LayerNorm (post-LN)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)


class BertAttention(nn.Module):
    """Self-attention sublayer: `self` computes the heads, `output` adds & normalizes."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(
        self, hidden: torch.Tensor, mask: torch.Tensor | None = None, output_attentions: bool = False,
        select: torch.Tensor | None = None, keep: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        ctx, probs = self.self(hidden, mask, output_attentions, select, keep)
        return self.output(ctx, hidden if select is None else hidden[select]), probs

    def prune_heads(self, heads: list[int]) -> None:
        """Remove heads (indices among this layer's current heads): Q/K/V lose those heads' output rows and
        the output projection their input columns (Michel et al. 2019). `compression.prune_heads` checks."""
        attn = self.self
        keep = [h for h in range(attn.num_heads) if h not in set(heads)]
        index = (torch.tensor(keep)[:, None] * attn.head_dim + torch.arange(attn.head_dim)).flatten()
        index = index.to(attn.query.weight.device)
        for name in ("query", "key", "value"):
            setattr(attn, name, _keep_rows(getattr(attn, name), index, 0))
        self.output.dense = _keep_rows(self.output.dense, index, 1)
        attn.num_heads = len(keep)
