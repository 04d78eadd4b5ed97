"""Loaders for the fine-tuning data sets of Part III (BERT paper §4: GLUE, SQuAD; §5.3: NER).

Each ``load_<task>(split)`` reads the offline copy under :func:`bertmini.utils.data_dir` and returns a
:class:`~bertmini.finetuning.examples.TaskData`: a list of examples, the label names (label ids index into
them) and how many bad rows were skipped. With ``hub=True`` (or a ``datasets`` path such as
``"csv"``/``"json"`` plus its keyword arguments), or when there is no local data dir at all, the same task
is read through Hugging Face ``datasets`` into the same examples (:mod:`bertmini.finetuning.hub`).

Bad input fails loudly, naming file, line, what was expected and what was found; ``skip_bad=True``
skips malformed rows and counts them instead. An unknown label is always an error: skipping it would
silently drop a class.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterator, Sequence

from bertmini.errors import DataFormatError, InputKeyError, is_int, read_json, read_lines, read_tsv
from bertmini.finetuning.examples import (
    SMS_LABELS,
    SST2_LABELS,
    TREC_LABELS,
    WNUT_LABELS,
    QAExample,
    TaskData,
    TextExample,
    TokenExample,
)
from bertmini.finetuning.hub import load_from_hub
from bertmini.utils import data_dir as _data_root
from bertmini.utils import local_data_dir

__all__ = [
    "load_tsv", "load_sst2", "load_trec", "load_sms_spam", "load_wnut17", "load_squad",
]


class _Rows:
    """Reads a text file line by line and collects rejected rows (raise, or skip and count)."""

    def __init__(self, path: Path, skip_bad: bool):
        self.path, self.skip_bad, self.errors = path, skip_bad, []

    def lines(self) -> Iterator[tuple[int, str]]:
        # Split at "\n" only: SMS texts may hold \x0b, \x1c or \u2028, which splitlines breaks on.
        return read_lines(self.path)

    def bad(self, where: int | str, expected: str, got: str) -> None:
        """``where``: a line number, or a JSON path for SQuAD."""
        where = f"line {where}" if isinstance(where, int) else where
        message = f"{self.path}: {where}: expected {expected}, got {got[:80]!r}"
        if not self.skip_bad:
            raise DataFormatError(message)
        self.errors.append(message)

    def tsv(self, columns: Sequence[str]) -> Iterator[tuple[int, list[str]]]:
        """Rows of a GLUE-style TSV (:func:`bertmini.errors.read_tsv`); a malformed row raises, or is skipped
        and counted."""
        return read_tsv(self.path, columns, self.bad)

    def label(self, line: int, value: str, allowed: Sequence[str]) -> int:
        if value not in allowed:
            raise DataFormatError(f"{self.path}: line {line}: unknown label {value!r}; allowed: {list(allowed)}")
        return list(allowed).index(value)

    def result(self, examples: list, label_names: list[str]) -> TaskData:
        """The loaded data; no example at all is an error naming the file (not a failure later, far away)."""
        if not examples:
            why = (f"every row was malformed ({len(self.errors)} skipped; first: {self.errors[0]})" if self.errors
                   else "it holds no rows (an empty file, or a header only)")
            raise DataFormatError(f"{self.path}: no examples: {why}")
        return TaskData(examples, label_names, len(self.errors), str(self.path), self.errors)


def _file(folder: str, files: dict[str, str], split: str, root: str | os.PathLike | None) -> Path:
    if split not in files:
        raise InputKeyError(f"unknown split {split!r} for {folder}; available: {sorted(files)}")
    path = _data_root(root) / folder / files[split]
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (expected the offline copy of {folder}, see its README.md)")
    return path


def _no_local_copy(root: str | os.PathLike | None) -> bool:
    """No local data dir at all (Colab): the loaders read the hub's copy instead."""
    return root is None and local_data_dir() is None


# ---------------------------------------------------------------- local files

