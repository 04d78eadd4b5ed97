"""Tests for bertmini.training / train_config / optim / checkpointing / losses."""
from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader

from bertmini.finetuning.losses import FGM, LogitsLoss, RDrop, cross_entropy, focal_loss, symmetric_kl
from bertmini.training.curves import plot_curves
from bertmini.training.optim import build_optimizer, build_scheduler, freeze, param_groups
from bertmini.training.state import atomic_dir, latest_checkpoint, list_checkpoints, load_checkpoint
from bertmini.training.steps import model_loss
from bertmini.training.train_config import TrainConfig
from bertmini.training.trainer import Trainer

VOCAB, SEQ = 16, 8


class Toy(nn.Module):
    """A tiny masked-LM stand-in: embeddings -> dropout -> LayerNorm -> linear head, two loss parts."""

    def __init__(self, p: float = 0.1, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.word_embeddings = nn.Embedding(VOCAB, 8)
        self.drop, self.LayerNorm, self.head = nn.Dropout(p), nn.LayerNorm(8), nn.Linear(8, VOCAB)

    def forward(self, input_ids, labels=None, attention_mask=None):
        hidden = self.LayerNorm(self.drop(self.word_embeddings(input_ids)))
        logits = self.head(hidden)
        if labels is None:
            return SimpleNamespace(logits=logits, loss=None)
        mlm = F.cross_entropy(logits.flatten(0, 1), labels.flatten())
        aux = 0.01 * hidden.pow(2).mean()
        return SimpleNamespace(loss=mlm + aux, mlm_loss=mlm, nsp_loss=aux, logits=logits)


class MaskingCollator:
    """Replaces ~30% of tokens by id 1 with its own generator (state_dict/load_state_dict: resumable)."""

    def __init__(self, seed: int = 123, rate: float = 0.3) -> None:
        self.gen, self.rate = torch.Generator().manual_seed(seed), rate

    def __call__(self, rows):
        labels = torch.stack(rows)
        mask = torch.rand(labels.shape, generator=self.gen) < self.rate
        return {"input_ids": labels.masked_fill(mask, 1), "labels": labels,
                "attention_mask": torch.ones_like(labels)}

    def state_dict(self):
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state):
        self.gen.set_state(state["gen"])


def make_data(n: int = 20, batch_size: int = 4, shuffle: bool = True, seed: int = 123, rate: float = 0.3):
    rows = list(torch.randint(2, VOCAB, (n, SEQ), generator=torch.Generator().manual_seed(0)))
    collator = MaskingCollator(seed, rate)
    return DataLoader(rows, batch_size=batch_size, shuffle=shuffle, collate_fn=collator), collator


def config(tmp_path, **overrides) -> TrainConfig:
    base = dict(lr=1e-2, max_steps=6, warmup_steps=2, log_every=1, progress=False, out_dir=str(tmp_path),
                precision="fp32")  # exact comparisons, whatever `auto` would pick on this machine
    return TrainConfig(**{**base, **overrides})


class Crash:
    """A step hook that dies (like a preempted job) on its ``at``-th call."""

    def __init__(self, at: int) -> None:
        self.at, self.calls = at, 0

    def __call__(self, model, batch, backward):
        self.calls += 1
        if self.calls == self.at:
            raise RuntimeError("preempted")
        return model_loss(model, batch, backward)


# -- TrainConfig ------------------------------------------------------------------------------------

def test_config_unknown_key_names_it_and_lists_valid_keys():
    with pytest.raises(ValueError, match=r"unknown key 'lrr' \(did you mean 'lr'\?\); valid keys: lr, weight_decay"):
        TrainConfig.from_dict({"lrr": 1e-4, "max_steps": 10})


