"""The five fine-tuning tasks of ``python -m bertmini finetune``: data splits, loss, batches, dev scores.

BERT fine-tuning (Devlin et al. 2019, §4) adds one output layer per task and trains everything:
the [CLS] vector for sentence classification (§4.1: SST-2, TREC, SMS spam), every token for tagging
(§5.3: WNUT-17 NER, first sub-token of each word), start/end scores per token for extractive QA
(§4.2: SQuAD). This module holds what differs between tasks; :mod:`bertmini.finetune` runs them.
"""
from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from .heads import BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification
from .inference import forward_features
from .losses import FGM, LogitsLoss, RDrop, StepFn, cross_entropy, focal_loss, model_loss
from .errors import InputError, InputKeyError
from .metrics import classification_report, entity_scores, get_entities, squad_f1, squad_scores
from .tasks import (
    TaskData, bucket_batches, decode_ner, encode_classification, encode_ner, load_sms_spam, load_squad, load_sst2,
    load_trec, load_wnut17, pad_collate, postprocess_qa, prepare_qa_features, split_squad_by_article,
    stratified_split,
)

__all__ = ["Task", "TASKS", "Splits", "load_splits", "subset", "encode", "class_weights", "build_step",
           "BatchLoader", "Evaluation", "evaluate"]

SPLIT_SEED = 0  # dev sets carved from train (TREC, SMS) or from SQuAD dev stay the same across --seeds


@dataclass(frozen=True)
class Task:
    name: str
    kind: str  # classification | ner | qa
    metric: str  # the dev metric that picks the best checkpoint and drives early stopping
    model_cls: type[nn.Module]


TASKS = {
    "sst2": Task("sst2", "classification", "accuracy", BertForSequenceClassification),
    "trec": Task("trec", "classification", "accuracy", BertForSequenceClassification),
    "sms_spam": Task("sms_spam", "classification", "macro_f1", BertForSequenceClassification),  # 13% spam
    "wnut17": Task("wnut17", "ner", "f1", BertForTokenClassification),
    "squad": Task("squad", "qa", "f1", BertForQuestionAnswering),
}


@dataclass
class Splits:
    train: list
    eval: list
    test: list | None
    label_names: list[str]
    skipped: dict[str, int]
    notes: dict[str, str] = field(default_factory=dict)
    skip_notes: list[str] = field(default_factory=list)  # "skipped 3 malformed rows in train.tsv (first: ...)"


def _check_split(full: TaskData, train: list, dev: list) -> tuple[list, list]:
    """A split carved from one file must leave examples on both sides."""
    if not train or not dev:
        raise InputError(f"{full.source}: {len(full)} examples are too few to carve a dev set from: the split gives "
                         f"{len(train)} for training and {len(dev)} for evaluation (change eval_fraction, or add data)")
    return train, dev


def _skip_notes(*loaded: TaskData | None) -> list[str]:
    return [note for data in loaded if data is not None and (note := data.skip_summary())]


def load_splits(task: str, data_dir: str | None, skip_bad: bool, eval_fraction: float, test: bool) -> Splits:
    """Train / dev (/ labelled test) examples of ``task`` from the offline copies."""
    kw = {"data_dir": data_dir, "skip_bad": skip_bad}
    if task in ("sst2", "wnut17"):
        load = load_sst2 if task == "sst2" else load_wnut17
        train, dev = load("train", **kw), load("validation", **kw)
        tests = load("test", **kw) if test else None
        return Splits(train.examples, dev.examples, tests.examples if test else None, train.label_names,
                      {"train": train.skipped, "eval": dev.skipped}, skip_notes=_skip_notes(train, dev, tests))
    if task in ("trec", "sms_spam"):  # no dev set: a stratified slice of train
        full = (load_trec if task == "trec" else load_sms_spam)("train", **kw)
        train, dev = _check_split(full, *stratified_split(full.examples, eval_fraction, SPLIT_SEED))
        tests = load_trec("test", **kw).examples if test and task == "trec" else None
        note = f"stratified {eval_fraction:.0%} of {Path(full.source).name} (seed {SPLIT_SEED})"
        return Splits(train, dev, tests, full.label_names, {"train": full.skipped, "eval": 0}, {"eval_split": note},
                      _skip_notes(full))
    if task == "squad":  # only the dev set is offline: split it by article so no passage is in both
        full = load_squad("validation", **kw)
        if len({e.title for e in full}) < 2:
            raise InputError(f"{full.source}: the dev set is split by article into training and evaluation "
                             f"questions: expected at least 2 articles, got 1")
        train, dev = _check_split(full, *split_squad_by_article(full.examples, eval_fraction, SPLIT_SEED))
        note = (f"dev articles split by title (seed {SPLIT_SEED}): {len({e.title for e in train})} articles / "
                f"{len(train)} questions for training, {len({e.title for e in dev})} / {len(dev)} for evaluation; "
                "SQuAD v1.1 train is not available offline, so both come from dev-v1.1.json")
        return Splits(train, dev, None, [], {"train": full.skipped, "eval": 0}, {"squad_split": note},
                      _skip_notes(full))
    raise InputKeyError(f"unknown task {task!r}; choose one of {sorted(TASKS)}")


