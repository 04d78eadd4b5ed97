"""FAISS IVF and HNSW against exact search on small random data."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bertmini.errors import InputError
from bertmini.retrieval.ann import ann_search, build_hnsw, build_ivf, default_n_lists, recall_against_exact
from bertmini.retrieval.ranking import exact_search


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    passages = torch.nn.functional.normalize(torch.randn(2000, 16, generator=generator), dim=1)
    queries = torch.nn.functional.normalize(torch.randn(50, 16, generator=generator), dim=1)
    return passages, queries, exact_search(queries, passages, 10)[1]


def test_ivf_scanning_every_list_is_exact(data):
    passages, queries, exact = data
    index = build_ivf(passages, n_lists=16, nprobe=16)
    scores, ids = ann_search(index, queries, 10)
    assert recall_against_exact(ids, exact) == 1.0
    np.testing.assert_allclose(scores, (queries @ passages.T).gather(1, exact).numpy(), rtol=1e-5, atol=1e-5)


def test_ivf_with_one_probe_misses_some(data):
    passages, queries, exact = data
    recall = recall_against_exact(ann_search(build_ivf(passages, 16, nprobe=1), queries, 10)[1], exact)
    assert 0.2 < recall < 1.0


def test_hnsw_finds_nearly_all_neighbours(data):
    passages, queries, exact = data
    assert recall_against_exact(ann_search(build_hnsw(passages, ef_search=128), queries, 10)[1], exact) > 0.95


def test_recall_against_exact_on_a_known_case():
    assert recall_against_exact(np.array([[1, 2], [3, 4]]), np.array([[2, 9], [4, 3]])) == 0.75


def test_bad_inputs_are_refused(data):
    passages = data[0]
    with pytest.raises(InputError, match=r"n_lists must be in \[1, 2000\].*got 5000"):
        build_ivf(passages, n_lists=5000)
    with pytest.raises(InputError, match=r"non-empty \(N, H\) matrix.*\(0, 16\)"):
        build_hnsw(torch.zeros(0, 16))
    with pytest.raises(InputError, match="expected id matrices of one shape"):
        recall_against_exact(np.zeros((2, 3)), np.zeros((2, 4)))


def test_default_n_lists_is_four_root_n_with_39_vectors_a_cell():
    assert default_n_lists(100_000) == 1264  # 4 * 316.2
    assert default_n_lists(20_000) == 512  # 4 sqrt(n) = 565 cells would hold fewer than 39 vectors each
    assert default_n_lists(10) == 1
