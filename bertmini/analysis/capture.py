"""The attention maps of a text: run the model with ``output_attentions=True`` and keep what the views and
statistics need (Clark et al. 2019, "What Does BERT Look At?", §2: one (T, T) map per layer and head).

:class:`Attentions` is one sequence: its tokens, the maps stacked as (L, heads, T, T), where sentence B
starts, and each token's word index. :func:`as_maps` checks what callers pass in (bertviz's tuple of
(1, heads, T, T) tensors, or a stacked tensor) and says what is wrong: a batch of several sequences, or a
token list whose length is not T. :func:`iter_attentions` streams many sentences in padded batches.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from bertmini.errors import InputError
from bertmini.tokenizer import WordPieceTokenizer

__all__ = ["Attentions", "as_maps", "base_model", "attentions_for", "iter_attentions"]


@dataclass(frozen=True)
class Attentions:
    """One sequence's attention: ``maps`` (L, heads, T, T), row = query token, column = key token."""
    tokens: list[str]
    maps: torch.Tensor
    sentence_b_start: int | None = None
    word_ids: list[int | None] | None = None  # per token, its word (None for [CLS]/[SEP])

    def __post_init__(self) -> None:
        as_maps(self.maps, self.tokens)

    def as_tuple(self) -> tuple[torch.Tensor, ...]:
        """bertviz's format: one (1, heads, T, T) tensor per layer."""
        return tuple(m[None] for m in self.maps)


def as_maps(attentions: torch.Tensor | Sequence[torch.Tensor], tokens: Sequence[str] | None = None) -> torch.Tensor:
    """``attentions`` (a (L, heads, T, T) tensor, or L tensors of (1, heads, T, T) or (heads, T, T)) as one
    float (L, heads, T, T) tensor; raises InputError on a batch of several sequences, on maps that are not
    square, or when ``tokens`` does not have T entries."""
    layers = [attentions[i] for i in range(len(attentions))]
    if not layers:
        raise InputError("attentions: expected one map per layer, got none")
    for i, layer in enumerate(layers):
        if not isinstance(layer, torch.Tensor) or layer.dim() not in (3, 4):
            shape = tuple(layer.shape) if isinstance(layer, torch.Tensor) else type(layer).__name__
            raise InputError(f"attentions[{i}]: expected a (1, heads, T, T) tensor, got {shape}")
        if layer.dim() == 4 and layer.shape[0] != 1:
            raise InputError(f"attentions[{i}]: expected one sequence (batch size 1), got a batch of "
                             f"{layer.shape[0]}: pick one, e.g. [a[i:i + 1] for a in attentions]")
    maps = torch.stack([layer.reshape(layer.shape[-3:]) for layer in layers]).float()
    if maps.shape[-1] != maps.shape[-2]:
        raise InputError(f"attentions: expected square (T, T) maps of self-attention, got {tuple(maps.shape[-2:])}")
    if tokens is not None and len(tokens) != maps.shape[-1]:
        raise InputError(f"tokens: expected {maps.shape[-1]} tokens (the maps are {maps.shape[-1]} x "
                         f"{maps.shape[-1]}), got {len(tokens)}")
    return maps


def base_model(model: nn.Module) -> nn.Module:
    """The encoder of a model with a task head (``model.bert``), or the model itself."""
    return getattr(model, "bert", model)


def _limit(model: nn.Module, max_length: int | None) -> int:
    positions = base_model(model).config.max_position_embeddings
    return positions if max_length is None else min(max_length, positions)


@torch.no_grad()
def attentions_for(model: nn.Module, tokenizer: WordPieceTokenizer, text: str, text_pair: str | None = None,
                   max_length: int | None = None) -> Attentions:
    """The attentions of one text (or sentence pair). Longer than ``max_length`` (default: the model's
    positions) raises InputError with the count instead of cutting the text silently."""
    limit = _limit(model, max_length)
    enc = tokenizer(text, text_pair, truncation=False, return_tensors="pt")
    n = enc["input_ids"].shape[1]
    if n > limit:
        raise InputError(f"text: {n} tokens, expected at most {limit} (max_length): shorten the text")
    encoder = base_model(model)
    was_training = encoder.training
    encoder.eval()
    out = encoder(**{k: v.to(encoder.device) for k, v in enc.items()}, output_attentions=True)
    encoder.train(was_training)
    segments = enc.sequence_ids(0)
    b_start = segments.index(1) if text_pair is not None else None
    return Attentions(enc.tokens(0), torch.cat(out.attentions).cpu(), b_start, enc.word_ids(0))


@torch.no_grad()
def iter_attentions(model: nn.Module, tokenizer: WordPieceTokenizer, inputs: Iterable[str | Sequence[str]],
                    split_into_words: bool = False, batch_size: int = 16, max_length: int = 128
                    ) -> Iterator[tuple[int, Attentions]]:
    """``(index, Attentions)`` for every input that fits ``max_length`` tokens (the others are skipped:
    callers count the missing indices). Inputs are texts, or word lists when ``split_into_words``."""
    encoder = base_model(model)
    limit = _limit(model, max_length)
    was_training = encoder.training
    encoder.eval()
    items = list(enumerate(inputs))
    try:
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            enc = tokenizer([x for _, x in chunk], truncation=False, padding=True, return_tensors="pt",
                            is_split_into_words=split_into_words)
            lengths = enc["attention_mask"].sum(1).tolist()
            keep = [r for r, n in enumerate(lengths) if n <= limit]
            if not keep:
                continue
            width = max(lengths[r] for r in keep)
            batch = {k: v[keep, :width].to(encoder.device) for k, v in enc.items()}
            out = encoder(**batch, output_attentions=True)
            stacked = torch.stack(out.attentions, 1).float().cpu()  # (B, L, heads, T, T)
            for row, r in enumerate(keep):
                n = lengths[r]
                yield chunk[r][0], Attentions(enc.tokens(r)[:n], stacked[row, :, :, :n, :n], None, enc.word_ids(r)[:n])
    finally:
        encoder.train(was_training)
