"""Every bad input gets one clear line, not a traceback: ``error: <what>, <where>, expected ..., got ...`` and
exit status 2 from each command (``pretrain``, ``finetune``, ``predict``), and a ValueError naming the input
from the Python API. Then hypothesis feeds the loaders random bytes, other encodings, cut files and wrong
columns: each returns examples or raises the project's error naming the file, never a codec traceback."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bertmini import BertConfig, BertForPreTraining, BertModel
from bertmini.cli import main as cli
from bertmini.errors import DataFormatError, InputError, message, read_lines, read_text
from bertmini.finetuning import (
    SMS_LABELS,
    TREC_LABELS,
    WNUT_LABELS,
    TaskData,
    load_sms_spam,
    load_squad,
    load_sst2,
    load_trec,
    load_tsv,
    load_wnut17,
)
from bertmini.finetuning.predict import _read_file
from bertmini.pretraining.build import build_or_load
from bertmini.pretraining.corpus import read_gutenberg, read_text_documents, read_tsv_column, read_wikitext
from bertmini.pretraining.examples import PretrainingDataset
from bertmini.tokenizer import WordPieceTokenizer
from bertmini.training.state import load_checkpoint, restore_weights
from bertmini.training.yaml_config import CONFIG_DIR
from bertmini.utils import get_device

from strategies import (
    conll_rows,
    file_bytes,
    jsonl_rows,
    sms_rows,
    squad_documents,
    trec_rows,
    tsv_rows,
    words,
)

TINY = CONFIG_DIR / "pretrain_tiny_test.yaml"
FAST = ["--max-train-examples", "16", "--max-eval-examples", "8", "--max-steps", "1", "--batch-size", "8",
        "--max-length", "32", "--no-progress"]
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def error_line(capsys, *argv: str) -> str:
    """Run a command that must fail on its input: exit status 2 and exactly one ``error:`` line, returned."""
    capsys.readouterr()
    assert cli(list(argv)) == 2, argv
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture(scope="module")
def base(tmp_path_factory, minilm_dir) -> Path:
    """A random 2-layer BertModel with the real MiniLM vocabulary (no task head)."""
    folder = tmp_path_factory.mktemp("base")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(folder)
    WordPieceTokenizer.from_file(minilm_dir).save(folder)
    return folder


def as_head(base: Path, folder: Path, architecture: str, **config: object) -> Path:
    """``base`` declared as a task model (its head is initialized when loaded)."""
    shutil.copytree(base, folder, dirs_exist_ok=True)
    data = {**json.loads((base / "config.json").read_text()), "architectures": [architecture], **config}
    (folder / "config.json").write_text(json.dumps(data))
    return folder


@pytest.fixture(scope="module")
def classifier(base, tmp_path_factory) -> Path:
    return as_head(base, tmp_path_factory.mktemp("clf"), "BertForSequenceClassification")


@pytest.fixture(scope="module")
def reader(base, tmp_path_factory) -> Path:
    return as_head(base, tmp_path_factory.mktemp("qa"), "BertForQuestionAnswering")


def sst2_dir(root: Path, train: bytes) -> Path:
    """A data dir whose sst2/train.tsv is ``train`` (and dev.tsv a small good one)."""
    (root / "sst2").mkdir(parents=True, exist_ok=True)
    (root / "sst2" / "train.tsv").write_bytes(train)
    dev = "".join(f"fine film number {i}\t{i % 2}\n" for i in range(8))
    (root / "sst2" / "dev.tsv").write_text("sentence\tlabel\n" + dev)
    return root


# ---------------------------------------------------------------- classes of bad input, one test each

def test_header_only_or_empty_tsv_names_the_file(base, tmp_path, capsys):
    data = sst2_dir(tmp_path, b"sentence\tlabel\n")
    line = error_line(capsys, "finetune", "--task", "sst2", "--model", str(base), "--data-dir", str(data), *FAST)
    train = data / "sst2" / "train.tsv"
    assert line == f"error: {train}: no examples: it holds no rows (an empty file, or a header only)"
    (data / "sst2" / "train.tsv").write_bytes(b"")
    with pytest.raises(DataFormatError, match=r"train\.tsv: the file is empty; expected a header row with column\(s\) "
                                              r"\['sentence', 'label'\], then one row per example"):
        load_sst2("train", data_dir=data)
    (data / "sst2" / "train.tsv").write_text("sentence\tlabel\nno tab\n")
    with pytest.raises(DataFormatError, match=r"train\.tsv: no examples: every row was malformed \(1 skipped; first: "
                                              r".*line 2: expected 2 tab-separated fields"):
        load_sst2("train", data_dir=data, skip_bad=True)


@pytest.mark.parametrize("encoding, detail", [
    ("latin-1", "byte 0xe9 at column 6)"),
    ("utf-16", "byte 0xff at column 1; a UTF-16 file? save it as UTF-8)"),
])
def test_non_utf8_files_name_file_line_and_column(tmp_path, encoding, detail, capsys, base):
    text = "sentence\tlabel\ngood\t1\nfianc\u00e9e\t0\n"
    raw = text.encode(encoding)
    line = 1 if encoding == "utf-16" else 3
    data = sst2_dir(tmp_path, raw)
    expected = f"not UTF-8 text ({detail}"
    assert error_line(capsys, "finetune", "--task", "sst2", "--model", str(base), "--data-dir", str(data),
                      *FAST) == f"error: {data / 'sst2' / 'train.tsv'}: line {line}: {expected}"
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(raw)
    for read in (read_text_documents, read_wikitext, read_gutenberg, lambda p: read_tsv_column(p, "sentence")):
        with pytest.raises(DataFormatError) as err:
            list(read(corpus))
        assert str(err.value) == f"{corpus}: line {line}: {expected}"


@pytest.mark.parametrize("loader, path, rows", [
    (load_trec, "trec-qc/train_5500.label", "NUM:dist How far ?\nHUM:ind Who is Andr\u00e9 ?\n"),
    (load_sms_spam, "sms-spam/SMSSpamCollection", "ham\thi\nspam\tWIN \u00a3100\n"),
    (load_wnut17, "wnut17/wnut17train.conll", "Hi\tO\nZ\u00fcrich\tB-location\n"),
    (load_squad, "squad-v1.1/dev-v1.1.json", '{"data": []}\n\u00e9'),
])
def test_every_task_loader_reports_non_utf8(tmp_path, loader, path, rows):
    (tmp_path / path).parent.mkdir(parents=True)
    (tmp_path / path).write_bytes(rows.encode("latin-1"))
    split = "validation" if loader is load_squad else "train"
    with pytest.raises(DataFormatError, match=re.escape(f"{tmp_path / path}: line 2: not UTF-8 text (byte 0x")):
        loader(split, data_dir=tmp_path)


QA = {"id": "q1", "question": "Who?", "answers": [{"text": "Bob", "answer_start": 0}]}


@pytest.mark.parametrize("doc, expected", [
    ([1, 2], "expected SQuAD JSON {'version', 'data': [...]}, got a JSON list"),
    ({"version": "1.1"}, "expected SQuAD JSON {'version', 'data': [...]}, got an object with keys ['version']"),
    ({"data": [{"title": "T"}]}, "data[0]: expected an article {'title', 'paragraphs': [...]}, got \"{'title': 'T'}\""),
    ({"data": [{"title": "T", "paragraphs": [{"context": "Bob.", "qas": [{**QA, "answers": {"text": ["Bob"]}}]}]}]},
     "data[0].paragraphs[0].qas[0]: expected keys id/question/answers[text, answer_start] and title/context "
     "(strings; answer_start an integer >= 0), got \"answers {'text': ['Bob']} is not a list of {text, "
     "answer_start} objects\""),
    ({"data": [{"title": "T", "paragraphs": [{"context": "Bob.", "qas": [{**QA, "answers": [
        {"text": "Bob", "answer_start": "0"}]}]}]}]}, "got \"answer_start '0' is not an integer >= 0\""),
])
def test_squad_structure_errors_name_the_json_path(tmp_path, doc, expected):
    path = tmp_path / "squad-v1.1" / "dev-v1.1.json"
    path.parent.mkdir()
    path.write_text(json.dumps(doc))
    with pytest.raises(DataFormatError) as err:
        load_squad(data_dir=tmp_path)
    assert str(err.value).startswith(f"{path}: ") and str(err.value).endswith(expected)


def pretrain_args(tmp_path: Path, *overrides: str) -> list[str]:
    return ["pretrain", "--config", str(TINY), "--data-dir", str(tmp_path), f"out_dir={tmp_path / 'out'}",
            f"data.cache_dir={tmp_path / 'cache'}", "data.eval=null", "tokenizer.vocab_size=100",
            "tokenizer.min_frequency=1", "train.max_steps=1", *overrides]


def test_empty_or_one_document_corpus_names_reader_and_path(tmp_path, capsys, tok):
    (tmp_path / "empty.txt").write_text("\n  \n")
    (tmp_path / "one.txt").write_text("One sentence here. Another one there.\n\nA second paragraph.\n")
    assert error_line(capsys, *pretrain_args(tmp_path, "data.train=[{reader: text, path: empty.txt}]")) == (
        f"error: {TINY}: data.train: no text to train the tokenizer on: no sentence in reader 'text' on "
        f"{tmp_path / 'empty.txt'}")
    assert error_line(capsys, *pretrain_args(tmp_path, "data.train=[{reader: text, path: one.txt}]")) == (
        f"error: reader 'text' on {tmp_path / 'one.txt'}: NSP needs at least 2 documents for NotNext pairs, got 1 "
        "(one file read with split 'file', or one article/chapter): add documents, or use data.mode=packed")
    with pytest.raises(DataFormatError, match=re.escape(f"reader 'wikitext' on {tmp_path / 'empty.txt'}: no text: "
                                                        "the corpus yields no document with tokens")):
        build_or_load(tmp_path / "empty.txt", tok, reader="wikitext", cache_dir=tmp_path / "cache")


@pytest.fixture(scope="module")
def tok(minilm_dir) -> WordPieceTokenizer:
    return WordPieceTokenizer.from_file(minilm_dir)


@pytest.fixture(scope="module")
def one_checkpoint(tmp_path_factory) -> Path:
    """A tiny pretraining run with a checkpoint at step 1 (its out_dir)."""
    root = tmp_path_factory.mktemp("resume")
    args = ["pretrain", "--config", str(TINY), f"out_dir={root / 'out'}", f"data.cache_dir={root / 'cache'}",
            "train.max_steps=1", "train.save_every=1", "train.eval_every=0", "data.eval=null"]
    assert cli(args) == 0
    return root


@pytest.mark.parametrize("override, expected", [
    ("model.hidden_size=32", "was written by a model of 2 layers x 64 hidden (FFN 128), vocab 1000, 64 positions, "
                             "the config builds 2 layers x 32 hidden (FFN 128), vocab 1000, 64 positions: use another "
                             "out_dir or delete it"),
    ("train.layerwise_lr_decay=0.9", ": its optimizer state does not fit this run's parameter groups (loaded state "
                                     "dict has a different number of parameter groups; were layerwise_lr_decay or "
                                     "freezing changed?): use another out_dir or delete it"),
])
def test_resume_from_another_models_checkpoint(one_checkpoint, override, expected, capsys):
    root = one_checkpoint
    line = error_line(capsys, "pretrain", "--config", str(TINY), f"out_dir={root / 'out'}",
                      f"data.cache_dir={root / 'cache'}", "train.max_steps=2", "data.eval=null", override)
    checkpoint = root / "out" / "checkpoints" / "step-0000001"
    assert line == f"error: {checkpoint}{'' if expected.startswith(':') else ' '}{expected}"


def test_resume_with_another_head_names_the_first_difference(tmp_path):
    config = BertConfig.preset("tiny", vocab_size=50)
    theirs = {"model": {k: v for k, v in BertForPreTraining(config).state_dict().items()
                        if not k.startswith("cls.seq_relationship")}, "optimizer": {}}
    model = BertForPreTraining(config)
    with pytest.raises(InputError, match=r"first difference: 'cls\.seq_relationship\.bias' is absent there, "
                                         r"\(2,\) here\): use another out_dir or delete it"):
        restore_weights(model, torch.optim.SGD(model.parameters(), lr=0.1), theirs, tmp_path)


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)


def test_unavailable_or_unknown_device(no_cuda, classifier, base, tmp_path, capsys, monkeypatch):
    cuda = (f"error: device 'cuda': CUDA is not available (this torch is built without CUDA; torch "
            f"{torch.__version__}): use device cpu or auto")
    assert error_line(capsys, "predict", "--model", str(classifier), "--text", "x", "--device", "cuda") == cuda
    assert error_line(capsys, "finetune", "--task", "sst2", "--model", str(base), "--out", str(tmp_path / "o"),
                      "--device", "cuda", *FAST) == cuda
    assert error_line(capsys, "pretrain", "--config", str(TINY), f"out_dir={tmp_path / 'p'}",
                      "train.device=cuda") == cuda
    assert error_line(capsys, "predict", "--model", str(classifier), "--text", "x", "--device", "gpu") == (
        "error: device 'gpu': expected auto, cpu, cuda, cuda:N or mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(InputError, match=r"device 'cuda:3': expected a GPU index in \[0, 1\), this machine has 1 GPU"):
        get_device("cuda:3")


@pytest.mark.parametrize("option", ["--max-length", "--batch-size", "--doc-stride", "--n-best", "--max-answer-length"])
@pytest.mark.parametrize("value", ["-5", "0"])
def test_predict_counts_must_be_positive(classifier, option, value, capsys):
    assert error_line(capsys, "predict", "--model", str(classifier), "--text", "x", option, value) == (
        f"error: {option}: expected an integer >= 1, got {value}")


def test_max_length_beyond_the_position_embeddings(classifier, base, tmp_path, capsys):
    expected = ("error: --max-length: expected an integer in [1, 128] (the model's max_position_embeddings), "
                "got 200")
    assert error_line(capsys, "predict", "--model", str(classifier), "--text", "x", "--max-length", "200") == expected
    assert error_line(capsys, "finetune", "--task", "sst2", "--model", str(base), "--out", str(tmp_path / "o"),
                      *FAST, "--max-length", "200") == expected


def test_squad_max_length_must_leave_room_for_the_doc_stride(reader, base, tmp_path, capsys):
    line = error_line(capsys, "predict", "--model", str(reader), "--question", "Who is it?", "--context", "Bob.",
                      "--max-length", "32", "--doc-stride", "28")
    assert line == ("error: max_length 32 leaves 25 context tokens after the longest question (4 tokens; longer ones "
                    "are cut to 64) and 3 special tokens; doc_stride 28 must be smaller: raise max_length or lower "
                    "doc_stride")
    line = error_line(capsys, "finetune", "--task", "squad", "--model", str(base), "--out", str(tmp_path / "o"),
                      *FAST, "--max-length", "64", "--doc-stride", "60")
    assert re.fullmatch(r"error: max_length 64 leaves \d+ context tokens after the longest question \(\d+ tokens; "
                        r"longer ones are cut to 64\) and 3 special tokens; doc_stride 60 must be smaller: .*", line)


def test_long_question_is_cut_not_a_tokenizer_panic(reader, capsys):
    question = " ".join(["what"] * 80)
    capsys.readouterr()
    assert cli(["predict", "--model", str(reader), "--question", question, "--context", "Bob went to Rome.",
                "--max-length", "128", "--doc-stride", "16"]) == 0
    out, err = capsys.readouterr()
    assert "note: 1 question(s) longer than 64 tokens were cut" in err
    assert out.rstrip("\n").endswith("what what what… (truncated to 64 tokens)") and len(out) < 200


@pytest.mark.parametrize("override, expected", [
    ("train.lr=abc", "TrainConfig.lr: expected a number > 0, got 'abc'"),
    ("train.lr=-1", "TrainConfig.lr: expected a number > 0, got -1"),
    ("train.max_steps=1e3", "TrainConfig.max_steps: expected null or an integer >= 1, got 1000.0"),
    ("train.warmup_ratio=1", "TrainConfig.warmup_ratio: expected a number in [0, 1), got 1"),
    ("train.compile=maybe", "TrainConfig.compile: expected true or false, got 'maybe'"),
    ("train.betas=0.9", "TrainConfig.betas: expected two numbers in [0, 1), e.g. [0.9, 0.999], got 0.9"),
    ("train.keep_last=0", "TrainConfig.keep_last: expected null or an integer >= 1, got 0"),
])
def test_train_config_says_the_valid_range(override, expected, capsys):
    assert error_line(capsys, "pretrain", "--config", str(TINY), override) == f"error: {TINY}: train: {expected}"


@pytest.mark.parametrize("option, value, expected", [
    ("--batch-size", "0", "option batch_size: expected an integer >= 1, got 0"),
    ("--eval-fraction", "2", "option eval_fraction: expected a number in (0, 1), got 2.0"),
    ("--label-smoothing", "1.5", "option label_smoothing: expected a number in [0, 1), got 1.5"),
    ("--max-train-examples", "-3", "option max_train_examples: expected null or an integer >= 1, got -3"),
    ("--lr", "-1", "TrainConfig.lr: expected a number > 0, got -1.0"),
])
def test_finetune_options_say_the_valid_range(base, option, value, expected, capsys):
    assert error_line(capsys, "finetune", "--task", "sst2", "--model", str(base), option, value) == f"error: {expected}"


def test_float_or_list_input_ids_through_the_api():
    model = BertModel(BertConfig.preset("tiny", vocab_size=50))
    with pytest.raises(ValueError, match=r"input_ids must be an integer tensor \(torch\.long, or int32\), got dtype "
                                         r"torch\.float32: pass token ids, e\.g\. from the tokenizer"):
        model(input_ids=torch.rand(2, 3))
    with pytest.raises(ValueError, match=r"token_type_ids must be an integer tensor .* got dtype torch\.bool"):
        model(torch.ones(1, 3, dtype=torch.long), token_type_ids=torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"input_ids must be a torch\.Tensor of token ids, got list"):
        model([[1, 2, 3]])


def test_skip_bad_says_what_it_skipped(base, tmp_path, capsys):
    rows = "".join(f"fine movie number {i}\t{i % 2}\n" for i in range(12))
    data = sst2_dir(tmp_path, ("sentence\tlabel\nok film\t1\nno tab here\n" + rows).encode())
    capsys.readouterr()
    assert cli(["finetune", "--task", "sst2", "--model", str(base), "--data-dir", str(data), "--out",
                str(tmp_path / "out"), "--skip-bad", *FAST]) == 0
    assert ("skipped 1 malformed row in train.tsv (first: line 3: expected 2 tab-separated fields (sentence, label), "
            "got '1 field(s): no tab here')") in capsys.readouterr().out.splitlines()


def test_predict_echoes_a_cut_input_shortened(classifier, tmp_path, capsys):
    (tmp_path / "long.txt").write_text(" ".join(["word"] * 10_000) + "\n")
    capsys.readouterr()
    assert cli(["predict", "--model", str(classifier), "--file", str(tmp_path / "long.txt"), "--text", "short",
                "--max-length", "16"]) == 0
    out, err = capsys.readouterr()
    short, long = out.splitlines()
    assert short.endswith("\tshort")
    assert long.endswith("\t" + " ".join(["word"] * 16) + "… (truncated to 16 tokens)")
    assert "note: 1 input(s) longer than --max-length 16 tokens were cut" in err
    capsys.readouterr()
    assert cli(["predict", "--model", str(classifier), "--file", str(tmp_path / "long.txt"), "--format", "jsonl",
                "--max-length", "16"]) == 0
    assert json.loads(capsys.readouterr().out)["truncated_to"] == 16


def test_too_little_data_to_carve_a_dev_set(base, tmp_path, capsys):
    trec = tmp_path / "trec-qc" / "train_5500.label"
    trec.parent.mkdir()
    trec.write_text("NUM:dist How far ?\nHUM:ind Who is it ?\n")
    squad = tmp_path / "squad-v1.1" / "dev-v1.1.json"
    squad.parent.mkdir()
    qa = {"id": "q1", "question": "Who?", "answers": [{"text": "Bob", "answer_start": 0}]}
    squad.write_text(json.dumps({"data": [{"title": "T", "paragraphs": [{"context": "Bob went.", "qas": [qa]}]}]}))
    args = ["--model", str(base), "--data-dir", str(tmp_path), "--out", str(tmp_path / "out"), *FAST]
    assert error_line(capsys, "finetune", "--task", "trec", *args) == (
        f"error: {trec}: 2 examples are too few to carve a dev set from: the split gives 2 for training and 0 for "
        "evaluation (change eval_fraction, or add data)")
    assert error_line(capsys, "finetune", "--task", "squad", *args) == (
        f"error: {squad}: the dev set is split by article into training and evaluation questions: expected at least "
        "2 articles, got 1")


def broken_model(base: Path, folder: Path, config: str | None) -> Path:
    shutil.copytree(base, folder)
    if config is None:
        (folder / "config.json").unlink()
    else:
        (folder / "config.json").write_text(config)
    return folder


@pytest.mark.parametrize("config, expected", [
    (None, "model folder '{m}' has no config.json (expected a Hugging Face format folder: config.json, "
           "model.safetensors, vocab.txt)"),
    ('{"hidden_size": 32,', "{m}/config.json: line 1: invalid JSON at column 20: Expecting property name enclosed in "
                            "double quotes"),
    ("[1, 2]", "{m}/config.json: expected a JSON file holding an object, got an array"),
    ('{"architectures": ["BertForSequenceClassification"], "hidden_dropout_prob": "high"}',
     "{m}/config.json: hidden_dropout_prob must be in [0, 1), got 'high'"),
])
def test_model_folder_without_or_with_a_corrupt_config(base, tmp_path, config, expected, capsys):
    model = broken_model(base, tmp_path / "m", config)
    assert error_line(capsys, "predict", "--model", str(model), "--text", "x") == "error: " + expected.format(m=model)


def test_cli_table_of_other_bad_inputs(base, classifier, tmp_path, capsys):
    """Options, paths and files of every command; each gets its one line."""
    (tmp_path / "bad.yaml").write_text("task: [sst2\n")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "in.jsonl").write_text('{"text": "a"}\n{oops\n')
    (tmp_path / "qa.txt").write_text("a question\n")
    ner = as_head(base, tmp_path / "ner", "BertForTokenClassification")
    f, p, t = "finetune", "predict", ["pretrain", "--config", str(TINY)]
    cases = [
        ([*t[:2], str(tmp_path)], f"config '{tmp_path}' is a directory; expected a YAML file"),
        ([*t[:2], str(tmp_path / "nope.yaml")], f"config '{tmp_path / 'nope.yaml'}': no such file, and no shipped"),
        ([*t[:2], str(tmp_path / "bad.yaml")], f"{tmp_path / 'bad.yaml'}: invalid YAML at line 2: expected ',' or ']'"),
        ([*t, "--data-dir", str(tmp_path / "in.jsonl")], f"data dir '{tmp_path / 'in.jsonl'}' is a file, expected a "
                                                        "folder"),
        ([*t, "--data-dir", str(tmp_path / "none")], f"data dir '{tmp_path / 'none'}' does not exist"),
        ([*t, "train.lr=[1,"], f"{TINY}: override 'train.lr=[1,': invalid YAML value: expected the node content"),
        ([f, "--task", "ner", "--model", str(base)], "task: expected one of ['sst2', 'trec', 'sms_spam', 'wnut17', "
                                                     "'squad'], got 'ner'"),
        ([f, "--task", "sst2", "--model", str(base), "--config", str(tmp_path / "list.yaml")],
         f"{tmp_path / 'list.yaml'}: expected a mapping of sections at the top level, got list"),
        ([f, "--task", "sst2", "--model", str(base), "--seeds", "1,x"], "command line: option seeds: expected "
                                                                        "comma-separated integers, got '1,x'"),
        ([p, "--model", str(tmp_path / "in.jsonl"), "--text", "x"], f"model '{tmp_path / 'in.jsonl'}' is a file; "
                                                                    "expected a Hugging Face format folder"),
        ([p, "--model", str(classifier), "--file", str(tmp_path)], f"{tmp_path}: is a directory, expected a file"),
        ([p, "--model", str(classifier), "--file", str(tmp_path / "none.txt")], f"{tmp_path / 'none.txt'}: no such "
                                                                                "file"),
        ([p, "--model", str(classifier), "--file", str(tmp_path / "in.jsonl")],
         f"{tmp_path / 'in.jsonl'}: line 2: invalid JSON at column 2: Expecting property name enclosed in double "
         "quotes"),
        ([p, "--model", str(ner), "--text", "Paris"], "the model's labels (config.json id2label) must be BIO tags 'O', "
                                                      "'B-<type>' or 'I-<type>' to find entities, got 'LABEL_0'"),
    ]
    for argv, expected in cases:
        assert error_line(capsys, *argv).startswith("error: " + expected), argv


def test_usage_errors_and_unknown_commands_return_2(capsys):
    capsys.readouterr()
    assert cli(["predict", "--model", "m", "--max-length", "abc"]) == 2
    assert "error: argument --max-length: invalid int value: 'abc'" in capsys.readouterr().err
    assert cli(["pretrian"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown command 'pretrian'; expected one of pretrain, finetune, "
                                              "predict")


def test_corrupt_caches_and_checkpoints_name_the_file(tmp_path):
    (tmp_path / "data.pt").write_bytes(b"not a torch file")
    with pytest.raises(DataFormatError, match=re.escape(f"{tmp_path / 'data.pt'}: unreadable dataset cache (")):
        PretrainingDataset.load(tmp_path / "data.pt")
    (tmp_path / "step-0000001").mkdir()
    (tmp_path / "step-0000001" / "state.pt").write_bytes(b"\x80\x04 cut")
    with pytest.raises(InputError, match=re.escape(f"{tmp_path / 'step-0000001' / 'state.pt'}: unreadable training "
                                                   "checkpoint (")):
        load_checkpoint(tmp_path / "step-0000001")


def test_error_lines_are_one_line():
    assert message(ValueError("first\n  second\n")) == "first; second"
    assert message(FileNotFoundError(2, "No such file or directory", "x.txt")) == "x.txt: No such file or directory"


# ---------------------------------------------------------------- fuzzing the loaders

def assert_examples_or_named_error(load, path: Path) -> None:
    """``load()`` returns a TaskData with examples, or raises the project's error naming ``path``."""
    try:
        data = load()
    except Exception as err:  # noqa: BLE001 - the type is what is checked
        assert isinstance(err, InputError), f"{type(err).__name__}: {err}"
        assert path.name in str(err) and "\n" not in str(err), str(err)
        return
    assert isinstance(data, TaskData) and len(data) > 0


