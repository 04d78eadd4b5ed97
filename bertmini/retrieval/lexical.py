"""BM25, the lexical baseline (Robertson & Zaragoza 2009, §3.4; Lucene's variant), through ``bm25s``.

A passage scores, per query term t, ``idf(t) * tf / (tf + k1 * (1 - b + b * len / avg_len))`` (Lucene drops
the classic constant factor ``k1 + 1``, which changes no ranking):
term frequency that saturates (``k1``), normalized by the passage's length (``b``), weighted by how rare
t is (``idf = log(1 + (N - df + 0.5) / (df + 0.5))``). Only exact word matches count: that is its
strength on names and numbers and its weakness on paraphrases. Text is lowercased and split into runs of
letters and digits (:func:`simple_tokenize`), no stemming and no stop words, for queries and passages
alike; the bi-encoder's WordPiece tokenizer lowercases too.
"""
from __future__ import annotations

import re
from typing import Sequence

import bm25s
import numpy as np

from bertmini.retrieval.pooling import check_texts

__all__ = ["simple_tokenize", "BM25Index"]

_WORD = re.compile(r"\w+")


def simple_tokenize(text: str) -> list[str]:
    """Lowercased runs of letters and digits: ``"Super Bowl 50's MVP?" -> ['super', 'bowl', '50', 's', 'mvp']``."""
    return _WORD.findall(text.lower())


class BM25Index:
    """BM25 over ``passages`` (k1 = 1.5, b = 0.75, bm25s's defaults); scores every passage per query."""

    def __init__(self, passages: Sequence[str], k1: float = 1.5, b: float = 0.75) -> None:
        passages = check_texts(passages, "passage")
        self.size = len(passages)
        self.engine = bm25s.BM25(k1=k1, b=b, method="lucene")
        self.engine.index([simple_tokenize(p) for p in passages], show_progress=False)

    def scores(self, query: str) -> np.ndarray:
        """(N,) BM25 score of every passage; all 0 when no query word occurs in the corpus."""
        return self.engine.get_scores(simple_tokenize(query))

    def search(self, queries: Sequence[str], k: int) -> list[list[int]]:
        """Top ``k`` passage ids per query, best first (ties: the smaller id first)."""
        k = min(k, self.size)
        out = []
        for query in check_texts(queries, "query"):
            scores = self.scores(query)
            best = np.argpartition(-scores, k - 1)[:k] if k < self.size else np.arange(self.size)
            out.append(sorted(best.tolist(), key=lambda d: (-scores[d], d)))
        return out
