"""Chapter 14's inline search pieces must stay equal to the package's.

Mean pooling, L2 normalization and the whole embedding (against :mod:`bertmini.retrieval.pooling`),
Recall@k and MRR@10 (:mod:`bertmini.retrieval.ranking`), BM25 (against ``bm25s`` through
:class:`bertmini.retrieval.lexical.BM25Index`) and reciprocal-rank fusion. Each check also runs on mutated
copies of the notebook (padding counted in the mean, [CLS] instead of the mean, an off-by-one rank, the
classic idf, a query word counted once, ...) and must fail there: a comparison that cannot fail guards nothing.
"""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from bertmini import BertConfig, BertModel
from bertmini.retrieval.lexical import BM25Index
from bertmini.retrieval.pooling import SentenceEncoder, l2_normalize, mean_pool
from bertmini.retrieval.ranking import mrr_at_k, recall_at_k, reciprocal_rank_fusion
from bertmini.tokenizer import WordPieceTokenizer

from nbutils import excess, fails, load_notebook_defs, mutate

NB14 = Path(__file__).resolve().parents[1] / "chapters" / "14_search.ipynb"
NAMES = ["mean_pooling", "normalize", "embed", "recall_at", "mrr_at", "bm25_scores", "rrf"]
CH14 = load_notebook_defs(NB14, NAMES)
WORDS = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "far", "away", "bird", "sang", "song", "tree"]


def mutated(definition: str, old: str, new: str, tmp_path: Path) -> dict:
    return load_notebook_defs(mutate(NB14, f"def {definition}(", old, new, tmp_path), NAMES)


@pytest.fixture(scope="module")
def tiny() -> tuple[BertModel, WordPieceTokenizer]:
    torch.manual_seed(0)
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64)
    return BertModel(config).eval(), WordPieceTokenizer.from_vocab(vocab)


def check_pooling(defs: dict, tiny) -> None:
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(4, 7, 8, generator=g)
    mask = (torch.arange(7) < torch.tensor([[7], [3], [1], [5]])).long()  # (4, 7): padded rows
    assert excess(defs["mean_pooling"](hidden, mask), mean_pool(hidden, mask)) <= 1
    assert excess(defs["normalize"](hidden[:, 0]), l2_normalize(hidden[:, 0])) <= 1
    model, tok = tiny
    texts = ["the cat sat on the mat", "a dog", "bird sang a song in the tree far away", "the cat sat"]
    expected = SentenceEncoder(model, tok, max_length=8, precision="fp32").encode(texts).vectors
    assert excess(defs["embed"](model, tok, texts, max_length=8), expected) <= 1


def test_mean_pooling_and_normalize_equal_bertmini(tiny):
    check_pooling(CH14, tiny)


def random_rankings(seed: int, n_queries: int = 40, n_docs: int = 12) -> tuple[list[list[int]], list[int]]:
    rng = random.Random(seed)
    rankings = [rng.sample(range(n_docs), rng.randint(1, n_docs)) for _ in range(n_queries)]
    return rankings, [rng.randrange(n_docs + 2) for _ in range(n_queries)]  # some gold ids never ranked


def check_metrics(defs: dict) -> None:
    for seed in range(5):
        rankings, gold = random_rankings(seed)
        for k in (1, 2, 5, 10):
            assert defs["recall_at"](rankings, gold, k) == pytest.approx(recall_at_k(rankings, gold, k), abs=1e-12)
            assert defs["mrr_at"](rankings, gold, k) == pytest.approx(mrr_at_k(rankings, gold, k), abs=1e-12)


def test_metrics_equal_bertmini():
    check_metrics(CH14)


def check_bm25(defs: dict) -> None:
    rng = random.Random(0)
    docs = [" ".join(rng.choices(WORDS[:8], k=rng.randint(2, 15))) for _ in range(20)]
    index = BM25Index(docs)
    for _ in range(10):
        query = " ".join(rng.choices(WORDS, k=rng.randint(1, 6)))  # repeats and unseen words included
        inline = defs["bm25_scores"](query.split(), [d.split() for d in docs])
        assert excess(torch.tensor(inline, dtype=torch.float32), torch.from_numpy(index.scores(query))) <= 1, query


def test_bm25_scores_equal_bm25s():
    check_bm25(CH14)


def check_rrf(defs: dict) -> None:
    assert defs["rrf"]([[1, 2], [2, 1]]) == reciprocal_rank_fusion([[1, 2], [2, 1]]) == [1, 2]  # a tie
    for seed in range(20):
        lists = [random_rankings(seed * 3 + i, n_queries=1, n_docs=30)[0][0] for i in range(3)]
        assert defs["rrf"](lists) == reciprocal_rank_fusion(lists)


def test_rrf_equals_bertmini():
    check_rrf(CH14)


CHECKS = {"mean_pooling": lambda d, t: check_pooling(d, t), "normalize": lambda d, t: check_pooling(d, t),
          "embed": lambda d, t: check_pooling(d, t), "recall_at": lambda d, t: check_metrics(d),
          "mrr_at": lambda d, t: check_metrics(d), "bm25_scores": lambda d, t: check_bm25(d),
          "rrf": lambda d, t: check_rrf(d)}


@pytest.mark.parametrize("definition, old, new", [
    ("mean_pooling", "mask.sum(1).clamp(min=1e-9)", "mask.shape[1]"),  # padding counted in the mean
    ("normalize", "vectors.norm(dim=-1, keepdim=True)", "vectors.norm()"),  # one norm for the whole batch
    ("embed", 'normalize(mean_pooling(hidden, batch["attention_mask"]))', "normalize(hidden[:, 0])"),  # [CLS]
    ("embed", "truncation=True", "truncation=False"),  # no window: longer inputs would differ
    ("recall_at", "sum(g in list(r[:k])", "sum(g in list(r[:k + 1])"),
    ("mrr_at", "index(g) + 1)", "index(g) + 2)"),
    ("bm25_scores", "1 + (N - df[w] + 0.5)", "(N - df[w] + 0.5)"),  # the classic idf, negative for common words
    ("bm25_scores", "b * len(d) / avgdl", "b * len(d)"),  # no average length
    ("bm25_scores", "for w in query:", "for w in set(query):"),  # a repeated query word counted once
    ("rrf", "start=1", "start=0"),
    ("rrf", "(-scores[d], d)", "(-scores[d], -d)"),  # ties to the larger id
])
def test_ch14_drift_test_catches_mutants(definition, old, new, tmp_path, tiny):
    defs = mutated(definition, old, new, tmp_path)
    assert fails(CHECKS[definition], defs, tiny)
