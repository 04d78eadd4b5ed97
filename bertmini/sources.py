"""Where a data file's text comes from: the local data dir, else the same data on the Hugging Face hub.

Chapters and configs name their data as paths under the data dir (``wikitext-2-raw/wiki.test.raw``,
``gutenberg-nltk/austen-emma.txt``, ``sst2/train.tsv``). On Colab there is no such folder, so each
known path has a public mirror: WikiText-2 and SST-2 on the hub, read through ``datasets``, and the
NLTK Gutenberg selection through NLTK's own downloader (the local folder *is* that corpus). Only paths
with a mirror fall back, and only when there is no local data dir at all: a mistyped path under an
existing data dir stays an error instead of quietly reading something else.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

from bertmini.utils import local_data_dir

__all__ = ["HUB_WIKITEXT", "hub_source", "gutenberg_folder", "data_text", "resolve_source"]

HUB_WIKITEXT = ("Salesforce/wikitext", "wikitext-2-raw-v1")
_WIKITEXT_SPLITS = {"wiki.train.raw": "train", "wiki.valid.raw": "validation", "wiki.test.raw": "test"}
_SST2_SPLITS = {"train.tsv": "train", "dev.tsv": "validation"}


def hub_source(reader: str, path: str) -> dict[str, Any] | None:
    """The ``hf`` corpus source with the same text as local ``reader``/``path``, or ``None`` if none exists."""
    parts = PurePosixPath(path).parts
    if reader == "wikitext" and len(parts) == 2 and parts[0] == "wikitext-2-raw" and parts[1] in _WIKITEXT_SPLITS:
        return {"reader": "hf", "name": HUB_WIKITEXT[0], "config": HUB_WIKITEXT[1],
                "split": _WIKITEXT_SPLITS[parts[1]], "layout": "wikitext"}
    if reader == "tsv" and len(parts) == 2 and parts[0] == "sst2" and parts[1] in _SST2_SPLITS:
        return {"reader": "hf", "name": "nyu-mll/glue", "config": "sst2", "split": _SST2_SPLITS[parts[1]],
                "text_column": "sentence", "layout": "line"}
    return None


def gutenberg_folder() -> Path:
    """NLTK's ``gutenberg`` corpus folder (the same 14 books as ``gutenberg-nltk/``), downloaded once."""
    try:
        import nltk
    except ImportError:
        raise FileNotFoundError("no local data dir for the Gutenberg books, and NLTK is not installed to "
                                "download them: pip install nltk, or set BERTMINI_DATA_DIR") from None
    try:
        return Path(nltk.data.find("corpora/gutenberg"))
    except LookupError:
        nltk.download("gutenberg", quiet=True)
        return Path(nltk.data.find("corpora/gutenberg"))


def _mirror_path(path: str) -> Path | None:
    """A ``gutenberg-nltk/...`` path inside NLTK's corpus folder; ``None`` for other paths."""
    parts = PurePosixPath(path).parts
    if not parts or parts[0] != "gutenberg-nltk":
        return None
    return gutenberg_folder().joinpath(*parts[1:])


def data_text(path: str, data_dir: str | os.PathLike | None = None) -> str:
    """The text of ``path`` under the data dir (``"wikitext-2-raw/wiki.test.raw"``), or of its mirror.

    A WikiText split from the hub is the concatenation of its rows, which are the raw file's lines.
    """
    root = local_data_dir(data_dir)
    if root is not None:
        return (root / path).read_text(encoding="utf-8")
    mirror = hub_source("wikitext", path)
    if mirror is not None:
        import datasets

        rows = datasets.load_dataset(mirror["name"], mirror["config"], split=mirror["split"])
        return "".join(rows["text"])
    local = _mirror_path(path)
    if local is None:
        raise FileNotFoundError(f"{path}: no local data dir (set BERTMINI_DATA_DIR or pass --data-dir), and "
                                "this file has no hub mirror (WikiText-2 and the Gutenberg books have one)")
    return local.read_text(encoding="utf-8")


def resolve_source(src: dict[str, Any], root: Path | None) -> tuple[dict[str, Any], list[Path] | None]:
    """``(source, paths)`` for a corpus source of a config: local paths under ``root``; with no local data
    dir, the hub mirror (``paths`` None) or NLTK's Gutenberg folder."""
    if src["reader"] == "hf":
        return src, None
    names = [src["path"]] if isinstance(src["path"], str) else list(src["path"])
    if root is not None:
        return src, [root / p for p in names]
    mirror = hub_source(src["reader"], names[0]) if len(names) == 1 else None
    if mirror is not None:
        return {**mirror, **{k: src[k] for k in ("max_documents",) if src.get(k)}}, None
    paths = [_mirror_path(p) for p in names] if src["reader"] == "gutenberg" else [None]
    if None in paths:
        raise FileNotFoundError(f"data source {src['reader']} {src['path']}: no local data dir (set "
                                "BERTMINI_DATA_DIR or pass --data-dir), and no hub mirror of these files")
    return src, paths
