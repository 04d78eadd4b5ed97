"""Chapter 12's inline pieces must stay equal to bertmini.analysis: one sentence's attention maps, the head
statistics (entropy, distance, previous/next-token share), attention rollout, token-to-word maps and the
Jensen-Shannon divergence. Each check also runs on mutated copies of the notebook (layers reversed, log
base 2, signed distances, the wrong diagonal, the rollout multiplied in the wrong order, word maps summed
where they should be averaged, ...) and must fail there."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bertmini.analysis.capture import attentions_for
from bertmini.analysis.divergence import js_divergence
from bertmini.analysis.head_stats import entropy, mean_distance, offset_share
from bertmini.analysis.rollout import attention_rollout
from bertmini.analysis.syntax import word_attention

from nbutils import fails, load_notebook_defs, mutate
from test_analysis_capture import tiny_model

NB12 = Path(__file__).resolve().parents[1] / "chapters" / "12_looking_inside.ipynb"
NAMES = ["sentence_attentions", "head_entropy", "attention_distance", "neighbour_share", "rollout",
         "words_from_pieces", "jensen_shannon"]
CH12 = load_notebook_defs(NB12, NAMES)
MODEL, TOK = tiny_model()


def random_maps(seed: int, shape: tuple[int, ...] = (3, 4, 7, 7)) -> torch.Tensor:
    return (3 * torch.randn(shape, generator=torch.Generator().manual_seed(seed))).softmax(-1)


def check_sentence_attentions(defs: dict) -> None:
    for text, pair in (("the cat sat on the mat", None), ("the cat sat", "a dog barked")):
        tokens, maps, b_start = defs["sentence_attentions"](MODEL, TOK, text, pair)
        att = attentions_for(MODEL, TOK, text, pair)
        assert (tokens, b_start) == (att.tokens, att.sentence_b_start)
        torch.testing.assert_close(maps, att.maps)


def check_head_statistics(defs: dict) -> None:
    for seed in range(3):
        maps = random_maps(seed)
        torch.testing.assert_close(defs["head_entropy"](maps), entropy(maps))
        torch.testing.assert_close(defs["attention_distance"](maps), mean_distance(maps))
        for k in (-1, 1, 2):
            torch.testing.assert_close(defs["neighbour_share"](maps, k), offset_share(maps, k))


def check_rollout(defs: dict) -> None:
    for seed, residual in ((0, 0.5), (1, 0.3)):
        maps = random_maps(seed)
        torch.testing.assert_close(defs["rollout"](maps, residual), attention_rollout(maps, residual))


def check_word_maps(defs: dict) -> None:
    word_ids = [None, 0, 0, 1, 2, 2, 2, None]  # words of 2, 1 and 3 pieces
    for seed in range(3):
        maps = random_maps(seed, (2, 3, 8, 8))
        torch.testing.assert_close(defs["words_from_pieces"](maps, word_ids), word_attention(maps, word_ids))


def check_jensen_shannon(defs: dict) -> None:
    for seed in range(3):
        p, q = random_maps(seed, (5, 6)), random_maps(seed + 10, (5, 6))
        torch.testing.assert_close(defs["jensen_shannon"](p, q), js_divergence(p, q))


CHECKS = {"sentence_attentions": check_sentence_attentions, "head_entropy": check_head_statistics,
          "attention_distance": check_head_statistics, "neighbour_share": check_head_statistics,
          "rollout": check_rollout, "words_from_pieces": check_word_maps, "jensen_shannon": check_jensen_shannon}


def test_sentence_attentions_equals_the_package():
    check_sentence_attentions(CH12)


def test_head_statistics_equal_the_package():
    check_head_statistics(CH12)


def test_rollout_equals_the_package():
    check_rollout(CH12)


def test_word_maps_equal_the_package():
    check_word_maps(CH12)


def test_jensen_shannon_equals_the_package():
    check_jensen_shannon(CH12)


@pytest.mark.parametrize("definition, old, new", [
    pytest.param("sentence_attentions", "torch.cat(out.attentions)", "torch.cat(out.attentions[::-1])",
                 id="layers-reversed"),
    pytest.param("sentence_attentions", ".index(1)", ".index(0)", id="sentence-b-starts-at-a"),
    pytest.param("head_entropy", "clamp_min(1e-12).log()).sum(-1)", "clamp_min(1e-12).log2()).sum(-1)",
                 id="entropy-in-bits"),
    pytest.param("attention_distance", "pos[None, :]).abs()", "pos[None, :])", id="signed-distance"),
    pytest.param("neighbour_share", "offset=offset", "offset=-offset", id="previous-and-next-swapped"),
    pytest.param("rollout", "layer @ out[-1]", "out[-1] @ layer", id="multiplied-in-the-wrong-order"),
    pytest.param("rollout", "maps.mean(1)", "maps[:, 0]", id="first-head-not-the-mean"),
    pytest.param("words_from_pieces", "(pieces / pieces.sum(1, keepdim=True)) @ to_words", "pieces @ to_words",
                 id="from-word-summed-not-averaged"),
    pytest.param("words_from_pieces", "maps @ pieces.T", "maps @ (pieces / pieces.sum(1, keepdim=True)).T",
                 id="to-word-averaged-not-summed"),
    pytest.param("jensen_shannon", "(kl(p) + kl(q)) / 2", "kl(p)", id="one-sided-kl"),
    pytest.param("jensen_shannon", "m = (p + q) / 2", "m = q", id="kl-to-q-not-the-mixture"),
])
def test_ch12_drift_test_catches_mutants(definition, old, new, tmp_path):
    defs = load_notebook_defs(mutate(NB12, f"def {definition}(", old, new, tmp_path), NAMES)
    assert fails(CHECKS[definition], defs)
