"""`python -m bertmini finetune` / `predict` end to end on a tiny random checkpoint (a few seconds per task),
plus option parsing, loss composition and the errors users meet."""
from __future__ import annotations

import json
import re
import shutil
import statistics
import zlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bertmini import BertConfig, BertModel
from bertmini.cli import main
from bertmini.finetuning import SST2_LABELS, WNUT_LABELS
from bertmini.finetuning.cli import _train_config
from bertmini.finetuning.inference import forward_features, resolve_model_path
from bertmini.finetuning.losses import FGM, LogitsLoss, RDrop, build_step, class_weights
from bertmini.finetuning.options import parse_options
from bertmini.finetuning.tasks import TASKS
from bertmini.heads import BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification
from bertmini.tokenizer import WordPieceTokenizer
from bertmini.training.batching import BatchLoader
from bertmini.training.yaml_config import CONFIG_DIR
from bertmini.utils import data_dir

pytestmark = pytest.mark.slow  # end-to-end fine-tuning runs: not in the quick subset (pytest -m 'not slow')

transformers = pytest.importorskip("transformers")
FAST = ["--max-train-examples", "32", "--max-eval-examples", "24", "--max-steps", "3", "--batch-size", "8",
        "--max-length", "48", "--no-progress"]


def test_pooling_mean_trains_and_saves_a_mean_pooling_classifier(base, tmp_path):
    finetune(base, tmp_path / "mean", "sst2", "--pooling", "mean")
    model = BertForSequenceClassification.from_pretrained(tmp_path / "mean")
    assert model.config.classifier_pooling == "mean" and model.bert.pooler is None


@pytest.fixture(scope="module")
def base(tmp_path_factory, minilm_dir):
    """A random 2-layer BertModel (no task head) with the real MiniLM vocabulary."""
    folder = tmp_path_factory.mktemp("base")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64)
    BertModel(config).save_pretrained(folder)
    WordPieceTokenizer.from_file(minilm_dir).save(folder)
    return folder


def finetune(base, out, task: str, *extra: str) -> dict:
    assert main(["finetune", "--task", task, "--model", str(base), "--out", str(out), *FAST, *extra]) == 0
    return json.loads((out / "metrics.json").read_text())


def train_log(out) -> list[dict]:
    return [json.loads(line) for line in (out / "train" / "metrics.jsonl").read_text().splitlines()]


def assert_transformers_agrees(out, name: str) -> None:
    """transformers loads the saved checkpoint (with its head) and computes the same outputs as bertmini."""
    import bertmini

    ours, theirs = getattr(bertmini, name).from_pretrained(out), getattr(transformers, name).from_pretrained(out)
    batch = transformers.BertTokenizerFast.from_pretrained(out)(["Bob went to Rome.", "What a film"], padding=True,
                                                                 return_tensors="pt")
    with torch.no_grad():
        a, b = ours(**batch), theirs.eval()(**batch)
    for key in ("logits", "start_logits", "end_logits"):
        if getattr(a, key, None) is not None:
            torch.testing.assert_close(getattr(a, key), getattr(b, key), atol=1e-5, rtol=1e-4)
    assert theirs.config.id2label == ours.config.id2label


