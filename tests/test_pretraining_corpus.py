"""Corpus readers: sentence splitting, text/WikiText/Gutenberg files, HF datasets offline."""
from __future__ import annotations

from pathlib import Path

import pytest

from bertmini.errors import DataFormatError
from bertmini.pretraining.corpus import (
    list_text_files,
    load_hf_corpus,
    parse_wikitext_lines,
    read_gutenberg,
    read_text_documents,
    read_tsv_column,
    read_wikitext,
    split_paragraphs,
    split_sentences,
)
from bertmini.utils import data_dir


@pytest.fixture
def data() -> Path:
    """The shared offline data (the root conftest.py points BERTMINI_DATA_DIR at ../shared/data)."""
    try:
        return data_dir()
    except FileNotFoundError as err:
        pytest.skip(f"offline data not available: {err}")


def head(src: Path, dst: Path, n_bytes: int) -> Path:
    """The first ``n_bytes`` of a text file, cut back to a whole line."""
    text = src.read_text(encoding="utf-8")[:n_bytes]
    dst.write_text(text[: text.rindex("\n") + 1], encoding="utf-8")
    return dst


# ---- sentence splitting ------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("It rained. Then it stopped! Did it? Yes.", ["It rained.", "Then it stopped!", "Did it?", "Yes."]),
    ("Mr. Smith met Dr. Jones on St. Mark's Road. They talked.",
     ["Mr. Smith met Dr. Jones on St. Mark's Road.", "They talked."]),
    ("Use tools, e.g. Hammers, i.e. Heavy ones. Done.", ["Use tools, e.g. Hammers, i.e. Heavy ones.", "Done."]),
    ("A book by G. K. Chesterton. Read it.", ["A book by G. K. Chesterton.", "Read it."]),
    ('He said "Stop." "Why?" she asked.', ['He said "Stop."', '"Why?" she asked.']),
    ("Version 2. and then 3. numbers stay", ["Version 2. and then 3. numbers stay"]),  # lower case follows
    ("the lobster . Mating occurs , H. americanus .", ["the lobster .", "Mating occurs , H. americanus ."]),
    ("  line one\n  wrapped.  Next  ", ["line one wrapped.", "Next"]),
    ("", []),
])
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


def test_split_paragraphs_treats_whitespace_only_lines_as_blank():
    assert split_paragraphs("a\nb\n \t\nc\r\n\r\nd\n\n\n") == ["a b", "c", "d"]