def load_tsv(path: str | os.PathLike, text_columns: Sequence[str], label_column: str, labels: Sequence[str],
             label_names: Sequence[str] | None = None, skip_bad: bool = False) -> TaskData:
    """A GLUE-style TSV with a header row; one or two text columns (two: a sentence pair, §4.1).

    ``labels`` are the raw values in the file (their index is the id); ``label_names`` are the
    human-readable names (default: the raw values). Texts are stripped (SST-2 has a space before the tab).
    """
    if len(text_columns) not in (1, 2):
        raise ValueError(f"text_columns must name 1 or 2 columns, got {list(text_columns)}")
    rows = _Rows(Path(path), skip_bad)
    examples = []
    for number, (*raw_texts, raw_label) in rows.tsv([*text_columns, label_column]):
        texts = [t.strip() for t in raw_texts]
        label = rows.label(number, raw_label.strip(), labels)
        text_b = texts[1] if len(texts) == 2 else None
        examples.append(TextExample(texts[0], label, text_b, f"{rows.path.name}:{number}"))
    return rows.result(examples, list(label_names or labels))


def load_sst2(split: str = "train", *, data_dir: str | os.PathLike | None = None, skip_bad: bool = False,
              hub: bool | str = False, **hf_kwargs: Any) -> TaskData:
    """SST-2 (GLUE): ``train``, ``validation`` (dev.tsv) or ``test`` (test_labeled.tsv); 0 negative, 1 positive."""
    if hub or _no_local_copy(data_dir):
        return load_from_hub("sst2", hub, split, hf_kwargs)
    files = {"train": "train.tsv", "validation": "dev.tsv", "test": "test_labeled.tsv"}
    return load_tsv(_file("sst2", files, split, data_dir), ["sentence"], "label", ["0", "1"], SST2_LABELS, skip_bad)


_TREC_LINE = re.compile(r"([A-Z]+):(\S+) (\S.*)")


def load_trec(split: str = "train", *, data_dir: str | os.PathLike | None = None, skip_bad: bool = False,
              hub: bool | str = False, **hf_kwargs: Any) -> TaskData:
    """TREC question classification, 6 coarse classes, from lines ``COARSE:fine question``."""
    if hub or _no_local_copy(data_dir):
        return load_from_hub("trec", hub, split, hf_kwargs)
    rows = _Rows(_file("trec-qc", {"train": "train_5500.label", "test": "TREC_10.label"}, split, data_dir), skip_bad)
    examples = []
    for number, line in rows.lines():
        match = _TREC_LINE.fullmatch(line.strip())
        if match is None:
            rows.bad(number, "'COARSE:fine question ...'", line)
            continue
        label = rows.label(number, match.group(1), TREC_LABELS)
        examples.append(TextExample(match.group(3), label, None, f"{rows.path.name}:{number}"))
    return rows.result(examples, TREC_LABELS)


def load_sms_spam(split: str = "train", *, data_dir: str | os.PathLike | None = None, skip_bad: bool = False,
                  hub: bool | str = False, **hf_kwargs: Any) -> TaskData:
    """SMS Spam Collection (``ham``/``spam``); one split only: use :func:`stratified_split`."""
    if hub or _no_local_copy(data_dir):
        return load_from_hub("sms_spam", hub, split, hf_kwargs)
    rows = _Rows(_file("sms-spam", {"train": "SMSSpamCollection"}, split, data_dir), skip_bad)
    examples = []
    for number, line in rows.lines():
        label, tab, text = line.partition("\t")
        if not tab or not text.strip():
            rows.bad(number, "'label<TAB>text'", line)
            continue
        examples.append(TextExample(text.strip(), rows.label(number, label, SMS_LABELS), None,
                                    f"{rows.path.name}:{number}"))
    return rows.result(examples, SMS_LABELS)


def load_wnut17(split: str = "train", *, data_dir: str | os.PathLike | None = None, skip_bad: bool = False,
                hub: bool | str = False, **hf_kwargs: Any) -> TaskData:
    """WNUT-17 NER (CoNLL ``token<TAB>tag``); any whitespace-only line (train has TAB-only ones) ends a sentence.

    With ``skip_bad`` a malformed line drops its whole sentence (a sentence with a hole is no example).
    """
    if hub or _no_local_copy(data_dir):
        return load_from_hub("wnut_17", hub, split, hf_kwargs)
    files = {"train": "wnut17train.conll", "validation": "emerging.dev.conll", "test": "emerging.test.annotated"}
    rows = _Rows(_file("wnut17", files, split, data_dir), skip_bad)
    examples, tokens, tags, start, broken = [], [], [], 0, False
    for number, line in [*rows.lines(), (-1, "")]:  # the sentinel flushes the last sentence
        if not line.strip():
            if tokens and not broken:
                examples.append(TokenExample(tokens, tags, f"{rows.path.name}:{start}"))
            tokens, tags, broken = [], [], False
            continue
        if not tokens and not broken:
            start = number
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0].strip():
            rows.bad(number, "'token<TAB>tag'", line)
            broken = True
            continue
        tokens.append(fields[0].strip())
        tags.append(rows.label(number, fields[1].strip(), WNUT_LABELS))
    return rows.result(examples, WNUT_LABELS)


