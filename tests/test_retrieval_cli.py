"""``python -m bertmini search index | query``: the index round trip, the model check, and the errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bertmini import BertConfig, BertModel
from bertmini.cli import main as bertmini_main
from bertmini.retrieval.cli import main
from bertmini.retrieval.passages import Passage, read_passages
from bertmini.retrieval.pooling import SentenceEncoder
from bertmini.retrieval.search_index import build_index, load_index
from bertmini.tokenizer import WordPieceTokenizer

WORDS = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "far", "away", "bird", "sang", "song", "tree"]


def tiny_model(folder: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=16)
    BertModel(config).save_pretrained(folder)
    WordPieceTokenizer.from_vocab(vocab).save(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("models")
    return tiny_model(root / "a", 0), tiny_model(root / "b", 1)


@pytest.fixture
def corpus(tmp_path) -> Path:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "one.txt").write_text("the cat sat on the mat\n\n\nthe dog ran far away\n", encoding="utf-8")
    (folder / "sub" / "two.txt").write_text("a bird sang a song in the tree " * 3, encoding="utf-8")
    (folder / "notes.md").write_text("not a .txt file, so not indexed", encoding="utf-8")
    return folder


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def test_folder_corpus_is_split_into_paragraphs(corpus):
    passages = read_passages(corpus)
    assert [p.id for p in passages] == ["one.txt#1", "one.txt#2", "sub/two.txt#1"]
    assert passages[1].text == "the dog ran far away"


def test_jsonl_corpus_and_its_errors(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "x", "text": "the cat"}\n\n{"text": "a dog", "title": "T"}\n', encoding="utf-8")
    assert read_passages(path) == [Passage("x", "the cat"), Passage("3", "a dog", "T")]
    path.write_text('{"id": "x", "text": "the cat"}\n{"id": "y", "body": "a dog"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r'c.jsonl: line 2: expected an object with a non-empty "text" string'):
        read_passages(path)
    path.write_text('{"id": 1, "text": "a"}\n{"id": 1, "text": "b"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: id '1' appears twice"):
        read_passages(path)


def test_index_round_trip_keeps_vectors_passages_and_model(models, corpus, tmp_path):
    encoder = SentenceEncoder.from_pretrained(models[0], precision="fp32")
    index, note = build_index(encoder, read_passages(corpus))
    assert note == ("1 of 3 passages were longer than 16 tokens and were truncated (only their first 14 word "
                    "pieces count)")  # the bird paragraph
    index.save(tmp_path)
    loaded = load_index(tmp_path)
    assert torch.equal(loaded.vectors, index.vectors) and loaded.passages == index.passages
    assert loaded.manifest == index.manifest and loaded.manifest["model"] == str(models[0].resolve())
    hits = loaded.search(encoder, ["the cat sat on the mat"], k=2)[0]
    assert hits[0][1].id == "one.txt#1" and hits[0][0] == pytest.approx(1.0, abs=1e-5)


def test_cli_index_then_query(models, corpus, tmp_path, capsys):
    out = tmp_path / "index"
    status, printed, _ = run(["index", "--model", str(models[0]), "--corpus", str(corpus), "--out", str(out)], capsys)
    assert status == 0 and "indexed 3 passages" in printed and "1 of 3 passages were longer than 16 tokens" in printed
    status, printed, _ = run(["query", "--index", str(out), "-k", "2", "the dog ran far", "bird song"], capsys)
    assert status == 0
    assert printed.splitlines()[:2] == ["query: the dog ran far", printed.splitlines()[1]]
    assert "one.txt#2" in printed.splitlines()[1] and printed.count("query:") == 2
    status, printed, _ = run(["query", "--index", str(out), "--json", "-k", "1", "the cat"], capsys)
    row = json.loads(printed)
    assert row["query"] == "the cat" and row["hits"][0]["id"] == "one.txt#1"


def test_cli_refuses_another_model(models, corpus, tmp_path, capsys):
    out = tmp_path / "index"
    assert main(["index", "--model", str(models[0]), "--corpus", str(corpus), "--out", str(out)]) == 0
    status, _, err = run(["query", "--index", str(out), "--model", str(models[1]), "the cat"], capsys)
    assert status == 2
    assert "differs in weights_sha256: its vectors would not be comparable" in err
    assert "config_sha256" not in err  # same config, other weights: only the weights differ


def test_cli_refuses_changed_weights_at_the_same_path(models, corpus, tmp_path, capsys):
    folder = tiny_model(tmp_path / "m", 0)
    out = tmp_path / "index"
    assert main(["index", "--model", str(folder), "--corpus", str(corpus), "--out", str(out)]) == 0
    tiny_model(folder, 2)  # retrained in place
    status, _, err = run(["query", "--index", str(out), "the cat"], capsys)
    assert status == 2 and "differs in weights_sha256" in err


def test_cli_never_overwrites_silently(models, corpus, tmp_path, capsys):
    out = tmp_path / "index"
    args = ["index", "--model", str(models[0]), "--corpus", str(corpus), "--out", str(out)]
    assert main(args) == 0
    before = (out / "vectors.safetensors").read_bytes()
    status, _, err = run(args, capsys)
    assert status == 2 and "already holds an index" in err and "pass --overwrite" in err
    assert main(args + ["--overwrite", "--max-length", "8"]) == 0
    assert (out / "vectors.safetensors").read_bytes() != before
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine", encoding="utf-8")
    status, _, err = run([*args[:-1], str(other), "--overwrite"], capsys)
    assert status == 2 and "holds files that are not a search index (keep.txt)" in err
    assert (other / "keep.txt").read_text(encoding="utf-8") == "mine"


@pytest.mark.parametrize("setup, argv, message", [
    ("empty", ["index", "--corpus", "{tmp}/empty", "--out", "{tmp}/i"], "corpus '.*empty' is empty: no non-blank"),
    ("", ["index", "--corpus", "{tmp}/missing", "--out", "{tmp}/i"], "corpus '.*missing' not found"),
    ("index", ["query", "--index", "{tmp}/idx", "  "], "query 1 is empty: expected some words"),
    ("index", ["query", "--index", "{tmp}/idx", "-k", "0", "cat"], "-k: expected a number of passages >= 1, got 0"),
    ("", ["query", "--index", "{tmp}", "cat"], "is not a search index \\(missing manifest.json"),
])
def test_cli_error_messages(models, corpus, tmp_path, capsys, setup, argv, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "blank.txt").write_text("\n \n", encoding="utf-8")
    if setup == "index":
        assert main(["index", "--model", str(models[0]), "--corpus", str(corpus), "--out", str(tmp_path / "idx")]) == 0
    argv = [a.format(tmp=tmp_path) for a in argv]
    if argv[0] == "index":
        argv += ["--model", str(models[0])]
    status, _, err = run(argv, capsys)
    assert status == 2
    assert err.startswith("error: ")
    import re
    assert re.search(message, err), err


def test_the_dispatcher_knows_search(capsys):
    assert bertmini_main(["search", "--help"]) == 0
    assert "index" in capsys.readouterr().out


@pytest.mark.slow
def test_minilm_index_over_a_jsonl(minilm_dir, tmp_path, capsys):
    corpus = tmp_path / "c.jsonl"
    rows = [{"id": "bowl", "text": "Super Bowl 50 was played at Levi's Stadium in Santa Clara, California."},
            {"id": "cell", "text": "The mitochondrion is the powerhouse of the cell."}]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert main(["index", "--model", str(minilm_dir), "--corpus", str(corpus), "--out", str(tmp_path / "i")]) == 0
    status, printed, _ = run(["query", "--index", str(tmp_path / "i"), "-k", "1", "--json",
                              "where was the football final held?"], capsys)
    assert status == 0 and json.loads(printed.splitlines()[-1])["hits"][0]["id"] == "bowl"
