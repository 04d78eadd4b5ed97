"""Evaluation metrics for the fine-tuning tasks of Part III (BERT paper §4).

* Classification (GLUE-style, §4.1): accuracy, confusion matrix, per-class precision/recall/F1, macro-F1.
* NER (§5.3): entity-level precision/recall/F1 with the semantics of ``seqeval`` in its default mode,
  which follows the CoNLL ``conlleval`` script: an ``I-X`` that does not continue an ``X`` entity starts one.
* SQuAD v1.1 (§4.2): exact match and token F1 after the official answer normalization,
  taking the maximum over the reference answers.

Everything here is plain Python or torch, so the numbers can be checked by hand.
"""
from __future__ import annotations

import re
import string
from collections import Counter
from typing import Mapping, Sequence

import torch

__all__ = [
    "accuracy", "confusion_matrix", "per_class_scores", "macro_f1", "classification_report",
    "get_entities", "entity_scores", "format_scores",
    "normalize_answer", "squad_exact_match", "squad_f1", "squad_scores",
]

Scores = dict[str, dict[str, float]]


def _as_list(values: Sequence[int] | torch.Tensor) -> list[int]:
    return values.tolist() if isinstance(values, torch.Tensor) else list(values)


def _check_same_length(preds: Sequence, labels: Sequence, what: str = "items") -> None:
    if len(preds) != len(labels):
        raise ValueError(f"predictions and labels differ in length: {len(preds)} vs {len(labels)} {what}")


def _prf(tp: float, n_pred: float, n_true: float) -> tuple[float, float, float]:
    """Precision, recall, F1 with 0 for an empty denominator (as seqeval and scikit-learn report it)."""
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_true if n_true else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


# ---------------------------------------------------------------- classification

def accuracy(preds: Sequence[int] | torch.Tensor, labels: Sequence[int] | torch.Tensor) -> float:
    """Fraction of predictions equal to the label."""
    preds, labels = _as_list(preds), _as_list(labels)
    _check_same_length(preds, labels)
    if not labels:
        raise ValueError("accuracy of an empty set is undefined")
    return sum(p == t for p, t in zip(preds, labels)) / len(labels)


def confusion_matrix(preds: Sequence[int] | torch.Tensor, labels: Sequence[int] | torch.Tensor,
                     num_labels: int) -> torch.Tensor:
    """``cm[true, pred]`` counts (rows are the gold labels, as in scikit-learn)."""
    preds, labels = _as_list(preds), _as_list(labels)
    _check_same_length(preds, labels)
    for name, values in (("prediction", preds), ("label", labels)):
        bad = [v for v in values if not 0 <= v < num_labels]
        if bad:
            raise ValueError(f"{name} {bad[0]} is outside 0..{num_labels - 1} (num_labels={num_labels})")
    cm = torch.zeros(num_labels, num_labels, dtype=torch.long)
    if labels:
        cm.index_put_((torch.tensor(labels), torch.tensor(preds)), torch.ones(len(labels), dtype=torch.long),
                      accumulate=True)
    return cm


def per_class_scores(cm: torch.Tensor, label_names: Sequence[str]) -> Scores:
    """Per-class precision, recall, F1 and support from a confusion matrix."""
    if cm.shape != (len(label_names), len(label_names)):
        raise ValueError(f"confusion matrix shape {tuple(cm.shape)} does not match {len(label_names)} label names")
    tp, n_pred, n_true = cm.diag().tolist(), cm.sum(0).tolist(), cm.sum(1).tolist()
    out: Scores = {}
    for i, name in enumerate(label_names):
        p, r, f = _prf(tp[i], n_pred[i], n_true[i])
        out[name] = {"precision": p, "recall": r, "f1": f, "support": n_true[i]}
    return out


def macro_f1(cm: torch.Tensor) -> float:
    """Unweighted mean of the per-class F1 (every class counts the same, however rare: spam, ABBR)."""
    scores = per_class_scores(cm, [str(i) for i in range(cm.shape[0])])
    return sum(s["f1"] for s in scores.values()) / len(scores)


def classification_report(preds: Sequence[int] | torch.Tensor, labels: Sequence[int] | torch.Tensor,
                          label_names: Sequence[str]) -> dict:
    """Accuracy, macro-F1, per-class scores and the confusion matrix in one dict."""
    cm = confusion_matrix(preds, labels, len(label_names))
    return {"accuracy": accuracy(preds, labels), "macro_f1": macro_f1(cm),
            "per_class": per_class_scores(cm, label_names), "confusion_matrix": cm}


# ---------------------------------------------------------------- NER (entity level)

