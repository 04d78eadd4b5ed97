"""Fine-tuning data: loaders (offline files and the `datasets` path, run offline), splits,
classification encoding, length bucketing, dynamic padding and NER label alignment."""
from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bertmini.finetuning import (
    SST2_LABELS,
    TREC_LABELS,
    WNUT_LABELS,
    DataFormatError,
    TextExample,
    TokenExample,
    align_labels,
    bucket_batches,
    decode_ner,
    encode_classification,
    encode_ner,
    load_sms_spam,
    load_squad,
    load_sst2,
    load_trec,
    load_tsv,
    load_wnut17,
    pad_collate,
    split_squad_by_article,
    stratified_split,
)
from bertmini.training.batching import padded_width


@pytest.fixture(scope="module")
def hf_tokenizer(minilm_dir):
    transformers = pytest.importorskip("transformers")
    return transformers.BertTokenizerFast.from_pretrained(str(minilm_dir))


def _write(root, folder, name, text):
    (root / folder).mkdir(parents=True, exist_ok=True)
    (root / folder / name).write_text(text, encoding="utf-8")
    return root / folder / name


# ---------------------------------------------------------------- real files

def test_real_files_match_the_readme_counts():
    dev = load_sst2("validation")
    assert len(dev) == 872 and dev.skipped == 0 and dev.label_names == SST2_LABELS
    assert Counter(e.label for e in dev) == {1: 444, 0: 428}
    assert dev.examples[0].text_a == "it 's a charming and often affecting journey ."  # trailing space stripped
    trec = load_trec("test")
    assert Counter(TREC_LABELS[e.label] for e in trec) == {
        "ABBR": 9, "DESC": 138, "ENTY": 94, "HUM": 65, "LOC": 81, "NUM": 113}
    assert trec.examples[0].text_a == "How far is it from Denver to Aspen ?"
    sms = load_sms_spam()
    assert len(sms) == 5574 and Counter(e.label for e in sms) == {0: 4827, 1: 747}
    wnut = load_wnut17("train")  # 2,394 of its separators are TAB-only lines
    assert len(wnut) == 3394 and sum(len(e.tokens) for e in wnut) == 62730
    assert sum(WNUT_LABELS[t].startswith("B-") for e in wnut for t in e.tags) == 1975
    squad = load_squad("validation-2articles")
    assert len(squad) == 1057 and {e.title for e in squad} == {"Super_Bowl_50", "Warsaw"}
    with pytest.raises(KeyError, match=r"unknown split 'dev' for sst2; available: \['test', 'train', 'validation'\]"):
        load_sst2("dev")


# ---------------------------------------------------------------- bad input

def test_tsv_bad_row_raises_or_is_skipped(tmp_path):
    _write(tmp_path, "sst2", "train.tsv", "sentence\tlabel\ngood film \t1\nno tab here\nbad\t0\textra\nfine \t0\n")
    with pytest.raises(DataFormatError, match=r"train\.tsv: line 3: expected 2 tab-separated fields "
                                              r"\(sentence, label\), got '1 field\(s\): no tab here'"):
        load_sst2("train", data_dir=tmp_path)
    data = load_sst2("train", data_dir=tmp_path, skip_bad=True)
    assert data.skipped == 2 and [(e.text_a, e.label) for e in data] == [("good film", 1), ("fine", 0)]
    assert "line 4" in data.errors[1]


def test_unknown_label_is_an_error_even_when_skipping(tmp_path):
    _write(tmp_path, "sst2", "dev.tsv", "sentence\tlabel\nok \t1\nmeh \t2\n")
    with pytest.raises(DataFormatError, match=r"line 3: unknown label '2'; allowed: \['0', '1'\]"):
        load_sst2("validation", data_dir=tmp_path, skip_bad=True)
    _write(tmp_path, "trec-qc", "TREC_10.label", "NUM:dist How far ?\nFOO:bar What ?\n")
    with pytest.raises(DataFormatError, match=r"line 2: unknown label 'FOO'; allowed: \['ABBR', 'ENTY'"):
        load_trec("test", data_dir=tmp_path)
    _write(tmp_path, "sms-spam", "SMSSpamCollection", "ham\thi\nSpam\tWIN\n")
    with pytest.raises(DataFormatError, match=r"line 2: unknown label 'Spam'; allowed: \['ham', 'spam'\]"):
        load_sms_spam(data_dir=tmp_path)