@pytest.mark.parametrize("bad, message", [
    ({"schedule": "cos"}, r"TrainConfig.schedule: expected one of \('linear', 'onecycle', 'constant'\), got 'cos'"),
    ({"precision": "fp8"}, r"TrainConfig.precision: expected one of \('auto', 'fp32', 'bf16', 'fp16'\), got 'fp8'"),
    ({"time_budget_min": 0}, r"TrainConfig.time_budget_min: expected minutes > 0, got 0"),
    ({"time_budget_min": -5.0}, r"TrainConfig.time_budget_min: expected minutes > 0, got -5.0"),
    ({"epochs": 2}, r"exactly one of max_steps / epochs"),
    ({"grad_accum": 0}, r"TrainConfig.grad_accum: expected an integer >= 1, got 0"),
    ({"warmup_steps": 3, "warmup_ratio": 0.1}, r"warmup_steps or warmup_ratio, not both"),
    ({"resume": True}, r"resume=True needs out_dir"),
])
def test_config_rejects_bad_values(bad, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict({"max_steps": 10, **bad})


def test_config_round_trips_through_dict():
    cfg = TrainConfig.from_dict({"max_steps": 5, "betas": [0.9, 0.98]})
    assert cfg.betas == (0.9, 0.98) and TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


# -- optimizer, schedules, freezing -----------------------------------------------------------------

def tiny_bert(**overrides):
    from bertmini import BertConfig, BertForPreTraining
    torch.manual_seed(0)
    return BertForPreTraining(BertConfig.preset("tiny", vocab_size=50, max_position_embeddings=32, **overrides))


def test_no_weight_decay_exactly_on_biases_and_layernorm():
    model = tiny_bert()
    names = {id(p): n for n, p in model.named_parameters()}
    for group in param_groups(model, lr=1e-3, weight_decay=0.01):
        for p in group["params"]:
            no_decay = names[id(p)].endswith("bias") or "LayerNorm" in names[id(p)]
            assert group["weight_decay"] == (0.0 if no_decay else 0.01), names[id(p)]


def test_layerwise_lr_decay_rates():
    model, lr, d = tiny_bert(), 1e-3, 0.5  # 2 layers
    rates = {}
    for group in param_groups(model, lr=lr, weight_decay=0.01, layerwise_lr_decay=d):
        rates[group["name"].split("/")[0]] = group["lr"]
    assert rates == pytest.approx({"embeddings": lr * d ** 3, "layer0": lr * d ** 2, "layer1": lr * d, "head": lr})


def test_freezing_embeddings_and_layers():
    model = tiny_bert()
    frozen = freeze(model, embeddings=True, layers=1)
    assert frozen and all("embeddings." in n or ".layer.0." in n for n in frozen)
    assert not any(p.requires_grad for n, p in model.named_parameters() if "layer.0." in n)
    assert all(p.requires_grad for n, p in model.named_parameters() if "layer.1." in n)
    trainable = {id(p) for g in param_groups(model, 1e-3, 0.01) for p in g["params"]}
    assert trainable == {id(p) for p in model.parameters() if p.requires_grad}
    with pytest.raises(ValueError, match=r"freeze_layers=3 but the model has 2 layers"):
        freeze(tiny_bert(), layers=3)


def test_linear_schedule_matches_transformers():
    from transformers import get_linear_schedule_with_warmup
    ours, theirs = (torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1e-3) for _ in range(2))
    mine, ref = build_scheduler(ours, "linear", 3, 10), get_linear_schedule_with_warmup(theirs, 3, 10)
    for _ in range(12):
        assert mine.get_last_lr() == ref.get_last_lr()
        ours.step(), theirs.step(), mine.step(), ref.step()


def test_onecycle_warms_up_to_peak_then_anneals():
    opt = build_optimizer(Toy(), lr=1e-2, weight_decay=0.01, betas=(0.9, 0.999), eps=1e-8)
    sched = build_scheduler(opt, "onecycle", warmup_steps=4, max_steps=20)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step(), sched.step()
    assert max(lrs) == pytest.approx(1e-2) and lrs.index(max(lrs)) == 4 and lrs[-1] < 1e-4 and lrs[0] < 1e-3


# -- the training loop ------------------------------------------------------------------------------

