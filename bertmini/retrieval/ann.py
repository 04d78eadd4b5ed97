"""Approximate nearest-neighbour search with FAISS (Johnson, Douze & Jégou 2019) for large corpora.

Exact search costs one dot product per passage per query, linear in the corpus. An IVF index clusters
the vectors with k-means and searches only the ``nprobe`` clusters nearest the query (Jégou et al. 2011,
§III-A); HNSW walks a layered proximity graph (Malkov & Yashunin 2018). Both trade a little recall
for speed; :func:`recall_against_exact` measures how much, as the share of exact search's top k found.
Vectors are unit length, so inner product is cosine similarity.
"""
from __future__ import annotations

import faiss
import numpy as np
import torch

from bertmini.errors import InputError

__all__ = ["default_n_lists", "build_ivf", "build_hnsw", "ann_search", "recall_against_exact"]


def _matrix(vectors: torch.Tensor | np.ndarray) -> np.ndarray:
    array = vectors.numpy() if isinstance(vectors, torch.Tensor) else np.asarray(vectors)
    if array.ndim != 2 or not len(array):
        raise InputError(f"expected a non-empty (N, H) matrix of vectors, got shape {array.shape}")
    return np.ascontiguousarray(array, dtype=np.float32)


def default_n_lists(n: int) -> int:
    """IVF cells for ``n`` vectors: the usual ``4 sqrt(n)``, but at least 39 vectors a cell (FAISS's k-means
    warns below that, and the centroids come out poor)."""
    return max(1, min(n // 39, int(4 * n ** 0.5)))


def build_ivf(vectors: torch.Tensor | np.ndarray, n_lists: int, nprobe: int = 8, seed: int = 0) -> faiss.Index:
    """IVF-Flat with inner product: k-means into ``n_lists`` cells (needs >= ``n_lists`` vectors), then
    each query scans the ``nprobe`` nearest cells exactly."""
    data = _matrix(vectors)
    if not 1 <= n_lists <= len(data):
        raise InputError(f"n_lists must be in [1, {len(data)}] (the number of vectors), got {n_lists}")
    quantizer = faiss.IndexFlatIP(data.shape[1])
    index = faiss.IndexIVFFlat(quantizer, data.shape[1], n_lists, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.train(data)
    index.add(data)
    index.nprobe = min(nprobe, n_lists)
    return index


def build_hnsw(vectors: torch.Tensor | np.ndarray, neighbours: int = 32, ef_search: int = 64,
               ef_construction: int = 80) -> faiss.Index:
    """HNSW with inner product: ``neighbours`` links per node; ``ef_search`` candidates kept while searching."""
    data = _matrix(vectors)
    index = faiss.IndexHNSWFlat(data.shape[1], neighbours, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    index.add(data)
    index.hnsw.efSearch = ef_search
    return index


def ann_search(index: faiss.Index, queries: torch.Tensor | np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, ids)`` (Q, k), best first; ids are -1 where fewer than k were found."""
    if k < 1:
        raise InputError(f"k must be >= 1, got {k}")
    return index.search(_matrix(queries), k)


def recall_against_exact(approx_ids: np.ndarray, exact_ids: np.ndarray | torch.Tensor) -> float:
    """Mean over queries of |approximate top k ∩ exact top k| / k."""
    exact = np.asarray(exact_ids)
    if approx_ids.shape != exact.shape:
        raise InputError(f"expected id matrices of one shape, got {approx_ids.shape} and {exact.shape}")
    hits = sum(len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approx_ids, exact))
    return hits / exact.size
