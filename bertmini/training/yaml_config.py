"""YAML run configs with command-line overrides (`train.lr=3e-4 model.preset=small`).

Every section is validated by the dataclass or function that consumes it, so a typo names the file
and the key. Overrides use dotted paths and YAML values: `train.max_steps=100`, `data.sources=[a, b]`.
"""
from __future__ import annotations

import copy
import difflib
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from bertmini.errors import ConfigError, read_text

__all__ = ["load_config", "apply_overrides", "check_keys", "parse_yaml", "resolve_config", "shipped_configs"]

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"  # shipped inside the package (Colab has no checkout)


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `1e-3` (no dot) as a string; learning rates are written that way, so take it as a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def shipped_configs() -> list[str]:
    """Names of the configs that ship with the package (``pretrain_cpu``, ...)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config(name: str | os.PathLike) -> Path:
    """A config file: an existing path, else a shipped config by name.

    ``pretrain_cpu``, ``pretrain_cpu.yaml`` and ``configs/pretrain_cpu.yaml`` all name the
    shipped file when no such path exists, so the commands in the README work from any folder.
    """
    path = Path(name).expanduser()
    if path.is_file():
        return path
    shipped = CONFIG_DIR / f"{path.stem}.yaml"
    if path.suffix in ("", ".yaml", ".yml") and path.parent.name in ("", "configs") and shipped.is_file():
        return shipped
    if path.is_dir():
        raise IsADirectoryError(f"config {str(name)!r} is a directory; expected a YAML file")
    raise FileNotFoundError(f"config {str(name)!r}: no such file, and no shipped config of that name; "
                            f"shipped configs: {', '.join(shipped_configs())}")


def load_config(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    path = resolve_config(path)
    try:
        data = parse_yaml(read_text(path)) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: invalid YAML{where}: {getattr(err, 'problem', err)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(data).__name__}")
    return apply_overrides(data, overrides)


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of `data` with each `a.b.c=value` applied; the value is parsed as YAML."""
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. train.lr=3e-4)")
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        try:
            node[leaf] = parse_yaml(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: invalid YAML value: {getattr(err, 'problem', err)} (quote "
                              "strings with special characters)") from None
    return data


def check_keys(section: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    """Raise naming the first unknown key, the place, the closest valid key (a typo) and all valid keys."""
    valid = sorted(allowed) if isinstance(allowed, (set, frozenset)) else list(allowed)
    for key in section:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown key {key!r}{hint}; valid keys: {', '.join(valid)}")
