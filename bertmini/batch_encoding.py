"""Tokenizer output that remembers where each token came from: words (NER) and segments (SQuAD).

Fine-tuning needs more than ids. Token classification labels *words* but predicts *sub-tokens*
(BERT paper §5.3), so it needs each token's word index; extractive QA (§4.2) must tell question
tokens from context tokens and cut long contexts into overlapping windows. :class:`BatchEncoding`
is a plain ``dict`` of model inputs (so ``model(**enc)`` works) that also keeps the ``tokenizers``
``Encoding`` of every row, for ``word_ids(i)`` and ``sequence_ids(i)``, like Hugging Face's.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from tokenizers import Encoding

__all__ = ["BatchEncoding", "TRUNCATION", "as_inputs", "build_batch"]

# truncation= values, as in transformers; True means longest_first (trim the longer segment first).
TRUNCATION = {True: "longest_first", "longest_first": "longest_first", "only_first": "only_first",
              "only_second": "only_second", False: None, "do_not_truncate": None}


class BatchEncoding(dict):
    """``input_ids``, ``token_type_ids``, ``attention_mask`` (+ ``offset_mapping``,
    ``overflow_to_sample_mapping`` when asked), with token→word and token→segment maps per row."""

    def __init__(self, data: dict, encodings: list[Encoding]):
        super().__init__(data)
        self.encodings = encodings

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        """Per token, the index of the word it belongs to in its segment (None for [CLS]/[SEP]/padding)."""
        return self.encodings[batch_index].word_ids

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        """Per token, 0 for segment A, 1 for segment B, None for special tokens and padding."""
        return self.encodings[batch_index].sequence_ids

    def tokens(self, batch_index: int = 0) -> list[str]:
        return self.encodings[batch_index].tokens


def _check_strings(items: Sequence, name: str) -> None:
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise TypeError(f"{name}[{i}] is {type(item).__name__}, expected str")


def as_inputs(text: str | Sequence, name: str, split_into_words: bool) -> tuple[list, bool]:
    """``(batch, single)``: a batch of texts (or of word lists when ``split_into_words``) and whether
    the caller passed one input (a str, or one list of words) rather than a batch."""
    if split_into_words:
        if isinstance(text, str):
            raise TypeError(f"{name} is a str but is_split_into_words=True expects a list of words "
                            "(or a batch of word lists)")
        single = not (len(text) > 0 and isinstance(text[0], (list, tuple)))
        batch = [list(text)] if single else [list(words) for words in text]
        for i, words in enumerate(batch):
            _check_strings(words, f"{name}[{i}]" if not single else name)
        return batch, single
    single = isinstance(text, str)
    batch = [text] if single else list(text)
    if not batch:
        raise ValueError(f"empty input: {name} is an empty list, expected at least one string")
    _check_strings(batch, name)
    return batch, single


def build_batch(encodings: list[Encoding], single: bool, return_offsets_mapping: bool = False,
                return_overflowing_tokens: bool = False, return_tensors: str | None = None) -> BatchEncoding:
    """Rows in Hugging Face's order: each input's first window, then its overflowing windows
    (``overflow_to_sample_mapping`` says which input each row came from)."""
    rows, sample = [], []
    for i, encoding in enumerate(encodings):
        windows = [encoding, *encoding.overflowing] if return_overflowing_tokens else [encoding]
        rows += windows
        sample += [i] * len(windows)
    out = {"input_ids": [e.ids for e in rows], "token_type_ids": [e.type_ids for e in rows],
           "attention_mask": [e.attention_mask for e in rows]}
    if return_offsets_mapping:
        out["offset_mapping"] = [e.offsets for e in rows]
    if return_overflowing_tokens:
        out["overflow_to_sample_mapping"] = sample
    if return_tensors == "pt":
        lengths = sorted({len(ids) for ids in out["input_ids"]})
        if len(lengths) > 1:
            raise ValueError(f"sequences have lengths {lengths}: pass padding=True to stack them as a tensor")
        return BatchEncoding({k: torch.tensor(v, dtype=torch.long) for k, v in out.items()}, rows)
    if return_tensors is not None:
        raise ValueError(f"return_tensors={return_tensors!r} is not supported, expected None or 'pt'")
    if single and not return_overflowing_tokens:  # one input, one row: drop the batch level (as HF)
        out = {k: v[0] for k, v in out.items()}
    return BatchEncoding(out, rows)
