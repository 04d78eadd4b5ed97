"""What each head attends to, as numbers per (layer, head): Clark et al. 2019, "What Does BERT Look At?",
§3 (attention to the previous/next token, to [CLS], [SEP] and punctuation; §3.4 entropy) and Vig &
Belinkov 2019, "Analyzing the Structure of Attention in a Transformer Language Model", §5 (mean attention
distance).

Every statistic of one sequence is a mean over its query tokens, so it is an (L, heads) tensor;
:func:`summarize` averages them over many sequences, weighting each by its token count (every query
token counts once, as in Clark et al.'s averages over the corpus).
"""
from __future__ import annotations

import string
from collections.abc import Iterable, Sequence

import torch

from bertmini.analysis.capture import Attentions, as_maps
from bertmini.errors import InputError

__all__ = ["entropy", "mean_distance", "offset_share", "token_share", "special_positions", "sequence_stats",
           "summarize", "positional_heads"]

PUNCTUATION = frozenset(string.punctuation)


def entropy(maps: torch.Tensor) -> torch.Tensor:
    """(L, heads): mean over query rows of the entropy of the row, in nats (0 = one key, log T = uniform)."""
    maps = as_maps(maps)
    return -(maps * maps.clamp_min(1e-12).log()).sum(-1).mean(-1)


def mean_distance(maps: torch.Tensor) -> torch.Tensor:
    """(L, heads): mean over query rows of the expected |query - key| distance in tokens."""
    maps = as_maps(maps)
    pos = torch.arange(maps.shape[-1], dtype=maps.dtype)
    return (maps * (pos[:, None] - pos[None, :]).abs()).sum(-1).mean(-1)


def offset_share(maps: torch.Tensor, offset: int) -> torch.Tensor:
    """(L, heads): mean attention from token i to token i + offset (-1: the previous token, +1: the next),
    over the rows that have such a token."""
    maps = as_maps(maps)
    n = maps.shape[-1]
    if offset == 0 or abs(offset) >= n:
        raise InputError(f"offset: expected a non-zero offset with |offset| < {n} (the token count), got {offset}")
    return torch.diagonal(maps, offset=offset, dim1=-2, dim2=-1).mean(-1)


def token_share(maps: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """(L, heads): mean over query rows of the attention on the keys where ``positions`` (bool, T) is set."""
    maps = as_maps(maps)
    if positions.shape != (maps.shape[-1],):
        raise InputError(f"positions: expected a bool mask of {maps.shape[-1]} tokens, got shape {tuple(positions.shape)}")
    return maps[..., positions].sum(-1).mean(-1)


def special_positions(tokens: Sequence[str]) -> dict[str, torch.Tensor]:
    """Bool masks (T,) of the tokens Clark et al. single out: [CLS], [SEP], and punctuation marks."""
    return {"[CLS]": torch.tensor([t == "[CLS]" for t in tokens]),
            "[SEP]": torch.tensor([t == "[SEP]" for t in tokens]),
            "punctuation": torch.tensor([bool(t) and all(c in PUNCTUATION for c in t) for t in tokens])}


def sequence_stats(att: Attentions) -> dict[str, torch.Tensor]:
    """Every statistic of one sequence, each (L, heads)."""
    stats = {"entropy": entropy(att.maps), "distance": mean_distance(att.maps),
             "previous": offset_share(att.maps, -1), "next": offset_share(att.maps, 1)}
    stats |= {name: token_share(att.maps, mask) for name, mask in special_positions(att.tokens).items()}
    return stats


def summarize(sequences: Iterable[Attentions]) -> dict[str, torch.Tensor]:
    """:func:`sequence_stats` averaged over ``sequences``, each weighted by its number of tokens; also
    ``"sequences"`` and ``"tokens"``, the counts."""
    totals: dict[str, torch.Tensor] = {}
    count = tokens = 0
    for att in sequences:
        n = len(att.tokens)
        for name, value in sequence_stats(att).items():
            totals[name] = totals.get(name, 0) + n * value
        count, tokens = count + 1, tokens + n
    if not count:
        raise InputError("sequences: expected at least one sequence, got none")
    return {name: total / tokens for name, total in totals.items()} | {
        "sequences": torch.tensor(count), "tokens": torch.tensor(tokens)}


def positional_heads(stats: dict[str, torch.Tensor], threshold: float = 0.5) -> list[tuple[int, int, str, float]]:
    """``(layer, head, "previous" | "next", share)`` of every head whose mean attention on the previous or
    next token exceeds ``threshold`` (Clark et al. 2019, §3.1: > 50%)."""
    found = []
    for side in ("previous", "next"):
        for layer, head in (stats[side] > threshold).nonzero().tolist():
            found.append((layer, head, side, float(stats[side][layer, head])))
    return sorted(found)
