"""YAML run configs with command-line overrides (`train.lr=3e-4 model.preset=small`).

Every section is validated by the dataclass or function that consumes it, so a typo names the file
and the key. Overrides use dotted paths and YAML values: `train.max_steps=100`, `data.sources=[a, b]`.
"""
from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import yaml

__all__ = ["load_config", "apply_overrides", "check_keys", "parse_yaml"]


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `1e-3` (no dot) as a string; learning rates are written that way, so take it as a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def load_config(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} not found")
    try:
        data = parse_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{path}: invalid YAML{where}: {getattr(err, 'problem', err)}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of sections at the top level, got {type(data).__name__}")
    return apply_overrides(data, overrides)


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of `data` with each `a.b.c=value` applied; the value is parsed as YAML."""
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not of the form key=value (e.g. train.lr=3e-4)")
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {part!r} is not a section")
        node[leaf] = parse_yaml(raw)
    return data


def check_keys(section: dict[str, Any], allowed: set[str] | list[str], where: str) -> None:
    """Raise naming the first unknown key, the place, and the valid keys."""
    unknown = sorted(set(section) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(allowed)}")
