"""Sequence(-pair) classification inputs (BERT paper §3.2, §4.1) and length-bucketed batching.

A single sentence becomes ``[CLS] A [SEP]``, a pair ``[CLS] A [SEP] B [SEP]`` with segment ids 0/1;
the classifier reads the final ``[CLS]`` vector. Inputs are cut to ``max_length`` and the number
of cut inputs is reported, so a too-small ``max_length`` is visible rather than silent.

Batches hold inputs of similar length (:func:`bucket_batches`) and are padded only to their own
longest member (:func:`pad_collate`): on SST-2 this removes most of the padding work. ``pad_to_multiple_of``
rounds that length up, so that a long run sees a few tensor shapes instead of one per batch: on CPU, glibc's
allocator fragments (the process's memory keeps growing) when every batch has a new shape.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

from bertmini.tasks.data import TextExample

__all__ = ["Encoded", "truncated_rows", "count_truncated", "encode_classification", "bucket_batches", "padded_width",
           "pad_collate", "stratified_split"]


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


def bucket_batches(lengths: Sequence[int], batch_size: int, shuffle: bool = True, seed: int = 0) -> list[list[int]]:
    """Index batches of similar length: sort by length, cut into batches, shuffle the batch order.

    Ties in length are broken randomly when ``shuffle``, so different seeds (one per epoch) give
    different batches. Usable as a ``DataLoader(batch_sampler=...)``. The last batch may be smaller.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rng = random.Random(seed)
    tie = [rng.random() for _ in lengths] if shuffle else list(range(len(lengths)))
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], tie[i]))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if shuffle:
        rng.shuffle(batches)
    return batches


def padded_width(longest: int, pad_to_multiple_of: int = 1, max_width: int | None = None) -> int:
    """The padded length of a batch whose longest input has ``longest`` tokens: rounded up to a multiple
    of ``pad_to_multiple_of``, but not past ``max_width`` (e.g. the longest input of the data set, so
    rounding never makes an input longer than the model's positions allow) unless ``longest`` is past it."""
    if pad_to_multiple_of < 1:
        raise ValueError(f"pad_to_multiple_of must be >= 1, got {pad_to_multiple_of}")
    width = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    return width if max_width is None else max(longest, min(width, max_width))


def pad_collate(features: Sequence[Mapping[str, Any]], pad_token_id: int = 0, pad_to_multiple_of: int = 1,
                max_width: int | None = None) -> dict[str, torch.Tensor]:
    """Stack features into tensors, padding list-valued fields to the longest in this batch, rounded up
    by :func:`padded_width` (``pad_to_multiple_of``, ``max_width``).

    ``input_ids`` pad with ``pad_token_id``, ``token_type_ids`` and ``attention_mask`` with 0,
    list ``labels`` (NER) with -100 so the loss ignores them. An ``attention_mask`` is made if missing.
    """
    if not features:
        raise ValueError("cannot collate an empty batch")
    pad_values = {"input_ids": pad_token_id, "labels": -100}
    batch: dict[str, torch.Tensor] = {}
    rows = [dict(f) for f in features]
    if "attention_mask" not in rows[0]:
        for row in rows:
            row["attention_mask"] = [1] * len(row["input_ids"])
    for key in rows[0]:
        values = [row[key] for row in rows]
        if isinstance(values[0], (list, tuple)):
            pad, width = pad_values.get(key, 0), padded_width(max(len(v) for v in values), pad_to_multiple_of,
                                                              max_width)
            values = [list(v) + [pad] * (width - len(v)) for v in values]
        batch[key] = torch.tensor(values)
    return batch


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
