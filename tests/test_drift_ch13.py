"""Chapter 13's inline compression pieces must stay equal to bertmini.compression's.

The distillation loss (against ``distillation_loss``), the int8 matmul (``int8_linear``, bit for bit), the
gated head importance (``head_importance``), one layer's head removal (``BertAttention.prune_heads`` through
``prune_heads``) and the ONNX export (``export_onnx``: both files give the same ONNX Runtime logits).
Each check also runs on mutated copies of the notebook (no T², per-tensor scales, a signed gradient, the
wrong columns kept, a static sequence axis) and must fail there.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch

from bertmini import BertConfig
from bertmini.compression import (
    OnnxClassifier,
    distillation_loss,
    export_onnx,
    head_importance,
    int8_linear,
    mask_heads,
    prune_heads,
)
from bertmini.heads import BertForSequenceClassification

from nbutils import excess, fails, load_notebook_defs, mutate

CHAPTERS = Path(__file__).resolve().parents[1] / "chapters"
# The compression cells are merged into chapter 13; BERTMINI_NB13 points at another copy (a draft part).
NB13 = Path(os.environ.get("BERTMINI_NB13", CHAPTERS / "13_efficient_bert.ipynb"))
NAMES = ["kd_loss", "int8_matmul", "gate_importance", "drop_heads", "to_onnx"]
CH13 = load_notebook_defs(NB13, NAMES)


def mutated(definition: str, old: str, new: str, tmp_path: Path) -> dict:
    return load_notebook_defs(mutate(NB13, f"def {definition}(", old, new, tmp_path), NAMES)


def tiny(seed: int = 0, labels: int = 2) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=90, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, id2label={i: str(i) for i in range(labels)})
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():  # a head of std 1: logits as sensitive as the features they read
        model.classifier.weight.normal_()
    return model


def batch(seed: int, b: int = 3, t: int = 9) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 90, (b, t), generator=g)
    mask = torch.ones_like(ids)
    mask[0, t // 2:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.randint(0, 2, (b,), generator=g)}


# ---------------------------------------------------------------- distillation

def kd_excess(kd_loss, seed: int) -> float:
    g = torch.Generator().manual_seed(seed)
    s, t = 3 * torch.randn(6, 3, generator=g), 3 * torch.randn(6, 3, generator=g)
    y = torch.randint(0, 3, (6,), generator=g)
    return max(excess(kd_loss(s, t, y, T, a), distillation_loss(s, t, y, T, a))
               for T, a in ((1.0, 0.5), (4.0, 0.9), (2.0, 0.0)))


@pytest.mark.parametrize("seed", range(3))
def test_kd_loss_equals_distillation_loss(seed):
    assert kd_excess(CH13["kd_loss"], seed) <= 1


@pytest.mark.parametrize("old,new", [("alpha * T**2 * kl", "alpha * kl"), ("teacher_logits / T", "teacher_logits"),
                                     ("(1 - alpha) *", "alpha *")])
def test_kd_loss_check_catches_mutants(old, new, tmp_path):
    assert kd_excess(mutated("kd_loss", old, new, tmp_path)["kd_loss"], 0) > 10


# ---------------------------------------------------------------- int8

def check_int8(int8_matmul, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x, w, b = torch.randn(7, 48, generator=g), torch.randn(24, 48, generator=g), torch.randn(24, generator=g)
    x[0] *= 50  # one loud row: per-row scales keep the others precise
    torch.testing.assert_close(int8_matmul(x, w, b), int8_linear(x, w, b), rtol=0, atol=0)


@pytest.mark.parametrize("seed", range(3))
def test_int8_matmul_equals_int8_linear(seed):
    check_int8(CH13["int8_matmul"], seed)


@pytest.mark.parametrize("old,new", [("amax(dim=-1, keepdim=True)", "amax()"), ("/ 127", "/ 255"),
                                     ("acc.float() * s_x * s_w.T + bias", "acc.float() * s_x * s_w.T")])
def test_int8_check_catches_mutants(old, new, tmp_path):
    assert fails(check_int8, mutated("int8_matmul", old, new, tmp_path)["int8_matmul"], 0)


# ---------------------------------------------------------------- head importance and pruning

def importance_excess(gate_importance) -> float:
    model = tiny()
    batches = [batch(1), batch(2)]
    return excess(gate_importance(model, batches), head_importance(model, batches))


def test_gate_importance_equals_head_importance():
    assert importance_excess(CH13["gate_importance"]) <= 1


@pytest.mark.parametrize("old,new", [("torch.autograd.grad(model(**batch).loss, gates)).abs()",
                                      "torch.autograd.grad(model(**batch).loss, gates))"),
                                     ("scores / scores.norm(dim=-1, keepdim=True)", "scores / scores.sum()"),
                                     ("(ctx * gate[:, None])", "(ctx * gate[None, :])")])
def test_importance_check_catches_mutants(old, new, tmp_path):
    try:
        assert importance_excess(mutated("gate_importance", old, new, tmp_path)["gate_importance"]) > 10
    except RuntimeError:  # a broadcasting mutant may fail loudly instead: also caught
        pass


def check_drop_heads(drop_heads, heads: dict[int, list[int]]) -> None:
    model, inputs = tiny(), {k: v for k, v in batch(3).items() if k != "labels"}
    with torch.no_grad(), mask_heads(model, heads):
        expected = model(**inputs).logits
    ours = copy.deepcopy(model)
    for layer, hs in heads.items():
        drop_heads(ours.bert.encoder.layer[layer].attention, hs)
    theirs = prune_heads(copy.deepcopy(model), heads)
    with torch.no_grad():
        torch.testing.assert_close(ours(**inputs).logits, expected, atol=1e-6, rtol=0)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for key, value in theirs.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[key], value, rtol=0, atol=0)


@pytest.mark.parametrize("heads", [{0: [1]}, {0: [0, 3], 1: [2]}])
def test_drop_heads_equals_prune_heads(heads):
    check_drop_heads(CH13["drop_heads"], heads)


@pytest.mark.parametrize("old,new", [("linear.bias if dim == 1", "linear.bias.index_select(0, rows) if dim == 1"),
                                     ("sliced(attention.output.dense, 1)", "sliced(attention.output.dense, 0)"),
                                     ("h not in heads", "h in heads")])
def test_drop_heads_check_catches_mutants(old, new, tmp_path):
    drop = mutated("drop_heads", old, new, tmp_path)["drop_heads"]
    try:
        assert fails(check_drop_heads, drop, {0: [1]})
    except (RuntimeError, IndexError):  # a shape mismatch fails loudly: also caught
        pass


# ---------------------------------------------------------------- ONNX

def check_onnx(to_onnx, folder: Path) -> None:
    model = tiny()
    inline = OnnxClassifier(to_onnx(model, folder / "inline.onnx"))
    packaged = OnnxClassifier(export_onnx(model, folder / "packaged.onnx"))
    for b, t in ((1, 5), (4, 17)):
        inputs = {k: v for k, v in batch(b * t, b, t).items() if k != "labels"}
        torch.testing.assert_close(inline(inputs), packaged(inputs), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_to_onnx_equals_export_onnx(tmp_path):
    pytest.importorskip("onnxruntime")
    check_onnx(CH13["to_onnx"], tmp_path)


@pytest.mark.slow
def test_onnx_check_catches_a_static_sequence_axis(tmp_path):
    pytest.importorskip("onnxruntime")
    to_onnx = mutated("to_onnx", "{0: batch, 1: seq}", "{0: batch}", tmp_path)["to_onnx"]
    try:
        assert fails(check_onnx, to_onnx, tmp_path)
    except Exception as err:  # noqa: BLE001  (the exporter or ONNX Runtime refuses the other length)
        assert "sequence" in str(err) or "dim" in str(err).lower() or "shape" in str(err).lower(), err