# ---- plain text files --------------------------------------------------------------------------
def test_read_text_documents_by_file_and_by_blank_line(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("One. Two\nwrapped.\n\nThree.\n", encoding="utf-8")
    (tmp_path / "sub" / "b.txt").write_text("Four.\n", encoding="utf-8")
    (tmp_path / "README.txt").write_text("Not a document.\n", encoding="utf-8")
    (tmp_path / "notes.md").write_text("Ignored.\n", encoding="utf-8")
    assert [p.name for p in list_text_files(tmp_path)] == ["a.txt", "b.txt"]
    assert list(read_text_documents(tmp_path)) == [["One.", "Two wrapped.", "Three."], ["Four."]]
    assert list(read_text_documents(tmp_path / "a.txt", split="blank_line")) == [["One.", "Two wrapped."], ["Three."]]


def test_read_text_documents_sentence_per_line_is_googles_format(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("first sentence\nsecond one. still second\n\nother doc\n", encoding="utf-8")
    docs = list(read_text_documents(path, split="blank_line", sentence_per_line=True))
    assert docs == [["first sentence", "second one. still second"], ["other doc"]]


def test_read_text_documents_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt' does not exist"):
        list(read_text_documents(tmp_path / "nope.txt"))
    with pytest.raises(FileNotFoundError, match=r"no \.txt/\.raw files"):
        list(read_text_documents(tmp_path))
    with pytest.raises(ValueError, match="split='para': expected 'file' or 'blank_line'"):
        list(read_text_documents(tmp_path, split="para"))


# ---- WikiText ------------------------------------------------------------------------------------
WIKI = [" \n", " = Alpha = \n", " \n", " Alpha is a letter . It is first .\n", " \n", " = = History = = \n",
        " It dates from 1 @,@ 000 BC @-@ ish .\n", " = = = Deep = = = \n", " Deeper text .\n",
        " = Beta = \n", "", " Beta is second .\n"]


def test_parse_wikitext_lines_splits_articles_and_drops_section_headings():
    assert list(parse_wikitext_lines(WIKI)) == [
        ["Alpha is a letter .", "It is first .", "It dates from 1 @,@ 000 BC @-@ ish .", "Deeper text ."],
        ["Beta is second ."],
    ]
    assert list(parse_wikitext_lines(WIKI, detokenize=True))[0][2] == "It dates from 1,000 BC-ish ."


def test_read_wikitext_on_real_text(data, tmp_path):
    path = head(data / "wikitext-2-raw" / "wiki.valid.raw", tmp_path / "wiki.raw", 12_000)
    titles = [line for line in path.read_text(encoding="utf-8").split("\n") if line.startswith(" = ")
              and not line.startswith(" = = ")]
    docs = list(read_wikitext(path))
    assert len(docs) == len(titles) == 2
    assert docs[0][0].startswith("Homarus gammarus , known as the European lobster")
    assert docs[0][1] == "It is closely related to the American lobster , H. americanus ."
    assert not any(s.startswith("=") or " = = " in s for doc in docs for s in doc)


# ---- Gutenberg -----------------------------------------------------------------------------------
BOOK = """[A Book by Someone 1900]

VOLUME I

CHAPTER I


It was _very_ dark.  Mr. Brown
lit a lamp.

Book II

Part curb their fiery steeds, or shun the goal.

CHAPTER II

1:1 In the beginning was light. 1:2 And it was good.
"""


def test_read_gutenberg_handles_title_readme_chapters_and_verses(tmp_path):
    (tmp_path / "book.txt").write_text(BOOK, encoding="utf-8")
    (tmp_path / "NLTK_README.txt").write_text("Project Gutenberg Selections.\n", encoding="utf-8")
    assert list(read_gutenberg(tmp_path)) == [
        ["It was very dark.", "Mr. Brown lit a lamp."],
        ["Part curb their fiery steeds, or shun the goal."],  # Milton's verse is not a "Part" heading
        ["In the beginning was light.", "And it was good."],
    ]
    assert len(list(read_gutenberg(tmp_path, split="book"))) == 1
    with pytest.raises(ValueError, match="split='line': expected 'chapter' or 'book'"):
        list(read_gutenberg(tmp_path, split="line"))


def test_read_gutenberg_on_real_books(data, tmp_path):
    books = list_text_files(data / "gutenberg-nltk")
    assert len(books) == 14 and not any("README" in p.name for p in books)
    path = head(data / "gutenberg-nltk" / "austen-emma.txt", tmp_path / "emma.txt", 40_000)
    docs = list(read_gutenberg(path))
    assert len(docs) == 4  # CHAPTER I..IV start in the first 40 kB
    assert docs[0][0].startswith("Emma Woodhouse, handsome, clever, and rich, with a comfortable home and")
    assert docs[1][0].startswith("Mr. Weston was a native of Highbury")
    assert not any("CHAPTER" in s or "VOLUME" in s or "[Emma" in s or "_" in s for d in docs for s in d)


def test_read_gutenberg_default_folder_comes_from_data_dir(data):
    first = next(read_gutenberg())  # austen-emma.txt sorts first
    assert first[0].startswith("Emma Woodhouse")


# ---- Hugging Face datasets, offline --------------------------------------------------------------
@pytest.fixture
def offline(monkeypatch, tmp_path) -> str:
    """A throw-away datasets cache; no network (the root conftest.py also sets these)."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return str(tmp_path / "hf-cache")


def test_read_tsv_column_keeps_the_text_and_drops_the_labels(data):
    docs = list(read_tsv_column(data / "sst2" / "train.tsv"))
    assert len(docs) == 67_349  # the sst2 README's row count
    assert docs[0] == ["hide new secretions from the parental units"]  # GLUE's space before the tab is gone
    assert all(len(d) == 1 and d[0] and d[0] not in ("0", "1") for d in docs)


def test_read_tsv_column_errors_name_file_line_and_column(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("sentence\tlabel\ngood row\t1\nno label here\n", encoding="utf-8")
    with pytest.raises(DataFormatError,
                       match=r"bad\.tsv: line 1: header lacks column\(s\) \['text'\]; got header \['sentence', 'label'\]"):
        list(read_tsv_column(bad, column="text"))
    with pytest.raises(DataFormatError,
                       match=r"bad\.tsv: line 3: expected 2 tab-separated fields \(sentence, label\), "
                             r"got '1 field\(s\): no label here'"):
        list(read_tsv_column(bad))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no \.tsv files"):
        list(read_tsv_column(tmp_path / "empty"))


def test_load_hf_corpus_wikitext_rows_match_the_file_reader(data, tmp_path, offline):
    path = head(data / "wikitext-2-raw" / "wiki.valid.raw", tmp_path / "wiki.raw", 12_000)
    docs = list(load_hf_corpus("text", data_files=str(path), layout="wikitext", cache_dir=offline))
    assert docs == list(read_wikitext(path))


def test_load_hf_corpus_text_layouts_and_errors(tmp_path, offline):
    path = tmp_path / "t.txt"
    path.write_text("One. Two\nwrapped.\n\nThree.\n", encoding="utf-8")
    docs = list(load_hf_corpus("text", data_files=str(path), cache_dir=offline))
    assert docs == [["One.", "Two wrapped."], ["Three."]]  # blank rows end documents
    rows = list(load_hf_corpus("text", data_files=str(path), layout="row", cache_dir=offline))
    assert rows == [["One.", "Two"], ["wrapped."], ["Three."]]  # blank rows are no documents
    with pytest.raises(ValueError, match=r"expected a text column 'body', found columns \['text'\]"):
        list(load_hf_corpus("text", data_files=str(path), text_column="body", cache_dir=offline))
    with pytest.raises(ValueError, match="layout='pages'"):
        list(load_hf_corpus("text", data_files=str(path), layout="pages", cache_dir=offline))