def predict(capsys, *args: str) -> list[dict]:
    capsys.readouterr()
    assert main(["predict", *args, "--format", "jsonl"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.fixture(scope="module")
def sst2(base, tmp_path_factory):
    out = tmp_path_factory.mktemp("sst2")
    return out, finetune(base, out, "sst2", "--precision", "bf16", "--grad-accum", "2", "--eval-every", "1",
                         "--early-stopping-patience", "1", "--layerwise-lr-decay", "0.8", "--label-smoothing", "0.1",
                         "--class-weights", "auto", "--max-steps", "4", "--log-every", "1")


@pytest.fixture(scope="module")
def wnut(base, tmp_path_factory):
    out = tmp_path_factory.mktemp("wnut")
    return out, finetune(base, out, "wnut17", "--max-length", "8", "--class-weights", "auto", "--eval-test")


@pytest.fixture(scope="module")
def squad(base, tmp_path_factory):
    out = tmp_path_factory.mktemp("squad")
    return out, finetune(base, out, "squad", "--max-length", "64", "--doc-stride", "16", "--fgm-epsilon", "0.1",
                         "--max-answer-length", "10", "--n-best", "5", "--eval-fraction", "0.3")


def test_sst2_writes_its_outputs_and_records(sst2):
    out, metrics = sst2
    for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "confusion_matrix.png",
                 "errors.jsonl", "train/curves.png"):
        assert (out / name).is_file(), name
    assert not (out / "train" / "checkpoints").exists()
    for key in ("task", "model", "options", "dev", "per_class", "confusion_matrix", "wall_time_s", "train_time_s",
                "examples_per_s", "n_truncated", "n_skipped", "seed", "best_step"):
        assert key in metrics, key
    assert metrics["options"]["precision"] == "bf16" and metrics["label_names"] == SST2_LABELS
    assert metrics["precision"] == {"requested": "bf16", "used": "bf16", "reason": metrics["precision"]["reason"]}
    assert sum(map(sum, metrics["confusion_matrix"])) == metrics["n_eval_examples"] == 24


def test_sst2_keeps_the_best_evaluations_model(sst2):
    """Early stopping (patience 1, one evaluation per step) keeps the best evaluation's model."""
    out, metrics = sst2
    evals = [r for r in train_log(out) if "eval_accuracy" in r]
    assert len(evals) == metrics["steps"] and metrics["steps"] <= 4
    best = max(evals, key=lambda r: r["eval_accuracy"])
    assert metrics["best_step"] == best["step"] and metrics["dev"]["accuracy"] == pytest.approx(best["eval_accuracy"])
    assert metrics["stopped_early"] or metrics["steps"] == 4


def test_sst2_errors_are_the_wrong_predictions(sst2):
    out, metrics = sst2
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert len(errors) == round(24 * (1 - metrics["dev"]["accuracy"]))
    assert all(e["gold"] != e["predicted"] and 0.5 <= e["confidence"] <= 1 for e in errors)


def test_sst2_checkpoint_loads_in_transformers_and_predict_agrees(sst2, capsys):
    out, _ = sst2
    assert_transformers_agrees(out, "BertForSequenceClassification")
    hf = transformers.BertForSequenceClassification.from_pretrained(out).eval()  # `predict` gives its probabilities
    hf_tok = transformers.BertTokenizerFast.from_pretrained(out)
    texts = ["a gorgeous , witty film", "dull and far too long"]
    with torch.no_grad():
        probs = hf(**hf_tok(texts, padding=True, return_tensors="pt")).logits.softmax(-1)
    rows = predict(capsys, "--model", str(out), "--text", texts[0], "--text", texts[1], "--precision", "fp32")
    for row, p in zip(rows, probs):
        assert row["label"] == hf.config.id2label[int(p.argmax())]
        assert row["probability"] == pytest.approx(p.max().item(), abs=1e-4)
    assert main(["predict", "--model", str(out), "--text", texts[0]]) == 0
    assert capsys.readouterr().out.split("\t")[0] in SST2_LABELS


def test_trec_focal_rdrop_fgm_unbucketed(base, tmp_path):
    metrics = finetune(base, tmp_path, "trec", "--focal-gamma", "2", "--class-weights", "1,1,2,1,1,1",
                       "--rdrop-alpha", "1.0", "--fgm-epsilon", "0.5", "--no-bucket", "--eval-test")
    logged = train_log(tmp_path)[0]
    assert {"loss", "task_loss", "kl", "adv_loss"} <= set(logged)  # R-Drop and FGM ran
    assert set(metrics["test"]) == {"accuracy", "macro_f1"} and "stratified 10%" in metrics["eval_split"]
    assert metrics["options"]["class_weights"] == [1.0, 1.0, 2.0, 1.0, 1.0, 1.0]


def test_sms_seeds_and_freezing(base, tmp_path, capsys):
    metrics = finetune(base, tmp_path, "sms_spam", "--seeds", "1,2", "--freeze-embeddings", "--freeze-layers", "1",
                       "--lr", "1e-2")
    assert metrics["seeds"] == [1, 2] and metrics["metric"] == "macro_f1"
    assert metrics["precision"]["requested"] == "auto" and metrics["precision"]["used"] in ("fp32", "bf16")
    runs = [json.loads((tmp_path / f"seed-{s}" / "metrics.json").read_text()) for s in (1, 2)]
    for key in runs[0]["dev"]:
        values = [r["dev"][key] for r in runs]
        assert metrics["dev_mean"][key] == pytest.approx(statistics.mean(values))
        assert metrics["dev_std"][key] == pytest.approx(statistics.stdev(values))
    assert metrics["train_time_s"] == pytest.approx(sum(r["train_time_s"] for r in runs), abs=0.02)
    assert metrics["examples_per_s"] == pytest.approx(statistics.mean(r["examples_per_s"] for r in runs), abs=0.1)
    best = tmp_path / f"seed-{metrics['best_seed']}"
    assert (tmp_path / "model.safetensors").read_bytes() == (best / "model.safetensors").read_bytes()
    before = load_file(resolve_model_path(metrics["model"]) / "model.safetensors")
    after = load_file(best / "model.safetensors")
    for name, tensor in before.items():
        if "pooler" in name:
            continue
        frozen = "embeddings." in name or ".layer.0." in name
        assert torch.equal(after["bert." + name], tensor) == frozen, name
    assert "over seeds [1, 2]" in capsys.readouterr().out


def test_wnut_truncation_entities_and_predict(wnut, capsys):
    out, metrics = wnut
    assert metrics["n_truncated"]["train"] > 0 and metrics["n_truncated"]["eval"] > 0  # max_length 8
    assert metrics["label_names"] == WNUT_LABELS and "micro" in metrics["per_entity"]
    assert set(metrics["dev"]) == {"precision", "recall", "f1"} and "test" in metrics
    assert (out / "entity_f1.png").is_file()
    assert_transformers_agrees(out, "BertForTokenClassification")
    text = "Kraftwerk played in Paris , France"
    (row,) = predict(capsys, "--model", str(out), "--text", text)
    assert row["words"] == text.split() and all(t in WNUT_LABELS for t in row["tags"])
    assert all(text[e["start"]:e["end"]] == e["text"] for e in row["entities"])


def test_squad_split_windows_and_predict(squad, capsys, tmp_path):
    out, metrics = squad
    assert metrics["squad_split"].startswith("dev articles split by title")
    assert metrics["n_truncated"]["train"] > 0  # contexts cut into 64-token windows
    assert metrics["n_train_features"] > metrics["n_train_examples"]
    assert set(metrics["dev"]) == {"exact_match", "f1"}
    assert "adv_loss" in train_log(out)[0]
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert errors and all(e["f1"] < 1 for e in errors)
    keys = [(e["f1"], zlib.crc32(e["id"].encode())) for e in errors]
    assert keys == sorted(keys)  # lowest F1 first, ties in a fixed order that is not the file's
    assert_transformers_agrees(out, "BertForQuestionAnswering")
    context = "Bob went to Rome in 1999 to study the history of the city. " * 8
    (row,) = predict(capsys, "--model", str(out), "--question", "Where did Bob go?", "--context", context,
                     "--max-length", "48", "--doc-stride", "8")
    assert row["answer"] == context[row["start"]:row["end"]] and row["end"] - row["start"] > 0
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"question": "When?", "context": context}) + "\n")
    assert predict(capsys, "--model", str(out), "--file", str(path))[0]["question"] == "When?"


