"""Running retrieval systems on a :class:`RetrievalSet` and scoring them side by side (chapter 14).

Each system gives, per query, a ranking of passage ids (best first, ``depth`` long) and its query
latency. BM25 and the bi-encoder rank the whole corpus; the hybrid fuses their rankings with RRF
(Cormack et al. 2009); the cross-encoder re-orders the hybrid's top 20 (Nogueira & Cho 2019).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import torch

from bertmini.retrieval.lexical import BM25Index
from bertmini.retrieval.pooling import SentenceEncoder
from bertmini.retrieval.ranking import evaluate_rankings, exact_search, reciprocal_rank_fusion
from bertmini.retrieval.reranker import rerank
from bertmini.retrieval.squad_retrieval import RetrievalSet

__all__ = ["SystemRun", "run_bm25", "run_dense", "run_hybrid", "run_rerank", "score_runs", "markdown_table"]


@dataclass
class SystemRun:
    """One system's rankings (one list of passage ids per query) and its mean seconds per query."""
    name: str
    rankings: list[list[int]]
    seconds_per_query: float

    def restrict(self, rows: Sequence[int]) -> SystemRun:
        """The same run on a subset of its queries."""
        return SystemRun(self.name, [self.rankings[q] for q in rows], self.seconds_per_query)


def run_bm25(data: RetrievalSet, depth: int = 100) -> SystemRun:
    """BM25 over every passage (building the index is not timed; scoring and sorting are)."""
    index = BM25Index(data.passages)
    start = time.perf_counter()
    rankings = index.search(data.queries, depth)
    return SystemRun("BM25", rankings, (time.perf_counter() - start) / len(data.queries))


def run_dense(encoder: SentenceEncoder, data: RetrievalSet, depth: int = 100,
              passage_vectors: torch.Tensor | None = None, batch_size: int = 64) -> tuple[SystemRun, torch.Tensor]:
    """The bi-encoder: passages encoded once (or given), queries encoded in batches, exact search.
    Latency: encoding the queries plus the search, per query. Returns the run and the passage vectors."""
    if passage_vectors is None:
        passage_vectors = encoder.encode(data.passages, batch_size, "passage").vectors
    start = time.perf_counter()
    queries = encoder.encode(data.queries, batch_size, "query").vectors
    _, ids = exact_search(queries, passage_vectors, depth)
    return SystemRun("bi-encoder", ids.tolist(), (time.perf_counter() - start) / len(data.queries)), passage_vectors


def run_hybrid(runs: Sequence[SystemRun], depth: int = 100) -> SystemRun:
    """RRF (k = 60) of the runs, query by query; its latency is theirs added, plus the fusion."""
    start = time.perf_counter()
    fused = [reciprocal_rank_fusion(lists, depth=depth) for lists in zip(*(r.rankings for r in runs))]
    fusion = (time.perf_counter() - start) / max(len(fused), 1)
    return SystemRun("hybrid (RRF)", fused, sum(r.seconds_per_query for r in runs) + fusion)


def run_rerank(first_stage: SystemRun, data: RetrievalSet, model, tokenizer, top: int = 20,
               max_length: int = 256, batch_size: int = 64) -> SystemRun:
    """The cross-encoder re-orders ``first_stage``'s top ``top``; below them its order is kept.
    Latency: the first stage's plus the re-scoring, per query."""
    heads = [r[:top] for r in first_stage.rankings]
    start = time.perf_counter()
    reordered = rerank(model, tokenizer, data.queries, heads, data.passages, max_length=max_length,
                       batch_size=batch_size)
    seconds = (time.perf_counter() - start) / len(heads) + first_stage.seconds_per_query
    rankings = [new + old[top:] for new, old in zip(reordered, first_stage.rankings)]
    return SystemRun(f"cross-encoder (top {top} of {first_stage.name})", rankings, seconds)


def score_runs(runs: Sequence[SystemRun], gold: Sequence[int]) -> list[dict]:
    """One row per system: R@1, R@5, R@20, MRR@10 and milliseconds per query."""
    return [{"system": r.name, **evaluate_rankings(r.rankings, gold), "ms_per_query": 1000 * r.seconds_per_query}
            for r in runs]


def markdown_table(rows: Sequence[dict]) -> str:
    """The rows of :func:`score_runs` as a Markdown table (metrics to 3 decimals, latency to 0.1 ms)."""
    lines = ["| system | R@1 | R@5 | R@20 | MRR@10 | ms/query |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['system']} | {r['R@1']:.3f} | {r['R@5']:.3f} | {r['R@20']:.3f} | {r['MRR@10']:.3f} | "
              f"{r['ms_per_query']:.1f} |" for r in rows]
    return "\n".join(lines)
