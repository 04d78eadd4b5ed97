"""Dev and test scores of a fine-tuned model: the metric per task, and the errors to read.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from bertmini.finetuning import (
    decode_ner,
    postprocess_qa,
)
from bertmini.finetuning.inference import forward_features
from bertmini.finetuning.metrics import classification_report, entity_scores, get_entities, squad_f1, squad_scores
from bertmini.finetuning.tasks import Task

__all__ = ["Evaluation", "evaluate"]


@dataclass
class Evaluation:
    metrics: dict[str, float]  # scalars, e.g. {"accuracy", "macro_f1"}
    details: dict[str, Any]  # per_class + confusion_matrix, or per_entity
    errors: list[dict[str, Any]]  # wrong predictions, most confident first


def _names(entities: list[tuple[str, int, int]], words: Sequence[str]) -> list[str]:
    return [f"{kind}: {' '.join(words[a:b + 1])}" for kind, a, b in entities]


def evaluate(task: Task, model: nn.Module, examples: list, encoded: Any, label_names: Sequence[str],
             batch_size: int = 64, pad_token_id: int = 0, precision: str = "auto", n_best: int = 20,
             max_answer_length: int = 30, pad_to_multiple_of: int = 1) -> Evaluation:
    """Dev scores: accuracy/macro-F1 (classification), entity P/R/F1 on words (NER), EM/F1 (SQuAD)."""
    outputs = forward_features(model, encoded.features, batch_size, pad_token_id, precision, pad_to_multiple_of)
    if task.kind == "classification":
        confidence, preds = torch.stack(outputs).softmax(-1).max(-1)
        report = classification_report(preds, [e.label for e in examples], label_names)
        errors = [{"text": e.text_a if e.text_b is None else [e.text_a, e.text_b], "gold": label_names[e.label],
                   "predicted": label_names[p], "confidence": round(c, 4)}
                  for e, p, c in zip(examples, preds.tolist(), confidence.tolist()) if p != e.label]
        return Evaluation({"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]},
                          {"per_class": report["per_class"], "confusion_matrix": report["confusion_matrix"].tolist()},
                          sorted(errors, key=lambda e: -e["confidence"]))
    if task.kind == "ner":
        pred_tags = decode_ner([o.argmax(-1).tolist() for o in outputs], encoded, label_names)
        gold_tags = [[label_names[t] for t in e.tags] for e in examples]
        scores = entity_scores(gold_tags, pred_tags)
        errors = []
        for e, out, wids, gold, pred in zip(examples, outputs, encoded.word_ids, gold_tags, pred_tags):
            if gold != pred:  # confidence: mean top probability over the words' first sub-tokens
                firsts = [t for t, w in enumerate(wids) if w is not None and (t == 0 or wids[t - 1] != w)]
                top = out[firsts].softmax(-1).max(-1).values if firsts else torch.ones(1)
                errors.append({"text": " ".join(e.tokens), "gold": _names(get_entities(gold), e.tokens),
                               "predicted": _names(get_entities(pred), e.tokens),
                               "confidence": round(top.mean().item(), 4)})
        micro = scores["micro"]
        return Evaluation({k: micro[k] for k in ("precision", "recall", "f1")}, {"per_entity": scores},
                          sorted(errors, key=lambda e: -e["confidence"]))
    predictions = postprocess_qa(examples, encoded, [o[:, 0] for o in outputs], [o[:, 1] for o in outputs],
                                 n_best, max_answer_length)
    scores = squad_scores(predictions, {e.id: e.answer_texts for e in examples})
    errors = [{"id": e.id, "text": e.question, "gold": e.answer_texts, "predicted": predictions[e.id],
               "f1": round(squad_f1(predictions[e.id], e.answer_texts), 4)}
              for e in examples if squad_f1(predictions[e.id], e.answer_texts) < 1.0]
    # Lowest F1 first; ties (most misses score 0) in a fixed pseudo-random order, so that the list
    # spans the evaluation articles instead of following the file.
    return Evaluation({"exact_match": scores["exact_match"], "f1": scores["f1"]}, {},
                      sorted(errors, key=lambda e: (e["f1"], zlib.crc32(e["id"].encode()))))
