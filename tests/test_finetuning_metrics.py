"""Metrics: classification (hand-computed + scikit-learn oracle), NER entity scores (seqeval semantics,
seqeval oracle when installed), SQuAD v1.1 EM/F1 (official-script semantics) and the PNG plots."""
from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bertmini.finetuning.metrics import (
    accuracy,
    classification_report,
    confusion_matrix,
    entity_scores,
    format_scores,
    get_entities,
    macro_f1,
    normalize_answer,
    per_class_scores,
    squad_exact_match,
    squad_f1,
    squad_scores,
)
from bertmini.finetuning.plots import plot_confusion_matrix, plot_f1_bars

LABELS = [0, 0, 1, 1, 2, 2]
PREDS = [0, 1, 1, 1, 2, 0]


# ---------------------------------------------------------------- classification

def test_confusion_matrix_rows_are_gold_labels():
    cm = confusion_matrix(PREDS, LABELS, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert confusion_matrix(torch.tensor(PREDS), torch.tensor(LABELS), 3).equal(cm)


def test_per_class_and_macro_f1_by_hand():
    report = classification_report(PREDS, LABELS, ["a", "b", "c"])
    assert report["accuracy"] == pytest.approx(4 / 6)
    per = report["per_class"]
    assert per["a"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert per["b"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert per["c"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert report["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    # a class never predicted and never present scores 0, not NaN
    assert per_class_scores(confusion_matrix([0], [0], 2), ["x", "y"])["y"]["f1"] == 0.0


def test_classification_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"differ in length: 2 vs 3"):
        accuracy([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match=r"label 5 is outside 0\.\.2"):
        confusion_matrix([0, 1], [0, 5], 3)
    with pytest.raises(ValueError, match=r"shape \(2, 2\) does not match 3 label names"):
        per_class_scores(torch.zeros(2, 2, dtype=torch.long), ["a", "b", "c"])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=40))
def test_classification_matches_sklearn(pairs):
    sk = pytest.importorskip("sklearn.metrics")
    preds, labels = [p for p, _ in pairs], [t for _, t in pairs]
    cm = confusion_matrix(preds, labels, 4)
    assert cm.tolist() == sk.confusion_matrix(labels, preds, labels=range(4)).tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = sk.f1_score(labels, preds, labels=range(4), average="macro", zero_division=0)
    assert macro_f1(cm) == pytest.approx(expected)


# ---------------------------------------------------------------- NER

@pytest.mark.parametrize("tags, entities", [
    (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 1), ("LOC", 3, 3)]),
    (["I-PER", "I-PER", "O"], [("PER", 0, 1)]),                 # I- without B- starts an entity (conlleval)
    (["B-PER", "I-LOC"], [("PER", 0, 0), ("LOC", 1, 1)]),       # a type change splits
    (["B-PER", "B-PER", "I-PER"], [("PER", 0, 0), ("PER", 1, 2)]),
    (["O", "I-MISC", "B-MISC"], [("MISC", 1, 1), ("MISC", 2, 2)]),
    (["B-creative-work", "I-creative-work"], [("creative-work", 0, 1)]),
    (["O", "O"], []),
])
def test_get_entities_conlleval_rules(tags, entities):
    assert get_entities(tags) == entities


def test_entity_scores_seqeval_readme_example():
    # seqeval's README: micro F1 0.50, MISC 0.00, PER 1.00
    y_true = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    y_pred = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    scores = entity_scores(y_true, y_pred)
    assert list(scores) == ["MISC", "PER", "micro"]
    assert scores["micro"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert scores["MISC"]["f1"] == 0.0 and scores["PER"]["f1"] == 1.0
    table = format_scores(scores)
    assert table.splitlines()[0].split() == ["label", "precision", "recall", "f1", "support"]
    assert "micro      0.500   0.500   0.500        2" in table


def test_entity_scores_lists_spurious_types_and_checks_input():
    scores = entity_scores([["B-PER", "O"]], [["B-PER", "B-ORG"]])
    assert scores["ORG"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert scores["micro"]["precision"] == 0.5 and scores["micro"]["recall"] == 1.0
    with pytest.raises(ValueError, match=r"sentence 0: 2 gold tags but 1 predicted"):
        entity_scores([["O", "O"]], [["O"]])
    with pytest.raises(ValueError, match=r"expected a BIO tag .* got 'E-PER'"):
        get_entities(["E-PER"])


BIO = st.sampled_from(["O", "O", "B-A", "I-A", "B-B", "I-B"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.tuples(BIO, BIO), min_size=1, max_size=8), min_size=1, max_size=4))
def test_entity_scores_match_seqeval(sentences):
    seqeval = pytest.importorskip("seqeval.metrics")
    y_true = [[t for t, _ in s] for s in sentences]
    y_pred = [[p for _, p in s] for s in sentences]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = seqeval.classification_report(y_true, y_pred, output_dict=True, zero_division=0)
    ours = entity_scores(y_true, y_pred)
    for name, s in ours.items():
        ref = report["micro avg" if name == "micro" else name]
        assert (s["precision"], s["recall"], s["f1"], s["support"]) == pytest.approx(
            (ref["precision"], ref["recall"], ref["f1-score"], ref["support"])), name


# ---------------------------------------------------------------- SQuAD v1.1

@pytest.mark.parametrize("text, normalized", [
    ("The  Quick, Brown fox!", "quick brown fox"),
    ("an apple a day", "apple day"),
    ("banana theater", "banana theater"),   # articles only as whole words
    ("the-end", "theend"),                  # punctuation is removed before articles
    ("A.B.C.", "abc"),
    ("  Denver\tBroncos\n", "denver broncos"),
])
def test_normalize_answer_official_semantics(text, normalized):
    assert normalize_answer(text) == normalized


def test_squad_em_f1_known_values():
    assert squad_exact_match("the Denver Broncos", ["Denver Broncos"]) == 1.0
    assert squad_f1("Denver Broncos", ["Broncos"]) == pytest.approx(2 / 3)
    assert squad_f1("Broncos", ["Denver Broncos", "the Broncos"]) == 1.0      # max over references
    assert squad_f1("cat cat dog", ["cat dog dog"]) == pytest.approx(2 / 3)   # multiset overlap
    # official quirk: both normalize to "", so EM is 1 but F1 is 0 (no common token)
    assert squad_exact_match("The", ["a"]) == 1.0 and squad_f1("The", ["a"]) == 0.0


def test_squad_scores_percent_and_missing():
    refs = {"q1": ["Denver Broncos"], "q2": ["Carolina Panthers", "Panthers"], "q3": ["Levi's Stadium"]}
    scores = squad_scores({"q1": "denver broncos.", "q2": "the Carolina"}, refs)
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3) / 3)
    assert scores["missing"] == 1
    with pytest.raises(KeyError, match=r"1 prediction ids are not in the references, e.g. 'zz'"):
        squad_scores({"zz": "x"}, refs)
    with pytest.raises(ValueError, match=r"question 'q' has no reference answers"):
        squad_scores({}, {"q": []})


# ---------------------------------------------------------------- plots

def test_plots_write_png(tmp_path):
    cm = confusion_matrix(PREDS, LABELS, 3)
    for normalize in (False, True):
        path = plot_confusion_matrix(cm, ["a", "b", "c"], tmp_path / f"cm{normalize}.png", normalize=normalize)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000
    scores = entity_scores([["B-PER", "O", "B-LOC"]], [["B-PER", "O", "O"]])
    bars = plot_f1_bars(scores, tmp_path / "sub" / "f1.png")
    assert bars.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match=r"shape \(3, 3\) does not match 2 label names"):
        plot_confusion_matrix(cm, ["a", "b"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="no scores to plot"):
        plot_f1_bars({}, tmp_path / "y.png")