# ---------------------------------------------------------------- errors

def _sst2_dir(tmp_path, train_rows: str):
    (tmp_path / "data" / "sst2").mkdir(parents=True)
    real = data_dir() / "sst2" / "dev.tsv"
    shutil.copy(real, tmp_path / "data" / "sst2" / "dev.tsv")
    (tmp_path / "data" / "sst2" / "train.tsv").write_text("sentence\tlabel\n" + train_rows)
    return tmp_path / "data"


def test_bad_rows_unknown_labels_and_skip(base, tmp_path, capsys):
    rows = [f"fine movie number {i}\t{i % 2}\n" for i in range(12)]
    folder = _sst2_dir(tmp_path, "".join(rows[:1] + ["no tab here\n"] + rows[1:]))  # line 3
    args = ["finetune", "--task", "sst2", "--model", str(base), "--data-dir", str(folder), *FAST]
    assert main(args) == 2
    assert "train.tsv: line 3: expected 2 tab-separated fields" in capsys.readouterr().err
    metrics = finetune(base, tmp_path / "out", "sst2", "--data-dir", str(folder), "--skip-bad")
    assert metrics["n_skipped"] == {"train": 1, "eval": 0} and metrics["n_train_examples"] == 12
    (folder / "sst2" / "train.tsv").write_text("sentence\tlabel\nok\t1\nfine\tmaybe\n")
    assert main(args + ["--skip-bad"]) == 2
    assert "train.tsv: line 3: unknown label 'maybe'" in capsys.readouterr().err


