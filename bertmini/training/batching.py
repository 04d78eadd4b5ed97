"""Batches of tokenized features: length buckets and dynamic padding (BERT §4).

Inputs of similar length go together and each batch is padded only to its own longest
member; shared by fine-tuning's training loader and by batched inference.
"""
from __future__ import annotations

import math
import random
from typing import Any, Iterator, Mapping, Sequence

import torch

from bertmini.heads import IGNORE_INDEX

__all__ = ["bucket_batches", "padded_width", "pad_collate"]


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
    pad_values = {"input_ids": pad_token_id, "labels": IGNORE_INDEX}
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


class BatchLoader:
    """Training batches padded to their own longest member, rounded up to a multiple of
    ``pad_to_multiple_of`` (never past the longest input: see :func:`~bertmini.training.batching.padded_width`);
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

