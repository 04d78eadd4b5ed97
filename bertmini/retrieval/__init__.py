"""Part IV, chapter 14: BERT for search.

``pooling`` makes sentence vectors (mean pooling, L2 norm: Reimers & Gurevych 2019); ``ranking`` searches
them exactly and scores rankings (Recall@k, MRR@10, reciprocal-rank fusion: Cormack et al. 2009);
``lexical`` is the BM25 baseline; ``reranker`` the cross-encoder (Nogueira & Cho 2019); ``ann`` FAISS
indexes; ``squad_retrieval`` the SQuAD benchmark and ``benchmark`` its runs; ``passages``,
``search_index`` and ``cli`` the ``python -m bertmini search`` command.
"""
from bertmini.retrieval.pooling import Encoded, SentenceEncoder, l2_normalize, mean_pool
from bertmini.retrieval.ranking import (
    RRF_K,
    evaluate_rankings,
    exact_search,
    mrr_at_k,
    recall_at_k,
    reciprocal_rank_fusion,
)

__all__ = ["Encoded", "SentenceEncoder", "l2_normalize", "mean_pool", "RRF_K", "evaluate_rankings", "exact_search",
           "mrr_at_k", "recall_at_k", "reciprocal_rank_fusion"]