def test_trec_and_sms_malformed_lines(tmp_path):
    _write(tmp_path, "trec-qc", "TREC_10.label", "NUM:dist How far ?\nHow far is it ?\n")
    with pytest.raises(DataFormatError, match=r"line 2: expected 'COARSE:fine question \.\.\.', got 'How far"):
        load_trec("test", data_dir=tmp_path)
    assert load_trec("test", data_dir=tmp_path, skip_bad=True).skipped == 1
    _write(tmp_path, "sms-spam", "SMSSpamCollection", "ham\thi there\nspam no tab\nspam\t\n")
    with pytest.raises(DataFormatError, match=r"line 2: expected 'label<TAB>text', got 'spam no tab'"):
        load_sms_spam(data_dir=tmp_path)
    data = load_sms_spam(data_dir=tmp_path, skip_bad=True)
    assert data.skipped == 2 and [e.text_a for e in data] == ["hi there"]


def test_wnut_separators_and_bad_lines(tmp_path):
    # separators: a TAB-only line, a spaces line, an empty line; no separator before EOF
    text = "Hi\tO\nParis\tB-location\n\t\nI\tO\n   \nlove\tO\nNY\tB-location\n\nlast\tO"
    _write(tmp_path, "wnut17", "emerging.dev.conll", text)
    data = load_wnut17("validation", data_dir=tmp_path)
    assert [e.tokens for e in data] == [["Hi", "Paris"], ["I"], ["love", "NY"], ["last"]]
    assert data.examples[0].tags == [0, WNUT_LABELS.index("B-location")]
    assert [e.guid for e in data] == [f"emerging.dev.conll:{n}" for n in (1, 4, 6, 9)]
    _write(tmp_path, "wnut17", "emerging.dev.conll", "a\tO\nb\tO\textra\n\nc\tO\n")
    with pytest.raises(DataFormatError, match=r"line 2: expected 'token<TAB>tag', got 'b\\tO\\textra'"):
        load_wnut17("validation", data_dir=tmp_path)
    skipped = load_wnut17("validation", data_dir=tmp_path, skip_bad=True)  # the broken sentence goes
    assert skipped.skipped == 1 and [e.tokens for e in skipped] == [["c"]]
    _write(tmp_path, "wnut17", "emerging.dev.conll", "a\tB-animal\n")
    with pytest.raises(DataFormatError, match=r"unknown label 'B-animal'; allowed: \['O', 'B-corporation'"):
        load_wnut17("validation", data_dir=tmp_path)


def test_squad_bad_answers_and_keys(tmp_path):
    qa = [{"id": "q1", "question": "Who?", "answers": [{"text": "Bob", "answer_start": 0}]},
          {"id": "q2", "question": "Where?", "answers": [{"text": "Rome", "answer_start": 3}]},
          {"id": "q3", "answers": [{"text": "Bob", "answer_start": 0}]}]
    doc = {"version": "1.1", "data": [{"title": "T", "paragraphs": [{"context": "Bob went to Rome.", "qas": qa}]}]}
    _write(tmp_path, "squad-v1.1", "dev-v1.1.json", json.dumps(doc))
    with pytest.raises(DataFormatError, match=r"data\[0\]\.paragraphs\[0\]\.qas\[1\]: expected answers with "
                                              r"context\[start:start\+len\(text\)\] == text, got \"\(3, 'Rome'\)\""):
        load_squad(data_dir=tmp_path)
    data = load_squad(data_dir=tmp_path, skip_bad=True)
    assert data.skipped == 2 and [e.id for e in data] == ["q1"]
    assert "qas[2]: expected keys" in data.errors[1] and "'question'" in data.errors[1]


def test_tsv_sentence_pairs(tmp_path):
    path = _write(tmp_path, "rte", "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA cat sat.\tA cat is here.\t"
                  "entailment\n1\tIt rains.\tIt is dry.\tnot_entailment\n")
    data = load_tsv(path, ["sentence1", "sentence2"], "label", ["entailment", "not_entailment"])
    assert [(e.text_a, e.text_b, e.label) for e in data] == [
        ("A cat sat.", "A cat is here.", 0), ("It rains.", "It is dry.", 1)]
    with pytest.raises(DataFormatError, match=r"line 1: header lacks column\(s\) \['premise'\]; got header"):
        load_tsv(path, ["premise"], "label", ["entailment"])


