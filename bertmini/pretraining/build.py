"""What a pre-training config builds: the tokenizer and the datasets, each cached.

:func:`setup_tokenizer` and :func:`build_dataset` turn the ``tokenizer`` and ``data``
sections of :mod:`bertmini.pretraining.settings` into objects. Paths under ``data``
are relative to the data dir; with no local data dir, sources come from their hub
mirror (:mod:`bertmini.sources`).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from bertmini.errors import ConfigError, DataFormatError, read_json
from bertmini.pretraining.corpus import READERS, Document, Paths, list_text_files, load_hf_corpus
from bertmini.pretraining.examples import (
    CACHE_VERSION,
    PretrainingDataset,
    build_pretraining_dataset,
    source_label,
)
from bertmini.pretraining.settings import TOKENIZER_SETTINGS, PretrainSettings
from bertmini.sources import resolve_source
from bertmini.tokenizer import WordPieceTokenizer

__all__ = ["iter_documents", "describe_source", "setup_tokenizer", "build_dataset", "build_or_load", "cached_dataset",
           "tokenizer_fingerprint"]


# ---- corpora ------------------------------------------------------------------------------------
def _under(root: Path | None, value: Any) -> Any:
    """Resolve ``data_files`` (str, list or dict values) found under the data dir; URLs and globs stay."""
    if isinstance(value, (list, tuple)):
        return [_under(root, v) for v in value]
    if isinstance(value, dict):
        return {k: _under(root, v) for k, v in value.items()}
    return str(root / value) if root is not None and (root / str(value)).exists() else value


def _hf_args(src: dict[str, Any], root: Path | None) -> dict[str, Any]:
    keys = ("name", "config", "split", "text_column", "streaming", "data_files", "layout", "cache_dir")
    args = {k: src[k] for k in keys if src.get(k) is not None}
    if "data_files" in args:
        args["data_files"] = _under(root, args["data_files"])
    return args


def _joined(docs: Iterator[Document], n: int) -> Iterator[Document]:
    """Every ``n`` consecutive documents as one: BookCorpus rows are single sentences."""
    while group := list(itertools.islice(docs, n)):
        yield [s for doc in group for s in doc]


def _cap(first: int | None, src: dict[str, Any], data: dict[str, Any]) -> int | None:
    """The smallest of the document limits that are set (a source's own beats data.max_documents)."""
    caps = [c for c in (first, src.get("max_documents") or data["max_documents"]) if c]
    return min(caps) if caps else None


def _reader_kwargs(src: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in src.items() if k not in ("reader", "path", "max_documents")}


def iter_documents(src: dict[str, Any], root: Path | None, max_documents: int | None) -> Iterator[Document]:
    """The documents of one source (at most ``max_documents``); with no local data dir (``root`` None),
    from the source's hub mirror (:mod:`bertmini.sources`)."""
    src, paths = resolve_source(src, root)
    if src["reader"] == "hf":
        docs = load_hf_corpus(**_hf_args(src, root))
        if src.get("join_documents"):
            docs = _joined(docs, src["join_documents"])
    else:
        docs = READERS[src["reader"]](paths, **_reader_kwargs(src))
    return itertools.islice(docs, max_documents)


def describe_source(src: dict[str, Any], root: Path | None) -> str:
    """How errors name a source: ``reader 'text' on /data/a.txt`` (paths under the data dir, as read)."""
    if src["reader"] == "hf":
        return source_label("hf", src["name"])
    paths = src["path"] if isinstance(src["path"], list) else [src["path"]]
    return source_label(src["reader"], [root / p if root is not None else p for p in paths])


def setup_tokenizer(settings: PretrainSettings, root: Path | None) -> tuple[WordPieceTokenizer, bool]:
    """``(tokenizer, reused)``: ``tokenizer.path``, else ``out_dir/tokenizer`` if trained before, else train one.

    A saved vocabulary is only reused for the settings it was trained with: reusing one trained on
    other data would silently change the run, and retraining would invalidate the checkpoints.
    """
    spec = settings.tokenizer
    if spec["path"]:
        return WordPieceTokenizer.from_file(spec["path"]), True
    folder = settings.out_dir / "tokenizer"
    wanted = {k: spec[k] for k in ("vocab_size", "lowercase", "min_frequency", "max_documents")}
    wanted.update(sources=settings.data["train"], data_max_documents=settings.data["max_documents"])
    if (folder / "tokenizer.json").is_file():
        saved_path = folder / TOKENIZER_SETTINGS
        saved = read_json(saved_path) if saved_path.is_file() else None
        if saved != wanted:
            raise ConfigError(f"{settings.source}: {folder} was trained with {saved}, the config asks for {wanted}: "
                              "delete that folder (and the run's checkpoints) or use another out_dir")
        return WordPieceTokenizer.from_file(folder), True
    sentences = [s for src in settings.data["train"]  # a list: the trainer makes one anyway
                 for doc in iter_documents(src, root, _cap(spec["max_documents"], src, settings.data)) for s in doc]
    if not any(s.strip() for s in sentences):
        corpora = "; ".join(describe_source(src, root) for src in settings.data["train"])
        raise DataFormatError(f"{settings.source}: data.train: no text to train the tokenizer on: no sentence in "
                              f"{corpora}")
    tok = WordPieceTokenizer.train(texts=sentences, vocab_size=spec["vocab_size"], lowercase=spec["lowercase"],
                                   min_frequency=spec["min_frequency"])
    tok.save(folder)
    (folder / TOKENIZER_SETTINGS).write_text(json.dumps(wanted, indent=2) + "\n")
    return tok, False


def _build_hf(src: dict[str, Any], root: Path | None, tok: Any, params: dict[str, Any], max_documents: int | None,
              cache_dir: Path) -> PretrainingDataset:
    """``build_or_load`` for hub datasets: the cache key is the dataset's name/config/split, not file stats."""
    key_fields = {"hf": _hf_args(src, root), "join": src.get("join_documents"), "max_documents": max_documents,
                  "tokenizer": tokenizer_fingerprint(tok), **params}
    for key in ("streaming", "cache_dir"):  # the same rows either way
        key_fields["hf"].pop(key, None)
    return cached_dataset(cache_dir, f"pretraining-hf-{params['mode']}-{params['max_seq_length']}", key_fields,
                          lambda: build_pretraining_dataset(iter_documents(src, root, max_documents), tok, **params,
                                                            source=describe_source(src, root)))


def build_dataset(settings: PretrainSettings, sources: list[dict[str, Any]], tok: Any, root: Path | None,
                  say: Callable[[str], None] = print, dupe_factor: int | None = None) -> PretrainingDataset:
    """One cached dataset per source (NotNext partners come from the same source), concatenated."""
    data = settings.data
    params = {"mode": data["mode"], "max_seq_length": data["max_seq_length"], "seed": data["seed"],
              "short_seq_prob": data["short_seq_prob"], "dupe_factor": dupe_factor or data["dupe_factor"]}
    cache_dir = Path(data["cache_dir"])
    parts = []
    for given in sources:
        cap = _cap(None, given, data)
        src, paths = resolve_source(given, root)
        if src["reader"] == "hf":
            part = _build_hf(src, root, tok, params, cap, cache_dir)
        else:
            part = build_or_load(paths, tok, reader=src["reader"], reader_kwargs=_reader_kwargs(src),
                                 max_documents=cap, cache_dir=cache_dir, **params)
        label = src.get("name") or src.get("path")
        say(f"data: {src['reader']} {label}: {len(part):,} examples{' (cached)' if part.from_cache else ''}")
        parts.append(part)
    if len(parts) == 1:
        return parts[0]
    tensors = {k: torch.cat([p.tensors[k] for p in parts]) for k in parts[0].tensors}
    return PretrainingDataset(tensors, {"sources": [p.meta for p in parts]})


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """SHA-256 of the tokenizer's full definition (vocabulary, normalizer...), or of its vocabulary."""
    backend = getattr(tokenizer, "backend", None) or getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def build_or_load(sources: Paths, tokenizer: Any, *, reader: str | Callable[..., Iterable[Document]] = "text",
                  reader_kwargs: dict[str, Any] | None = None, mode: str = "nsp", max_seq_length: int = 128,
                  short_seq_prob: float = 0.1, dupe_factor: int = 1, seed: int = 12345,
                  max_documents: int | None = None,
                  cache_dir: str | os.PathLike = ".cache/bertmini") -> PretrainingDataset:
    """Build the pre-training dataset from files once, then load it from ``cache_dir``.

    The cache key hashes the files (path, size, mtime), the tokenizer, the reader and every
    parameter that changes the examples, so editing any of them rebuilds. ``reader`` is a name in
    ``corpus.READERS`` ("text", "wikitext", "gutenberg") or a callable ``reader(files, **kwargs)``.
    ``max_documents`` keeps only the first documents (for quick runs).
    """
    files = list_text_files(sources)
    read = READERS[reader] if isinstance(reader, str) else reader
    key_fields = {
        "version": CACHE_VERSION,
        "files": [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files],
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "reader": reader if isinstance(reader, str) else f"{read.__module__}.{read.__qualname__}",
        "reader_kwargs": reader_kwargs or {},
        "mode": mode, "max_seq_length": max_seq_length, "short_seq_prob": short_seq_prob,
        "dupe_factor": dupe_factor, "seed": seed, "max_documents": max_documents,
    }

    def build() -> PretrainingDataset:
        documents: Iterable[Document] = read(files, **(reader_kwargs or {}))
        if max_documents is not None:
            documents = (doc for _, doc in zip(range(max_documents), documents))
        dataset = build_pretraining_dataset(documents, tokenizer, mode=mode, max_seq_length=max_seq_length,
                                            short_seq_prob=short_seq_prob, dupe_factor=dupe_factor, seed=seed,
                                            source=source_label(reader, sources))
        dataset.meta["files"] = [str(f) for f in files]
        return dataset

    return cached_dataset(cache_dir, f"pretraining-{mode}-{max_seq_length}", key_fields, build)


def cached_dataset(cache_dir: str | os.PathLike, name: str, key_fields: dict[str, Any],
                   build: Callable[[], PretrainingDataset]) -> PretrainingDataset:
    """The dataset cached as ``cache_dir/name-<hash of key_fields>.pt``, else ``build()`` saved there."""
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True, default=str).encode()).hexdigest()[:20]
    path = Path(cache_dir) / f"{name}-{key}.pt"
    if path.is_file():
        dataset = PretrainingDataset.load(path)
        dataset.from_cache = True
    else:
        dataset = build()
        dataset.save(path)
    dataset.cache_path = path
    return dataset