def test_missing_model_and_bad_options(base, tmp_path, capsys):
    cases = [
        (["--task", "sst2", "--model", str(tmp_path / "nope")], "model folder .*nope' not found"),
        (["--task", "sst2", "--model", str(base), "lr=fast"], "option lr: expected float, got 'fast'"),
        (["--task", "squad", "--model", str(base), "--label-smoothing", "0.1"], "label_smoothing: these act on"),
        (["--task", "sst2", "--model", str(base), "--early-stopping-patience", "2"], "needs eval_every > 0"),
        (["--task", "sst2", "--model", str(base), "--fgm-epsilon", "1", "--freeze-embeddings"], "needs freeze_emb"),
        (["--task", "ner", "--model", str(base)], "task: expected one of"),
        (["--task", "sst2", "--model", str(base), "--pooling", "max"],
         r"option pooling: expected one of \['cls', 'mean'\], got 'max'"),
        (["--task", "wnut17", "--model", str(base), "--pooling", "mean"], "wnut17 is not a sentence classification"),
        (["--task", "sst2", "--model", str(base), "--precision", "fp8"], "TrainConfig.precision: expected one of"),
        (["--task", "sst2", "--model", str(base), "--class-weights", "1,2,3", *FAST], "expected 'auto' or 2 numbers"),
        (["--task", "sst2", "--model", str(base), "--focal-gamma", "2", "--label-smoothing", "0.1", *FAST],
         "alternatives"),
    ]
    for argv, message in cases:
        assert main(["finetune", *argv]) == 2, argv
        assert re.search(message, capsys.readouterr().err), message
    (tmp_path / "c.yaml").write_text("task: sst2\nlearning_rate: 0.1\n")
    assert main(["finetune", "--config", str(tmp_path / "c.yaml"), "--model", str(base)]) == 2
    assert "unknown key 'learning_rate'; valid keys: task, model" in capsys.readouterr().err
    assert main(["predict", "--model", str(tmp_path / "nope"), "--text", "x"]) == 2
    assert "model folder" in capsys.readouterr().err
    assert main(["predict", "--model", str(base), "--text", "x"]) == 2
    assert "architectures ['BertModel'] has no fine-tuned task head" in capsys.readouterr().err


@pytest.fixture(scope="module")
def classifier(base, tmp_path_factory):
    """The base checkpoint declared a sequence classifier (its head is initialized when loaded)."""
    folder = tmp_path_factory.mktemp("clf")
    shutil.copytree(base, folder, dirs_exist_ok=True)
    config = json.loads((base / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "architectures": ["BertForSequenceClassification"]}))
    return folder


