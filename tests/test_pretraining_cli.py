"""`python -m bertmini pretrain`: config validation, a tiny end-to-end run, resume, transformers loading;
and bertmini.pretraining.evaluation on known cases."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from bertmini import BertConfig, BertForPreTraining
from bertmini.cli import main as cli
from bertmini.errors import ConfigError
from bertmini.pretraining.evaluation import evaluate_pretraining, fixed_masked_batches
from bertmini.pretraining.masking import IGNORE_INDEX, MLMCollator
from bertmini.pretraining.settings import load_settings
from bertmini.tokenizer import WordPieceTokenizer
from bertmini.training.yaml_config import CONFIG_DIR as CONFIGS

pytestmark = pytest.mark.slow  # end-to-end pretraining runs: not in the quick subset (pytest -m 'not slow')

TINY = CONFIGS / "pretrain_tiny_test.yaml"


def pretrain(out: Path, cache: Path, *overrides: str) -> int:
    return cli(["pretrain", "--config", str(TINY), f"out_dir={out}", f"data.cache_dir={cache}", *overrides])


def train_steps(out: Path) -> list[int]:
    """Steps of the training records (eval records have no 'loss' key) in metrics.jsonl."""
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in records if "loss" in r]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("pretrain")
    out, cache = root / "out", root / "cache"
    rc = pretrain(out, cache, "train.max_steps=4", "train.save_every=2", "train.eval_every=2")
    assert rc == 0
    return SimpleNamespace(root=root, out=out, cache=cache, summary=json.loads((out / "summary.json").read_text()),
                           steps=train_steps(out))


# ---- configs -------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted(CONFIGS.glob("pretrain_*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    settings = load_settings(path)
    assert settings.train.resume is True and settings.batch_size >= 1 and settings.data["train"]
    assert path.read_text().startswith("#"), "each config opens with a comment giving time and memory"
    if settings.model.get("init_from"):  # phase 2 starts from phase 1's final/ and its tokenizer
        assert settings.tokenizer["path"] == settings.model["init_from"]


def test_overrides_parse_yaml_values_and_floats():
    s = load_settings(TINY, ["train.max_steps=3", "train.lr=1e-3", "model.preset=mini", "data.mode=packed"])
    assert (s.train.max_steps, s.train.lr, s.model["preset"], s.data["mode"]) == (3, 0.001, "mini", "packed")
    assert isinstance(s.train.lr, float)  # YAML 1.1 reads 1e-3 as a string


@pytest.mark.parametrize("override, key", [
    ("modle.preset=mini", "modle"),
    ("model.hiden_size=64", "hiden_size"),
    ("tokenizer.vocab=100", "vocab"),
    ("data.max_seq_len=64", "max_seq_len"),
    ("data.eval={reader: wikitext, pth: x}", "pth"),
    ("train.learning_rate=0.1", "learning_rate"),
    ("train.out_dir=x", "out_dir"),
    ("model.vocab_size=100", "vocab_size"),
])
def test_unknown_keys_name_file_and_key(override, key, capsys):
    assert cli(["pretrain", "--config", str(TINY), override]) == 2
    err = capsys.readouterr().err
    assert str(TINY) in err and (repr(key) in err or f".{key}:" in err), err


@pytest.mark.parametrize("override, message", [
    ("train.max_steps", "not of the form key=value"),
    ("data.mode=masked", r"data\.mode: expected one of \('nsp', 'packed'\), got 'masked'"),
    ("data.train=[]", r"data\.train: expected one source"),
    ("data.eval.reader=xml", r"data\.eval\.reader: expected one of \['gutenberg', 'hf', 'text', 'tsv', 'wikitext'\]"),
    ("data.train.reader=x", "'train' is not a section"),
    ("data.mlm_probability=1.5", r"data\.mlm_probability: expected a number in \(0, 1\)"),
    ("tokenizer.lowercase=maybe", r"tokenizer\.lowercase: expected true or false, got 'maybe'"),
    ("train.precision=fp8", r"TrainConfig\.precision"),
    ("train.batch_size=0", r"train\.batch_size: expected an integer >= 1"),
    ("model.num_attention_heads=3", "not divisible"),
    ("model.init_from=x", r"init_from takes the architecture.*'preset'"),
    ("data.mlm_probability=0", r"data\.mlm_probability: expected a number in \(0, 1\), got 0$"),
    ("data.mlm_probability=1", r"data\.mlm_probability: expected a number in \(0, 1\), got 1$"),
    ("data.mlm_probability=-0.15", r"data\.mlm_probability: expected a number in \(0, 1\), got -0\.15$"),
    ("data.mlm_probability=lots", r"data\.mlm_probability: expected a number in \(0, 1\), got 'lots'$"),
    ("train.token_budget=0", r"train\.token_budget: expected null or an integer >= 1, got 0$"),
    ("data.warmup_seq_length=16", r"data\.warmup_seq_length: expected data\.mode: packed .*got \"mode 'nsp'\""),
    ("data.warmup_seq_length=24", r"warmup_seq_length: expected null or an integer >= 2 that divides data\.max_seq_"),
    ("data.warmup_seq_steps=100", r"data\.warmup_seq_steps: expected 0 without data\.warmup_seq_length, got 100$"),
    ("train.token_budget=1.5e6", r"train\.token_budget: expected null or an integer >= 1, got 1500000\.0$"),
])
def test_invalid_values_are_config_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(TINY, [override])


def test_token_budget_wants_a_max_steps_cap_not_epochs():
    with pytest.raises(ConfigError, match=r"train\.token_budget sets the steps: give max_steps \(a cap\), not epochs"):
        load_settings(TINY, ["train.token_budget=5000", "train.max_steps=null", "train.epochs=1"])


def test_the_levers_of_bench_pretrain_levers_are_valid_overrides(monkeypatch):
    """Every variant of bench/pretrain_levers.py (and each second phase) loads, and all but "base" change the config."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "bench"))
    import pretrain_levers as levers
    budget = ["train.max_steps=100000000", "train.time_budget_min=30"]
    base = load_settings(CONFIGS / "pretrain_cpu.yaml", budget)
    for name, (_, overrides) in levers.LEVERS.items():
        settings = load_settings(CONFIGS / "pretrain_cpu.yaml", [*budget, *overrides])
        assert (settings.raw == base.raw) == (name == "base" or name in levers.SECOND_PHASE), name
    for overrides in levers.SECOND_PHASE.values():
        assert load_settings(CONFIGS / f"{levers.TAPT_CONFIG}.yaml", [*budget, *overrides]).data["eval"]