def test_trains_logs_metrics_and_plots(tmp_path):
    loader, collator = make_data()
    summary = Trainer(Toy(), loader, config(tmp_path, max_steps=10), stateful=collator).train()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 11))
    assert {"loss", "mlm_loss", "nsp_loss", "lr", "grad_norm", "tokens_per_s", "elapsed", "epoch"} <= set(records[0])
    assert records[0]["lr"] == 0.0 and records[2]["lr"] == pytest.approx(1e-2)  # warmup, then the peak
    assert summary["losses"][-1] < summary["losses"][0] and summary["step"] == 10
    assert (tmp_path / "final" / "model.pt").is_file() and summary["checkpoint"].endswith("step-0000010")
    plot_curves(tmp_path / "metrics.jsonl", tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("n_rows", [20, 16])  # checkpoints mid-epoch / exactly at epoch ends
def test_resume_is_bitwise_identical(tmp_path, n_rows):
    loader, collator = make_data(n_rows)
    full = Trainer(Toy(), loader, config(tmp_path / "a", max_steps=10, grad_accum=2), stateful=collator)
    reference = full.train()["losses"]
    loader, collator = make_data(n_rows)
    with pytest.raises(RuntimeError, match="preempted"):  # dies in step 8 (micro-batch 15): last checkpoint is 6
        Trainer(Toy(), loader, config(tmp_path / "b", max_steps=10, grad_accum=2, save_every=3, keep_last=None),
                train_step=Crash(at=15), stateful=collator).train()
    for resume, first in ((True, 6), (str(tmp_path / "b" / "checkpoints" / "step-0000003"), 3)):
        loader, collator = make_data(n_rows, seed=999)  # collator and model state come from the checkpoint
        cfg = config(tmp_path / "b", max_steps=10, grad_accum=2, resume=resume, keep_last=None)
        resumed = Trainer(Toy(seed=7), loader, cfg, stateful=collator)
        assert resumed.train()["losses"] == reference[first:]
        for p, q in zip(resumed.model.parameters(), full.model.parameters()):
            torch.testing.assert_close(p, q, atol=0, rtol=0)
    logged = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == list(range(1, 11)) and [r["loss"] for r in logged] == reference


def test_keep_last_k_and_atomic_folders(tmp_path):
    loader, collator = make_data()
    Trainer(Toy(), loader, config(tmp_path, max_steps=7, save_every=2, keep_last=2), stateful=collator).train()
    names = [p.name for p in list_checkpoints(tmp_path / "checkpoints")]
    assert names == ["step-0000006", "step-0000007"]
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]
    with pytest.raises(ZeroDivisionError), atomic_dir(tmp_path / "checkpoints" / "step-0000007") as tmp:
        (tmp / "state.pt").write_text("half-written")
        1 / 0  # a crash mid-write keeps the old folder whole
    assert load_checkpoint(tmp_path / "checkpoints" / "step-0000007")["trainer"]["step"] == 7


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    def poisoned(model, batch, backward):
        poisoned.calls += 1
        logs = model_loss(model, batch, backward)
        return {**logs, "loss": logs["loss"] * float("nan")} if poisoned.calls == 5 else logs
    poisoned.calls = 0
    loader, collator = make_data()
    trainer = Trainer(Toy(), loader, config(tmp_path, max_steps=8, save_every=2), train_step=poisoned)
    with pytest.raises(FloatingPointError, match=r"step 5: loss is nan .*Last good checkpoint: .*step-0000004"):
        trainer.train()
    assert latest_checkpoint(tmp_path / "checkpoints").name == "step-0000004"
    state = load_checkpoint(tmp_path / "checkpoints" / "step-0000004")
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (tmp_path / "final").exists()


def test_early_stopping_keeps_best_model(tmp_path):
    scores, snapshots = iter([3.0, 2.0, 2.5, 2.6, 1.0]), {}

    def eval_fn(model):
        snapshots[len(snapshots) + 1] = copy.deepcopy(model.state_dict())
        return {"loss": next(scores)}

    loader, collator = make_data()
    summary = Trainer(Toy(), loader, config(tmp_path, max_steps=20, eval_every=1, early_stopping_patience=2),
                      eval_fn=eval_fn).train()
    assert (summary["step"], summary["best_step"], summary["best_metric"]) == (4, 2, 2.0) and summary["stopped_early"]
    best = torch.load(tmp_path / "best" / "model.pt")
    assert all(torch.equal(best[k], snapshots[2][k]) for k in best)
    assert json.loads((tmp_path / "best" / "eval_results.json").read_text())["step"] == 2
    evals = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines() if "eval_loss" in l]
    assert [r["eval_loss"] for r in evals] == [3.0, 2.0, 2.5, 2.6]


