"""Exact search, Recall@k, MRR@10 and reciprocal-rank fusion on hand-made rankings."""
from __future__ import annotations

import pytest
import torch

from bertmini.errors import InputError
from bertmini.retrieval.ranking import (
    evaluate_rankings,
    exact_search,
    mrr_at_k,
    recall_at_k,
    reciprocal_rank_fusion,
)

RANKINGS = [[3, 1, 2, 0], [0, 1, 2, 3], [2, 0, 3, 1], [1, 2, 3, 0]]
GOLD = [1, 0, 1, 4]  # ranks 2, 1, 4, absent


def test_recall_at_k_counts_hits_in_the_top_k():
    assert recall_at_k(RANKINGS, GOLD, 1) == pytest.approx(1 / 4)
    assert recall_at_k(RANKINGS, GOLD, 2) == pytest.approx(2 / 4)
    assert recall_at_k(RANKINGS, GOLD, 4) == pytest.approx(3 / 4)


def test_recall_with_several_relevant_passages_is_the_share_found():
    assert recall_at_k([[5, 6, 7]], [{6, 9}], 3) == pytest.approx(0.5)
    assert recall_at_k([[5, 6, 7]], [{6, 7}], 1) == 0.0


def test_mrr_is_the_mean_reciprocal_rank_cut_at_k():
    assert mrr_at_k(RANKINGS, GOLD, 10) == pytest.approx((1 / 2 + 1 + 1 / 4 + 0) / 4)
    assert mrr_at_k(RANKINGS, GOLD, 3) == pytest.approx((1 / 2 + 1) / 4)  # rank 4 is past the cut
    assert mrr_at_k([[4, 4, 9]], [{9, 4}], 10) == 1.0  # the first relevant one counts


def test_evaluate_rankings_names_the_metrics():
    scores = evaluate_rankings(RANKINGS, GOLD, ks=(1, 4))
    assert scores == pytest.approx({"R@1": 0.25, "R@4": 0.75, "MRR@10": 0.4375})


def test_metric_inputs_must_line_up():
    with pytest.raises(InputError, match="2 rankings but 3 gold entries"):
        recall_at_k([[0], [1]], [0, 1, 2], 1)
    with pytest.raises(InputError, match="no queries to score"):
        mrr_at_k([], [])


def test_rrf_on_a_known_case():
    # d1: 1/61 + 1/63; d2: 1/62 + 1/61; d3: 1/63 + 1/62; d4: 1/64 (Cormack et al.'s k = 60)
    fused = reciprocal_rank_fusion([[1, 2, 3, 4], [2, 3, 1]])
    assert fused == [2, 1, 3, 4]
    assert reciprocal_rank_fusion([[1, 2], [2, 1]]) == [1, 2]  # a tie goes to the smaller id
    assert reciprocal_rank_fusion([[1, 2, 3], [3, 2, 1]], k=0, depth=2) == [1, 3]  # k=0: 1 + 1/3 beats 1/2 + 1/2


def test_exact_search_is_argsort_of_the_dot_products():
    torch.manual_seed(0)
    passages, queries = torch.randn(50, 8), torch.randn(7, 8)
    scores, ids = exact_search(queries, passages, 5, chunk=3)
    full = queries @ passages.T
    assert torch.equal(ids, full.argsort(dim=1, descending=True)[:, :5])
    torch.testing.assert_close(scores, full.gather(1, ids))
    assert exact_search(queries, passages[:2], 5)[1].shape == (7, 2)  # k past the corpus: all of it


def test_exact_search_refuses_mismatched_or_empty_inputs():
    with pytest.raises(InputError, match=r"one H, got \(2, 4\) and \(3, 5\)"):
        exact_search(torch.zeros(2, 4), torch.zeros(3, 5), 1)
    with pytest.raises(InputError, match="holds no passages"):
        exact_search(torch.zeros(2, 4), torch.zeros(0, 4), 1)
    with pytest.raises(InputError, match="k must be >= 1, got 0"):
        exact_search(torch.zeros(2, 4), torch.zeros(3, 4), 0)
