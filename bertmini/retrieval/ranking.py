"""Ranking: exact top-k search, reciprocal-rank fusion, and the retrieval metrics (chapter 14).

Exact search scores every passage against every query, one matrix product of unit vectors (cosine
similarity), and keeps the best k. Reciprocal-rank fusion (Cormack, Clarke & Büttcher 2009, §2) merges
rankings from systems whose scores are not comparable: a document scores ``sum 1 / (k + rank)`` over the
rankings, ``k = 60``. Recall@k is the share of a query's relevant passages in its top k; MRR@k is
the mean of ``1 / rank`` of the first relevant passage, 0 when none is in the top k (Voorhees 1999).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Sequence

import torch

from bertmini.errors import InputError

__all__ = ["exact_search", "top_k", "reciprocal_rank_fusion", "recall_at_k", "mrr_at_k", "evaluate_rankings",
           "RRF_K"]

RRF_K = 60  # Cormack et al. 2009: k = 60 "was fixed during a pilot investigation and not altered"

Gold = Sequence[int | Iterable[int]]  # per query: one relevant passage id, or a set of them


def top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best ``k`` per row of (Q, N) ``scores``: ``(values, ids)``, each (Q, min(k, N)), best first."""
    if k < 1:
        raise InputError(f"k must be >= 1, got {k}")
    return scores.topk(min(k, scores.shape[-1]), dim=-1)


def exact_search(queries: torch.Tensor, passages: torch.Tensor, k: int, chunk: int = 1024
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Brute force: (Q, H) query vectors against (N, H) passage vectors by dot product; ``(scores, ids)``
    (Q, k). Queries go ``chunk`` at a time so the (chunk, N) score matrix stays small."""
    if passages.ndim != 2 or queries.ndim != 2 or queries.shape[1] != passages.shape[1]:
        raise InputError(f"expected (Q, H) queries and (N, H) passages with one H, got {tuple(queries.shape)} "
                         f"and {tuple(passages.shape)}")
    if not len(passages):
        raise InputError("the index holds no passages: nothing to search")
    parts = [top_k(queries[i:i + chunk] @ passages.T, k) for i in range(0, len(queries), chunk)]
    return torch.cat([s for s, _ in parts]), torch.cat([i for _, i in parts])


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = RRF_K, depth: int | None = None) -> list[int]:
    """One query's fused ranking: each ranking (best first) gives document d ``1 / (k + rank)``, rank from 1.
    ``depth`` keeps the fused top; ties go to the smaller document id, for a stable order."""
    score: dict[int, float] = defaultdict(float)
    for ranking in rankings:
        for rank, doc in enumerate(ranking, start=1):
            score[int(doc)] += 1.0 / (k + rank)
    fused = sorted(score, key=lambda d: (-score[d], d))
    return fused if depth is None else fused[:depth]


def _relevant(gold: int | Iterable[int]) -> set[int]:
    return {int(gold)} if isinstance(gold, int) or hasattr(gold, "__index__") else {int(g) for g in gold}


def _check(rankings: Sequence[Sequence[int]], gold: Gold) -> None:
    if len(rankings) != len(gold):
        raise InputError(f"{len(rankings)} rankings but {len(gold)} gold entries: expected one per query")
    if not len(rankings):
        raise InputError("no queries to score")


def recall_at_k(rankings: Sequence[Sequence[int]], gold: Gold, k: int) -> float:
    """Mean over queries of |top k ∩ relevant| / |relevant| (with one relevant passage: a hit in the top k)."""
    _check(rankings, gold)
    total = 0.0
    for ranking, g in zip(rankings, gold):
        relevant = _relevant(g)
        total += len(relevant & {int(d) for d in list(ranking)[:k]}) / len(relevant)
    return total / len(rankings)


def mrr_at_k(rankings: Sequence[Sequence[int]], gold: Gold, k: int = 10) -> float:
    """Mean over queries of 1 / (rank of the first relevant passage), 0 past rank ``k``."""
    _check(rankings, gold)
    total = 0.0
    for ranking, g in zip(rankings, gold):
        relevant = _relevant(g)
        total += next((1.0 / r for r, d in enumerate(list(ranking)[:k], start=1) if int(d) in relevant), 0.0)
    return total / len(rankings)


def evaluate_rankings(rankings: Sequence[Sequence[int]], gold: Gold, ks: Sequence[int] = (1, 5, 20),
                      mrr_k: int = 10) -> dict[str, float]:
    """``{"R@1": ..., "R@5": ..., "R@20": ..., "MRR@10": ...}``."""
    scores = {f"R@{k}": recall_at_k(rankings, gold, k) for k in ks}
    scores[f"MRR@{mrr_k}"] = mrr_at_k(rankings, gold, mrr_k)
    return scores
