"""bertmini.analysis.conllu: the basic tree of CoNLL-U files, the format's traps, and file:line errors."""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from bertmini.analysis import conllu
from bertmini.analysis.conllu import load_ewt, read_conllu
from bertmini.errors import DataFormatError, InputError
from bertmini.utils import local_data_dir

ROWS = [  # ID FORM HEAD DEPREL; a multiword range and an empty node that must be skipped
    "# newdoc id = d1", "# sent_id = s1", "# text = I didn't go.",
    "1\tI\t_\t_\t_\t_\t3\tnsubj\t_\t_", "2-3\tdidn't\t_\t_\t_\t_\t_\t_\t_\t_",
    "2\tdid\t_\t_\t_\t_\t4\taux\t_\t_", "3\tn't\t_\t_\t_\t_\t4\tadvmod\t_\t_",
    "3.1\tgo\t_\t_\t_\t_\t_\t_\t4:ref\t_", "4\tgo\t_\t_\t_\t_\t0\troot\t_\t_", "5\t.\t_\t_\t_\t_\t4\tpunct\t_\t_",
    "", "# sent_id = s2", "1\tHi\t_\t_\t_\t_\t0\troot\t_\t_", "",
]


def write(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "x.conllu"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_basic_trees_skip_ranges_empty_nodes_and_comments(tmp_path):
    first, second = read_conllu(write(tmp_path, ROWS))
    assert first.words == ["I", "did", "n't", "go", "."] and first.heads == [3, 4, 4, 0, 4]
    assert first.deprels == ["nsubj", "aux", "advmod", "root", "punct"]
    assert (first.sent_id, first.line, second.sent_id, second.words) == ("s1", 1, "s2", ["Hi"])
    assert read_conllu(write(tmp_path, ROWS[:-1]))[1].words == ["Hi"]  # no final empty line


@pytest.mark.parametrize("row, message", [
    ("1\tI\t_\t_\t_\t_\t3\tnsubj", r"x.conllu: line 4: expected 10 tab-separated fields, got 8"),
    ("1\tI\t_\t_\t_\t_\tthree\tnsubj\t_\t_", r"x.conllu: line 4: expected integer ID and HEAD, got '1' and 'three'"),
    ("1\tI\t_\t_\t_\t_\t9\tnsubj\t_\t_", r"x.conllu: line 1: expected HEAD values in \[0, 5\], got \[9\]"),
    ("7\tI\t_\t_\t_\t_\t3\tnsubj\t_\t_", r"x.conllu: line 1: expected word IDs 1..5 in order, got \[7, 2, 3, 4, 5\]"),
])
def test_bad_files_name_file_and_line(tmp_path, row, message):
    with pytest.raises(DataFormatError, match=message):
        read_conllu(write(tmp_path, ROWS[:3] + [row] + ROWS[4:]))


def test_empty_file_and_unknown_split(tmp_path):
    with pytest.raises(DataFormatError, match="expected CoNLL-U sentences, got none"):
        read_conllu(write(tmp_path, ["# only a comment"]))
    with pytest.raises(InputError, match=r"split: expected one of \['dev', 'test'\], got 'train'"):
        load_ewt("train")


@pytest.mark.skipif(local_data_dir() is None or not (local_data_dir() / "ud-english-ewt").is_dir(),
                    reason="no local UD English-EWT copy (BERTMINI_DATA_DIR)")
def test_ewt_counts_match_its_readme():
    for split, sentences, words in (("dev", 2001, 25147), ("test", 2077, 25094)):
        trees = load_ewt(split)
        assert len(trees) == sentences and sum(len(s.words) for s in trees) == words
        assert all(s.heads.count(0) == 1 for s in trees)


def test_without_a_data_dir_ewt_is_downloaded_once_and_checked(tmp_path, monkeypatch):
    text = "\n".join(ROWS).encode()
    fetched = []

    def fake_urlopen(url, timeout):
        fetched.append(url)
        return io.BytesIO(text)

    monkeypatch.setattr(conllu, "local_data_dir", lambda data=None: None)
    monkeypatch.setattr(conllu.urllib.request, "urlopen", fake_urlopen)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(DataFormatError, match=r"en_ewt-ud-dev.conllu: expected SHA-256 531a54ff.*, got "):
        load_ewt("dev")
    monkeypatch.setitem(conllu.EWT_SHA256, "dev", hashlib.sha256(text).hexdigest())
    assert [s.sent_id for s in load_ewt("dev")] == ["s1", "s2"]
    assert [s.sent_id for s in load_ewt("dev")] == ["s1", "s2"]  # from the cache
    assert len(fetched) == 2 and fetched[0].startswith(conllu.EWT_URL)
    assert (tmp_path / "bertmini" / "ud-english-ewt" / "en_ewt-ud-dev.conllu").read_bytes() == text