def test_bench_pretrain_levers_label_counts(monkeypatch, capsys, tmp_path):
    """Small SST-2 subsets get at least --min-steps steps, 'all' its own epochs; a bad count names itself."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "bench"))
    import pretrain_levers as levers
    args = levers.parse_args(["--minutes", "1", "--labels", "500,4000,all", "--min-steps", "500", "--epochs", "3"])
    assert levers.fit_epochs(500, args) == 32.0  # 500 steps x 32 examples over 500 examples
    assert levers.fit_epochs(100_000, args) == 3.0 and levers.fit_epochs(None, args) == args.epochs_all
    with pytest.raises(SystemExit):
        levers.parse_args(["--minutes", "1", "--labels", "1000,4k"])
    assert "got ['4k']" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a folder that is not a finished run
        levers.parse_args(["--pretrained", str(tmp_path)])
    assert f"{tmp_path} holds no summary.json" in capsys.readouterr().err
    (tmp_path / "summary.json").write_text("{}")
    assert levers.parse_args(["--pretrained", str(tmp_path)]).minutes is None  # no budget needed


def test_missing_config_file(tmp_path, capsys):
    assert cli(["pretrain", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err


# ---- the tiny end-to-end run ---------------------------------------------------------------------
def test_run_outputs(tiny_run):
    out, summary = tiny_run.out, tiny_run.summary
    assert summary["steps"] == 4 and tiny_run.steps == [1, 2, 3, 4]  # the override train.max_steps=4
    assert summary["tokens"] > 0 and summary["tokens_per_s"] > 0 and summary["world_size"] == 1
    ev = summary["eval"]
    assert 0 <= ev["mlm_accuracy"] <= 1 and 0 <= ev["nsp_accuracy"] <= 1
    assert 0 < ev["unigram_accuracy"] < ev["unigram_top5_accuracy"] < 1  # "the", then "," "." "of" "and"
    assert ev["mlm_perplexity"] == pytest.approx(math.exp(ev["mlm_loss"]))
    assert 1 < ev["mlm_perplexity"] < 2 * summary["config"]["vocab_size"]  # near-uniform after 4 steps
    assert summary["config"]["train"]["max_steps"] == 4
    assert summary["precision"]["requested"] == "auto" and summary["precision"]["used"] in ("fp32", "bf16")
    assert summary["time_budget_min"] is None and summary["step_time_s"] is None
    for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json"):
        assert (out / "final" / name).is_file(), name
    assert (out / "curves.png").stat().st_size > 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-0000002", "step-0000004"]


def test_time_budget_and_resolved_precision(tiny_run, tmp_path, monkeypatch):
    """train.time_budget_min picks the steps (a faked 0.3 s/step: 0.05 min = 3 s fits floor(2.7 / 0.3) = 9 of the
    cap of 10), summary.json records it and the precision, and the held-out evaluation runs in that precision."""
    from bertmini.pretraining import cli as pretrain_module
    from bertmini.training import budget
    ticks = iter([t for i in range(budget.TIMED_STEPS) for t in (float(i), i + 0.3)])  # each timed step: 0.3 s
    monkeypatch.setattr(budget, "clock", lambda: next(ticks))
    monkeypatch.setenv("BERTMINI_PRECISION", "bf16")  # auto -> bf16, whatever this CPU has
    monkeypatch.setattr("bertmini.precision.cpu_bf16_feature", lambda: "AVX-512 BF16")  # no emulation note
    dtypes, evaluate = [], pretrain_module.evaluate_pretraining
    monkeypatch.setattr(pretrain_module, "evaluate_pretraining",
                        lambda model, batches, dtype: dtypes.append(dtype) or evaluate(model, batches, dtype))
    assert pretrain(tmp_path / "out", tiny_run.cache, "train.time_budget_min=0.05") == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["steps"] == 9 and train_steps(tmp_path / "out") == list(range(1, 10))
    assert (summary["time_budget_min"], summary["step_time_s"]) == (0.05, 0.3)
    assert summary["precision"] == {"requested": "auto", "used": "bf16", "reason": "auto: BERTMINI_PRECISION=bf16"}
    assert dtypes == [torch.bfloat16] * 2  # the evaluations at steps 5 and 9


def test_token_budget_sets_the_steps_and_the_unigram_baseline_is_printed(tiny_run, tmp_path, capsys):
    """train.token_budget=2600 at 8 x 64 = 512 positions a step: floor(2600 / 512) = 5 steps of the cap of 10."""
    assert pretrain(tmp_path / "out", tiny_run.cache, "train.token_budget=2600") == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["steps"], summary["token_budget"]) == (5, 2600) and summary["tokens"] <= 2600
    ev = summary["eval"]
    assert f"held-out MLM accuracy {ev['mlm_accuracy']:.2%}; always predicting the most frequent training token " \
           f"scores {ev['unigram_accuracy']:.2%} (the unigram baseline)" in capsys.readouterr().out


def test_budgets_too_small_for_one_step_are_errors(tiny_run, tmp_path, capsys):
    assert pretrain(tmp_path / "a", tiny_run.cache, "train.token_budget=500") == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {TINY}: train.token_budget=500 is too small for even one optimizer step: a step reads 512 tokens; "
        "give more tokens or a smaller batch or sequence length")
    assert pretrain(tmp_path / "b", tiny_run.cache, "train.time_budget_min=1e-6") == 2
    assert "time_budget_min=1e-06 (6e-05 s) is too small for even one optimizer step" in capsys.readouterr().err


def test_too_few_examples_for_one_batch_names_the_corpus(tiny_run, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "short.txt").write_text("A few words of text.\n\nAnd a second short paragraph.\n")
    assert cli(["pretrain", "--config", str(TINY), "--data-dir", str(data), f"out_dir={tmp_path / 'out'}",
                f"data.cache_dir={tiny_run.cache}", "data.eval=null", "data.mode=packed", "tokenizer.min_frequency=1",
                "data.train=[{reader: text, path: short.txt}]"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {TINY}: data.train yields 1 training examples (reader 'text' on {data / 'short.txt'}), fewer than "
        "train.batch_size=8: add text or lower the batch size")


def test_final_loads_in_transformers_with_same_logits(tiny_run):
    transformers = pytest.importorskip("transformers")
    final = tiny_run.out / "final"
    theirs, info = transformers.BertForPreTraining.from_pretrained(final, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    ours = BertForPreTraining.from_pretrained(final)
    assert not ours.load_report.missing_keys
    text, pair = ["Emma Woodhouse, handsome, clever, and rich."], ["She had lived nearly twenty-one years."]
    hf_batch = transformers.BertTokenizerFast.from_pretrained(final)(text, pair, return_tensors="pt")
    batch = WordPieceTokenizer.from_file(final)(text, pair, return_tensors="pt")
    assert all(torch.equal(hf_batch[k], batch[k]) for k in batch)
    theirs.eval()
    with torch.no_grad():
        a, b = theirs(**hf_batch), ours(**batch)
    torch.testing.assert_close(b.prediction_logits, a.prediction_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.seq_relationship_logits, a.seq_relationship_logits, atol=1e-5, rtol=1e-5)


def test_rerun_resumes_and_reuses_tokenizer_and_data(tiny_run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    shutil.copytree(tiny_run.out, out)

    def no_training(*args, **kwargs):
        raise AssertionError("the tokenizer was trained again")

    monkeypatch.setattr(WordPieceTokenizer, "train", no_training)
    capsys.readouterr()
    assert pretrain(out, tiny_run.cache, "train.max_steps=6", "train.save_every=2", "train.eval_every=2") == 0
    printed = capsys.readouterr().out
    assert "tokenizer: reused" in printed and printed.count("(cached)") == 3
    assert f"resuming from {out / 'checkpoints' / 'step-0000004'}" in printed
    assert train_steps(out) == [1, 2, 3, 4, 5, 6]  # continued, not restarted (a restart repeats 1..4)
    assert json.loads((out / "summary.json").read_text())["steps"] == 6


def test_rerun_of_a_finished_run_keeps_its_record_and_tokenizer(tiny_run, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(tiny_run.out, out)
    before = (out / "summary.json").read_text()
    assert pretrain(out, tiny_run.cache, "train.max_steps=4", "train.save_every=2", "train.eval_every=2") == 0
    assert "the run was already complete" in capsys.readouterr().out
    assert (out / "summary.json").read_text() == before
    assert (out / "final" / "vocab.txt").is_file() and (out / "final" / "model.safetensors").is_file()


def test_changed_tokenizer_settings_are_refused(tiny_run, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(tiny_run.out, out)
    assert pretrain(out, tiny_run.cache, "tokenizer.vocab_size=500") == 2
    assert "was trained with" in capsys.readouterr().err


def test_phase2_init_from_and_hf_reader(tiny_run, tmp_path):
    """Phase 2 (model.init_from + tokenizer.path) on a `datasets` source, with --data-dir given."""
    pytest.importorskip("datasets")
    final, out = tiny_run.out / "final", tmp_path / "out"
    hf_eval = "{reader: hf, name: text, data_files: tinyshakespeare/input.txt, max_documents: 20, cache_dir: %s}"
    from bertmini.utils import data_dir
    rc = cli(["pretrain", "--config", str(TINY), "--data-dir", str(data_dir()), f"out_dir={out}",
              f"data.cache_dir={tiny_run.cache}", f"model={{init_from: {final}}}", f"tokenizer.path={final}",
              "train.max_steps=1", f"data.eval={hf_eval % (tmp_path / 'hf')}"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval_examples"] > 0 and summary["steps"] == 1
    assert (out / "final" / "vocab.txt").read_text() == (final / "vocab.txt").read_text()
    assert not (out / "tokenizer").exists()  # tokenizer.path: nothing trained
    start = BertForPreTraining.from_pretrained(final).state_dict()
    after = BertForPreTraining.from_pretrained(out / "final").state_dict()
    moved = max((after[k] - start[k]).abs().max().item() for k in start)
    assert 0 < moved < 0.01  # one small step away from phase 1's weights, not a fresh init


# ---- evaluation ----------------------------------------------------------------------------------
class Oracle(nn.Module):
    """Predicts the true token / NSP label with certainty (cheats by reading the labels), or uniformly."""

    def __init__(self, vocab: int, perfect: bool) -> None:
        super().__init__()
        self.vocab, self.perfect = vocab, perfect
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, labels, next_sentence_label=None, **kwargs):
        logits = torch.zeros(*input_ids.shape, self.vocab)  # dense (B, T, V), like transformers
        nsp = torch.zeros(len(input_ids), 2)
        if self.perfect:
            logits.scatter_(-1, labels.clamp(min=0)[..., None], 100.0)
            nsp.scatter_(-1, next_sentence_label[:, None], 100.0)
        return SimpleNamespace(prediction_logits=logits, seq_relationship_logits=nsp)


def masked_batches(vocab: int = 50, n: int = 10, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    ones, zeros = torch.ones(12, dtype=torch.long), torch.zeros(12, dtype=torch.long)
    rows = [{"input_ids": torch.randint(5, vocab, (12,), generator=g), "attention_mask": ones,
             "token_type_ids": zeros, "next_sentence_label": torch.tensor(i % 2)} for i in range(n)]
    collator = MLMCollator(vocab_size=vocab, mask_token_id=4, special_ids=[0, 1, 2, 3, 4], seed=seed)
    return fixed_masked_batches(rows, collator, batch_size=4)


def test_evaluate_perfect_and_uniform_models():
    batches = masked_batches()
    assert [len(b["input_ids"]) for b in batches] == [4, 4, 2]
    perfect = evaluate_pretraining(Oracle(50, perfect=True), batches)
    assert perfect["mlm_accuracy"] == 1.0 and perfect["nsp_accuracy"] == 1.0
    assert perfect["mlm_perplexity"] == pytest.approx(1.0)
    uniform = evaluate_pretraining(Oracle(50, perfect=False), batches)
    assert uniform["mlm_perplexity"] == pytest.approx(50.0)  # a uniform guess over V tokens: perplexity V
    assert uniform["mlm_accuracy"] == 0.0  # argmax = id 0 ([PAD]), never a target
    assert uniform["nsp_accuracy"] == 0.5 and uniform["nsp_loss"] == pytest.approx(math.log(2))


def test_evaluation_is_fixed_and_matches_the_model_loss():
    assert all(torch.equal(a[k], b[k]) for a, b in zip(masked_batches(), masked_batches()) for k in a)
    torch.manual_seed(0)
    model = BertForPreTraining(BertConfig.preset("tiny", vocab_size=50, hidden_size=32, num_attention_heads=2,
                                                 intermediate_size=64)).train()
    batch = masked_batches(n=4)[0]
    metrics = evaluate_pretraining(model, [batch])
    assert model.training  # the model's mode is restored
    assert metrics == evaluate_pretraining(model, [batch])  # eval mode: no dropout, deterministic
    model.eval()
    with torch.no_grad():
        out = model(**batch)  # bertmini's sparse (n_masked, V) logits; the Oracle tests the dense layout
    assert metrics["mlm_loss"] == pytest.approx(out.mlm_loss.item(), rel=1e-5)
    assert metrics["nsp_loss"] == pytest.approx(out.nsp_loss.item(), rel=1e-5)
    n_masked = int((batch["labels"] != IGNORE_INDEX).sum())
    correct = (out.prediction_logits.argmax(-1) == batch["labels"][batch["labels"] != IGNORE_INDEX]).sum()
    assert metrics["mlm_accuracy"] == pytest.approx(int(correct) / n_masked)
