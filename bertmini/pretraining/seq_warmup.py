"""Sequence-length warmup: short pieces first, so that a small BERT leaves the unigram plateau (chapter 8).

On 128-token blocks a small BERT spends thousands of steps predicting the most frequent tokens whatever
the context: to read its neighbours, attention must first tell 128 learned position embeddings apart,
and each of them is trained only by the tokens at its own position. Cut every block into pieces of 16
tokens and the same batch trains 16 positions 8 times as often; the loss leaves the plateau within a
few hundred steps. (BERT itself trains 90% of its steps on 128 tokens before 512, §A.2; Li et al. 2022
start GPT's sequences short, for stability.)

Then the run switches to whole blocks. Positions 16..127 have never been trained; copied from the
learned first 16 (:func:`tile_positions`), each piece of a block starts with what attention already knows
and only reading across the pieces' borders is left to learn. Left at their initialization instead, the
new positions sent BERT-tiny most of the way back to the plateau in the book's trials.

``data.warmup_seq_length`` and ``data.warmup_seq_steps`` switch it on: the collator
(:class:`bertmini.pretraining.masking.MLMCollator`) cuts the first batches, :class:`SeqWarmupStep` copies
the positions at the first whole batch. Both follow the collator's batch count, which is checkpointed:
a resumed run switches at the same step.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from bertmini.training.steps import model_loss

__all__ = ["cut_rows", "tile_positions", "SeqWarmupStep"]

MLM_KEYS = {"input_ids", "token_type_ids", "attention_mask", "labels"}


def cut_rows(batch: dict[str, Tensor], length: int) -> dict[str, Tensor]:
    """Cut every (B, T) tensor of a masked batch into (B·T/length, length) pieces; pieces of padding only
    are dropped. Masked as whole blocks, then cut, a batch keeps its tokens and its predictions; each
    piece's positions start at 0."""
    rows, width = batch["input_ids"].shape
    if width % length:
        raise ValueError(f"cut_rows: the batch's length {width} is not a multiple of {length}")
    if set(batch) - MLM_KEYS:
        raise ValueError(f"cut_rows: only MLM batches can be cut, got keys {sorted(batch)}")
    cut = {k: v.reshape(rows * width // length, length) for k, v in batch.items()}
    if "attention_mask" in cut:
        real = cut["attention_mask"].any(dim=1)  # a piece of padding only has nothing to attend to
        cut = {k: v[real] for k, v in cut.items()}
    return cut


@torch.no_grad()
def tile_positions(model: nn.Module, length: int, upto: int) -> None:
    """Position embeddings ``length..upto-1`` := copies of ``0..length-1`` (position p gets p mod length)."""
    table = _position_table(model)
    if upto > table.size(0) or length >= upto:
        raise ValueError(f"tile_positions: need length < upto <= {table.size(0)}, got {length} and {upto}")
    source = torch.arange(length, upto, device=table.device) % length
    table[length:upto] = table[source]


def _position_table(model: nn.Module) -> Tensor:
    bert = getattr(model, "bert", model)  # BertForPreTraining / BertForMaskedLM, or a BertModel
    return bert.embeddings.position_embeddings.weight


class SeqWarmupStep:
    """Step hook: the default step, and at the first whole batch after the warmup, :func:`tile_positions`.

    ``collator`` counts the batches it has made (``calls``) and cuts the first ``short_batches``;
    ``model`` is the unwrapped model (not DDP or compiled: its parameters are the same tensors)."""

    def __init__(self, collator: Any, model: nn.Module, length: int, upto: int) -> None:
        self.collator, self.model, self.length, self.upto = collator, model, length, upto

    def __call__(self, engine: nn.Module, batch: Mapping[str, Any],
                 backward: Callable[[Tensor], None]) -> dict[str, Tensor]:
        if self.collator.calls == self.collator.short_batches + 1:  # this batch is the first whole one
            tile_positions(self.model, self.length, self.upto)
        return model_loss(engine, batch, backward)
