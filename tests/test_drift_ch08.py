"""Chapter 8's inline pre-training loss and LR schedule must stay equal to the package's.

``sparse_mlm_loss`` (gather the masked rows, project, cross-entropy) is checked against the dense
cross-entropy with ``ignore_index=-100`` and against ``BertForPreTraining``'s loss in eval mode
(sparse rows, unfused) and in train mode without dropout (sparse rows, fused kernel), gradients
included; ``warmup_then_linear_decay`` against ``bertmini.optim.lr_lambda``.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from bertmini import BertConfig, BertForPreTraining
from bertmini.data import IGNORE_INDEX
from bertmini.optim import lr_lambda
from nbutils import load_notebook_defs

NOTEBOOK = Path(__file__).resolve().parents[1] / "chapters" / "08_pretraining.ipynb"
DEFS = load_notebook_defs(NOTEBOOK, ["sparse_mlm_loss", "pretraining_loss", "warmup_then_linear_decay"])
sparse_mlm_loss, pretraining_loss = DEFS["sparse_mlm_loss"], DEFS["pretraining_loss"]
warmup_then_linear_decay = DEFS["warmup_then_linear_decay"]

V, MASK = 50, 4
CONFIG = BertConfig.preset("tiny", vocab_size=V, hidden_size=16, num_attention_heads=2, intermediate_size=32,
                           max_position_embeddings=24)


def random_batch(seed: int, B: int, T: int, p: float) -> dict[str, torch.Tensor]:
    """Masked ids, -100 labels elsewhere (>= 1 masked token per row, never [CLS]), padding, NSP labels."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (B, T), generator=g)
    lengths = torch.randint(3, T + 1, (B,), generator=g)
    attention_mask = (torch.arange(T) < lengths[:, None]).long()
    chosen = (torch.rand(B, T, generator=g) < p) & attention_mask.bool()
    chosen[:, 0] = False
    chosen[torch.arange(B), torch.randint(1, 3, (B,), generator=g)] = True
    return {"input_ids": ids.masked_fill(chosen, MASK), "attention_mask": attention_mask,
            "token_type_ids": (torch.rand(B, T, generator=g) < 0.5).long() * attention_mask,
            "labels": torch.where(chosen, ids, IGNORE_INDEX),
            "next_sentence_label": torch.randint(0, 2, (B,), generator=g)}


def model(seed: int, train: bool) -> BertForPreTraining:
    torch.manual_seed(seed)
    config = replace(CONFIG, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0) if train else CONFIG
    return BertForPreTraining(config).train(train)


def dense_mlm_loss(hidden: torch.Tensor, labels: torch.Tensor, head: torch.nn.Module) -> torch.Tensor:
    return F.cross_entropy(head(hidden).flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)


batch_args = (st.integers(0, 2**31 - 1), st.integers(1, 5), st.integers(4, 24), st.sampled_from([0.05, 0.15, 0.5, 1.0]))


@settings(max_examples=40, deadline=None)
@given(*batch_args)
def test_sparse_mlm_loss_equals_dense_cross_entropy(seed, B, T, p):
    batch = random_batch(seed, B, T, p)
    hidden = torch.randn(B, T, CONFIG.hidden_size, generator=torch.Generator().manual_seed(seed))
    head = model(seed, train=False).cls.predictions
    with torch.no_grad():
        torch.testing.assert_close(sparse_mlm_loss(hidden, batch["labels"], head),
                                   dense_mlm_loss(hidden, batch["labels"], head))


@settings(max_examples=25, deadline=None)
@given(*batch_args)
def test_pretraining_loss_equals_model_in_eval_mode(seed, B, T, p):
    batch, net = random_batch(seed, B, T, p), model(seed, train=False)
    with torch.no_grad():
        ours, theirs = pretraining_loss(net, batch), net(**batch)
    torch.testing.assert_close(ours, (theirs.loss, theirs.mlm_loss, theirs.nsp_loss))


@settings(max_examples=15, deadline=None)
@given(*batch_args)
def test_pretraining_loss_and_gradients_equal_fused_train_mode(seed, B, T, p):
    batch, net = random_batch(seed, B, T, p), model(seed, train=True)
    out = net(**batch)
    assert out.prediction_logits is None, "train mode should take the fused path"
    out.loss.backward()
    fused = {n: q.grad.clone() for n, q in net.named_parameters()}
    net.zero_grad()
    ours = pretraining_loss(net, batch)[0]
    ours.backward()
    torch.testing.assert_close(ours, out.loss)
    for name, param in net.named_parameters():
        torch.testing.assert_close(param.grad, fused[name], msg=name)


def test_a_wrong_mask_selection_is_detected():
    """The comparison with the dense loss is sensitive to which rows are selected: a version that
    averages over every real token, or over the unmasked ones, differs from it."""
    batch = random_batch(0, 4, 16, 0.15)
    hidden = torch.randn(4, 16, CONFIG.hidden_size, generator=torch.Generator().manual_seed(1))
    head, labels = model(0, train=False).cls.predictions, batch["labels"]
    with torch.no_grad():
        dense = dense_mlm_loss(hidden, labels, head)
        torch.testing.assert_close(sparse_mlm_loss(hidden, labels, head), dense)
        for wrong in (batch["attention_mask"].bool(), labels == IGNORE_INDEX):
            wrong_loss = F.cross_entropy(head(hidden[wrong]), batch["input_ids"][wrong])
            assert not torch.allclose(wrong_loss, dense)


@pytest.mark.parametrize("warmup, total", [(1, 10), (9, 10), (150, 2500), (360, 6000)])
def test_warmup_then_linear_decay_equals_lr_lambda(warmup, total):
    package = lr_lambda("linear", warmup, total)
    values = [warmup_then_linear_decay(s, warmup, total) for s in range(total + 2)]
    assert values == [package(s) for s in range(total + 2)]
    assert values[0] == 0.0 and values[warmup] == 1.0 and values[total] == 0.0
