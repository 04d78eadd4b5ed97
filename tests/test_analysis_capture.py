"""bertmini.analysis.capture: one sequence's attention maps, the checks on what callers pass in, and many
sentences in padded batches (equal to one at a time)."""
from __future__ import annotations

import pytest
import torch

from bertmini import BertConfig, BertForSequenceClassification, BertModel
from bertmini.analysis.capture import Attentions, as_maps, attentions_for, base_model, iter_attentions
from bertmini.errors import InputError
from bertmini.tokenizer import WordPieceTokenizer

TEXTS = ["the cat sat on the mat .", "a dog barked at the cat !", "the mat was red .", "cats and dogs"]


def tiny_model(seed: int = 0) -> tuple[BertModel, WordPieceTokenizer]:
    """A deterministic 2-layer, 4-head model (hidden 32) and a small WordPiece vocabulary."""
    tok = WordPieceTokenizer.train(texts=TEXTS * 3, vocab_size=80, min_frequency=1)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=32)
    return BertModel(config).eval(), tok


@pytest.fixture(scope="module")
def tiny():
    return tiny_model()


def test_attentions_for_matches_the_model_output(tiny):
    model, tok = tiny
    att = attentions_for(model, tok, "the cat sat", "the mat")
    enc = tok("the cat sat", "the mat", return_tensors="pt")
    expected = model(**enc, output_attentions=True).attentions
    assert att.maps.shape == (2, 4, len(att.tokens), len(att.tokens))  # (L, heads, T, T)
    torch.testing.assert_close(att.maps, torch.cat(expected))
    assert att.tokens[att.sentence_b_start - 1] == "[SEP]" and att.tokens[0] == "[CLS]"
    assert att.sentence_b_start == att.tokens.index("[SEP]") + 1
    torch.testing.assert_close(att.maps.sum(-1), torch.ones(2, 4, len(att.tokens)))
    assert [t.shape for t in att.as_tuple()] == [(1, 4, len(att.tokens), len(att.tokens))] * 2


def test_a_head_model_is_read_through_its_encoder(tiny):
    model, tok = tiny
    clf = BertForSequenceClassification(model.config).eval()
    clf.bert.load_state_dict(model.state_dict())
    assert base_model(clf) is clf.bert
    torch.testing.assert_close(attentions_for(clf, tok, "the cat").maps, attentions_for(model, tok, "the cat").maps)


def test_batched_equals_one_at_a_time(tiny):
    model, tok = tiny
    got = dict(iter_attentions(model, tok, TEXTS, batch_size=3))
    assert sorted(got) == [0, 1, 2, 3]
    for i, text in enumerate(TEXTS):
        one = attentions_for(model, tok, text)
        assert got[i].tokens == one.tokens
        torch.testing.assert_close(got[i].maps, one.maps, atol=1e-5, rtol=1e-4)


def test_too_long_inputs_are_skipped_or_refused(tiny):
    model, tok = tiny
    long_text = " ".join(["cat"] * 40)
    assert [i for i, _ in iter_attentions(model, tok, [TEXTS[0], long_text], max_length=16)] == [0]
    with pytest.raises(InputError, match=r"text: 42 tokens, expected at most 32"):
        attentions_for(model, tok, long_text)


def test_bad_maps_get_clear_errors():
    maps = torch.rand(2, 4, 5, 5).softmax(-1)
    assert as_maps(tuple(m[None] for m in maps)).shape == (2, 4, 5, 5)
    with pytest.raises(InputError, match=r"attentions\[0\]: expected one sequence \(batch size 1\), got a batch of 3"):
        as_maps([torch.rand(3, 4, 5, 5)])
    with pytest.raises(InputError, match=r"tokens: expected 5 tokens \(the maps are 5 x 5\), got 4"):
        Attentions(["a", "b", "c", "d"], maps)
    with pytest.raises(InputError, match=r"expected square \(T, T\) maps"):
        as_maps(torch.rand(2, 4, 5, 6))
    with pytest.raises(InputError, match=r"attentions\[1\]: expected a \(1, heads, T, T\) tensor, got \(5, 5\)"):
        as_maps([maps[0], torch.rand(5, 5)])
    with pytest.raises(InputError, match="expected one map per layer, got none"):
        as_maps([])