# ---------------------------------------------------------------- datasets (offline)

@pytest.fixture()
def offline_datasets(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    return datasets, {"cache_dir": str(tmp_path / "cache")}


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_hub_path_sst2_csv_equals_local_loader(offline_datasets, tmp_path):
    _, cache = offline_datasets
    local = load_sst2("validation")
    tsv = str(local.source)
    hub = load_sst2("train", hub="csv", data_files=tsv, delimiter="\t", quoting=3, keep_default_na=False, **cache)
    assert [(e.text_a, e.label) for e in hub] == [(e.text_a, e.label) for e in local]
    assert hub.label_names == SST2_LABELS and hub.source == "datasets:csv/train"


def test_hub_path_classlabel_remapped_by_name(offline_datasets, tmp_path):
    datasets, cache = offline_datasets
    local = load_trec("test")
    shuffled = ["NUM", "LOC", "HUM", "DESC", "ENTY", "ABBR"]  # not our order: ids must be remapped by name
    rows = [{"text": e.text_a, "coarse_label": shuffled.index(TREC_LABELS[e.label])} for e in local.examples[:50]]
    features = datasets.Features({"text": datasets.Value("string"),
                                  "coarse_label": datasets.ClassLabel(names=shuffled)})
    hub = load_trec("train", hub="json", data_files=_jsonl(tmp_path / "t.jsonl", rows), features=features, **cache)
    assert [(e.text_a, e.label) for e in hub] == [(e.text_a, e.label) for e in local.examples[:50]]
    bad = datasets.Features({"text": datasets.Value("string"), "coarse_label": datasets.ClassLabel(names=list("abcdef"))})
    with pytest.raises(DataFormatError, match=r"column 'coarse_label' has labels \['a', .*\]; expected \['ABBR'"):
        load_trec("train", hub="json", data_files=_jsonl(tmp_path / "b.jsonl", rows), features=bad, **cache)


def test_hub_path_sms_wnut_squad(offline_datasets, tmp_path):
    datasets, cache = offline_datasets
    sms = _jsonl(tmp_path / "s.jsonl", [{"sms": "hi\n", "label": "ham"}, {"sms": "WIN\n", "label": "spam"}])
    assert [(e.text_a, e.label) for e in load_sms_spam(hub="json", data_files=sms, **cache)] == [("hi", 0), ("WIN", 1)]
    with pytest.raises(DataFormatError, match=r"column 'label': unknown label 'eggs'; allowed: \['ham', 'spam'\]"):
        load_sms_spam(hub="json", data_files=_jsonl(tmp_path / "e.jsonl", [{"sms": "x", "label": "eggs"}]), **cache)

    local = load_wnut17("validation").examples[:20]
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=WNUT_LABELS))})
    rows = [{"tokens": e.tokens, "ner_tags": e.tags} for e in local]
    wnut = load_wnut17(hub="json", data_files=_jsonl(tmp_path / "w.jsonl", rows), features=features, **cache)
    assert [(e.tokens, e.tags) for e in wnut] == [(e.tokens, e.tags) for e in local]

    questions = load_squad("validation-2articles").examples[:10]
    rows = [{"id": q.id, "title": q.title, "context": q.context, "question": q.question,
             "answers": {"text": q.answer_texts, "answer_start": q.answer_starts}} for q in questions]
    squad = load_squad("train", hub="json", data_files=_jsonl(tmp_path / "q.jsonl", rows), **cache)
    assert squad.examples == questions


# ---------------------------------------------------------------- splits

def test_stratified_split_keeps_label_shares():
    data = load_sms_spam()
    train, evaluation = stratified_split(data.examples, 0.2, seed=0)
    assert len(train) + len(evaluation) == 5574 and len(evaluation) == 965 + 149
    assert Counter(e.label for e in evaluation) == {0: 965, 1: 149}
    assert stratified_split(data.examples, 0.2, seed=0)[1] == evaluation
    with pytest.raises(ValueError, match=r"eval_fraction must be in \(0, 1\), got 1.5"):
        stratified_split(data.examples, 1.5, seed=0)