def load_squad(split: str = "validation", *, data_dir: str | os.PathLike | None = None, skip_bad: bool = False,
               hub: bool | str = False, **hf_kwargs: Any) -> TaskData:
    """SQuAD v1.1: ``validation`` (the official dev set) or ``validation-2articles`` (a small subset).

    Every answer is checked: ``context[start:start + len(text)] == text``. Errors name the JSON path.
    """
    if hub or _no_local_copy(data_dir):
        return load_from_hub("squad", hub, split, hf_kwargs)
    files = {"validation": "dev-v1.1.json", "validation-2articles": "dev-v1.1.first2articles.json"}
    rows = _Rows(_file("squad-v1.1", files, split, data_dir), skip_bad)
    examples = []
    for where, article, para, qa in _squad_questions(rows, read_json(rows.path)):
        try:
            example = _squad_example(article, para, qa)
        except (KeyError, TypeError) as err:
            rows.bad(where, "keys id/question/answers[text, answer_start] and title/context (strings; "
                     "answer_start an integer >= 0)", f"missing key {err}" if isinstance(err, KeyError) else str(err))
            continue
        bad = [(s, t) for s, t in zip(example.answer_starts, example.answer_texts)
               if example.context[s:s + len(t)] != t]
        if bad or not example.answer_texts:
            rows.bad(where, "answers with context[start:start+len(text)] == text", f"{bad[0] if bad else 'no answers'}")
            continue
        examples.append(example)
    return rows.result(examples, [])


def _squad_questions(rows: _Rows, doc: Any) -> Iterator[tuple[str, dict, dict, Any]]:
    """``(JSON path, article, paragraph, question)`` per question; a malformed article or paragraph is a bad row."""
    articles = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(articles, list):
        got = f"an object with keys {sorted(doc)[:8]}" if isinstance(doc, dict) else f"a JSON {type(doc).__name__}"
        raise DataFormatError(f"{rows.path}: expected SQuAD JSON {{'version', 'data': [...]}}, got {got}")
    for a, article in enumerate(articles):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            rows.bad(f"data[{a}]", "an article {'title', 'paragraphs': [...]}", repr(article))
            continue
        for p, para in enumerate(paragraphs):
            qas = para.get("qas") if isinstance(para, dict) else None
            if not isinstance(qas, list):
                rows.bad(f"data[{a}].paragraphs[{p}]", "a paragraph {'context', 'qas': [...]}", repr(para))
                continue
            for q, qa in enumerate(qas):
                yield f"data[{a}].paragraphs[{p}].qas[{q}]", article, para, qa


def _squad_example(article: dict, para: dict, qa: Any) -> QAExample:
    """One question: a missing key raises KeyError, a value of the wrong type TypeError."""
    if not isinstance(qa, dict):
        raise TypeError(f"a JSON {type(qa).__name__} instead of a question object")
    answers = qa["answers"]
    if not isinstance(answers, list) or not all(isinstance(x, dict) for x in answers):
        raise TypeError(f"answers {answers!r} is not a list of {{text, answer_start}} objects")
    example = QAExample(qa["id"], article["title"], para["context"], qa["question"],
                        [x["text"] for x in answers], [x["answer_start"] for x in answers])
    strings = {"id": example.id, "title": example.title, "context": example.context, "question": example.question}
    for key, value in [*strings.items(), *(("answer text", t) for t in example.answer_texts)]:
        if not isinstance(value, str):
            raise TypeError(f"{key} {value!r} is not a string")
    for start in example.answer_starts:
        if not is_int(start, 0):
            raise TypeError(f"answer_start {start!r} is not an integer >= 0")
    return example


# ---------------------------------------------------------------- Hugging Face datasets