TASK_FILES = {
    "sst2": (load_sst2, "train", "sst2/train.tsv", tsv_rows(["sentence", "label"], ["0", "1", " "])),
    "trec": (load_trec, "train", "trec-qc/train_5500.label", trec_rows(TREC_LABELS)),
    "sms_spam": (load_sms_spam, "train", "sms-spam/SMSSpamCollection", sms_rows(SMS_LABELS)),
    "wnut17": (load_wnut17, "train", "wnut17/wnut17train.conll", conll_rows(WNUT_LABELS)),
    "squad": (load_squad, "validation", "squad-v1.1/dev-v1.1.json", squad_documents()),
}


@pytest.mark.parametrize("task", sorted(TASK_FILES))
def test_fuzz_task_loaders(task, tmp_path_factory):
    load, split, name, rows = TASK_FILES[task]
    root = tmp_path_factory.mktemp(task)
    path = root / name
    path.parent.mkdir(parents=True)

    @FUZZ
    @given(raw=file_bytes(rows), skip_bad=st.booleans())
    def check(raw: bytes, skip_bad: bool) -> None:
        path.write_bytes(raw)
        assert_examples_or_named_error(lambda: load(split, data_dir=root, skip_bad=skip_bad), path)

    check()


def test_fuzz_load_tsv_pairs(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "dev.tsv"

    @FUZZ
    @given(raw=file_bytes(tsv_rows(["s1", "s2", "label"], ["yes", "no"])))
    def check(raw: bytes) -> None:
        path.write_bytes(raw)
        assert_examples_or_named_error(lambda: load_tsv(path, ["s1", "s2"], "label", ["yes", "no"]), path)

    check()


CORPUS_READERS = {
    "text": lambda p: read_text_documents(p),
    "text_blank_line": lambda p: read_text_documents(p, split="blank_line", sentence_per_line=True),
    "wikitext": lambda p: read_wikitext(p, detokenize=True),
    "gutenberg": lambda p: read_gutenberg(p),
    "tsv": lambda p: read_tsv_column(p, "sentence"),
}


@pytest.mark.parametrize("reader", sorted(CORPUS_READERS))
def test_fuzz_corpus_readers(reader, tmp_path_factory):
    path = tmp_path_factory.mktemp(reader) / "corpus.txt"
    lines = st.lists(words | st.sampled_from([" = Title = ", " = = Part = = ", "CHAPTER 1", "sentence\tlabel", ""]),
                     max_size=10)

    @FUZZ
    @given(raw=file_bytes(lines))
    def check(raw: bytes) -> None:
        path.write_bytes(raw)
        try:
            docs = list(CORPUS_READERS[reader](path))
        except Exception as err:  # noqa: BLE001 - the type is what is checked
            assert isinstance(err, InputError) and path.name in str(err), f"{type(err).__name__}: {err}"
            return
        assert all(doc and all(isinstance(s, str) and s for s in doc) for doc in docs)

    check()


@pytest.mark.parametrize("name, keys", [("in.txt", ("text",)), ("in.jsonl", ("text",)),
                                        ("qa.jsonl", ("question", "context"))])
def test_fuzz_predict_input_files(name, keys, tmp_path_factory):
    path = tmp_path_factory.mktemp("predict") / name
    rows = jsonl_rows(list(keys)) if name.endswith(".jsonl") else st.lists(words, max_size=6)

    @FUZZ
    @given(raw=file_bytes(rows))
    def check(raw: bytes) -> None:
        path.write_bytes(raw)
        try:
            got = _read_file(str(path), keys)
        except Exception as err:  # noqa: BLE001 - the type is what is checked
            assert isinstance(err, InputError) and path.name in str(err), f"{type(err).__name__}: {err}"
            return
        assert got and all(isinstance(row[k], str) for row in got for k in keys)

    check()


@FUZZ
@given(raw=st.binary(max_size=200) | file_bytes(st.lists(words, max_size=5)))
def test_fuzz_whole_file_and_line_readers_agree(raw, tmp_path):
    """``read_text`` and the streaming ``read_lines`` give the same lines, or the same error (file, line, column)."""
    path = tmp_path / "f.txt"
    path.write_bytes(raw)
    try:
        text = read_text(path)
    except DataFormatError as err:
        with pytest.raises(DataFormatError) as streamed:
            list(read_lines(path))
        assert str(streamed.value) == str(err)
        body = raw.removeprefix(b"\xef\xbb\xbf")
        line = body.count(b"\n", 0, _first_bad(body)) + 1
        assert f": line {line}: not UTF-8" in str(err)
        return
    expected = text.split("\n")
    if expected[-1] == "":
        expected.pop()
    assert [line for _, line in read_lines(path)] == [line.removesuffix("\r") for line in expected]


def _first_bad(raw: bytes) -> int:
    """Offset of the first byte of ``raw`` that is not UTF-8."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return err.start
    return len(raw)
