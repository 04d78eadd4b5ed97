"""The pre-training config file, validated, and what it builds: the tokenizer and the datasets.

:func:`load_settings` reads the YAML (+ ``key=value`` overrides) and checks every section, so a typo
fails at once with the file and the key, not an hour into a run. :func:`setup_tokenizer` and
:func:`build_dataset` turn the ``tokenizer`` and ``data`` sections into objects, caching both.
Used by :mod:`bertmini.pretrain`; paths under ``data`` are relative to the data dir, all other
paths (``out_dir``, ``tokenizer.path``, ``model.init_from``, ``data.cache_dir``) to the working directory.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from .config import BertConfig
from .configfile import check_keys, load_config
from .errors import ConfigError, DataFormatError, is_int, read_json, require
from .errors import is_number as _is_number
from .data.corpus import READERS, Document, load_hf_corpus
from .data.pretraining import (MODES, PretrainingDataset, build_or_load, build_pretraining_dataset, source_label,
                               tokenizer_fingerprint)
from .data.sources import resolve_source
from .runfolder import refuse_overlap
from .tokenizer import WordPieceTokenizer
from .train_config import TrainConfig

__all__ = ["ConfigError", "PretrainSettings", "load_settings", "setup_tokenizer", "build_dataset"]

SECTIONS = ("model", "tokenizer", "data", "train", "out_dir")
# Keys of one data source, by reader; "reader" and "max_documents" are accepted by all.
SOURCE_KEYS = {
    "text": {"path", "split", "sentence_per_line"},
    "wikitext": {"path", "detokenize"},
    "gutenberg": {"path", "split"},
    "tsv": {"path", "column"},
    "hf": {"name", "config", "split", "text_column", "streaming", "data_files", "layout", "join_documents",
           "cache_dir"},  # cache_dir: where `datasets` keeps its download (default: its own cache)
}
TOKENIZER_DEFAULTS = {"path": None, "vocab_size": 8192, "lowercase": True, "min_frequency": 2,
                      "max_documents": None}
DATA_DEFAULTS = {"train": None, "eval": None, "mode": "nsp", "max_seq_length": 128, "short_seq_prob": 0.1,
                 "dupe_factor": 1, "whole_word": False, "mlm_probability": 0.15, "max_predictions": None,
                 "max_documents": None, "cache_dir": ".cache/bertmini", "seed": 12345}
TRAIN_EXTRAS = {"batch_size": 32, "eval_batches": 20}
TOKENIZER_SETTINGS = "bertmini_tokenizer_settings.json"  # what out_dir/tokenizer was trained from



@dataclasses.dataclass
class PretrainSettings:
    source: str  # the config file, for error messages
    raw: dict[str, Any]  # the YAML after overrides, as written (summary.json records it)
    model: dict[str, Any]
    tokenizer: dict[str, Any]
    data: dict[str, Any]
    train: TrainConfig
    batch_size: int
    eval_batches: int
    out_dir: Path


def _check_keys(section: dict[str, Any], allowed: Any, where: str) -> None:
    try:
        check_keys(section, allowed, where)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _section(raw: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    value = raw.get(name) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: section {name!r} must be a mapping, got {type(value).__name__}")
    return dict(value)


def _require(ok: bool, where: str, expected: str, value: Any) -> None:
    require(ok, where, expected, value, ConfigError)


def _is_int(value: Any, low: int = 1) -> bool:
    return is_int(value, low)


def _check_source(src: Any, where: str) -> dict[str, Any]:
    _require(isinstance(src, dict), where, "a mapping with a 'reader' key", src)
    reader = src.get("reader")
    _require(reader in SOURCE_KEYS, f"{where}.reader", f"one of {sorted(SOURCE_KEYS)}", reader)
    _check_keys(src, SOURCE_KEYS[reader] | {"reader", "max_documents"}, f"{where} (reader {reader!r})")
    needed = "name" if reader == "hf" else "path"
    _require(bool(src.get(needed)), f"{where}.{needed}", f"a value for reader {reader!r}", src.get(needed))
    for key in ("max_documents", "join_documents"):
        _require(src.get(key) is None or _is_int(src[key]), f"{where}.{key}", "null or an integer >= 1", src.get(key))
    return dict(src)


def _check_data(data: dict[str, Any], where: str) -> dict[str, Any]:
    _check_keys(data, DATA_DEFAULTS, where)
    data = {**DATA_DEFAULTS, **data}
    sources = data["train"] if isinstance(data["train"], list) else [data["train"]] if data["train"] else []
    _require(bool(sources), f"{where}.train", "one source or a list of sources", data["train"])
    data["train"] = [_check_source(s, f"{where}.train[{i}]") for i, s in enumerate(sources)]
    data["eval"] = _check_source(data["eval"], f"{where}.eval") if data["eval"] else None
    _require(data["mode"] in MODES, f"{where}.mode", f"one of {MODES}", data["mode"])
    _require(_is_int(data["max_seq_length"], 5), f"{where}.max_seq_length", "an integer >= 5", data["max_seq_length"])
    _require(_is_int(data["dupe_factor"]), f"{where}.dupe_factor", "an integer >= 1", data["dupe_factor"])
    _require(_is_number(data["short_seq_prob"], 0, 1), f"{where}.short_seq_prob", "a number in [0, 1]",
             data["short_seq_prob"])
    _require(_is_number(data["mlm_probability"], 0, 1) and 0 < data["mlm_probability"] < 1,
             f"{where}.mlm_probability", "a number in (0, 1)", data["mlm_probability"])
    _require(isinstance(data["whole_word"], bool), f"{where}.whole_word", "true or false", data["whole_word"])
    for key in ("max_predictions", "max_documents"):
        _require(data[key] is None or _is_int(data[key]), f"{where}.{key}", "null or an integer >= 1", data[key])
    _require(_is_int(data["seed"], 0), f"{where}.seed", "an integer >= 0", data["seed"])
    return data


def _check_model(model: dict[str, Any], where: str, out_dir: Path) -> dict[str, Any]:
    fields = {f.name for f in dataclasses.fields(BertConfig)} - {"vocab_size"}
    if "vocab_size" in model:
        raise ConfigError(f"{where}.vocab_size: set by the tokenizer (tokenizer.vocab_size, or the vocabulary "
                          "at tokenizer.path); remove it")
    _check_keys(model, fields | {"preset", "init_from"}, where)
    if model.get("init_from"):
        extra = sorted(set(model) - {"init_from"})
        if extra:
            raise ConfigError(f"{where}: init_from takes the architecture from its config.json; remove {extra}")
        try:  # training into the folder it starts from would overwrite (final/) or delete its input
            refuse_overlap(model["init_from"], out_dir, "model.init_from", "out_dir")
        except ValueError as err:
            raise ConfigError(f"{where}: {err}") from None
        return model
    model.setdefault("preset", "mini")
    try:  # the final vocab_size is only known once the tokenizer exists
        BertConfig.preset(model["preset"], vocab_size=30522, **{k: v for k, v in model.items() if k != "preset"})
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from None
    return model


def load_settings(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> PretrainSettings:
    """Read and validate a pre-training config; raises :class:`ConfigError` naming the file and key."""
    src = str(path)
    try:
        raw = load_config(path, overrides)
    except ValueError as err:
        raise ConfigError(str(err) if src in str(err) else f"{src}: {err}") from None
    _check_keys(raw, SECTIONS, src)
    tokenizer = _section(raw, "tokenizer", src)
    _check_keys(tokenizer, TOKENIZER_DEFAULTS, f"{src}: tokenizer")
    tokenizer = {**TOKENIZER_DEFAULTS, **tokenizer}
    if not tokenizer["path"]:
        where = f"{src}: tokenizer"
        _require(_is_int(tokenizer["vocab_size"], 6), f"{where}.vocab_size", "an integer > 5", tokenizer["vocab_size"])
        _require(_is_int(tokenizer["min_frequency"]), f"{where}.min_frequency", "an integer >= 1",
                 tokenizer["min_frequency"])
        _require(isinstance(tokenizer["lowercase"], bool), f"{where}.lowercase", "true or false",
                 tokenizer["lowercase"])
        _require(tokenizer["max_documents"] is None or _is_int(tokenizer["max_documents"]),
                 f"{where}.max_documents", "null or an integer >= 1", tokenizer["max_documents"])
    train = _section(raw, "train", src)
    extras = {**TRAIN_EXTRAS, **{k: train.pop(k) for k in TRAIN_EXTRAS if k in train}}
    for key, value in extras.items():
        _require(_is_int(value), f"{src}: train.{key}", "an integer >= 1", value)
    if "out_dir" in train:
        raise ConfigError(f"{src}: train.out_dir: set the top-level out_dir instead")
    out_dir = Path(raw.get("out_dir") or Path("runs") / Path(src).stem)
    train.setdefault("resume", True)  # rerunning the command continues the run
    try:
        train_cfg = TrainConfig.from_dict({**train, "out_dir": str(out_dir)}, source=f"{src}: train")
    except (TypeError, ValueError) as err:
        raise ConfigError(str(err) if str(err).startswith(src) else f"{src}: train: {err}") from None
    model = _check_model(_section(raw, "model", src), f"{src}: model", out_dir)
    data = _check_data(_section(raw, "data", src), f"{src}: data")
    return PretrainSettings(src, raw, model, tokenizer, data, train_cfg, extras["batch_size"],
                            extras["eval_batches"], out_dir)


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
    from the source's hub mirror (:mod:`bertmini.data.sources`)."""
    src, paths = resolve_source(src, root)
    if src["reader"] == "hf":
        docs = load_hf_corpus(**_hf_args(src, root))
        if src.get("join_documents"):
            docs = _joined(docs, src["join_documents"])
    else:
        docs = READERS[src["reader"]](paths, **_reader_kwargs(src))
    return itertools.islice(docs, max_documents)


def _label(src: dict[str, Any], root: Path | None) -> str:
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
        corpora = "; ".join(_label(src, root) for src in settings.data["train"])
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
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True, default=str).encode()).hexdigest()[:20]
    path = cache_dir / f"pretraining-hf-{params['mode']}-{params['max_seq_length']}-{key}.pt"
    if path.is_file():
        dataset = PretrainingDataset.load(path)
        dataset.from_cache = True
    else:
        dataset = build_pretraining_dataset(iter_documents(src, root, max_documents), tok, **params,
                                            source=_label(src, root))
        dataset.save(path)
    return dataset


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
