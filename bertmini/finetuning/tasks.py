"""The five fine-tuning tasks of ``python -m bertmini finetune``: their heads, metrics, data splits and inputs.

BERT fine-tuning (Devlin et al. 2019, §4) adds one output layer per task and trains everything:
the [CLS] vector for sentence classification (§4.1: SST-2, TREC, SMS spam), every token for tagging
(§5.3: WNUT-17 NER, first sub-token of each word), start/end scores per token for extractive QA
(§4.2: SQuAD). This module holds what differs between tasks; their losses are in :mod:`bertmini.finetuning.losses`,
their scoring in :mod:`bertmini.finetuning.evaluation`, and :mod:`bertmini.finetuning.cli` runs them.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from bertmini.errors import InputError, InputKeyError
from bertmini.finetuning import (
    TaskData,
    encode_classification,
    encode_ner,
    load_sms_spam,
    load_squad,
    load_sst2,
    load_trec,
    load_wnut17,
    prepare_qa_features,
    split_squad_by_article,
    stratified_split,
)
from bertmini.heads import BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification

__all__ = ["Task", "TASKS", "Splits", "load_splits", "subset", "encode"]

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


