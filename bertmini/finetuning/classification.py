"""Sequence(-pair) classification inputs (BERT paper §3.2, §4.1), and the dev split carved from train.

A single sentence becomes ``[CLS] A [SEP]``, a pair ``[CLS] A [SEP] B [SEP]`` with segment ids 0/1;
the classifier reads the final ``[CLS]`` vector. Inputs are cut to ``max_length`` and the number
of cut inputs is reported, so a too-small ``max_length`` is visible rather than silent.

Batching (length buckets, dynamic padding rounded to a few shapes) is :mod:`bertmini.training.batching`.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from bertmini.finetuning.examples import TextExample

__all__ = ["Encoded", "truncated_rows", "count_truncated", "encode_classification", "stratified_split"]


@dataclass
class Encoded:
    """Model-ready features (one dict of lists per example), how many inputs ``max_length`` cut, and which."""
    features: list[dict[str, Any]]
    n_truncated: int
    truncated: list[int] = field(default_factory=list)  # indices of the cut inputs

    @property
    def lengths(self) -> list[int]:
        return [len(f["input_ids"]) for f in self.features]

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:  # so it can serve as a DataLoader dataset
        return self.features[index]


def _texts(examples: Sequence[TextExample]) -> tuple[list[str], list[str] | None]:
    pairs = [e.text_b is not None for e in examples]
    if any(pairs) and not all(pairs):
        first = pairs.index(not pairs[0])
        raise ValueError(f"examples mix single sentences and pairs: example 0 has text_b={examples[0].text_b!r}, "
                         f"example {first} has text_b={examples[first].text_b!r}")
    return [e.text_a for e in examples], ([e.text_b for e in examples] if all(pairs) else None)


def truncated_rows(input_ids: Sequence[Sequence[int]], max_length: int,
                   retokenize: Callable[[list[int]], Mapping[str, Any]]) -> list[int]:
    """Indices of the inputs ``max_length`` cut. Only those exactly ``max_length`` long can have been cut,
    so only they are tokenized again, untruncated (``retokenize(indices)``), and measured."""
    full = [i for i, ids in enumerate(input_ids) if len(ids) == max_length]
    if not full:
        return []
    return [i for i, ids in zip(full, retokenize(full)["input_ids"]) if len(ids) > max_length]


def count_truncated(input_ids: Sequence[Sequence[int]], max_length: int,
                    retokenize: Callable[[list[int]], Mapping[str, Any]]) -> int:
    """How many inputs ``max_length`` cut (see :func:`truncated_rows`)."""
    return len(truncated_rows(input_ids, max_length, retokenize))


def encode_classification(examples: Sequence[TextExample], tokenizer: Callable, max_length: int = 128) -> Encoded:
    """Tokenize (pairs when ``text_b`` is set) with truncation; features carry ``labels``."""
    if not examples:
        raise ValueError("no examples to encode")
    text_a, text_b = _texts(examples)
    enc = tokenizer(text_a, text_pair=text_b, truncation=True, max_length=max_length)
    truncated = truncated_rows(enc["input_ids"], max_length, lambda rows: tokenizer(
        [text_a[i] for i in rows], text_pair=[text_b[i] for i in rows] if text_b else None, truncation=False))
    keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in enc]
    features = [{**{k: list(enc[k][i]) for k in keys}, "labels": e.label} for i, e in enumerate(examples)]
    return Encoded(features, len(truncated), truncated)


def stratified_split(examples: Sequence[TextExample], eval_fraction: float, seed: int
                     ) -> tuple[list[TextExample], list[TextExample]]:
    """Train/eval split keeping each label's share (for SMS spam, which ships without a split)."""
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    rng = random.Random(seed)
    train, evaluation = [], []
    for label in sorted({e.label for e in examples}):
        group = [e for e in examples if e.label == label]
        rng.shuffle(group)
        cut = round(len(group) * eval_fraction)
        evaluation += group[:cut]
        train += group[cut:]
    rng.shuffle(train)
    rng.shuffle(evaluation)
    return train, evaluation
