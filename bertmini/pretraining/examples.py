"""Pre-training examples: documents → fixed-length ``[CLS] A [SEP] B [SEP]`` tensors.

Devlin et al. 2019 build each input from two spans of text, A and B (§3.1 "Task #2: Next
Sentence Prediction"): 50% of the time B is the text that follows A (IsNext), 50% a random span
from another document (NotNext); A and B together are at most 512 tokens, and 10% of the time a
shorter length is used so that the model also sees short inputs (Appendix A.2). This module
follows the procedure of Google's ``create_pretraining_data.py`` (re-implemented, not copied):
sentences of one document are packed into a chunk up to a target length, the chunk is cut at a
random sentence boundary into A and B, and the pair is truncated longest-first.

Labels follow Hugging Face: ``next_sentence_label`` 0 = IsNext, 1 = NotNext.

``mode="packed"`` is the MLM-only alternative (RoBERTa's FULL-SENTENCES, Liu et al. 2019 §4.2;
cramming, Geiping & Goldstein 2023): documents joined by ``[SEP]`` and cut into full blocks.
Masking is *not* done here: it is dynamic, per batch (see :mod:`bertmini.pretraining.masking`).
"""
from __future__ import annotations

import os
import pickle
import random
from array import array
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch.utils.data import Dataset

from bertmini.errors import DataFormatError
from bertmini.pretraining.corpus import Document, Paths

__all__ = [
    "NSPExample", "tokenize_documents", "truncate_seq_pair", "create_nsp_examples", "nsp_tensors",
    "packed_tensors", "PretrainingDataset", "build_pretraining_dataset", "source_label",
]

MODES = ("nsp", "packed")
CACHE_VERSION = 1
TokenizedDoc = list[list[int]]  # one list of token ids per sentence


class NSPExample(NamedTuple):
    """One sentence pair before special tokens; ``doc_a``/``doc_b`` say where A and B came from."""
    tokens_a: list[int]
    tokens_b: list[int]
    is_random_next: bool
    doc_a: int
    doc_b: int


def tokenize_documents(documents: Iterable[Document], tokenizer: Any, batch_size: int = 4096) -> list[TokenizedDoc]:
    """Sentences → WordPiece ids (no special tokens), batched through ``tokenizer.encode_plain``.

    Sentences that tokenize to nothing and documents left empty are dropped.
    """
    docs: list[TokenizedDoc] = []
    texts: list[str] = []
    owners: list[int] = []

    def flush() -> None:
        if texts:
            for owner, ids in zip(owners, tokenizer.encode_plain(texts)):
                if ids:
                    docs[owner].append(list(ids))
            texts.clear()
            owners.clear()

    for doc in documents:
        docs.append([])
        for sentence in doc:
            if sentence.strip():
                texts.append(sentence)
                owners.append(len(docs) - 1)
        if len(texts) >= batch_size:
            flush()
    flush()
    return [d for d in docs if d]


def truncate_seq_pair(tokens_a: list[int], tokens_b: list[int], max_num_tokens: int, rng: random.Random) -> None:
    """Trim the longer of A/B one token at a time, from the front or the back at random, in place.

    Random ends (rather than always the tail) add noise, as in Google's implementation.
    """
    while len(tokens_a) + len(tokens_b) > max_num_tokens:
        longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def _examples_from_document(docs: Sequence[TokenizedDoc], index: int, max_num_tokens: int,
                            short_seq_prob: float, rng: random.Random) -> list[NSPExample]:
    """Greedily fill chunks of whole sentences up to a target length and split each into A/B."""
    def target_length() -> int:
        # Appendix A.2: mostly full-length inputs, sometimes short ones. Google draws this once
        # per document; we draw it per chunk so that long documents also yield short inputs.
        return rng.randint(2, max_num_tokens) if rng.random() < short_seq_prob else max_num_tokens

    doc, examples = docs[index], []
    target, chunk, chunk_len, i = target_length(), [], 0, 0
    while i < len(doc):
        chunk.append(doc[i])
        chunk_len += len(doc[i])
        if i == len(doc) - 1 or chunk_len >= target:
            a_end = 1 if len(chunk) < 2 else rng.randint(1, len(chunk) - 1)
            tokens_a = [t for s in chunk[:a_end] for t in s]
            # A one-sentence chunk has no "next" part, so it always becomes NotNext (as in Google's code).
            if len(chunk) == 1 or rng.random() < 0.5:
                other = rng.randrange(len(docs) - 1)  # any document but this one:
                if other >= index:  # skip over our own index
                    other += 1
                start = rng.randrange(len(docs[other]))
                tokens_b: list[int] = []
                for sentence in docs[other][start:]:
                    tokens_b += sentence
                    if len(tokens_b) >= target - len(tokens_a):
                        break
                i -= len(chunk) - a_end  # the unused sentences go back for the next chunk
                example = NSPExample(tokens_a, tokens_b, True, index, other)
            else:
                example = NSPExample(tokens_a, [t for s in chunk[a_end:] for t in s], False, index, index)
            truncate_seq_pair(example.tokens_a, example.tokens_b, max_num_tokens, rng)
            examples.append(example)
            target, chunk, chunk_len = target_length(), [], 0
        i += 1
    return examples


