"""The cross-encoder: hard-negative pairs, training with the project's Trainer, re-ranking, the benchmark runs."""
from __future__ import annotations

import pytest
import torch

from bertmini import BertConfig, BertModel
from bertmini.errors import InputError
from bertmini.retrieval.benchmark import SystemRun, markdown_table, run_bm25, run_hybrid, run_rerank, score_runs
from bertmini.retrieval.reranker import cross_encoder_scores, hard_negative_pairs, rerank, train_cross_encoder
from bertmini.retrieval.squad_retrieval import RetrievalSet
from bertmini.tokenizer import WordPieceTokenizer

WORDS = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "far", "away", "bird", "sang", "song", "tree", "who"]
DATA = RetrievalSet(["the cat sat on the mat", "a dog ran far away", "a bird sang a song", "the tree"],
                    ["t"] * 4, ["who sat on the mat", "who ran away", "who sang"], [0, 1, 2], ["t"] * 3)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=32)).save_pretrained(folder)
    WordPieceTokenizer.from_vocab(vocab).save(folder)
    return folder


def test_hard_negatives_are_bm25s_best_wrong_passages():
    pairs = hard_negative_pairs(DATA, [[0, 3, 1, 2], [2, 1, 0, 3], [2, 0, 1, 3]], n_questions=3, negatives=2)
    assert [(p.text_a, p.text_b, p.label) for p in pairs[:3]] == [
        ("who sat on the mat", "the cat sat on the mat", 1), ("who sat on the mat", "the tree", 0),
        ("who sat on the mat", "a dog ran far away", 0)]
    assert len(pairs) == 9 and sum(p.label for p in pairs) == 3
    short = hard_negative_pairs(DATA, [[0, 1]] * 3, n_questions=3, negatives=3)  # BM25 found only two
    assert [p.label for p in short] == [1, 0, 1, 0, 1, 0, 0]
    with pytest.raises(InputError, match="2 BM25 rankings for 3 questions"):
        hard_negative_pairs(DATA, [[0], [1]], 1)


def test_random_negatives_follow_the_hard_ones_and_avoid_them_and_the_gold():
    rankings = [[0, 3, 1, 2], [2, 1, 0, 3], [2, 0, 1, 3]]
    pairs = hard_negative_pairs(DATA, rankings, n_questions=3, negatives=1, random_negatives=2, seed=1)
    assert len(pairs) == 12 and [p.label for p in pairs[:4]] == [1, 0, 0, 0]
    for q in range(3):
        gold, hard, *easy = pairs[4 * q:4 * q + 4]
        assert hard.text_b == DATA.passages[next(p for p in rankings[q] if p != DATA.gold[q])]
        assert len({hard.text_b, *(e.text_b for e in easy)}) == 3 and gold.text_b not in {e.text_b for e in easy}
    assert pairs == hard_negative_pairs(DATA, rankings, n_questions=3, negatives=1, random_negatives=2, seed=1)
    capped = hard_negative_pairs(DATA, rankings, n_questions=1, negatives=1, random_negatives=9)
    assert [p.label for p in capped] == [1, 0, 0, 0]  # only 3 passages are not the gold one


def test_training_learns_the_pairs_and_rerank_sorts_by_score(model_dir):
    pairs = hard_negative_pairs(DATA, [[1, 2, 3, 0], [0, 2, 3, 1], [0, 1, 3, 2]], n_questions=3, negatives=3)
    model, summary = train_cross_encoder(model_dir, pairs * 8, max_length=32, batch_size=8, lr=1e-3,
                                         epochs=3, precision="fp32")
    assert summary["n_pairs"] == 96 and summary["losses"][-1] < summary["losses"][0]
    tokenizer = WordPieceTokenizer.from_file(model_dir)
    candidates = [[3, 2, 1, 0], [0, 1, 2], [2]]
    reordered = rerank(model, tokenizer, DATA.queries, candidates, DATA.passages, max_length=32, precision="fp32")
    for q, ids in enumerate(candidates):
        scores = cross_encoder_scores(model, tokenizer, [DATA.queries[q]] * len(ids), [DATA.passages[i] for i in ids],
                                      max_length=32, precision="fp32")
        assert reordered[q] == [ids[i] for i in scores.argsort(descending=True, stable=True).tolist()]
    assert reordered[0][0] == 0  # it learnt the gold passage of the first question
    run = run_rerank(SystemRun("first", [[3, 2, 1, 0]] * 3, 0.5), DATA, model, tokenizer, top=2, max_length=32)
    assert [r[2:] for r in run.rankings] == [[1, 0]] * 3  # below the top 2 the first stage's order stays
    assert run.name == "cross-encoder (top 2 of first)" and run.seconds_per_query > 0.5


def test_rerank_needs_candidates(model_dir):
    with pytest.raises(InputError, match="no candidates to re-rank"):
        rerank(None, None, ["q"], [[]], ["p"])


def test_benchmark_runs_and_table():
    bm25 = run_bm25(DATA, depth=4)
    assert [r[0] for r in bm25.rankings] == [0, 1, 2]
    hybrid = run_hybrid([bm25, SystemRun("reverse", [r[::-1] for r in bm25.rankings], 0.0)], depth=4)
    assert hybrid.name == "hybrid (RRF)" and all(sorted(r) == [0, 1, 2, 3] for r in hybrid.rankings)
    rows = score_runs([bm25], DATA.gold)
    assert rows[0]["R@1"] == 1.0 and rows[0]["MRR@10"] == 1.0
    assert markdown_table(rows).splitlines()[2].startswith("| BM25 | 1.000 | 1.000 | 1.000 | 1.000 |")