def test_split_squad_by_article_shares_no_article():
    data = load_squad("validation")
    train, evaluation = split_squad_by_article(data, 0.25, seed=3)
    assert len(train) + len(evaluation) == 10570
    assert not {e.title for e in train} & {e.title for e in evaluation}
    assert len({e.title for e in evaluation}) == 12
    assert split_squad_by_article(data, 0.25, seed=3)[1] == evaluation
    assert split_squad_by_article(data, 0.25, seed=4)[1] != evaluation
    with pytest.raises(ValueError, match=r"need at least 2 articles to split by article, got 1"):
        split_squad_by_article(data.examples[:3], 0.5, seed=0)


# ---------------------------------------------------------------- classification encoding and batching

def test_encode_classification_counts_truncation(hf_tokenizer):
    examples = load_sst2("validation").examples[:200]
    enc = encode_classification(examples, hf_tokenizer, max_length=16)
    full = [len(ids) for ids in hf_tokenizer([e.text_a for e in examples])["input_ids"]]
    assert enc.n_truncated == sum(n > 16 for n in full) > 0
    assert enc.lengths == [min(n, 16) for n in full]
    assert all(f["input_ids"][-1] == hf_tokenizer.sep_token_id for f in enc.features)
    assert [f["labels"] for f in enc.features] == [e.label for e in examples]


def test_encode_classification_pairs_and_our_tokenizer(hf_tokenizer, minilm_dir):
    pairs = [TextExample("A cat sat on the mat.", 0, "A cat is here."), TextExample("It rains.", 1, "It is dry.")]
    enc = encode_classification(pairs, hf_tokenizer, max_length=32)
    first = enc.features[0]
    sep = first["input_ids"].index(hf_tokenizer.sep_token_id)
    assert first["token_type_ids"] == [0] * (sep + 1) + [1] * (len(first["input_ids"]) - sep - 1)
    tokenizer_mod = pytest.importorskip("bertmini.tokenizer")
    ours = encode_classification(pairs, tokenizer_mod.WordPieceTokenizer.from_file(minilm_dir), max_length=32)
    assert ours.features == enc.features
    with pytest.raises(ValueError, match=r"mix single sentences and pairs: example 0 has text_b='A cat is here\.', "
                                         r"example 1 has text_b=None"):
        encode_classification([pairs[0], TextExample("x", 0)], hf_tokenizer)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 60), min_size=1, max_size=80), st.integers(1, 9), st.integers(0, 3))
def test_bucket_batches_partition_into_length_runs(lengths, batch_size, seed):
    batches = bucket_batches(lengths, batch_size, shuffle=True, seed=seed)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) == batch_size for b in sorted(batches, key=len)[1:])
    # each batch is a run of the length-sorted order: batches' length ranges never interleave
    spans = sorted((min(lengths[i] for i in b), max(lengths[i] for i in b)) for b in batches)
    assert all(hi <= lo for (_, hi), (lo, _) in zip(spans, spans[1:]))
    assert bucket_batches(lengths, batch_size, shuffle=True, seed=seed) == batches


def test_bucket_batches_cut_padding_and_reshuffle():
    lengths = [len(e.text_a.split()) for e in load_sst2("validation").examples]
    padded = lambda batches: sum(len(b) * max(lengths[i] for i in b) for b in batches)  # noqa: E731
    bucketed = bucket_batches(lengths, 16, shuffle=True, seed=0)
    in_order = [list(range(i, min(i + 16, len(lengths)))) for i in range(0, len(lengths), 16)]
    assert padded(bucketed) < 0.6 * padded(in_order)
    assert bucket_batches(lengths, 16, shuffle=True, seed=1) != bucketed
    assert [i for b in bucket_batches([3, 1, 2, 1], 2, shuffle=False) for i in b] == [1, 3, 2, 0]
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        bucket_batches(lengths, 0)


def test_pad_collate_pads_to_batch_max():
    batch = pad_collate([{"input_ids": [5, 6, 7], "labels": 1}, {"input_ids": [5], "labels": 0}], pad_token_id=9)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 9, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [1, 0]
    ner = pad_collate([{"input_ids": [1, 2], "token_type_ids": [0, 0], "labels": [-100, 3]},
                       {"input_ids": [1, 2, 3, 4], "token_type_ids": [0, 0, 0, 0], "labels": [-100, 1, 2, -100]}])
    assert ner["labels"].tolist() == [[-100, 3, -100, -100], [-100, 1, 2, -100]]
    assert ner["token_type_ids"].dtype == torch.long and ner["token_type_ids"].shape == (2, 4)


