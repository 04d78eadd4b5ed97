"""The sentence classifier's fast path (chapter 13): the last layer at [CLS] only and the padding skipped,
with outputs and every gradient equal to transformers' BertForSequenceClassification."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import bertmini
from bertmini.attention import pad_rows
from bertmini.hf_folder import load_state_dict

from hf_parity import hf_twin
from test_model import ATOL, tiny_config


def padded_batch(config, b: int = 4, t: int = 10, seed: int = 0) -> dict[str, torch.Tensor]:
    """Rows of lengths t, t-3, 2 and t-1: padding in three rows, one of them almost all padding."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, config.vocab_size, (b, t), generator=g)
    mask = torch.ones(b, t, dtype=torch.long)
    for row, length in ((1, t - 3), (2, 2), (3, t - 1)):
        mask[row, length:] = 0
    ids[mask == 0] = config.pad_token_id
    types = torch.zeros(b, t, dtype=torch.long)
    types[0, t // 2:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def pair(num_labels: int = 3, attn: str = "eager"):
    labels = {i: f"l{i}" for i in range(num_labels)}
    config = tiny_config(id2label=labels, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    theirs = hf_twin("BertForSequenceClassification", config, attn).train()
    ours = bertmini.BertForSequenceClassification(config).train()
    load_state_dict(ours, theirs.state_dict())
    return config, ours, theirs


@pytest.mark.parametrize("num_labels,attn", [(3, "eager"), (3, "sdpa"), (1, "eager")])
def test_train_step_logits_loss_and_every_gradient_match_hf(num_labels, attn):
    config, ours, theirs = pair(num_labels, attn)
    inputs = padded_batch(config)
    labels = torch.tensor([0, 2, 1, 2]) if num_labels > 1 else torch.tensor([0.5, -1.0, 2.0, 0.0])
    a, b = ours(**inputs, labels=labels), theirs(**inputs, labels=labels)
    torch.testing.assert_close(a.logits, b.logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(a.loss, b.loss, atol=ATOL, rtol=0)
    a.loss.backward(), b.loss.backward()
    theirs_params = dict(theirs.named_parameters())
    for name, param in ours.named_parameters():
        ref = theirs_params[name].grad
        assert param.grad is not None, f"{name}: no gradient"
        torch.testing.assert_close(param.grad, ref, atol=ATOL * max(1.0, ref.abs().max().item()), rtol=0,
                                   msg=lambda m: f"{name}: {m}")


def rows_seen(model, inputs: dict, **kw) -> list[int]:
    """How many rows each layer's feed-forward computes."""
    seen = []
    def count(module, args, out):
        seen.append(args[0].shape[:-1].numel())
    hooks = [layer.intermediate.dense.register_forward_hook(count) for layer in model.bert.encoder.layer]
    with torch.no_grad():
        model(**inputs, **kw)
    for hook in hooks:
        hook.remove()
    return seen


def test_layers_skip_padding_and_the_last_one_computes_only_cls():
    config, ours, _ = pair()
    inputs = padded_batch(config)  # 4 rows of 10 positions, 28 real tokens
    assert rows_seen(ours.eval(), inputs) == [28, 4]
    assert rows_seen(ours, inputs, output_hidden_states=True) == [40, 40]  # asked for every state: all computed


def test_fast_path_equals_full_path_in_eval():
    config, ours, _ = pair()
    ours.eval()
    inputs = padded_batch(config, seed=3)
    with torch.no_grad():
        fast = ours(**inputs).logits
        full = ours(**inputs, output_hidden_states=True, output_attentions=True).logits
    torch.testing.assert_close(fast, full, atol=ATOL, rtol=0)


class _Wrapped(nn.Linear):
    """Not a plain nn.Linear (as torch.ao's int8 Linear is not): attention must call it, not concatenate it."""


def test_selected_rows_with_modules_that_cannot_be_concatenated():
    config, ours, _ = pair()
    ours.eval()
    inputs = padded_batch(config, seed=5)
    with torch.no_grad():
        before = ours(**inputs).logits
        for layer in ours.bert.encoder.layer:
            attn = layer.attention.self
            for name in ("query", "key", "value"):
                old = getattr(attn, name)
                new = _Wrapped(old.in_features, old.out_features)
                new.load_state_dict(old.state_dict())
                setattr(attn, name, new)
        after = ours(**inputs).logits
    torch.testing.assert_close(after, before, atol=ATOL, rtol=0)


def test_pad_rows_places_rows_at_the_kept_positions():
    keep = torch.tensor([[True, True, False], [True, False, False]])
    rows = torch.arange(6.0).view(3, 2)
    out = pad_rows(rows, keep)
    assert out.shape == (2, 3, 2)
    torch.testing.assert_close(out[keep], rows)
    assert out[~keep].abs().max() == 0


def test_mean_pooling_classifier_reads_the_mean_of_the_real_tokens():
    """classifier_pooling='mean': logits = classifier(mean of the last layer over real tokens), padding ignored."""
    config = tiny_config(id2label={0: "a", 1: "b"}, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                         classifier_pooling="mean")
    model = bertmini.BertForSequenceClassification(config).eval()
    assert model.bert.pooler is None  # nothing reads [CLS]'s pooler, so there is none to train
    batch = padded_batch(config)
    with torch.no_grad():
        logits = model(**batch).logits
        hidden = model.bert(**batch).last_hidden_state
        for row in range(len(logits)):
            real = batch["attention_mask"][row].bool()
            expected = model.classifier(hidden[row, real].mean(0))
            torch.testing.assert_close(logits[row], expected, atol=ATOL, rtol=0)
            alone = model(**{k: v[row:row + 1, real] for k, v in batch.items()}).logits[0]  # no padding at all
            torch.testing.assert_close(logits[row], alone, atol=ATOL, rtol=0)
        # Another token's state changes the sentence vector: the head is not reading [CLS] alone.
        other = dict(batch, input_ids=batch["input_ids"].clone())
        other["input_ids"][0, 3] = (other["input_ids"][0, 3] + 1) % config.vocab_size
        assert not torch.allclose(model(**other).logits[0], logits[0])


def test_classifier_pooling_round_trips_and_cls_configs_are_unchanged(tmp_path, caplog):
    config = tiny_config(classifier_pooling="mean")
    model = bertmini.BertForSequenceClassification(config)
    with caplog.at_level("WARNING"):
        model.save_pretrained(tmp_path / "mean")
    assert "load it with bertmini" in caplog.text  # transformers would read [CLS] with a new pooler
    loaded = bertmini.BertForSequenceClassification.from_pretrained(tmp_path / "mean")
    assert loaded.config.classifier_pooling == "mean" and loaded.bert.pooler is None
    bertmini.BertForSequenceClassification(tiny_config()).save_pretrained(tmp_path / "cls")
    assert "classifier_pooling" not in (tmp_path / "cls" / "config.json").read_text()  # HF's config.json, as before
    with pytest.raises(ValueError, match=r"classifier_pooling must be one of \('cls', 'mean'\), got 'max'"):
        tiny_config(classifier_pooling="max").validate()
