"""bertmini.analysis.head_stats on maps whose answers are known by hand, and on MiniLM."""
from __future__ import annotations

import math

import pytest
import torch

from bertmini.analysis.capture import Attentions
from bertmini.analysis.head_stats import (
    entropy,
    mean_distance,
    offset_share,
    positional_heads,
    sequence_stats,
    special_positions,
    summarize,
    token_share,
)
from bertmini.errors import InputError

T = 4
UNIFORM = torch.full((T, T), 1 / T)
PREVIOUS = torch.eye(T).roll(-1, dims=1)  # row i attends token i - 1 (row 0 wraps to the last token)
FIRST = torch.zeros(T, T).index_fill_(1, torch.tensor([0]), 1.0)  # every row attends token 0


def layered(*heads: torch.Tensor) -> torch.Tensor:
    return torch.stack(heads)[None]  # (1 layer, heads, T, T)


def test_entropy_and_distance_of_known_maps():
    maps = layered(UNIFORM, torch.eye(T), FIRST)
    torch.testing.assert_close(entropy(maps), torch.tensor([[math.log(T), 0.0, 0.0]]))
    # uniform over 4: rows 0..3 have mean distance 1.5, 1, 1, 1.5; first token: 0, 1, 2, 3
    torch.testing.assert_close(mean_distance(maps), torch.tensor([[1.25, 0.0, 1.5]]))


def test_previous_and_next_token_shares():
    maps = layered(PREVIOUS, PREVIOUS.T, UNIFORM)
    torch.testing.assert_close(offset_share(maps, -1), torch.tensor([[1.0, 0.0, 0.25]]))
    torch.testing.assert_close(offset_share(maps, 1), torch.tensor([[0.0, 1.0, 0.25]]))
    with pytest.raises(InputError, match=r"offset: expected a non-zero offset with \|offset\| < 4"):
        offset_share(maps, 4)


def test_special_token_shares_and_positional_heads():
    tokens = ["[CLS]", "hi", ",", "[SEP]"]
    masks = special_positions(tokens)
    assert masks["[SEP]"].tolist() == [False, False, False, True]
    assert masks["punctuation"].tolist() == [False, False, True, False]
    maps = layered(FIRST, UNIFORM, PREVIOUS)
    torch.testing.assert_close(token_share(maps, masks["[CLS]"]), torch.tensor([[1.0, 0.25, 0.25]]))
    with pytest.raises(InputError, match=r"positions: expected a bool mask of 4 tokens, got shape \(3,\)"):
        token_share(maps, masks["[CLS]"][:3])
    stats = summarize([Attentions(tokens, maps), Attentions(tokens, maps)])
    assert int(stats["sequences"]) == 2 and int(stats["tokens"]) == 8
    torch.testing.assert_close(stats["entropy"], sequence_stats(Attentions(tokens, maps))["entropy"])
    assert positional_heads(stats) == [(0, 2, "previous", 1.0)]
    with pytest.raises(InputError, match="expected at least one sequence, got none"):
        summarize([])


def test_summarize_weights_by_tokens():
    short = Attentions(["a", "b"], torch.eye(2)[None, None])
    long = Attentions(["a", "b", "c", "d"], UNIFORM[None, None])
    torch.testing.assert_close(summarize([short, long])["entropy"], torch.tensor([[4 * math.log(4) / 6]]))


def test_minilm_has_a_previous_token_head(minilm_dir):
    from bertmini import BertModel
    from bertmini.analysis.capture import attentions_for
    from bertmini.tokenizer import WordPieceTokenizer

    model, tok = BertModel.from_pretrained(minilm_dir), WordPieceTokenizer.from_file(minilm_dir)
    att = attentions_for(model, tok, "The quick brown fox jumps over the lazy dog near the river bank today.")
    stats = sequence_stats(att)
    assert stats["entropy"].shape == (6, 12) and float(stats["previous"].max()) > 0.5
    assert float((stats["entropy"] - torch.log(torch.tensor(len(att.tokens)))).max()) <= 1e-5
