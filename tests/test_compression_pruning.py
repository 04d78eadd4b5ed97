"""Head importance and pruning: a pruned model equals the unpruned one with those heads zeroed, it saves and
loads at its smaller size, and bad requests name the layer and head."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from bertmini import BertConfig
from bertmini.compression import head_gates, head_importance, heads_to_prune, mask_heads, prune_heads
from bertmini.errors import InputError
from bertmini.heads import BertForSequenceClassification


def tiny(**kw) -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, **kw)
    return BertForSequenceClassification(config).eval()


def inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 120, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 1])}


def logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(batch["input_ids"], batch["attention_mask"]).logits


@pytest.mark.parametrize("heads", [{0: [1]}, {0: [0, 3], 1: [2]}, {1: [0, 1, 2]}])
def test_pruned_equals_heads_zeroed(heads):
    model, batch = tiny(), inputs()
    with mask_heads(model, heads):
        masked = logits(model, batch)
    assert not torch.allclose(masked, logits(model, batch))  # the heads mattered
    prune_heads(model, heads)
    torch.testing.assert_close(logits(model, batch), masked, atol=1e-6, rtol=0)
    for layer, hs in heads.items():
        attn = model.bert.encoder.layer[layer].attention
        assert attn.self.query.weight.shape == (8 * (4 - len(hs)), 32)
        assert attn.output.dense.weight.shape == (32, 8 * (4 - len(hs)))


def test_pruning_twice_uses_original_head_numbers():
    model, batch = tiny(), inputs()
    with mask_heads(model, {0: [1, 2]}):
        masked = logits(model, batch)
    prune_heads(model, {0: [1]})
    prune_heads(model, {0: [2]})  # head 2 of the original layer, now at position 1
    assert model.config.pruned_heads == {0: [1, 2]}
    torch.testing.assert_close(logits(model, batch), masked, atol=1e-6, rtol=0)


def test_pruned_checkpoint_saves_and_loads(tmp_path):
    model, batch = tiny(), inputs()
    prune_heads(model, {0: [0, 2], 1: [3]})
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["pruned_heads"] == {"0": [0, 2], "1": [3]}
    loaded = BertForSequenceClassification.from_pretrained(tmp_path)
    assert loaded.config.pruned_heads == {0: [0, 2], 1: [3]}
    assert loaded.bert.encoder.layer[0].attention.self.num_heads == 2
    torch.testing.assert_close(logits(loaded, batch), logits(model, batch), atol=1e-6, rtol=0)


def test_unpruned_config_json_has_no_pruned_heads(tmp_path):
    tiny().save_pretrained(tmp_path)
    assert "pruned_heads" not in json.loads((tmp_path / "config.json").read_text())


@pytest.mark.parametrize("heads,match", [
    ({2: [0]}, r"layer 2 does not exist \(the model has 2 layers\)"),
    ({0: [4]}, r"layer 0 has no head 4 \(heads are 0..3\)"),
    ({1: [0, 1, 2, 3]}, "pruning all 4 heads of layer 1 leaves it no attention"),
])
def test_bad_requests(heads, match):
    with pytest.raises(InputError, match=match):
        prune_heads(tiny(), heads)


def test_pruning_a_pruned_head_or_the_last_one():
    model = tiny()
    prune_heads(model, {0: [0, 1, 2]})
    with pytest.raises(InputError, match=r"head\(s\) \[1\] of layer 0 are already pruned"):
        prune_heads(model, {0: [1]})
    with pytest.raises(InputError, match="pruning all 4 heads of layer 0"):
        prune_heads(model, {0: [3]})
    assert model.config.pruned_heads == {0: [0, 1, 2]}  # the failed requests changed nothing


def test_bad_pruned_heads_in_config_json(tmp_path):
    tiny().save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    data["pruned_heads"] = {"0": [7]}
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"config.json: pruned_heads: layer 0 has no head 7"):
        BertForSequenceClassification.from_pretrained(tmp_path)


def test_head_importance_is_the_gate_gradient():
    model, batch = tiny(), inputs()
    raw = head_importance(model, [batch], normalize=False)
    assert all(p.grad is None for p in model.parameters())
    normed = head_importance(model, [batch])
    torch.testing.assert_close(normed.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(normed, raw / raw.norm(dim=-1, keepdim=True))
    gates = [torch.ones(4, requires_grad=True) for _ in range(2)]
    with head_gates(model, gates):
        model(**batch).loss.backward()
    torch.testing.assert_close(raw, torch.stack([g.grad.abs() for g in gates]))


def test_head_importance_equals_finite_differences():
    """|∂L/∂ξ_h| against (L(ξ_h = 1 + ε) - L(ξ_h = 1 - ε)) / 2ε, in float64."""
    model, batch = tiny(), inputs()
    model.double()
    raw = head_importance(model, [batch], normalize=False)
    eps = 1e-4
    for layer, head in ((0, 1), (1, 3)):
        losses = []
        for sign in (1, -1):
            gates = [torch.ones(4, dtype=torch.float64) for _ in range(2)]
            gates[layer][head] += sign * eps
            with head_gates(model, gates), torch.no_grad():  # the loss in float64 (the model's is float32)
                losses.append(F.cross_entropy(logits(model, batch), batch["labels"]))
        slope = float((losses[0] - losses[1]) / (2 * eps))
        assert abs(slope) == pytest.approx(float(raw[layer, head]), rel=1e-4)


def test_heads_to_prune_takes_the_weakest_and_keeps_one_per_layer():
    importance = torch.tensor([[0.1, 0.9, 0.2, 0.3], [0.05, 0.06, 0.07, 0.08]])
    assert heads_to_prune(importance, 0.25) == {1: [0, 1]}
    assert heads_to_prune(importance, 0.5) == {0: [0], 1: [0, 1, 2]}  # layer 1 keeps its best head
    assert heads_to_prune(importance, 0.0) == {}
    with pytest.raises(InputError, match=r"fraction must be in \[0, 1\), got 1.0"):
        heads_to_prune(importance, 1.0)


def test_gate_shapes_are_checked():
    with pytest.raises(InputError, match=r"expected one gate per head, shapes \[\(4,\), \(4,\)\], got \[\(3,\)\]"):
        with head_gates(tiny(), [torch.ones(3)]):
            pass