def test_pad_collate_rounds_up_to_a_multiple():
    rows = [{"input_ids": [5, 6, 7], "labels": [-100, 1, -100]}, {"input_ids": [5], "labels": [-100]}]
    batch = pad_collate(rows, pad_token_id=9, pad_to_multiple_of=4)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 9], [5, 9, 9, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 1, -100, -100], [-100] * 4]
    assert pad_collate(rows, pad_to_multiple_of=8, max_width=5)["input_ids"].shape == (2, 5)  # capped
    assert pad_collate(rows, pad_to_multiple_of=8, max_width=2)["input_ids"].shape == (2, 3)  # never cuts
    assert pad_collate(rows, pad_to_multiple_of=1)["input_ids"].shape == (2, 3)
    assert [padded_width(n, 32, 384) for n in (1, 32, 33, 370, 384)] == [32, 32, 64, 384, 384]
    with pytest.raises(ValueError, match="pad_to_multiple_of must be >= 1, got 0"):
        pad_collate(rows, pad_to_multiple_of=0)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(20, 384), min_size=1, max_size=600), st.integers(1, 32), st.integers(0, 3))
def test_rounded_batches_have_few_shapes(lengths, batch_size, seed):
    """A bucketed epoch padded to multiples of 32 has at most ceil(384 / 32) = 12 widths, each covering
    its batch and at most 31 tokens past its longest input (the growth in memory came from one shape per batch)."""
    widths = []
    for batch in bucket_batches(lengths, batch_size, shuffle=True, seed=seed):
        width = pad_collate([{"input_ids": [1] * lengths[i]} for i in batch], pad_to_multiple_of=32,
                            max_width=max(lengths))["input_ids"].shape[1]
        assert 0 <= width - max(lengths[i] for i in batch) < 32 and width <= max(lengths)
        widths.append(width)
    assert len(set(widths)) <= 12


# ---------------------------------------------------------------- NER alignment

def test_align_labels_first_subtoken():
    assert align_labels([None, 0, 0, 1, 2, 2, 2, None], [3, 4, 0]) == [-100, 3, -100, 4, 0, -100, -100, -100]
    with pytest.raises(IndexError, match="word id 2 but the sentence has 2 word labels"):
        align_labels([None, 2, None], [1, 1])


def test_encode_and_decode_ner_round_trip(hf_tokenizer):
    examples = load_wnut17("validation").examples[:60] + [TokenExample(["Kraftwerk", "rocks"], [9, 0])]
    enc = encode_ner(examples, hf_tokenizer, max_length=128)
    assert enc.n_truncated == 0
    kraft = enc.features[-1]
    assert len(kraft["input_ids"]) > 4  # "Kraftwerk" is several word pieces: only the first is labelled
    assert kraft["labels"] == [-100, 9] + [-100] * (len(kraft["input_ids"]) - 4) + [0, -100]
    # feeding the gold token labels back as "predictions" must give back the gold word tags
    width = max(enc.lengths)
    preds = torch.tensor([[max(x, 0) for x in f["labels"]] + [0] * (width - len(f["labels"])) for f in enc.features])
    assert decode_ner(preds, enc, WNUT_LABELS) == [[WNUT_LABELS[t] for t in e.tags] for e in examples]


def test_encode_ner_truncation_fills_cut_words_with_O(hf_tokenizer):
    example = TokenExample(["Paris", "is", "in", "France", "and", "Berlin"], [7, 0, 0, 7, 0, 7])
    enc = encode_ner([example], hf_tokenizer, max_length=5)  # [CLS] paris is in [SEP]
    assert enc.n_truncated == 1 and enc.features[0]["labels"] == [-100, 7, 0, 0, -100]
    assert decode_ner([[0, 7, 0, 0, 0]], enc, WNUT_LABELS) == [["B-location", "O", "O", "O", "O", "O"]]
    with pytest.raises(ValueError, match="1 prediction rows for 2 encoded sentences"):
        decode_ner([[0]], encode_ner([example, example], hf_tokenizer), WNUT_LABELS)
