"""Sentence embeddings: mean pooling over real tokens, L2 norm, parity with sentence-transformers."""
from __future__ import annotations

import pytest
import torch

from bertmini import BertConfig, BertModel
from bertmini.errors import InputError
from bertmini.retrieval.pooling import SentenceEncoder, check_texts, l2_normalize, mean_pool
from bertmini.tokenizer import WordPieceTokenizer

WORDS = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "far", "away"]


@pytest.fixture(scope="module")
def tiny_encoder() -> SentenceEncoder:
    torch.manual_seed(0)
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64)
    return SentenceEncoder(BertModel(config), WordPieceTokenizer.from_vocab(vocab), max_length=8, precision="fp32")


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    torch.testing.assert_close(mean_pool(hidden, torch.tensor([[1, 1, 0]])), torch.tensor([[2.0, 3.0]]))
    assert torch.isfinite(mean_pool(hidden, torch.zeros(1, 3))).all()  # all padding: zeros, not NaN


def test_l2_normalize_gives_unit_rows_and_keeps_zero_rows():
    out = l2_normalize(torch.tensor([[3.0, 4.0], [0.0, 0.0]]))
    torch.testing.assert_close(out, torch.tensor([[0.6, 0.8], [0.0, 0.0]]))


def test_batching_and_padding_do_not_change_a_vector(tiny_encoder):
    texts = ["the cat sat", "a dog ran far away on the mat", "cat", "the dog"]
    together = tiny_encoder.encode(texts, batch_size=4).vectors
    alone = torch.cat([tiny_encoder.encode([t]).vectors for t in texts])
    torch.testing.assert_close(together, alone, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(together.norm(dim=1), torch.ones(4))


def test_long_inputs_are_truncated_and_counted(tiny_encoder):
    encoded = tiny_encoder.encode(["the cat sat", "the cat sat on the mat a dog ran far away"], what="passage")
    assert encoded.truncated == [1]
    assert encoded.note() == ("1 of 2 passages were longer than 8 tokens and were truncated (only their first 6 "
                              "word pieces count)")
    ids, _ = tiny_encoder.tokenize(["the cat sat on the mat a dog ran far away"])
    assert len(ids[0]) == 8 and ids[0][-1] == tiny_encoder.tokenizer.convert_tokens_to_ids("[SEP]")
    assert tiny_encoder.encode(["cat"]).note() == "none of 1 texts was longer than 8 tokens"


def test_bad_texts_are_refused_by_name():
    with pytest.raises(InputError, match="no passages to encode: got an empty list"):
        check_texts([], "passage")
    with pytest.raises(InputError, match=r"query 1 is empty \(or not a string\): got '  '"):
        check_texts(["fine", "  "], "query")
    with pytest.raises(InputError, match="no queries to encode"):
        check_texts([], "query")
    with pytest.raises(InputError, match="got one string; wrap it in a list"):
        check_texts("a text")


def test_max_length_must_fit_the_positions(tiny_encoder):
    with pytest.raises(InputError, match=r"max_length must be in \[3, 64\].*got 65"):
        SentenceEncoder(tiny_encoder.model, tiny_encoder.tokenizer, max_length=65)


def test_equals_sentence_transformers_on_minilm(minilm_dir):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    texts = ["Which NFL team represented the AFC at Super Bowl 50?", "x",
             "The Broncos defeated the Panthers. " * 60]  # the last is past the 256-token window
    reference = sentence_transformers.SentenceTransformer(str(minilm_dir), device="cpu", local_files_only=True)
    expected = reference.encode(texts, convert_to_tensor=True)
    encoder = SentenceEncoder.from_pretrained(minilm_dir, precision="fp32")
    got = encoder.encode(texts, batch_size=2)
    assert encoder.max_length == reference.max_seq_length == 256 and got.truncated == [2]
    torch.testing.assert_close(got.vectors, expected.cpu(), atol=1e-5, rtol=0)
