"""The Colab path: with no local data dir, every loader reads the same data from the Hugging Face hub.

``datasets.load_dataset`` is replaced by local JSONL files shaped like each hub data set's schema (its
columns and ClassLabel names), built from the offline copies, so the test runs offline and checks that
the hub rows become exactly the examples the local files give.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bertmini import sources
from bertmini.finetuning import (
    SMS_LABELS,
    SST2_LABELS,
    TREC_LABELS,
    WNUT_LABELS,
    DataFormatError,
    load_sms_spam,
    load_squad,
    load_sst2,
    load_trec,
    load_wnut17,
)
from bertmini.pretraining.build import iter_documents
from bertmini.pretraining.corpus import read_gutenberg, read_wikitext
from bertmini.utils import data_dir, local_data_dir

datasets = pytest.importorskip("datasets")
N = 40  # rows per split written to the fake hub


def _features(name: str):
    f = datasets
    string, labels = f.Value("string"), lambda names: f.ClassLabel(names=names)
    return {
        "nyu-mll/glue": {"sentence": string, "label": labels(SST2_LABELS), "idx": f.Value("int32")},
        "CogComp/trec": {"text": string, "coarse_label": labels(TREC_LABELS), "fine_label": f.Value("int32")},
        "ucirvine/sms_spam": {"sms": string, "label": labels(SMS_LABELS)},
        "leondz/wnut_17": {"id": string, "tokens": f.Sequence(string), "ner_tags": f.Sequence(labels(WNUT_LABELS))},
        "rajpurkar/squad": {"id": string, "title": string, "context": string, "question": string,
                            "answers": f.Sequence({"text": string, "answer_start": f.Value("int32")})},
        "Salesforce/wikitext": {"text": string},
    }[name]


def _hub_rows(name: str, split: str, root: Path) -> list[dict]:
    """The first rows of a hub data set, in its schema, made from the local copy under ``root``."""
    if name == "nyu-mll/glue":
        return [{"sentence": e.text_a + " ", "label": e.label, "idx": i}  # GLUE keeps SST-2's trailing space
                for i, e in enumerate(load_sst2(split, data_dir=root).examples[:N])]
    if name == "CogComp/trec":
        return [{"text": e.text_a, "coarse_label": e.label, "fine_label": 0}
                for e in load_trec(split, data_dir=root).examples[:N]]
    if name == "ucirvine/sms_spam":
        return [{"sms": e.text_a + "\n", "label": e.label} for e in load_sms_spam(split, data_dir=root).examples[:N]]
    if name == "leondz/wnut_17":
        return [{"id": str(i), "tokens": e.tokens, "ner_tags": e.tags}
                for i, e in enumerate(load_wnut17(split, data_dir=root).examples[:N])]
    if name == "rajpurkar/squad":
        return [{"id": q.id, "title": q.title, "context": q.context, "question": q.question,
                 "answers": {"text": q.answer_texts, "answer_start": q.answer_starts}}
                for q in load_squad("validation-2articles", data_dir=root).examples[:N]]
    file = {"train": "wiki.test.raw", "validation": "wiki.valid.raw", "test": "wiki.test.raw"}[split]
    lines = (root / "wikitext-2-raw" / file).read_text(encoding="utf-8").splitlines(keepends=True)
    return [{"text": line} for line in lines[:400]]


@pytest.fixture()
def no_local_data(tmp_path, monkeypatch):
    """No data dir anywhere (as on Colab); ``load_dataset`` answers from hub-shaped local files."""
    root = data_dir()  # the offline copies, read before hiding them
    monkeypatch.delenv("BERTMINI_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert local_data_dir() is None
    real, calls = datasets.load_dataset, []

    def fake(path, name=None, *, split, **kwargs):
        calls.append((path, name, split))
        rows = tmp_path / f"{path.replace('/', '_')}-{name}-{split}.jsonl"
        rows.write_text("".join(json.dumps(r) + "\n" for r in _hub_rows(path, split, root)), encoding="utf-8")
        features = datasets.Features(_features(path))
        return real("json", data_files=str(rows), split="train", features=features,
                    cache_dir=str(tmp_path / "hf-cache"))

    monkeypatch.setattr(datasets, "load_dataset", fake)
    return root, calls


def _pairs(data) -> list[tuple]:
    return [(e.text_a, e.label) for e in data]


def test_task_loaders_fall_back_to_the_hub(no_local_data):
    root, calls = no_local_data
    assert _pairs(load_sst2("validation")) == _pairs(load_sst2("validation", data_dir=root).examples[:N])
    assert _pairs(load_trec("test")) == _pairs(load_trec("test", data_dir=root).examples[:N])
    assert _pairs(load_sms_spam()) == _pairs(load_sms_spam(data_dir=root).examples[:N])
    hub_ner, local_ner = load_wnut17("validation"), load_wnut17("validation", data_dir=root).examples[:N]
    assert [(e.tokens, e.tags) for e in hub_ner] == [(e.tokens, e.tags) for e in local_ner]
    assert load_squad("validation").examples == load_squad("validation-2articles", data_dir=root).examples[:N]
    assert [c[:2] for c in calls] == [("nyu-mll/glue", "sst2"), ("CogComp/trec", None), ("ucirvine/sms_spam", None),
                                      ("leondz/wnut_17", None), ("rajpurkar/squad", None)]


def test_a_hub_schema_that_differs_is_named(no_local_data, monkeypatch):
    renamed = datasets.Dataset.from_dict({"text": ["a film"], "label": [1]})
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: renamed)
    with pytest.raises(DataFormatError, match=r"datasets:nyu-mll/glue/train: expected columns \['sentence', "
                                              r"'label'\], found \['text', 'label'\] \(missing \['sentence'\]\)"):
        load_sst2("train")


def test_pretraining_sources_fall_back_to_the_hub_and_nltk(no_local_data, monkeypatch):
    root, calls = no_local_data
    local = list(read_wikitext(root / "wikitext-2-raw" / "wiki.valid.raw"))
    hub = list(iter_documents({"reader": "wikitext", "path": "wikitext-2-raw/wiki.valid.raw"}, None, None))
    assert len(hub) > 2 and hub[:-1] == local[:len(hub) - 1]  # the fake hub stops mid-article
    assert calls[-1] == ("Salesforce/wikitext", "wikitext-2-raw-v1", "validation")
    text = sources.data_text("wikitext-2-raw/wiki.valid.raw")
    assert (root / "wikitext-2-raw" / "wiki.valid.raw").read_text(encoding="utf-8").startswith(text)

    monkeypatch.setattr(sources, "gutenberg_folder", lambda: root / "gutenberg-nltk")  # what nltk.download gives
    book = "gutenberg-nltk/chesterton-thursday.txt"
    assert list(iter_documents({"reader": "gutenberg", "path": book}, None, 3)) == \
        list(read_gutenberg(root / book))[:3]
    assert sources.data_text(book) == (root / book).read_text(encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="no hub mirror of these files"):
        list(iter_documents({"reader": "text", "path": "my-corpus"}, None, None))


def test_pretrain_cli_runs_with_no_local_data(no_local_data, tmp_path, monkeypatch):
    """The tiny pretraining config end to end, its WikiText and Gutenberg sources from the mirrors."""
    from bertmini.cli import main

    root, calls = no_local_data
    monkeypatch.setattr(sources, "gutenberg_folder", lambda: root / "gutenberg-nltk")
    rc = main(["pretrain", "--config", "pretrain_tiny_test", f"out_dir={tmp_path / 'run'}", "train.max_steps=2",
               f"data.cache_dir={tmp_path / 'cache'}"])
    assert rc == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["eval_examples"] > 0
    assert ("Salesforce/wikitext", "wikitext-2-raw-v1", "test") in calls


def test_a_named_but_missing_data_dir_is_still_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("BERTMINI_DATA_DIR", str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        load_sst2("train")