def create_nsp_examples(docs: Sequence[TokenizedDoc], max_seq_length: int = 128, short_seq_prob: float = 0.1,
                        dupe_factor: int = 1, seed: int = 12345) -> list[NSPExample]:
    """Sentence pairs for MLM + NSP from tokenized documents, shuffled; deterministic given ``seed``.

    ``dupe_factor`` passes over the corpus give different A/B cuts and NotNext partners.
    """
    if max_seq_length < 5:
        raise ValueError(f"max_seq_length={max_seq_length}: need at least 5 ([CLS] a [SEP] b [SEP])")
    if len(docs) < 2:
        raise ValueError(f"NSP needs at least 2 non-empty documents for NotNext pairs, got {len(docs)}")
    rng = random.Random(seed)
    examples = [ex for _ in range(dupe_factor) for d in range(len(docs))
                for ex in _examples_from_document(docs, d, max_seq_length - 3, short_seq_prob, rng)]
    rng.shuffle(examples)
    return examples


def nsp_tensors(examples: Sequence[NSPExample], max_seq_length: int, cls_id: int, sep_id: int,
                pad_id: int) -> dict[str, torch.Tensor]:
    """``[CLS] A [SEP] B [SEP]`` + padding; token types 0 for [CLS] A [SEP], 1 for B [SEP] (§3)."""
    n = len(examples)
    input_ids = torch.full((n, max_seq_length), pad_id, dtype=torch.int32)
    token_type_ids = torch.zeros((n, max_seq_length), dtype=torch.int8)
    attention_mask = torch.zeros((n, max_seq_length), dtype=torch.int8)
    for row, ex in enumerate(examples):
        ids = [cls_id, *ex.tokens_a, sep_id, *ex.tokens_b, sep_id]
        if len(ids) > max_seq_length:
            raise ValueError(f"example {row} has {len(ids)} tokens, expected at most {max_seq_length}")
        input_ids[row, :len(ids)] = torch.tensor(ids, dtype=torch.int32)
        token_type_ids[row, len(ex.tokens_a) + 2:len(ids)] = 1
        attention_mask[row, :len(ids)] = 1
    labels = torch.tensor([int(ex.is_random_next) for ex in examples], dtype=torch.int8)
    return {"input_ids": input_ids, "token_type_ids": token_type_ids,
            "attention_mask": attention_mask, "next_sentence_label": labels}