def test_predict_input_errors(classifier, tmp_path, capsys):
    (tmp_path / "in.txt").write_bytes(b"fine\n\nok \xff\n")
    (tmp_path / "in.jsonl").write_text('{"text": "a"}\n{"text": 3}\n')
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n\n{oops\n')
    (tmp_path / "blank.txt").write_text("\n  \n")
    for argv, message in [(["--text", ""], "empty input: --text #1: text is empty"),
                          ([], "empty input: give --text or --file"),
                          (["--file", str(tmp_path / "none.txt")], "none.txt: no such file"),
                          (["--file", str(tmp_path / "blank.txt")], "empty input: .*blank.txt holds no non-blank"),
                          (["--question", "q", "--context", "c"], "--question/--context are for QA models"),
                          (["--file", str(tmp_path / "in.txt")], r"in.txt: line 3: not UTF-8 text \(byte 0xff at "
                                                                 r"column 4\)"),
                          (["--file", str(tmp_path / "in.jsonl")],
                           r"in.jsonl: line 2: expected an object with string key\(s\) \['text'\]"),
                          (["--file", str(tmp_path / "bad.jsonl")], "bad.jsonl: line 3: invalid JSON")]:
        assert main(["predict", "--model", str(classifier), *argv]) == 2, argv
        assert re.search(message, capsys.readouterr().err), message


def test_predict_reads_files_in_order(classifier, tmp_path, capsys):
    (tmp_path / "ok.txt").write_text("first line\n\nsecond line\n")
    rows = predict(capsys, "--model", str(classifier), "--file", str(tmp_path / "ok.txt"), "--text", "third")
    assert [r["text"] for r in rows] == ["third", "first line", "second line"]
    assert set(rows[0]["probabilities"]) == {"LABEL_0", "LABEL_1"}
    assert sum(rows[0]["probabilities"].values()) == pytest.approx(1, abs=1e-3)


# ---------------------------------------------------------------- options and losses

def test_option_sources_and_types(tmp_path):
    (tmp_path / "c.yaml").write_text("task: trec\nlr: 1e-4\nbatch_size: 16\nepochs: 2\nbucket: false\n"
                                     "class_weights: auto\n")
    opts = parse_options(["--config", str(tmp_path / "c.yaml"), "--model", "m", "batch_size=8", "max_steps=5",
                          "--batch-size", "4", "--seeds", "1,2,3", "--compile", "--precision", "bf16"])
    assert (opts.task, opts.lr, opts.batch_size, opts.max_steps, opts.epochs) == ("trec", 1e-4, 4, 5, 2.0)
    assert opts.bucket is False and opts.compile is True and opts.seeds == [1, 2, 3]
    assert opts.class_weights == "auto" and opts.precision == "bf16"
    with pytest.raises(ValueError, match="option max_steps: expected int, got 2.5"):
        parse_options(["--task", "sst2", "--model", "m", "max_steps=2.5"])
    with pytest.raises(ValueError, match="option bucket: expected bool, got 'perhaps'"):
        parse_options(["--task", "sst2", "--model", "m", "bucket=perhaps"])


def test_class_weights_and_step_hooks():
    features = [{"labels": 0}, {"labels": 0}, {"labels": 0}, {"labels": 1}]
    assert class_weights("auto", features, 3).tolist() == pytest.approx([4 / 9, 4 / 3, 4 / 3])
    tokens = [{"labels": [-100, 2, 2, -100]}, {"labels": [0, -100]}]
    assert class_weights("auto", tokens, 3).tolist() == pytest.approx([1.0, 1.0, 0.5])  # -100 is no class; absent: n=1
    step = build_step(None, 0.0, None, 1.0, 0.5)
    assert isinstance(step, FGM) and isinstance(step.inner, RDrop)
    assert isinstance(build_step(torch.ones(2), 0.1, None, None, None), LogitsLoss)


def test_hub_names_only_for_missing_paths(base, tmp_path, monkeypatch):
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda name, allow_patterns: calls.append(name) or str(base))
    assert resolve_model_path(str(base)) == base and calls == []
    assert resolve_model_path("someone/tiny-bert") == base and calls == ["someone/tiny-bert"]
    with pytest.raises(FileNotFoundError, match="not found"):
        resolve_model_path(str(tmp_path / "missing"))  # a path, not a hub id: no download attempted
    assert calls == ["someone/tiny-bert"]
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        resolve_model_path(str(tmp_path))


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("finetune_*.yaml")),
                         ids=lambda p: p.stem)
