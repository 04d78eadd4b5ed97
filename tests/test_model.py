"""Parity with transformers (the oracle), in both directions, plus input errors and attention paths."""
from __future__ import annotations

import pytest
import torch
import transformers

import bertmini
from bertmini import BertConfig
from bertmini.hf_folder import load_state_dict

from hf_parity import CLASSES, hf_twin, max_abs_diffs, model_outputs

ATOL = 1e-5


def tiny_config(name: str = "", **overrides) -> BertConfig:
    # HF's QA head has num_labels outputs and needs exactly 2 (start, end).
    labels = {0: "start", 1: "end"} if name == "BertForQuestionAnswering" else {0: "a", 1: "b", 2: "c"}
    base = dict(vocab_size=211, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=64, max_position_embeddings=64, id2label=labels)
    base.update(overrides)
    return BertConfig(**base)


def batch(config: BertConfig, b: int = 3, t: int = 12, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, config.vocab_size, (b, t), generator=g)
    mask = torch.ones(b, t, dtype=torch.long)
    mask[1, t - 4:] = 0  # one padded row
    ids[1, t - 4:] = config.pad_token_id
    types = torch.zeros(b, t, dtype=torch.long)
    types[:, t // 2:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def assert_same(ours, theirs, inputs: dict) -> float:
    diffs = max_abs_diffs(model_outputs(ours, inputs), model_outputs(theirs, inputs), inputs["attention_mask"])
    bad = {k: v for k, v in diffs.items() if not v <= ATOL}
    assert not bad, f"outputs differ from transformers by more than {ATOL}: {bad}"
    return max(diffs.values())


@pytest.mark.parametrize("name", CLASSES)
def test_hf_to_bertmini(name):
    config = tiny_config(name)
    torch.manual_seed(0)
    theirs = hf_twin(name, config)
    ours = getattr(bertmini, name)(config).eval()
    report = load_state_dict(ours, theirs.state_dict())
    assert report.missing_keys == [] and report.unexpected_keys == []
    inputs = batch(config)
    assert_same(ours, theirs, inputs)


@pytest.mark.parametrize("name", CLASSES)
def test_bertmini_to_hf_through_save_pretrained(name, tmp_path):
    config = tiny_config(name)
    torch.manual_seed(1)
    ours = getattr(bertmini, name)(config).eval()
    ours.save_pretrained(tmp_path)
    theirs, info = getattr(transformers, name).from_pretrained(tmp_path, output_loading_info=True,
                                                                attn_implementation="eager")
    assert info["missing_keys"] in ([], set()) and not info["mismatched_keys"], info
    inputs = batch(config, seed=3)
    assert_same(ours, theirs.eval(), inputs)


def test_pretraining_losses_match_dense_hf():
    """Sparse MLM (head only on masked positions) gives HF's dense loss."""
    config = tiny_config()
    theirs = hf_twin("BertForPreTraining", config)
    ours = bertmini.BertForPreTraining(config).eval()
    load_state_dict(ours, theirs.state_dict())
    inputs = batch(config)
    labels = torch.full_like(inputs["input_ids"], -100)
    labels[:, 2:5] = inputs["input_ids"][:, 2:5]
    nsp = torch.tensor([0, 1, 0])
    with torch.no_grad():
        a = ours(**inputs, labels=labels, next_sentence_label=nsp)
        b = theirs(**inputs, labels=labels, next_sentence_label=nsp)
    assert a.prediction_logits.shape == (9, config.vocab_size)
    torch.testing.assert_close(a.prediction_logits, b.prediction_logits[labels != -100], atol=ATOL, rtol=0)
    torch.testing.assert_close(a.loss, b.loss, atol=ATOL, rtol=0)
    torch.testing.assert_close(a.mlm_loss + a.nsp_loss, a.loss)


@pytest.mark.parametrize("name,kw", [
    ("BertForSequenceClassification", {"labels": torch.tensor([0, 2, 1])}),
    ("BertForTokenClassification", {"labels": torch.randint(0, 3, (3, 12))}),
    ("BertForQuestionAnswering", {"start_positions": torch.tensor([1, 3, 40]), "end_positions": torch.tensor([2, 5, 40])}),
])
def test_task_losses_match_hf(name, kw):
    config = tiny_config(name)
    theirs = hf_twin(name, config)
    ours = getattr(bertmini, name)(config).eval()
    load_state_dict(ours, theirs.state_dict())
    inputs = batch(config)
    with torch.no_grad():
        torch.testing.assert_close(ours(**inputs, **kw).loss, theirs(**inputs, **kw).loss, atol=ATOL, rtol=0)


def test_real_checkpoint_matches_transformers(minilm_dir):
    ours = bertmini.BertModel.from_pretrained(minilm_dir)
    theirs = transformers.BertModel.from_pretrained(minilm_dir, attn_implementation="eager").eval()
    tok = transformers.BertTokenizerFast.from_pretrained(minilm_dir)
    inputs = dict(tok(["The cat sat on the mat.", "BERT reads text in both directions at once, naïvely."],
                      ["A short second segment.", "Another one"], padding=True, return_tensors="pt"))
    assert assert_same(ours, theirs, inputs) < ATOL


def test_fast_and_explicit_attention_agree():
    config = tiny_config()
    model = bertmini.BertModel(config).eval()
    inputs = batch(config)
    with torch.no_grad():
        fast = model(**inputs).last_hidden_state
        explicit = model(**inputs, output_attentions=True)
    keep = inputs["attention_mask"].bool()
    torch.testing.assert_close(fast[keep], explicit.last_hidden_state[keep], atol=ATOL, rtol=0)
    probs = explicit.attentions[0]
    assert probs.shape == (3, 4, 12, 12)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, 4, 12))
    assert probs[1, :, :, -4:].abs().max() < 1e-6  # no attention to padding