def packed_tensors(docs: Sequence[TokenizedDoc], max_seq_length: int, cls_id: int, sep_id: int, pad_id: int,
                   dupe_factor: int = 1, seed: int = 12345) -> dict[str, torch.Tensor]:
    """MLM-only blocks: shuffled documents joined by [SEP], cut every ``max_seq_length - 2`` tokens,
    each block wrapped as ``[CLS] block [SEP]``; only the very last block is padded."""
    if max_seq_length < 3:
        raise ValueError(f"max_seq_length={max_seq_length}: need at least 3 ([CLS] x [SEP])")
    rng, width, parts = random.Random(seed), max_seq_length - 2, []
    for _ in range(dupe_factor):
        order = list(range(len(docs)))
        rng.shuffle(order)
        stream = array("q")
        for k, d in enumerate(order):
            if k:
                stream.append(sep_id)
            for sentence in docs[d]:
                stream.extend(sentence)
        if not stream:
            raise ValueError("no tokens to pack: all documents are empty")
        content = torch.frombuffer(stream, dtype=torch.int64).clone()
        n = -(-len(content) // width)
        lengths = torch.full((n,), width)
        lengths[-1] = len(content) - width * (n - 1)
        content = torch.cat([content, content.new_full((n * width - len(content),), pad_id)])
        ids = torch.full((n, max_seq_length), pad_id, dtype=torch.int64)
        ids[:, 0] = cls_id
        ids[:, 1:width + 1] = content.view(n, width)
        ids[torch.arange(n), lengths + 1] = sep_id
        parts.append((ids, torch.arange(max_seq_length) < (lengths + 2)[:, None]))
    input_ids = torch.cat([p[0] for p in parts]).to(torch.int32)
    attention_mask = torch.cat([p[1] for p in parts]).to(torch.int8)
    return {"input_ids": input_ids, "token_type_ids": torch.zeros_like(attention_mask),
            "attention_mask": attention_mask}


class PretrainingDataset(Dataset):
    """Fixed pre-training tensors; item ``i`` is a dict of LongTensors (the model's keyword names).

    Stored compactly (int32 ids, int8 masks). ``next_sentence_label`` exists only in ``"nsp"`` mode,
    so ``model(**batch)`` computes the NSP loss exactly when the data has NSP labels.
    """

    def __init__(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any] | None = None):
        sizes = {k: len(v) for k, v in tensors.items()}
        if "input_ids" not in tensors or len(set(sizes.values())) != 1:
            raise ValueError(f"expected input_ids and tensors of equal length, got sizes {sizes}")
        self.tensors = tensors
        self.meta = dict(meta or {})
        self.cache_path: Path | None = None
        self.from_cache = False

    @property
    def mode(self) -> str:
        return "nsp" if "next_sentence_label" in self.tensors else "packed"

    def __len__(self) -> int:
        return len(self.tensors["input_ids"])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[index].long() for k, v in self.tensors.items()}

    def save(self, path: str | os.PathLike) -> Path:
        """``torch.save`` to a temporary file, then rename: readers never see a half-written cache."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        torch.save({"version": CACHE_VERSION, "tensors": self.tensors, "meta": self.meta}, tmp)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> PretrainingDataset:
        try:
            blob = torch.load(path, weights_only=True, mmap=True)  # torchrun ranks share the pages
        except (RuntimeError, EOFError, pickle.UnpicklingError) as err:  # cut short, or not ours
            raise DataFormatError(f"{path}: unreadable dataset cache ({type(err).__name__}: {err}); delete it to "
                                  "rebuild") from None
        version = blob.get("version") if isinstance(blob, dict) else None
        if version != CACHE_VERSION:
            raise DataFormatError(f"{path}: cache version {version!r}, expected {CACHE_VERSION}; delete it to rebuild")
        return cls(blob["tensors"], blob["meta"])


def build_pretraining_dataset(documents: Iterable[Document], tokenizer: Any, *, mode: str = "nsp",
                              max_seq_length: int = 128, short_seq_prob: float = 0.1, dupe_factor: int = 1,
                              seed: int = 12345, source: str = "the documents") -> PretrainingDataset:
    """Tokenize documents and build the ``"nsp"`` (MLM+NSP, BERT) or ``"packed"`` (MLM only) dataset.

    ``source`` names where the documents came from (e.g. ``reader 'text' on data/x.txt``), for the error
    raised when they hold too little text.
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: expected one of {MODES}")
    docs = tokenize_documents(documents, tokenizer)
    _check_enough_documents(docs, mode, source)
    special = dict(cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id, pad_id=tokenizer.pad_token_id)
    if mode == "nsp":
        examples = create_nsp_examples(docs, max_seq_length, short_seq_prob, dupe_factor, seed)
        tensors = nsp_tensors(examples, max_seq_length, **special)
    else:
        tensors = packed_tensors(docs, max_seq_length, dupe_factor=dupe_factor, seed=seed, **special)
    meta = dict(mode=mode, max_seq_length=max_seq_length, short_seq_prob=short_seq_prob, dupe_factor=dupe_factor,
                seed=seed, num_documents=len(docs), num_tokens=sum(len(s) for d in docs for s in d))
    return PretrainingDataset(tensors, meta)


def source_label(reader: str | Callable[..., Any], where: Paths) -> str:
    """How errors name a corpus: ``reader 'text' on data/a.txt, data/b.txt``."""
    name = reader if isinstance(reader, str) else getattr(reader, "__qualname__", repr(reader))
    paths = [where] if isinstance(where, (str, os.PathLike)) else list(where)
    return f"reader {name!r} on {', '.join(str(p) for p in paths)}"


def _check_enough_documents(docs: Sequence[TokenizedDoc], mode: str, source: str) -> None:
    """No text at all, or a single document in NSP mode (NotNext partners come from other documents),
    is an error naming the source, raised before any example is built."""
    if not docs:
        raise DataFormatError(f"{source}: no text: the corpus yields no document with tokens (empty files, or "
                              "only blank lines)")
    if mode == "nsp" and len(docs) < 2:
        raise DataFormatError(f"{source}: NSP needs at least 2 documents for NotNext pairs, got 1 (one file read "
                              "with split 'file', or one article/chapter): add documents, or use data.mode=packed")


