"""Corpus readers: text → documents, each a list of sentence strings.

BERT's pre-training data is "document-level": Devlin et al. 2019 (§3.1, "Pre-training data") use
BooksCorpus and English Wikipedia, keeping only text passages ("we ignore lists, tables, and
headers"), because next sentence prediction and long contiguous sequences need whole documents,
not a shuffled bag of sentences. Every reader here therefore yields one ``Document`` =
``list[str]`` of sentences, in order, and never lets a sentence straddle a paragraph break.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from bertmini.errors import read_lines, read_text, read_tsv  # errors name file, line and column

__all__ = [
    "Document", "split_sentences", "split_paragraphs", "list_text_files", "read_text_documents",
    "parse_wikitext_lines", "read_wikitext", "read_gutenberg", "read_tsv_column", "load_hf_corpus", "READERS",
]

Document = list[str]
PathLike = str | os.PathLike
Paths = PathLike | Sequence[PathLike]

# A boundary candidate: .!? (possibly repeated, possibly closed by a quote/bracket), whitespace,
# then a capital letter, optionally behind an opening quote/bracket.
_BOUNDARY = re.compile(r"[.!?]+[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z])")
# Words whose final period is not a sentence end (compared lower-cased, with the period).
ABBREVIATIONS = frozenset(
    "mr. mrs. ms. dr. st. prof. sr. jr. rev. gen. col. capt. lt. sgt. mt. ft. vs. no. fig. "
    "e.g. i.e. cf. jan. feb. aug. sept. oct. nov. dec.".split()
)


def split_sentences(text: str) -> list[str]:
    """Split text into sentences with a small regex rule (no NLTK/spaCy needed).

    A sentence ends at ``.``, ``!`` or ``?`` followed by whitespace and a capital letter (or an
    opening quote); not after a known abbreviation (Mr. Dr. St. e.g. ...) or a single-letter
    initial (``G. K. Chesterton``). It is a heuristic: "in the U.S. Army" splits wrongly, and a
    sentence starting with a digit or lower-case letter is glued to the previous one. For BERT
    this is harmless: sentences are only packed into segments up to a token budget (§3.1).
    """
    text = " ".join(text.split())
    sentences, start = [], 0
    for m in _BOUNDARY.finditer(text):
        head = text[start:m.start()].rsplit(" ", 1)[-1] + "."  # last word before the punctuation
        if text[m.start()] == "." and (head.lower() in ABBREVIATIONS or re.fullmatch(r"[A-Z]\.", head)):
            continue
        end = m.start() + len(m.group().rstrip())
        sentences.append(text[start:end])
        start = m.end()
    if start < len(text):
        sentences.append(text[start:])
    return sentences


def split_paragraphs(text: str) -> list[str]:
    """Paragraphs = blocks separated by blank (or whitespace-only) lines; lines joined by spaces."""
    blocks = re.split(r"\n[ \t\r\f\v]*\n", text.replace("\r\n", "\n"))
    return [" ".join(b.split()) for b in blocks if b.strip()]


def list_text_files(paths: Paths, suffixes: Sequence[str] = (".txt", ".raw")) -> list[Path]:
    """Expand files and folders (recursively, sorted) into text files, skipping README files."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    files: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            files += sorted(p for p in item.rglob("*")
                            if p.is_file() and p.suffix in suffixes and "README" not in p.name.upper())
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"corpus path {str(item)!r} does not exist")
    if not files:
        raise FileNotFoundError(f"no {'/'.join(suffixes)} files under {[str(p) for p in items]}")
    return files


def read_text_documents(paths: Paths, split: str = "file", sentence_per_line: bool = False) -> Iterator[Document]:
    """Plain text files → documents.

    ``split="file"``: one document per file; ``split="blank_line"``: every blank-line separated
    block is a document (the input format of Google's ``create_pretraining_data.py`` when combined
    with ``sentence_per_line=True``: one sentence per line, blank line between documents).
    Without ``sentence_per_line`` lines are joined within a paragraph and split by
    :func:`split_sentences`.
    """
    if split not in ("file", "blank_line"):
        raise ValueError(f"split={split!r}: expected 'file' or 'blank_line'")
    for path in list_text_files(paths):
        text = read_text(path)
        blocks = re.split(r"\n[ \t\r\f\v]*\n", text.replace("\r\n", "\n"))

        def sentences(block: str) -> list[str]:
            if sentence_per_line:
                return [" ".join(line.split()) for line in block.split("\n") if line.strip()]
            return split_sentences(block)

        if split == "file":
            doc = [s for block in blocks for s in sentences(block)]
            if doc:
                yield doc
        else:
            yield from (doc for doc in map(sentences, blocks) if doc)


