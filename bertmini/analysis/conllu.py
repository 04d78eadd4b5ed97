"""Gold dependency trees from CoNLL-U files (Universal Dependencies; de Marneffe et al. 2021, "Universal
Dependencies", §2), for the syntax-head analysis of Clark et al. 2019, §4.

Only the basic tree is read: the words (lines whose ID is an integer), each word's HEAD (1-based, 0 = the
root) and DEPREL. Comment lines (``#``), multiword-token ranges (``3-4``) and empty nodes (``8.1``) are
skipped, as the format says they are not nodes of the basic tree. Anything else that breaks the format
raises a DataFormatError naming file and line.

UD English-EWT (Silveira et al. 2014, CC BY-SA 4.0) comes from the local data dir; where there is none
(Colab), :func:`ewt_path` downloads the v2.16 release's file from the treebank's GitHub repository once
and checks its SHA-256.
"""
from __future__ import annotations

import hashlib
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bertmini.errors import DataFormatError, InputError, read_lines
from bertmini.utils import local_data_dir

__all__ = ["Sentence", "read_conllu", "ewt_path", "load_ewt", "EWT_FILES"]

EWT_FILES = {"dev": "en_ewt-ud-dev.conllu", "test": "en_ewt-ud-test.conllu"}
EWT_SHA256 = {"dev": "531a54ff90d6ab12201c5a50c3e78e6ddac4de69abc4bce5d275d3cd29efe2b6",
              "test": "e266e515a0a7547657ed3d90d9ba46487d6bd251f27ad4269d4e8a427c8555cd"}
# tag r2.16 of the official repository (the data set's README names the same files and hashes)
EWT_URL = "https://raw.githubusercontent.com/UniversalDependencies/UD_English-EWT/4c89b5833a70aa5ed3a00bad2f23f57992cc7df8/"


@dataclass(frozen=True)
class Sentence:
    """One tree: ``heads[i]`` is the 1-based index of word i's head (0 = root), ``deprels[i]`` its relation."""
    words: list[str]
    heads: list[int]
    deprels: list[str]
    sent_id: str = ""
    line: int = 0  # where the sentence starts in its file


def _check_tree(path: Path, start: int, ids: list[int], heads: list[int]) -> None:
    if ids != list(range(1, len(ids) + 1)):
        raise DataFormatError(f"{path}: line {start}: expected word IDs 1..{len(ids)} in order, got {ids}")
    bad = [h for h in heads if not 0 <= h <= len(ids)]
    if bad:
        raise DataFormatError(f"{path}: line {start}: expected HEAD values in [0, {len(ids)}], got {bad}")


def _parse(path: Path) -> Iterator[Sentence]:
    ids: list[int] = []
    words: list[str] = []
    heads: list[int] = []
    deprels: list[str] = []
    sent_id, start = "", 0
    for number, line in read_lines(path):
        if not line.strip():
            if ids:
                _check_tree(path, start, ids, heads)
                yield Sentence(words, heads, deprels, sent_id, start)
            ids, words, heads, deprels, sent_id, start = [], [], [], [], "", 0
            continue
        start = start or number
        if line.startswith("#"):
            if line.startswith("# sent_id = "):
                sent_id = line.removeprefix("# sent_id = ")
            continue
        fields = line.split("\t")
        if len(fields) != 10:
            raise DataFormatError(f"{path}: line {number}: expected 10 tab-separated fields, got {len(fields)}")
        if "-" in fields[0] or "." in fields[0]:  # a multiword range or an empty node: not a tree node
            continue
        if not (fields[0].isdigit() and fields[6].isdigit()):
            raise DataFormatError(f"{path}: line {number}: expected integer ID and HEAD, got "
                                  f"{fields[0]!r} and {fields[6]!r}")
        ids.append(int(fields[0]))
        words.append(fields[1])
        heads.append(int(fields[6]))
        deprels.append(fields[7])
    if ids:  # no empty line after the last sentence
        _check_tree(path, start, ids, heads)
        yield Sentence(words, heads, deprels, sent_id, start)


def read_conllu(path: str | os.PathLike) -> list[Sentence]:
    """Every sentence of a CoNLL-U file (basic trees)."""
    path = Path(path)
    sentences = list(_parse(path))
    if not sentences:
        raise DataFormatError(f"{path}: expected CoNLL-U sentences, got none")
    return sentences


def ewt_path(split: str, data: str | os.PathLike | None = None) -> Path:
    """The ``dev`` or ``test`` file: under ``<data dir>/ud-english-ewt/``, else downloaded once into
    ``~/.cache/bertmini/ud-english-ewt/`` (no local data dir, as on Colab) and checked against its SHA-256."""
    if split not in EWT_FILES:
        raise InputError(f"split: expected one of {sorted(EWT_FILES)}, got {split!r}")
    root = local_data_dir(data)
    if root is not None:
        return root / "ud-english-ewt" / EWT_FILES[split]
    cached = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "bertmini" / "ud-english-ewt"
    target = cached / EWT_FILES[split]
    if not target.is_file():
        with urllib.request.urlopen(EWT_URL + EWT_FILES[split], timeout=60) as response:
            raw = response.read()
        digest = hashlib.sha256(raw).hexdigest()
        if digest != EWT_SHA256[split]:
            raise DataFormatError(f"{EWT_URL + EWT_FILES[split]}: expected SHA-256 {EWT_SHA256[split]}, got {digest}")
        cached.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.{os.getpid()}.part")  # another process may be reading
        partial.write_bytes(raw)
        partial.replace(target)
    return target


def load_ewt(split: str, data: str | os.PathLike | None = None) -> list[Sentence]:
    """UD English-EWT ``dev`` or ``test`` (see :func:`ewt_path`)."""
    return read_conllu(ewt_path(split, data))