def test_epochs_set_max_steps_and_eval_metric_must_exist_for_early_stopping(tmp_path):
    loader, _ = make_data(20, 4)  # 5 batches an epoch
    trainer = Trainer(Toy(), loader, config(tmp_path, max_steps=None, epochs=2, grad_accum=2, out_dir=None))
    assert trainer.max_steps == 5
    logs_only = Trainer(Toy(), loader, config(tmp_path, max_steps=2), eval_fn=lambda m: {"accuracy": 0.5}).train()
    assert logs_only["eval"] == {"accuracy": 0.5} and logs_only["best_step"] is None
    with pytest.raises(KeyError, match=r"early_stopping_metric='loss' is not among eval_fn's results \['accuracy'\]"):
        Trainer(Toy(), loader, config(tmp_path, max_steps=2, early_stopping_patience=1),
                eval_fn=lambda m: {"accuracy": 0.5}).train()


def test_gradient_accumulation_equals_big_batch(tmp_path):
    params = []
    for batch_size, accum in ((8, 1), (4, 2)):
        loader, _ = make_data(16, batch_size, shuffle=False)
        trainer = Trainer(Toy(p=0.0), loader, config(None, max_steps=4, grad_accum=accum, out_dir=None))
        trainer.train()
        params.append(list(trainer.model.parameters()))
    for p, q in zip(*params):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)


def test_bf16_autocast_on_cpu_and_fp16_needs_cuda(tmp_path):
    loader, _ = make_data()
    summary = Trainer(Toy(), loader, config(tmp_path, precision="bf16", out_dir=None)).train()
    assert all(torch.isfinite(torch.tensor(summary["losses"])))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="precision='fp16' needs CUDA .*use 'auto'"):
            Trainer(Toy(), loader, config(tmp_path, precision="fp16", device="cpu"))


def test_bert_pretraining_end_to_end(tmp_path):
    from bertmini import BertForPreTraining
    model = tiny_bert()
    gen = torch.Generator().manual_seed(0)
    rows = [{"input_ids": torch.randint(5, 50, (12,), generator=gen), "next_sentence_label": torch.tensor(i % 2)}
            for i in range(16)]

    def collate(items):
        ids = torch.stack([r["input_ids"] for r in items])
        labels = torch.where(torch.rand(ids.shape, generator=gen) < 0.15, ids, -100)
        labels[:, 0] = ids[:, 0]  # at least one prediction per row
        return {"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids),
                "next_sentence_label": torch.stack([r["next_sentence_label"] for r in items])}

    loader = DataLoader(rows, batch_size=4, shuffle=True, collate_fn=collate)
    cfg = config(tmp_path, max_steps=4, layerwise_lr_decay=0.8, freeze_embeddings=True)
    before = model.bert.embeddings.word_embeddings.weight.detach().clone()
    Trainer(model, loader, cfg).train()
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, before)
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["loss"] == pytest.approx(record["mlm_loss"] + record["nsp_loss"], rel=1e-5)
    reloaded = BertForPreTraining.from_pretrained(tmp_path / "final")
    assert all(torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), model.state_dict().values()))


