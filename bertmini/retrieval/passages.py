"""The corpus of ``python -m bertmini search index``: a folder of text files, or a JSONL file.

A folder: every ``*.txt`` file below it (sorted), split into passages at blank lines (paragraphs), ids
``<relative path>#<n>``. A JSONL file: one object per line with a ``text`` string and an optional ``id``
(default: the line number) and ``title``. Errors name the file and line.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from bertmini.errors import DataFormatError, InputError, parse_json, read_lines, read_text

__all__ = ["Passage", "read_passages"]

_BLANK_LINES = re.compile(r"\n\s*\n")


@dataclass(frozen=True)
class Passage:
    id: str
    text: str
    title: str = ""


def _from_folder(folder: Path) -> list[Passage]:
    passages = []
    for path in sorted(folder.rglob("*.txt")):
        paragraphs = [p.strip() for p in _BLANK_LINES.split(read_text(path).replace("\r\n", "\n"))]
        name = path.relative_to(folder).as_posix()
        passages += [Passage(f"{name}#{n}", text, name) for n, text in enumerate((p for p in paragraphs if p), 1)]
    return passages


def _from_jsonl(path: Path) -> list[Passage]:
    passages, seen = [], set()
    for number, line in read_lines(path):
        if not line.strip():
            continue
        row = parse_json(line, path, number)
        text = row.get("text") if isinstance(row, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise DataFormatError(f"{path}: line {number}: expected an object with a non-empty \"text\" string, "
                                  f"got {line[:80]!r}")
        passage = Passage(str(row.get("id", number)), text.strip(), str(row.get("title", "")))
        if passage.id in seen:
            raise DataFormatError(f"{path}: line {number}: id {passage.id!r} appears twice; ids must be unique")
        seen.add(passage.id)
        passages.append(passage)
    return passages


def read_passages(path: str | os.PathLike) -> list[Passage]:
    """Passages of a folder of ``.txt`` files or of a ``.jsonl`` file; an empty corpus is an InputError."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"corpus {str(path)!r} not found: expected a folder of .txt files or a .jsonl file")
    if path.is_dir():
        passages = _from_folder(path)
    elif path.suffix == ".jsonl":
        passages = _from_jsonl(path)
    else:
        raise InputError(f"corpus {str(path)!r}: expected a folder of .txt files or a .jsonl file, got a "
                         f"{path.suffix or 'suffix-less'} file")
    if not passages:
        raise InputError(f"corpus {str(path)!r} is empty: no non-blank paragraph in any .txt file below it"
                         if path.is_dir() else f"corpus {str(path)!r} is empty: no JSONL line with text")
    return passages
