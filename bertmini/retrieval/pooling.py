"""Sentence embeddings from BERT: mean pooling over the real tokens, then L2 normalization (chapter 14).

Sentence-BERT (Reimers & Gurevych 2019, §3) turns BERT's token vectors into one fixed-size vector per
text; of its pooling strategies the mean over the tokens works best (§6, Table 6). Padding must not count,
so the mean runs over the attention mask's real tokens. all-MiniLM-L6-v2 then normalizes each vector to
length 1, so a dot product is the cosine similarity and search is one matrix product (a bi-encoder:
queries and passages are encoded apart, passages once, ahead of time).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from bertmini.errors import InputError
from bertmini.heads import mean_pool  # chapter 9's sentence classifiers pool the same way
from bertmini.model import BertModel
from bertmini.precision import autocast, resolve_precision
from bertmini.tokenizer import WordPieceTokenizer
from bertmini.training.batching import bucket_batches, pad_collate

__all__ = ["mean_pool", "l2_normalize", "Encoded", "SentenceEncoder", "check_texts"]


def l2_normalize(vectors: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Each row divided by its Euclidean length (at least ``eps``, so a zero row stays zero)."""
    return vectors / vectors.norm(dim=-1, keepdim=True).clamp(min=eps)


def plural(word: str) -> str:
    """``passage`` -> ``passages``, ``query`` -> ``queries``."""
    return word[:-1] + "ies" if word.endswith("y") else word + "s"


def check_texts(texts: Sequence[str], what: str = "text") -> list[str]:
    """The texts as a list; an empty list or an empty (whitespace-only) text is an InputError naming it."""
    if isinstance(texts, str):
        raise InputError(f"expected a list of {plural(what)}, got one string; wrap it in a list")
    texts = list(texts)
    if not texts:
        raise InputError(f"no {plural(what)} to encode: got an empty list")
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{what} {i} is empty (or not a string): got {text!r}; expected non-blank text")
    return texts


@dataclass
class Encoded:
    """Unit vectors (N, H), float32 on the CPU, in input order, and which inputs the window cut."""
    vectors: torch.Tensor
    max_length: int
    truncated: list[int] = field(default_factory=list)
    what: str = "text"

    def note(self) -> str:
        """E.g. "12 of 2,067 passages were longer than 256 tokens and were truncated", or that none was."""
        n, total = len(self.truncated), len(self.vectors)
        if not n:
            return f"none of {total:,} {plural(self.what)} was longer than {self.max_length} tokens"
        return (f"{n:,} of {total:,} {plural(self.what)} were longer than {self.max_length} tokens and were truncated "
                f"(only their first {self.max_length - 2} word pieces count)")


class SentenceEncoder:
    """A BertModel and its tokenizer as a bi-encoder: texts -> unit vectors, batched by length.

    Inputs longer than ``max_length`` tokens are cut to their first ``max_length`` (with [CLS] and [SEP]),
    as sentence-transformers does; :attr:`Encoded.truncated` says which. ``precision``: auto | fp32 | bf16
    (:mod:`bertmini.precision`); pooling and normalization run in fp32 either way.
    """

    def __init__(self, model: BertModel, tokenizer: WordPieceTokenizer, max_length: int = 256,
                 precision: str = "auto", source: str | os.PathLike | None = None) -> None:
        positions = model.config.max_position_embeddings
        if not 3 <= max_length <= positions:
            raise InputError(f"max_length must be in [3, {positions}] (the model's positions), got {max_length}")
        self.model, self.tokenizer, self.max_length = model.eval(), tokenizer, max_length
        self.precision = resolve_precision(precision, model.device)
        self.source = None if source is None else Path(source).resolve()

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, max_length: int | None = None, precision: str = "auto",
                        device: str | torch.device = "cpu") -> SentenceEncoder:
        """An HF-format folder; ``max_length`` defaults to its sentence_bert_config.json (256 for MiniLM),
        else to what both the tokenizer and the position embeddings allow."""
        folder = Path(path)
        model = BertModel.from_pretrained(folder).to(device)
        tokenizer = WordPieceTokenizer.from_file(folder)
        if max_length is None:
            st_config = folder / "sentence_bert_config.json"
            saved = json.loads(st_config.read_text(encoding="utf-8")) if st_config.is_file() else {}
            max_length = int(saved.get("max_seq_length", min(tokenizer.model_max_length,
                                                             model.config.max_position_embeddings)))
        return cls(model, tokenizer, max_length, precision, folder)

    def tokenize(self, texts: Sequence[str]) -> tuple[list[list[int]], list[int]]:
        """Token ids cut to the window (the last one kept [SEP]) and the indices of the inputs that were cut."""
        ids = self.tokenizer(list(texts), truncation=False)["input_ids"]
        cut = [i for i, row in enumerate(ids) if len(row) > self.max_length]
        for i in cut:
            ids[i] = ids[i][:self.max_length - 1] + ids[i][-1:]
        return ids, cut

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int = 64, what: str = "text") -> Encoded:
        """Unit vectors for ``texts``; batches of similar length, each padded to its own longest input."""
        ids, cut = self.tokenize(check_texts(texts, what))
        lengths = [len(row) for row in ids]
        device, out = self.model.device, torch.empty(len(ids), self.model.config.hidden_size)
        pad = self.tokenizer.convert_tokens_to_ids("[PAD]")
        for batch in bucket_batches(lengths, batch_size, shuffle=False):
            inputs = pad_collate([{"input_ids": ids[i]} for i in batch], pad)
            inputs = {k: v.to(device) for k, v in inputs.items()}
            with autocast(device, self.precision):
                hidden = self.model(inputs["input_ids"], inputs["attention_mask"]).last_hidden_state
            out[batch] = l2_normalize(mean_pool(hidden.float(), inputs["attention_mask"])).cpu()
        return Encoded(out, self.max_length, cut, what)