DDP_SCRIPT = """
import json, os, sys, torch, torch.distributed as dist
sys.path.insert(0, {tests!r})
from test_training_trainer import Toy, make_data, config
from bertmini.training.distributed import init_distributed
from bertmini.training.trainer import Trainer
rank, world, device, created = init_distributed("auto")  # from torchrun's RANK / WORLD_SIZE / LOCAL_RANK
assert (world, device.type, created) == (2, "cpu", True), (world, device, created)
out = {out!r}  # the group exists now: the Trainers below use it and leave it alone
loader, _ = make_data(16, 2, shuffle=False, rate=0.0)  # deterministic: comparable with one process
trainer = Trainer(Toy(p=0.0), loader, config(out + "/a", max_steps=3))
trainer.train()
torch.save(trainer.model.state_dict(), out + f"/rank{{rank}}.pt")
loader, collator = make_data(16, 2, rate=0.3)  # dropout + masking + shuffling: exact resume per rank
full = Trainer(Toy(), loader, config(out + "/b", max_steps=5, save_every=2, keep_last=None), stateful=collator)
losses = full.train()["losses"]
loader, collator = make_data(16, 2, seed=999)
resumed = Trainer(Toy(seed=7), loader, config(out + "/b", max_steps=5, keep_last=None,
                  resume=out + "/b/checkpoints/step-0000002"), stateful=collator).train()["losses"]
json.dump({{"full": losses, "resumed": resumed}}, open(out + f"/losses{{rank}}.json", "w"))
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_ddp_two_cpu_ranks(tmp_path):
    """torchrun with 2 CPU processes (gloo): ranks stay identical, equal one process on the joined
    batches, and a resumed run repeats each rank's losses exactly."""
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path)))
    launcher = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                                 str(script)], env={**os.environ, "OMP_NUM_THREADS": "1"}, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = launcher.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)  # torchrun and both workers: no orphans left behind
        raise
    assert launcher.returncode == 0, output[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    loader, _ = make_data(16, 4, shuffle=False, rate=0.0)  # one process, the two ranks' batches side by side
    single = Trainer(Toy(p=0.0), loader, config(None, max_steps=3, out_dir=None))
    single.train()
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(rank0[k], v, atol=1e-6, rtol=1e-5)
    for rank in (0, 1):
        losses = json.loads((tmp_path / f"losses{rank}.json").read_text())
        assert losses["resumed"] == losses["full"][2:] and len(losses["full"]) == 5
    assert len(load_checkpoint(tmp_path / "b" / "checkpoints" / "step-0000002")["ranks"]) == 2


# -- losses and step hooks --------------------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(2, 5), st.floats(0.0, 0.5), st.booleans(), st.integers(0, 2**16))
def test_cross_entropy_matches_torch(n, classes, smoothing, weighted, seed):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 3, classes, generator=gen)
    labels = torch.randint(0, classes, (n, 3), generator=gen)
    labels[1:, 0] = -100  # ignored positions (row 0 always keeps some)
    weight = torch.rand(classes, generator=gen) + 0.1 if weighted else None
    expected = F.cross_entropy(logits.reshape(-1, classes), labels.reshape(-1), weight=weight,
                               label_smoothing=smoothing)
    torch.testing.assert_close(cross_entropy(logits, labels, weight, smoothing), expected)


def test_focal_loss():
    gen = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(10, 3, generator=gen), torch.tensor([0, 1, 2, 1, 0, -100, 2, 2, 1, 0])
    torch.testing.assert_close(focal_loss(logits, labels, gamma=0.0), F.cross_entropy(logits, labels))
    p_t = logits.softmax(-1)[torch.arange(10), labels.clamp(min=0)][labels != -100]
    torch.testing.assert_close(focal_loss(logits, labels, gamma=2.0), (-(1 - p_t) ** 2 * p_t.log()).mean())
    binary, y = torch.randn(6, 2, generator=gen), torch.tensor([0, 1, 1, 0, 1, 1])
    alpha_t = torch.where(y == 1, 0.25, 0.75)
    torch.testing.assert_close(focal_loss(binary, y, gamma=0.0, alpha=0.25),
                               (alpha_t * F.cross_entropy(binary, y, reduction="none")).mean())
    with pytest.raises(ValueError, match="a float alpha needs 2 classes, got 3"):
        focal_loss(logits, labels, alpha=0.25)


def test_symmetric_kl_matches_kl_div():
    gen = torch.Generator().manual_seed(0)
    p, q = torch.randn(5, 4, generator=gen), torch.randn(5, 4, generator=gen)
    kl = lambda a, b: F.kl_div(b.log_softmax(-1), a.log_softmax(-1), log_target=True, reduction="batchmean")
    torch.testing.assert_close(symmetric_kl(p, q), 0.5 * (kl(p, q) + kl(q, p)))
    assert symmetric_kl(p, p) == 0


def _clf_batch():
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(2, VOCAB, (4, SEQ), generator=gen)
    return {"input_ids": ids, "labels": ids.roll(1, dims=1)}


def test_rdrop_alpha_zero_is_the_mean_cross_entropy_of_both_passes():
    model, batch = Toy(p=0.5), _clf_batch()
    inputs = {"input_ids": batch["input_ids"]}
    torch.manual_seed(5)
    logs = RDrop(alpha=0.0)(model, batch, lambda loss: None)
    torch.manual_seed(5)  # replay the same two dropout masks
    ce1, ce2 = (F.cross_entropy(model(**inputs).logits.flatten(0, 1), batch["labels"].flatten()) for _ in range(2))
    torch.testing.assert_close(logs["loss"], 0.5 * (ce1 + ce2))
    assert logs["kl"] > 0
    model.eval()  # no dropout: both passes agree, the KL term vanishes, any alpha gives plain CE
    expected = F.cross_entropy(model(**inputs).logits.flatten(0, 1), batch["labels"].flatten())
    torch.testing.assert_close(RDrop(alpha=4.0)(model, batch, lambda loss: None)["loss"], expected)


