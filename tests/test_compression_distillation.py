"""Distillation: the loss against its definition and torch's KL, students built from teacher layers, and the
step hook training a tiny student through the Trainer (precomputed logits and a live teacher)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bertmini import BertConfig
from bertmini.compression import DistillStep, distillation_loss, hidden_state_loss, student_from_teacher, teacher_logits
from bertmini.errors import InputError
from bertmini.heads import BertForSequenceClassification
from bertmini.training import Trainer
from bertmini.training.batching import BatchLoader


def tiny(layers: int = 4, seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                        intermediate_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForSequenceClassification(config).eval()


def features(n: int = 24) -> list[dict]:
    g = torch.Generator().manual_seed(3)
    out = []
    for i in range(n):
        length = int(torch.randint(4, 10, (1,), generator=g))
        ids = torch.randint(5, 120, (length,), generator=g).tolist()
        out.append({"input_ids": ids, "token_type_ids": [0] * length, "labels": i % 2})
    return out


def test_loss_matches_definition_and_torch_kl():
    g = torch.Generator().manual_seed(0)
    s, t, y = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g), torch.tensor([0, 2, 1, 1, 0])
    T, alpha = 3.0, 0.7
    kl = F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), log_target=True, reduction="batchmean")
    expected = alpha * T ** 2 * kl + (1 - alpha) * F.cross_entropy(s, y)
    torch.testing.assert_close(distillation_loss(s, t, y, T, alpha), expected)
    torch.testing.assert_close(distillation_loss(s, t, y, T, 0.0), F.cross_entropy(s, y))
    assert float(distillation_loss(t, t, y, T, 1.0)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("kw,match", [({"temperature": 0.0}, "temperature > 0"),
                                      ({"alpha": 1.5}, r"alpha in \[0, 1\], got temperature=2.0, alpha=1.5")])
def test_loss_rejects_bad_settings(kw, match):
    x = torch.zeros(2, 2)
    with pytest.raises(InputError, match=match):
        distillation_loss(x, x, torch.tensor([0, 1]), **kw)


def test_hidden_state_loss_is_zero_for_equal_states_and_checks_shapes():
    h = [torch.randn(2, 5, 32) for _ in range(3)]
    assert float(hidden_state_loss(h, h, {1: 1, 2: 2})) == pytest.approx(0.0, abs=1e-6)
    assert float(hidden_state_loss(h, [-x for x in h], {0: 0})) == pytest.approx(2.0)
    with pytest.raises(InputError, match=r"student state 0 has shape \(2, 5, 16\) but teacher state 1 has "
                                         r"\(2, 5, 32\)"):
        hidden_state_loss([torch.zeros(2, 5, 16)], h, {0: 1})


def test_student_from_teacher_copies_the_chosen_layers():
    teacher = tiny(layers=4)
    student = student_from_teacher(teacher, [0, 2])
    assert student.config.num_hidden_layers == 2 and student.num_parameters() < teacher.num_parameters()
    ts, ss = teacher.state_dict(), student.state_dict()
    for new, old in ((0, 0), (1, 2)):
        torch.testing.assert_close(ss[f"bert.encoder.layer.{new}.output.dense.weight"],
                                   ts[f"bert.encoder.layer.{old}.output.dense.weight"], rtol=0, atol=0)
    torch.testing.assert_close(ss["classifier.weight"], ts["classifier.weight"], rtol=0, atol=0)
    assert not student.training  # like the teacher: eval mode, dropout off
    full = student_from_teacher(teacher, [0, 1, 2, 3])  # every layer: the same function
    ids = torch.randint(5, 120, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(full(ids).logits, teacher(ids).logits, rtol=0, atol=0)


@pytest.mark.parametrize("layers", [[], [0, 4], [1, 1]])
def test_student_from_teacher_rejects_bad_layers(layers):
    with pytest.raises(InputError, match=r"layers must be distinct indices in \[0, 4\), got"):
        student_from_teacher(tiny(layers=4), layers)


def test_step_with_precomputed_logits_equals_live_teacher():
    teacher, feats = tiny(layers=4), features(8)
    logits = teacher_logits(teacher, feats, batch_size=4, precision="fp32")
    assert logits.shape == (8, 2) and [f["index"] for f in feats] == list(range(8))
    batch = next(iter(BatchLoader(feats, 8, 0, bucket=False)))
    student = student_from_teacher(teacher, [1, 3])
    got = {}
    for name, source in (("pre", logits), ("live", teacher)):
        got[name] = DistillStep(source, temperature=2.0, alpha=0.5)(student, batch, lambda loss: None)["loss"]
    torch.testing.assert_close(got["pre"], got["live"], atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_distilling_through_the_trainer_lowers_the_loss_and_matches_hidden_states():
    teacher, feats = tiny(layers=4), features(24)
    student = tiny(layers=2, seed=1)  # fresh weights: far from the teacher's states and outputs
    step = DistillStep(teacher, temperature=2.0, alpha=1.0, hidden_weight=1.0, layer_map={1: 1, 2: 3})
    loader = BatchLoader(feats, 8, 0, seed=0)
    before = step(student, next(iter(loader)), lambda loss: None)
    summary = Trainer(student, loader, {"lr": 3e-3, "max_steps": 30, "device": "cpu", "precision": "fp32",
                                        "log_every": 100, "progress": False}, train_step=step).train()
    after = step(student, next(iter(loader)), lambda loss: None)
    assert summary["step"] == 30
    assert after["hidden_loss"].item() < before["hidden_loss"].item()
    assert after["kd_loss"].item() < before["kd_loss"].item()


def test_step_errors_name_what_is_missing():
    teacher = tiny(layers=2)
    with pytest.raises(InputError, match="hidden-state matching needs a teacher model"):
        DistillStep(torch.zeros(3, 2), hidden_weight=1.0, layer_map={1: 1})
    batch = {"input_ids": torch.ones(2, 3, dtype=torch.long), "labels": torch.tensor([0, 1])}
    with pytest.raises(InputError, match=r"precomputed teacher logits need batch\['index'\]"):
        DistillStep(torch.zeros(3, 2))(teacher, batch, lambda loss: None)
    with pytest.raises(InputError, match=r"DistillStep needs batch\['labels'\]"):
        DistillStep(teacher)(teacher, {"input_ids": batch["input_ids"]}, lambda loss: None)