def _is_heading(line: str) -> tuple[bool, bool]:
    """WikiText headings: (is any heading, is a top-level article title ` = Title = `)."""
    s = line.strip()
    if not (len(s) >= 3 and s.startswith("= ") and s.endswith(" =")):
        return False, False
    return True, not s.startswith("= =")


def _wikitext_detokenize(text: str) -> str:
    """Undo WikiText's split numbers/hyphens: ``1 @,@ 000`` → ``1,000``, ``red @-@ tipped`` → ``red-tipped``."""
    return re.sub(r" @([-.,])@ ", r"\1", text)


def parse_wikitext_lines(lines: Iterable[str], detokenize: bool = False) -> Iterator[Document]:
    """WikiText lines (a ``.raw`` file or the rows of the HF ``wikitext`` dataset) → articles.

    `` = Title = `` (one ``=`` each side) starts an article; `` = = Section = = `` and deeper
    headings are dropped (BERT keeps text passages only, §3.1); blank lines (" " or "") are skipped;
    every other line is one paragraph, split into sentences.
    """
    doc: Document = []
    for line in lines:
        heading, title = _is_heading(line)
        if title:
            if doc:
                yield doc
            doc = []
        elif not heading and line.strip():
            doc += split_sentences(_wikitext_detokenize(line) if detokenize else line)
    if doc:
        yield doc


def read_wikitext(paths: Paths, detokenize: bool = False) -> Iterator[Document]:
    """WikiText ``*.raw`` file(s) (e.g. ``wiki.valid.raw``) → one document per article."""
    for path in list_text_files(paths):
        yield from parse_wikitext_lines((line for _, line in read_lines(path)), detokenize=detokenize)


# A paragraph that opens a chapter/book/act in the NLTK Gutenberg books: "CHAPTER 1", "Chapter IV",
# "VOLUME I", "Book II" (Milton), "[BOOK I.  INSCRIPTIONS]" (Whitman), "Actus Primus." (Shakespeare
# folio), "IV. A DISCUSSION AT DAWN" (Chesterton). Milton's verse "Part curb their fiery steeds"
# must not match, hence the number after the keyword.
_CHAPTER = re.compile(
    r"\[?(?:CHAPTER|Chapter|VOLUME|BOOK|Book)\s+(?:[IVXLC]+|\d+)\b"
    r"|Actus\s+\w+\."
    r"|[IVXLC]+\.\s+[A-Z][^.!?]*$"
)
_VERSE = re.compile(r"(?<!\S)\d+:\d+\s+")  # KJV verse numbers "1:2 " are not text; "1:1" opens a book
_ITALICS = re.compile(r"_([^_\s][^_]*)_")  # Gutenberg marks italics as _word_


def _is_gutenberg_heading(para: str) -> bool:
    """Short chapter markers, and short paragraphs without sentence punctuation ("The Book of Job",
    "THE SHEPHERD", "Walt Whitman"); Shakespeare's "Bar. Long liue the King" is text."""
    short = len(para.split()) <= 12
    return short and (bool(_CHAPTER.match(para)) or not re.search(r"[.!?;,]", para))


def read_gutenberg(paths: Paths | None = None, split: str = "chapter") -> Iterator[Document]:
    """NLTK Gutenberg books (``gutenberg-nltk/``) → documents, by ``"chapter"`` or whole ``"book"``.

    Handles the folder's traps: README.md / NLTK_README.txt are not books; each book opens with a
    ``[Title by Author Year]`` line; whitespace-only lines separate paragraphs; lines are hard-wrapped;
    Bible verses carry ``1:2`` numbers (verse ``1:1`` starts a Bible book); ``_italics_`` markers.
    Headings (see :func:`_is_gutenberg_heading`) are dropped, as BERT drops headers (§3.1).
    Books without chapter markers (Blake's poems) stay one document.
    ``paths`` defaults to ``bertmini.utils.data_dir() / "gutenberg-nltk"``.
    """
    if split not in ("chapter", "book"):
        raise ValueError(f"split={split!r}: expected 'chapter' or 'book'")
    if paths is None:
        from bertmini.utils import data_dir
        paths = data_dir() / "gutenberg-nltk"
    for path in list_text_files(paths, suffixes=(".txt",)):
        lines = read_text(path).split("\n")
        if lines and re.fullmatch(r"\s*\[.*\]\s*", lines[0]):
            lines = lines[1:]
        doc: Document = []
        for para in split_paragraphs("\n".join(lines)):
            new_chapter = bool(_CHAPTER.match(para)) or para.startswith("1:1 ")
            if split == "chapter" and new_chapter and doc:
                yield doc
                doc = []
            if not _is_gutenberg_heading(para):
                doc += split_sentences(_ITALICS.sub(r"\1", _VERSE.sub("", para)))
        if doc:
            yield doc