def subset(examples: list, limit: int | None, seed: int = SPLIT_SEED) -> list:
    """A random ``limit``-example subset, in the original order (all of them when ``limit`` is None)."""
    if limit is None or limit >= len(examples):
        return examples
    keep = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in keep]


def encode(task: Task, examples: list, tokenizer: Any, max_length: int, doc_stride: int) -> tuple[Any, int]:
    """Model features and how many inputs did not fit ``max_length`` (for QA: contexts split into windows)."""
    if task.kind == "classification":
        enc = encode_classification(examples, tokenizer, max_length)
        return enc, enc.n_truncated
    if task.kind == "ner":
        enc = encode_ner(examples, tokenizer, max_length)
        return enc, enc.n_truncated
    enc = prepare_qa_features(examples, tokenizer, max_length, doc_stride)
    windows = [enc.example_index.count(i) for i in set(enc.example_index)]
    return enc, sum(n > 1 for n in windows)


def class_weights(spec: str | Sequence[float], features: Sequence[dict], num_labels: int) -> torch.Tensor:
    """``"auto"``: inverse frequency ``N / (C · n_c)`` over the training labels (tokens for NER),
    so every class carries the same total weight; or explicit per-class weights."""
    if spec == "auto":
        labels = [l for f in features for l in (f["labels"] if isinstance(f["labels"], list) else [f["labels"]])
                  if l != -100]
        counts = torch.bincount(torch.tensor(labels), minlength=num_labels).float()
        return len(labels) / (num_labels * counts.clamp(min=1))
    if isinstance(spec, str) or len(spec) != num_labels:
        raise ValueError(f"class_weights: expected 'auto' or {num_labels} numbers (one per label), got {spec!r}")
    return torch.tensor([float(w) for w in spec])


def build_step(weights: torch.Tensor | None, label_smoothing: float, focal_gamma: float | None,
               rdrop_alpha: float | None, fgm_epsilon: float | None) -> StepFn:
    """The Trainer's step hook: the model's own loss, or a replacement loss (weighted / smoothed
    cross-entropy, focal), optionally wrapped in R-Drop and then FGM adversarial training."""
    if focal_gamma is not None and label_smoothing:
        raise ValueError("focal_gamma and label_smoothing are alternatives: set one of them")
    loss_fn = None
    if focal_gamma is not None:
        loss_fn = partial(focal_loss, gamma=focal_gamma, alpha=weights)
    elif weights is not None or label_smoothing:
        loss_fn = partial(cross_entropy, weight=weights, label_smoothing=label_smoothing)
    step: StepFn = model_loss
    if rdrop_alpha is not None:
        step = RDrop(rdrop_alpha, loss_fn or cross_entropy)
    elif loss_fn is not None:
        step = LogitsLoss(loss_fn)
    return FGM(step, fgm_epsilon) if fgm_epsilon is not None else step


class BatchLoader:
    """Training batches padded to their own longest member, rounded up to a multiple of
    ``pad_to_multiple_of`` (never past the longest input: see :func:`~bertmini.tasks.classification.padded_width`);
    length-bucketed (``bucket``) or plainly shuffled, in an order that depends only on ``seed + epoch``
    (the Trainer calls ``set_epoch``). The order does not depend on ``pad_to_multiple_of``."""

    def __init__(self, features: Sequence[dict], batch_size: int, pad_token_id: int, bucket: bool = True,
                 seed: int = 0, pad_to_multiple_of: int = 1):
        if not features:
            raise ValueError("no training examples")
        self.features, self.batch_size, self.pad_token_id = features, batch_size, pad_token_id
        self.bucket, self.seed, self.epoch, self.examples_seen = bucket, seed, 0, 0
        self.lengths = [len(f["input_ids"]) for f in features]
        self.pad_to_multiple_of, self.max_width = pad_to_multiple_of, max(self.lengths)

    @property
    def sampler(self) -> BatchLoader:  # the Trainer re-seeds each epoch through loader.sampler.set_epoch
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.features) / self.batch_size)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        seed = self.seed + self.epoch
        if self.bucket:
            batches = bucket_batches(self.lengths, self.batch_size, shuffle=True, seed=seed)
        else:
            order = list(range(len(self.features)))
            random.Random(seed).shuffle(order)
            batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        for batch in batches:
            self.examples_seen += len(batch)
            yield pad_collate([self.features[i] for i in batch], self.pad_token_id, self.pad_to_multiple_of,
                              self.max_width)


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
