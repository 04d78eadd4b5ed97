"""BM25 through bm25s: the tokenization, scores against the formula, and the rankings."""
from __future__ import annotations

import math

import pytest

from bertmini.errors import InputError
from bertmini.retrieval.lexical import BM25Index, simple_tokenize

PASSAGES = ["The cat sat on the mat.", "Dogs chase cats; the dog barks.", "Super Bowl 50 was in Santa Clara."]


def bm25_by_hand(query: list[str], docs: list[list[str]], d: int, k1: float = 1.5, b: float = 0.75) -> float:
    """Lucene's BM25 (Robertson & Zaragoza 2009, §3.4, with Lucene's idf and without the constant factor
    k1 + 1, which changes no ranking), written out."""
    avg = sum(map(len, docs)) / len(docs)
    score = 0.0
    for term in query:  # a repeated query word counts again, as in bm25s
        df = sum(term in doc for doc in docs)
        tf = docs[d].count(term)
        idf = math.log(1 + (len(docs) - df + 0.5) / (df + 0.5))
        score += idf * tf / (tf + k1 * (1 - b + b * len(docs[d]) / avg))
    return score


def test_simple_tokenize_lowercases_and_splits_on_non_word_characters():
    assert simple_tokenize("Super Bowl 50's MVP?") == ["super", "bowl", "50", "s", "mvp"]


def test_scores_follow_the_bm25_formula():
    index = BM25Index(PASSAGES)
    docs = [simple_tokenize(p) for p in PASSAGES]
    query = "the cat in Santa Clara, the cat"
    expected = [bm25_by_hand(simple_tokenize(query), docs, d) for d in range(len(docs))]
    assert index.scores(query).tolist() == pytest.approx(expected, rel=1e-5)


def test_search_ranks_best_first_and_cuts_at_k():
    index = BM25Index(PASSAGES)
    assert index.search(["santa clara bowl", "the dog"], 2) == [[2, 0], [1, 0]]
    assert index.search(["unknownword"], 5) == [[0, 1, 2]]  # no match: all zero, ids in order


def test_empty_corpus_and_empty_query_are_refused():
    with pytest.raises(InputError, match="no passages to encode: got an empty list"):
        BM25Index([])
    with pytest.raises(InputError, match="query 0 is empty"):
        BM25Index(PASSAGES).search([""], 1)