def test_padding_does_not_change_real_tokens():
    config = tiny_config()
    model = bertmini.BertForTokenClassification(config).eval()
    ids = torch.randint(1, config.vocab_size, (1, 7))
    padded = torch.cat([ids, torch.zeros(1, 5, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 7), torch.zeros(1, 5)], dim=1).long()
    with torch.no_grad():
        alone = model(ids).logits
        with_pad = model(padded, attention_mask=mask).logits[:, :7]
    torch.testing.assert_close(alone, with_pad, atol=ATOL, rtol=0)


def test_scaled_dot_product_attention_matches_torch():
    from bertmini.attention import scaled_dot_product_attention
    q, k, v = torch.randn(3, 2, 4, 5, 8).unbind(0)
    mask = torch.rand(2, 1, 5, 5) > 0.3
    mask[..., 0] = True
    out, probs = scaled_dot_product_attention(q, k, v, mask)
    torch.testing.assert_close(out, torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    assert probs.masked_select(~mask.expand_as(probs)).abs().max() == 0


@pytest.mark.parametrize("inputs,match", [
    (torch.tensor([[1, 2, 500]]), r"id 500, outside the vocabulary \[0, 211\)"),
    (torch.tensor([[1, -3, 5]]), r"id -3, outside the vocabulary"),
    (torch.ones(1, 65, dtype=torch.long), "sequence length 65 exceeds max_position_embeddings 64"),
    (torch.ones(0, 5, dtype=torch.long), r"empty batch: input_ids has shape \(0, 5\)"),
    (torch.ones(5, dtype=torch.long), r"input_ids must be \(batch, seq_len\)"),
])
def test_bad_inputs_have_clear_errors(inputs, match):
    with pytest.raises(ValueError, match=match):
        bertmini.BertModel(tiny_config())(inputs)


def test_bad_token_types_and_mask_shape():
    model = bertmini.BertModel(tiny_config())
    ids = torch.ones(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"token_type_ids must be in \[0, 2\), got values in \[0, 2\]"):
        model(ids, token_type_ids=torch.tensor([[0, 1, 2, 0]]))
    with pytest.raises(ValueError, match=r"attention_mask shape \(1, 3\) != input_ids shape \(1, 4\)"):
        model(ids, attention_mask=torch.ones(1, 3))


def test_sinusoidal_positions_are_fixed_and_match_formula():
    from bertmini.embeddings import sinusoidal_positions
    table = sinusoidal_positions(50, 16)
    assert torch.allclose(table[7, 2], torch.sin(torch.tensor(7 / 10000 ** (2 / 16))))
    assert torch.allclose(table[7, 3], torch.cos(torch.tensor(7 / 10000 ** (2 / 16))))
    model = bertmini.BertModel(tiny_config(position_embedding="sinusoidal"))
    weight = model.embeddings.position_embeddings.weight
    assert not weight.requires_grad
    torch.testing.assert_close(weight, sinusoidal_positions(64, 32))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_training_mode_fused_mlm_loss_and_grads_match_hf(dtype):
    """In train mode the MLM loss is fused with the projection; loss and every gradient match HF."""
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    theirs = hf_twin("BertForPreTraining", config).train()
    ours = bertmini.BertForPreTraining(config).train()
    load_state_dict(ours, theirs.state_dict())
    inputs = batch(config)
    labels = torch.full_like(inputs["input_ids"], -100)
    labels[:, 1:4] = inputs["input_ids"][:, 1:4]
    kw = dict(labels=labels, next_sentence_label=torch.tensor([1, 0, 1]))
    with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        a, b = ours(**inputs, **kw), theirs(**inputs, **kw)
    assert a.prediction_logits is None
    a.loss.backward(), b.loss.backward()
    tol = ATOL if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(a.loss, b.loss, atol=tol, rtol=0)
    theirs_params = dict(theirs.named_parameters())
    for name, param in ours.named_parameters():
        ref = theirs_params[name].grad
        torch.testing.assert_close(param.grad, ref, atol=tol * max(1.0, ref.abs().max().item()), rtol=0,
                                   msg=lambda m: f"{name}: {m}")


def test_select_computes_only_chosen_rows_exactly():
    config = tiny_config()
    model = bertmini.BertModel(config).eval()
    inputs = batch(config)
    select = torch.rand(3, 12, generator=torch.Generator().manual_seed(0)) < 0.3
    select[:, 0] = True
    with torch.no_grad():
        full = model(**inputs)
        part = model(**inputs, select=select)
    torch.testing.assert_close(part.last_hidden_state, full.last_hidden_state[select], atol=ATOL, rtol=0)
    torch.testing.assert_close(part.pooler_output, full.pooler_output, atol=ATOL, rtol=0)
    select[1, 0] = False
    with pytest.raises(ValueError, match=r"select must include position 0 \(\[CLS\]\)"):
        model(**inputs, select=select)
