"""What fine-tuning changes in attention: the distance between two models' attention maps on the same
sentences, layer by layer (Kovaleva et al. 2019, "Revealing the Dark Secrets of BERT", §4.4: after
fine-tuning the last layers change most).

Each query row of a map is a distribution over the keys, so two heads' rows compare with the
Jensen-Shannon divergence (symmetric, bounded by log 2, zero only for equal rows). Per sequence the
divergence is averaged over query rows; over a corpus, each sequence weighs by its token count.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bertmini.analysis.capture import as_maps, iter_attentions
from bertmini.errors import InputError
from bertmini.tokenizer import WordPieceTokenizer

__all__ = ["js_divergence", "map_divergence", "attention_change"]


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence (nats, in [0, log 2]) between distributions along the last dimension."""
    if p.shape != q.shape:
        raise InputError(f"q: expected the shape of p, {tuple(p.shape)}, got {tuple(q.shape)}")
    mid = (p + q) / 2

    def kl(a: torch.Tensor) -> torch.Tensor:
        return (a * (a.clamp_min(1e-12).log() - mid.clamp_min(1e-12).log())).sum(-1)

    return ((kl(p) + kl(q)) / 2).clamp_min(0)


def map_divergence(maps_a: torch.Tensor, maps_b: torch.Tensor) -> torch.Tensor:
    """(L, heads): mean over query rows of the JS divergence between two models' maps of one sequence."""
    return js_divergence(as_maps(maps_a), as_maps(maps_b)).mean(-1)


@torch.no_grad()
def attention_change(before: nn.Module, after: nn.Module, tokenizer: WordPieceTokenizer, texts: Sequence[str],
                     batch_size: int = 16, max_length: int = 128) -> torch.Tensor:
    """(L, heads): the token-weighted mean JS divergence between ``before``'s and ``after``'s attention on
    ``texts`` (both models must share ``tokenizer``'s vocabulary and have the same shape)."""
    total, tokens = 0, 0
    pairs = zip(iter_attentions(before, tokenizer, texts, batch_size=batch_size, max_length=max_length),
                iter_attentions(after, tokenizer, texts, batch_size=batch_size, max_length=max_length))
    for (_, a), (_, b) in pairs:
        if a.maps.shape != b.maps.shape:
            raise InputError(f"after: expected attention maps shaped like before's {tuple(a.maps.shape)}, "
                             f"got {tuple(b.maps.shape)}")
        total = total + len(a.tokens) * map_divergence(a.maps, b.maps)
        tokens += len(a.tokens)
    if not tokens:
        raise InputError(f"texts: expected at least one text of <= {max_length} tokens, got none")
    return total / tokens
