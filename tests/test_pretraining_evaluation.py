"""bertmini.pretraining.evaluation: the unigram baseline (always predict the most frequent training token) on
corpora with a known answer, and equal to the MLM accuracy of a model that does exactly that."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from bertmini.pretraining.evaluation import evaluate_pretraining, fixed_masked_batches, token_counts, unigram_baseline
from bertmini.pretraining.examples import build_pretraining_dataset
from bertmini.pretraining.masking import IGNORE_INDEX, MLMCollator
from bertmini.tokenizer import WordPieceTokenizer

TRAIN_TEXT = ["the cat saw the dog.", "the dog saw a cat.", "the end."]  # the: 4, cat: 2, dog: 2, saw: 2, .: 3


@pytest.fixture(scope="module")
def tok() -> WordPieceTokenizer:
    return WordPieceTokenizer.train(texts=TRAIN_TEXT, vocab_size=60, min_frequency=1)


def dataset(tok: WordPieceTokenizer, sentences: list[str]):
    return build_pretraining_dataset([[s] for s in sentences], tok, mode="packed", max_seq_length=8)


def held_out(tok: WordPieceTokenizer, sentences: list[str]) -> list[dict[str, torch.Tensor]]:
    return fixed_masked_batches(dataset(tok, sentences), MLMCollator(tok, mlm_probability=0.5, seed=0), batch_size=2)


def test_token_counts_skip_special_tokens_and_padding(tok):
    counts = token_counts(dataset(tok, TRAIN_TEXT), tok.all_special_ids, tok.vocab_size)
    ids = {w: tok.convert_tokens_to_ids(w) for w in ("the", "cat", "dog", "saw", "a", "end", ".")}
    assert {w: int(counts[i]) for w, i in ids.items()} == {"the": 4, "cat": 2, "dog": 2, "saw": 2, "a": 1,
                                                           "end": 1, ".": 3}
    assert int(counts.sum()) == 15 and not counts[tok.all_special_ids].any()


@pytest.mark.parametrize("sentences, top1, top5", [
    (["the the the the the the"], 1.0, 1.0),  # every target is "the"
    (["a end a end a end"], 0.0, 0.0),  # never "the", nor one of the 5 most frequent (the . cat dog saw)
    (["cat dog saw cat dog saw"], 0.0, 1.0),  # never "the", always one of the 5
])
def test_unigram_baseline_known_answers(tok, sentences, top1, top5):
    counts = token_counts(dataset(tok, TRAIN_TEXT), tok.all_special_ids, tok.vocab_size)
    assert unigram_baseline(counts, held_out(tok, sentences)) == pytest.approx(
        {"unigram_accuracy": top1, "unigram_top5_accuracy": top5})


def test_unigram_top_k_counts_the_k_most_frequent():
    counts = torch.tensor([0, 0, 5, 9, 1, 3])  # ranked: 3, 2, 5, 4
    labels = torch.tensor([[3, 2, IGNORE_INDEX, 5], [4, IGNORE_INDEX, 3, 3]])
    assert unigram_baseline(counts, [{"labels": labels}], top_k=2) == {"unigram_accuracy": 0.5,
                                                                       "unigram_top2_accuracy": 4 / 6}


class Constant(nn.Module):
    """Always predicts token ``token`` (dense ``(B, T, V)`` logits)."""

    def __init__(self, vocab: int, token: int) -> None:
        super().__init__()
        self.vocab, self.token = vocab, token
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, labels, **kwargs):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        logits[..., self.token] = 1.0
        return SimpleNamespace(prediction_logits=logits)


def test_unigram_baseline_is_the_accuracy_of_always_predicting_the_most_frequent_token(tok):
    counts = token_counts(dataset(tok, TRAIN_TEXT), tok.all_special_ids, tok.vocab_size)
    batches = held_out(tok, ["the dog saw the cat saw a dog.", "the end the end the cat.", "a cat, a dog."])
    expected = evaluate_pretraining(Constant(tok.vocab_size, int(counts.argmax())), batches)["mlm_accuracy"]
    assert 0 < expected < 1
    assert unigram_baseline(counts, batches)["unigram_accuracy"] == pytest.approx(expected)


def test_unigram_baseline_errors():
    with pytest.raises(ValueError, match="token counts are all zero: no training tokens"):
        unigram_baseline(torch.zeros(5, dtype=torch.long), [{"labels": torch.tensor([[1]])}])
    with pytest.raises(ValueError, match="no masked tokens in the evaluation batches"):
        unigram_baseline(torch.ones(5, dtype=torch.long), [{"labels": torch.full((2, 3), IGNORE_INDEX)}])
    with pytest.raises(ValueError, match="no masked tokens in the evaluation batches"):
        unigram_baseline(torch.ones(5, dtype=torch.long), [])