def test_logits_loss_replaces_the_model_loss():
    model, batch = Toy(p=0.0), _clf_batch()
    step = LogitsLoss(partial(cross_entropy, label_smoothing=0.1))
    expected = F.cross_entropy(model(input_ids=batch["input_ids"]).logits.flatten(0, 1), batch["labels"].flatten(),
                               label_smoothing=0.1)
    torch.testing.assert_close(step(model, batch, lambda loss: None)["loss"], expected)
    with pytest.raises(ValueError, match=r"LogitsLoss needs batch\['labels'\]"):
        step(model, {"input_ids": batch["input_ids"]}, lambda loss: None)


def test_fgm_restores_embeddings_and_adds_the_adversarial_gradient():
    model, batch, eps = Toy(p=0.0), _clf_batch(), 0.5
    reference = copy.deepcopy(model)
    before = model.word_embeddings.weight.detach().clone()
    logs = FGM(epsilon=eps)(model, batch, lambda loss: loss.backward())
    assert torch.equal(model.word_embeddings.weight, before) and logs["adv_loss"] > logs["loss"]
    clean = torch.autograd.grad(reference(**batch).loss, list(reference.parameters()))
    g = clean[0]
    with torch.no_grad():
        reference.word_embeddings.weight.add_(eps * g / g.norm())
    adversarial = torch.autograd.grad(reference(**batch).loss, list(reference.parameters()))
    for p, c, a in zip(model.parameters(), clean, adversarial):
        torch.testing.assert_close(p.grad, c + a)


def test_fgm_inside_the_trainer(tmp_path):
    """FGM as the Trainer's step hook: each micro-batch backpropagates the clean loss and the loss at
    E + eps * g / |g| through the Trainer's backward (/ grad_accum); the optimizer then steps from the
    restored embeddings with the summed, clipped gradient. A plain Trainer run ends elsewhere."""
    eps, cfg = 0.5, config(tmp_path, max_steps=3, warmup_steps=1, grad_accum=2, out_dir=None)
    start = Toy(p=0.0)  # no dropout: the forward passes are exactly repeatable
    fgm_hook, seen = FGM(epsilon=eps), []

    def hook(model, batch, backward):
        seen.append({k: v.clone() for k, v in batch.items()})
        emb = model.word_embeddings.weight.detach().clone()
        logs = fgm_hook(model, batch, backward)
        assert torch.equal(model.word_embeddings.weight, emb), "embeddings not restored after the adversarial pass"
        assert logs["adv_loss"] > logs["loss"]  # the perturbation goes up the loss
        return logs

    with_fgm, plain = copy.deepcopy(start), copy.deepcopy(start)
    Trainer(with_fgm, make_data(shuffle=False)[0], cfg, train_step=hook).train()
    Trainer(plain, make_data(shuffle=False)[0], cfg).train()
    assert len(seen) == cfg.max_steps * cfg.grad_accum

    reference = copy.deepcopy(start)  # the same steps written out by hand
    optimizer = build_optimizer(reference, cfg.lr, cfg.weight_decay, cfg.betas, cfg.eps)
    scheduler = build_scheduler(optimizer, cfg.schedule, cfg.warmup_steps, cfg.max_steps)
    emb = reference.word_embeddings.weight
    for step in range(cfg.max_steps):
        for batch in seen[step * cfg.grad_accum:(step + 1) * cfg.grad_accum]:
            (reference(**batch).loss / cfg.grad_accum).backward()
            saved = emb.detach().clone()
            with torch.no_grad():
                emb.add_(eps * emb.grad / emb.grad.norm())  # g: every gradient accumulated so far, as FGM documents
            (reference(**batch).loss / cfg.grad_accum).backward()
            with torch.no_grad():
                emb.copy_(saved)
        nn.utils.clip_grad_norm_(list(reference.parameters()), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
    for (name, p), q, r in zip(with_fgm.named_parameters(), plain.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, r, msg=name)
        assert not torch.allclose(p, q, rtol=0, atol=1e-4), f"{name}: FGM changed nothing"