def _split_tag(tag: str) -> tuple[str, str]:
    """``"B-person"`` -> ``("B", "person")``; ``"O"`` -> ``("O", "_")`` (seqeval's placeholder type)."""
    prefix, sep, etype = tag.partition("-")
    if prefix not in ("B", "I", "O") or (prefix == "O" and sep):
        raise ValueError(f"expected a BIO tag 'O', 'B-<type>' or 'I-<type>', got {tag!r}")
    return prefix, etype or "_"


def get_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entities ``(type, first, last)`` (inclusive) of one BIO-tagged sentence.

    seqeval's default (conlleval) rules: an entity ends before ``B``, ``O`` or a tag of another type,
    and starts at ``B`` or at an ``I`` that does not continue the previous tag's type.
    """
    entities: list[tuple[str, int, int]] = []
    prev, prev_type, begin = "O", "_", 0
    for i, tag in enumerate([*tags, "O"]):  # the sentinel closes an entity at the end
        cur, cur_type = _split_tag(tag)
        if prev != "O" and (cur in ("B", "O") or cur_type != prev_type):
            entities.append((prev_type, begin, i - 1))
        if cur == "B" or (cur == "I" and (prev == "O" or cur_type != prev_type)):
            begin = i
        prev, prev_type = cur, cur_type
    return entities


def entity_scores(true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]) -> Scores:
    """Entity-level precision/recall/F1 per type plus ``"micro"`` over all, like seqeval.

    An entity counts as correct only if type, start and end all match. Types found only in the
    predictions are listed too (support 0), so spurious types are visible.
    """
    _check_same_length(pred_tags, true_tags, "sentences")
    gold: set[tuple[int, str, int, int]] = set()
    pred: set[tuple[int, str, int, int]] = set()
    for n, (t, p) in enumerate(zip(true_tags, pred_tags)):
        if len(t) != len(p):
            raise ValueError(f"sentence {n}: {len(t)} gold tags but {len(p)} predicted tags")
        gold.update((n, *e) for e in get_entities(t))
        pred.update((n, *e) for e in get_entities(p))
    correct = gold & pred
    out: Scores = {}
    for etype in sorted({e[1] for e in gold | pred}):
        counts = [sum(e[1] == etype for e in s) for s in (correct, pred, gold)]
        p, r, f = _prf(*counts)
        out[etype] = {"precision": p, "recall": r, "f1": f, "support": counts[2]}
    p, r, f = _prf(len(correct), len(pred), len(gold))
    out["micro"] = {"precision": p, "recall": r, "f1": f, "support": len(gold)}
    return out


def format_scores(scores: Scores, digits: int = 3) -> str:
    """A fixed-width precision/recall/F1/support table (per class or per entity type)."""
    width = max(len("label"), *(len(k) for k in scores))
    lines = [f"{'label':<{width}}  precision  recall      f1  support"]
    for name, s in scores.items():
        lines.append(f"{name:<{width}}  {s['precision']:>9.{digits}f}  {s['recall']:>6.{digits}f}"
                     f"  {s['f1']:>6.{digits}f}  {int(s['support']):>7d}")
    return "\n".join(lines)


# ---------------------------------------------------------------- SQuAD v1.1

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """The official SQuAD v1.1 normalization: lowercase, drop punctuation, drop a/an/the, squeeze spaces.

    The order matters and is the official one: punctuation goes before articles, so "the-end"
    becomes "theend" and keeps its "the".
    """
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def squad_exact_match(prediction: str, ground_truths: Sequence[str]) -> float:
    """1.0 if the normalized prediction equals any normalized reference, else 0.0."""
    return float(max(normalize_answer(prediction) == normalize_answer(gt) for gt in ground_truths))


def _token_f1(prediction: str, ground_truth: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(ground_truth).split()
    same = sum((Counter(pred) & Counter(gold)).values())
    return _prf(same, len(pred), len(gold))[2]


def squad_f1(prediction: str, ground_truths: Sequence[str]) -> float:
    """Bag-of-tokens F1 against the best-matching reference answer."""
    return max(_token_f1(prediction, gt) for gt in ground_truths)


def squad_scores(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """``{"exact_match", "f1"}`` in percent over all reference questions, as the official script.

    A question without a prediction scores 0 (the official script only prints a message);
    ``missing`` reports how many there were. A prediction for an unknown id is an error.
    """
    unknown = sorted(set(predictions) - set(references))
    if unknown:
        raise KeyError(f"{len(unknown)} prediction ids are not in the references, e.g. {unknown[0]!r}")
    if not references:
        raise ValueError("no reference questions to score")
    em = f1 = 0.0
    for qid, answers in references.items():
        if not answers:
            raise ValueError(f"question {qid!r} has no reference answers")
        if qid in predictions:
            em += squad_exact_match(predictions[qid], answers)
            f1 += squad_f1(predictions[qid], answers)
    n = len(references)
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n, "missing": n - sum(q in predictions for q in references)}