def read_tsv_column(paths: Paths, column: str = "sentence") -> Iterator[Document]:
    """The text column of labelled TSV files (GLUE layout: a header row, no quoting), labels dropped.

    Each row is one document. This is the corpus of task-adaptive pre-training (Gururangan et al.
    2020, §4): more MLM on a task's own unlabelled training text before fine-tuning on its labels.
    """
    for path in list_text_files(paths, suffixes=(".tsv",)):
        for _, (value,) in read_tsv(path, [column]):
            if text := " ".join(value.split()):
                yield [text]


def _rows_to_paragraph_docs(rows: Iterable[str]) -> Iterator[Document]:
    """Line rows (``load_dataset("text")``): blank rows end a document."""
    lines: list[str] = []
    for row in rows:
        if row.strip():
            lines.append(row)
        elif lines:
            yield split_sentences(" ".join(lines))
            lines = []
    if lines:
        yield split_sentences(" ".join(lines))


def load_hf_corpus(
    name: str,
    config: str | None = None,
    split: str = "train",
    text_column: str = "text",
    streaming: bool = False,
    data_files: str | Sequence[str] | dict | None = None,
    layout: str = "auto",
    cache_dir: str | None = None,
) -> Iterator[Document]:
    """Documents from a Hugging Face ``datasets`` dataset, e.g. ``("wikitext", "wikitext-2-raw-v1")``.

    ``layout`` says how rows map to documents: ``"wikitext"`` (rows are WikiText lines, headings
    split articles; the default for names containing "wikitext"), ``"blank_line"`` (rows are lines
    and blank rows end documents; the default for the local ``"text"`` loader), ``"row"`` (each row
    is a whole document, e.g. Wikipedia dumps; the default otherwise) or ``"line"`` (each row is a
    one-sentence document, as :func:`read_tsv_column` reads a TSV column). Offline use:
    ``load_hf_corpus("text", data_files="my.txt")`` with ``HF_DATASETS_OFFLINE=1``.
    """
    import datasets  # optional dependency, imported only here

    if layout == "auto":
        layout = "wikitext" if "wikitext" in name.lower() else "blank_line" if name == "text" else "row"
    if layout not in ("wikitext", "blank_line", "row", "line"):
        raise ValueError(f"layout={layout!r}: expected 'auto', 'wikitext', 'blank_line', 'row' or 'line'")
    ds = datasets.load_dataset(name, config, split=split, streaming=streaming,
                               data_files=data_files, cache_dir=cache_dir)
    columns = ds.column_names  # None for some streamed data sets: then the first row tells
    if columns is not None and text_column not in columns:
        raise ValueError(f"dataset {name!r} ({config or 'default'}, split {split!r}): expected a text column "
                         f"{text_column!r}, found columns {columns}")
    rows = (row[text_column] for row in ds)
    if layout == "wikitext":
        yield from parse_wikitext_lines(rows)
    elif layout == "blank_line":
        yield from _rows_to_paragraph_docs(rows)
    elif layout == "line":
        yield from ([text] for row in rows if (text := " ".join(row.split())))
    else:
        for row in rows:
            doc = [s for para in split_paragraphs(row) for s in split_sentences(para)]
            if doc:
                yield doc


# File readers by name, so that a cache key / config file can name one ("text", "wikitext", ...).
READERS: dict[str, Callable[..., Iterator[Document]]] = {
    "text": read_text_documents,
    "wikitext": read_wikitext,
    "gutenberg": read_gutenberg,
    "tsv": read_tsv_column,
}
