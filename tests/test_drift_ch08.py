"""Chapter 8's inline pre-training loss and LR schedule must stay equal to the package's.

``sparse_mlm_loss`` (gather the masked rows, project, cross-entropy) is checked against the dense
cross-entropy with ``ignore_index=-100`` and against ``BertForPreTraining``'s loss in eval mode
(sparse rows, unfused) and in train mode without dropout (sparse rows, fused kernel), gradients
included; ``warmup_then_linear_decay`` against ``bertmini.training.optim.lr_lambda``. Each comparison is a
function that also runs on mutated copies of the notebook (loss averaged over every token, NSP on the
unpooled [CLS], warmup off by one, ...) and must fail there.
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
from bertmini.pretraining import IGNORE_INDEX
from bertmini.training.optim import lr_lambda

from nbutils import excess, load_notebook_defs, mutate

NOTEBOOK = Path(__file__).resolve().parents[1] / "chapters" / "08_pretraining.ipynb"
NAMES = ["sparse_mlm_loss", "pretraining_loss", "warmup_then_linear_decay"]
DEFS = load_notebook_defs(NOTEBOOK, NAMES)
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


def sparse_excess(sparse_mlm_loss, seed: int = 0, B: int = 4, T: int = 16, p: float = 0.15) -> float:
    """Notebook sparse MLM loss vs dense cross-entropy with ignore_index=-100, in assert_close units."""
    batch = random_batch(seed, B, T, p)
    hidden = torch.randn(B, T, CONFIG.hidden_size, generator=torch.Generator().manual_seed(seed))
    head = model(seed, train=False).cls.predictions
    with torch.no_grad():
        return excess(sparse_mlm_loss(hidden, batch["labels"], head), dense_mlm_loss(hidden, batch["labels"], head))


@settings(max_examples=40, deadline=None)
@given(*batch_args)
def test_sparse_mlm_loss_equals_dense_cross_entropy(seed, B, T, p):
    assert sparse_excess(sparse_mlm_loss, seed, B, T, p) <= 1


def pretraining_excess(pretraining_loss, seed: int = 0, B: int = 4, T: int = 16, p: float = 0.15) -> float:
    """Notebook (total, MLM, NSP) losses vs BertForPreTraining's in eval mode, in assert_close units."""
    batch, net = random_batch(seed, B, T, p), model(seed, train=False)
    with torch.no_grad():
        ours, theirs = pretraining_loss(net, batch), net(**batch)
    return max(excess(a, b) for a, b in zip(ours, (theirs.loss, theirs.mlm_loss, theirs.nsp_loss), strict=True))


@settings(max_examples=25, deadline=None)
@given(*batch_args)
def test_pretraining_loss_equals_model_in_eval_mode(seed, B, T, p):
    assert pretraining_excess(pretraining_loss, seed, B, T, p) <= 1


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


def check_schedule(schedule, warmup: int, total: int) -> None:
    """The notebook's multipliers are lr_lambda's, exactly, for every step up to two past the end."""
    package = lr_lambda("linear", warmup, total)
    values = [schedule(s, warmup, total) for s in range(total + 2)]
    assert values == [package(s) for s in range(total + 2)]
    assert values[0] == 0.0 and values[warmup] == 1.0 and values[total] == 0.0


@pytest.mark.parametrize("warmup, total", [(1, 10), (9, 10), (150, 2500), (360, 6000)])
def test_warmup_then_linear_decay_equals_lr_lambda(warmup, total):
    check_schedule(warmup_then_linear_decay, warmup, total)


def ch08_fails(defs: dict, definition: str) -> bool:
    """Whether the drift check of `definition` rejects `defs` (fixed inputs; a loss must miss tenfold)."""
    if definition == "sparse_mlm_loss":
        return sparse_excess(defs["sparse_mlm_loss"]) > 10
    if definition == "pretraining_loss":
        return pretraining_excess(defs["pretraining_loss"]) > 10
    try:
        for warmup, total in [(9, 10), (150, 2500)]:
            check_schedule(defs["warmup_then_linear_decay"], warmup, total)
    except AssertionError:
        return True
    return False


@pytest.mark.parametrize("definition, old, new", [
    pytest.param("sparse_mlm_loss", "return F.cross_entropy(logits.float(), labels[masked])",
                 'return F.cross_entropy(logits.float(), labels[masked], reduction="sum") / labels.numel()',
                 id="mlm-averaged-over-every-position"),
    pytest.param("sparse_mlm_loss", "return F.cross_entropy(logits.float(), labels[masked])",
                 "return F.nll_loss(logits.float(), labels[masked])", id="mlm-without-log-softmax"),
    pytest.param("sparse_mlm_loss", "return F.cross_entropy(logits.float(), labels[masked])",
                 "return F.cross_entropy(logits.float(), labels[masked], label_smoothing=0.1)",
                 id="mlm-label-smoothing"),
    pytest.param("pretraining_loss", "model.cls.seq_relationship(out.pooler_output)",
                 "model.cls.seq_relationship(out.last_hidden_state[:, 0])", id="nsp-on-unpooled-CLS"),
    pytest.param("pretraining_loss", "return mlm + nsp, mlm, nsp", "return (mlm + nsp) / 2, mlm, nsp",
                 id="losses-averaged-not-summed"),
    pytest.param("pretraining_loss", 'batch["attention_mask"], batch["token_type_ids"])', 'batch["attention_mask"])',
                 id="segment-ids-dropped"),
    pytest.param("warmup_then_linear_decay", "return step / warmup_steps", "return (step + 1) / warmup_steps",
                 id="warmup-off-by-one"),
    pytest.param("warmup_then_linear_decay", "(max_steps - step) / (max_steps - warmup_steps)",
                 "(max_steps - step) / max_steps", id="decay-ignores-warmup"),
    pytest.param("warmup_then_linear_decay", "return max(0.0, (max_steps - step) / (max_steps - warmup_steps))",
                 "return (max_steps - step) / (max_steps - warmup_steps)", id="negative-after-the-end"),
])
def test_ch08_drift_test_catches_mutants(definition: str, old: str, new: str, tmp_path: Path) -> None:
    path = mutate(NOTEBOOK, f"def {definition}(", old, new, tmp_path)
    assert ch08_fails(load_notebook_defs(path, NAMES), definition)