def test_shipped_configs_are_valid(path):
    opts = parse_options(["--config", str(path), "--model", "m"])
    assert path.stem.startswith(f"finetune_{opts.task}")
    assert _train_config(opts, TASKS[opts.task], opts.seed, Path("out")).early_stopping_mode == "max"


# ---------------------------------------------------------------- padding to a multiple (few batch shapes)

def _random_features(kind: str, n: int = 24) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    features = []
    for _ in range(n):
        length = int(torch.randint(4, 40, (1,), generator=g))
        ids = torch.randint(5, 100, (length,), generator=g).tolist()
        row = {"input_ids": ids, "token_type_ids": [0] * length, "attention_mask": [1] * length}
        if kind == "classification":
            row["labels"] = int(torch.randint(0, 3, (1,), generator=g))
        elif kind == "ner":
            row["labels"] = [-100] + torch.randint(0, 3, (length - 2,), generator=g).tolist() + [-100]
        else:
            start = int(torch.randint(1, length - 1, (1,), generator=g))
            row["start_positions"], row["end_positions"] = start, start + 1
        features.append(row)
    return features


@pytest.mark.parametrize("cls, kind", [(BertForSequenceClassification, "classification"),
                                       (BertForTokenClassification, "ner"), (BertForQuestionAnswering, "qa")])
def test_pad_to_multiple_of_changes_shapes_not_outputs(cls, kind):
    """Rounding the padded length up adds only masked positions: same batches, same logits on the real
    tokens; same losses for classification and NER (padded labels are -100). The span loss (as in HF)
    puts padded positions in its softmax, so there only the logits are compared."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, id2label={0: "a", 1: "b", 2: "c"})
    model = cls(config).eval()
    features = _random_features(kind)
    plain, rounded = (list(BatchLoader(features, 5, 0, seed=1, pad_to_multiple_of=m)) for m in (1, 16))
    assert {b["input_ids"].shape[1] for b in rounded} <= {16, 32, 39}  # 39: the longest input, never past it
    assert len({b["input_ids"].shape[1] for b in plain}) > 3
    with torch.no_grad():
        for a, b in zip(plain, rounded):
            width = a["input_ids"].shape[1]
            assert torch.equal(b["input_ids"][:, :width], a["input_ids"]) and not b["attention_mask"][:, width:].any()
            out_a, out_b = model(**a), model(**b)
            for key in ("logits", "start_logits", "end_logits"):
                if getattr(out_a, key, None) is not None:
                    x, y = getattr(out_a, key), getattr(out_b, key)
                    y = y if y.dim() == 1 or (kind == "classification") else y[:, :width]
                    mask = a["attention_mask"].bool() if x.dim() > 1 and kind != "classification" else None
                    torch.testing.assert_close(y if mask is None else y[mask], x if mask is None else x[mask],
                                               atol=1e-5, rtol=1e-5)
            if kind != "qa":
                torch.testing.assert_close(out_b.loss, out_a.loss, atol=1e-6, rtol=1e-5)
    outputs = [forward_features(model, features, 7, 0, "fp32", pad_to_multiple_of=m) for m in (1, 32)]
    for x, y in zip(*outputs):
        torch.testing.assert_close(y, x, atol=1e-5, rtol=1e-5)


def test_squad_config_pads_to_a_multiple():
    opts = parse_options(["--config", "finetune_squad", "--model", "m"])
    assert opts.pad_to_multiple_of == 32 and parse_options(["--task", "squad", "--model", "m"]).pad_to_multiple_of == 1
    assert parse_options(["--config", "finetune_squad", "--model", "m", "pad_to_multiple_of=1"]).pad_to_multiple_of == 1
    with pytest.raises(ValueError, match="pad_to_multiple_of"):
        parse_options(["--task", "squad", "--model", "m", "--pad-to-multiple-of", "0"])
