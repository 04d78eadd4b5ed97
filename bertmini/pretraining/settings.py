"""The pre-training config file, validated.

:func:`load_settings` reads the YAML (+ ``key=value`` overrides) and checks every section, so a typo
fails at once with the file and the key, not an hour into a run. :mod:`bertmini.pretraining.build`
turns the ``tokenizer`` and ``data`` sections into objects.
Used by :mod:`bertmini.pretraining.cli`; paths under ``data`` are relative to the data dir, all other
paths (``out_dir``, ``tokenizer.path``, ``model.init_from``, ``data.cache_dir``) to the working directory.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from bertmini.config import BertConfig
from bertmini.errors import ConfigError, is_int, require
from bertmini.errors import is_number as _is_number
from bertmini.pretraining.examples import (
    MODES,
)
from bertmini.runfolder import refuse_overlap
from bertmini.training.train_config import TrainConfig
from bertmini.training.yaml_config import check_keys, load_config

__all__ = ["ConfigError", "PretrainSettings", "load_settings"]

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
                 "max_documents": None, "cache_dir": ".cache/bertmini", "seed": 12345,
                 "warmup_seq_length": None, "warmup_seq_steps": 0}
TRAIN_EXTRAS = {"batch_size": 32, "eval_batches": 20}
# train.token_budget: input tokens (batch_size x max_seq_length x grad_accum x processes per step) to train
# on; max_steps is then a cap, as with time_budget_min (see bertmini.training.budget.steps_for_tokens)
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
    token_budget: int | None = None


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
    check_keys(src, SOURCE_KEYS[reader] | {"reader", "max_documents"}, f"{where} (reader {reader!r})")
    needed = "name" if reader == "hf" else "path"
    _require(bool(src.get(needed)), f"{where}.{needed}", f"a value for reader {reader!r}", src.get(needed))
    for key in ("max_documents", "join_documents"):
        _require(src.get(key) is None or _is_int(src[key]), f"{where}.{key}", "null or an integer >= 1", src.get(key))
    return dict(src)


def _check_data(data: dict[str, Any], where: str) -> dict[str, Any]:
    check_keys(data, DATA_DEFAULTS, where)
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
    _check_seq_warmup(data, where)
    return data


def _check_seq_warmup(data: dict[str, Any], where: str) -> None:
    """Sequence-length warmup: the first ``warmup_seq_steps`` steps cut each packed block into pieces of
    ``warmup_seq_length`` tokens (:func:`bertmini.pretraining.masking.cut_rows`)."""
    length, steps, full = data["warmup_seq_length"], data["warmup_seq_steps"], data["max_seq_length"]
    _require(_is_int(steps, 0), f"{where}.warmup_seq_steps", "an integer >= 0", steps)
    if length is None:
        _require(steps == 0, f"{where}.warmup_seq_steps", "0 without data.warmup_seq_length", steps)
        return
    _require(_is_int(length, 2) and length < full and full % length == 0, f"{where}.warmup_seq_length",
             f"null or an integer >= 2 that divides data.max_seq_length ({full}) and is smaller", length)
    _require(data["mode"] == "packed", f"{where}.warmup_seq_length",
             "data.mode: packed (NSP pairs cannot be cut into pieces)", f"mode {data['mode']!r}")
    _require(steps >= 1, f"{where}.warmup_seq_steps", "an integer >= 1 with data.warmup_seq_length", steps)


def _check_model(model: dict[str, Any], where: str, out_dir: Path) -> dict[str, Any]:
    fields = {f.name for f in dataclasses.fields(BertConfig)} - {"vocab_size"}
    if "vocab_size" in model:
        raise ConfigError(f"{where}.vocab_size: set by the tokenizer (tokenizer.vocab_size, or the vocabulary "
                          "at tokenizer.path); remove it")
    check_keys(model, fields | {"preset", "init_from"}, where)
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
    check_keys(raw, SECTIONS, src)
    tokenizer = _section(raw, "tokenizer", src)
    check_keys(tokenizer, TOKENIZER_DEFAULTS, f"{src}: tokenizer")
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
    token_budget = train.pop("token_budget", None)
    _require(token_budget is None or _is_int(token_budget), f"{src}: train.token_budget", "null or an integer >= 1",
             token_budget)
    if token_budget is not None and train.get("epochs") is not None:
        raise ConfigError(f"{src}: train.token_budget sets the steps: give max_steps (a cap), not epochs")
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
                            extras["eval_batches"], out_dir, token_budget)


