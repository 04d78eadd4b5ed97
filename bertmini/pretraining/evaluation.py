"""Held-out pre-training metrics: masked-LM accuracy and perplexity, next-sentence accuracy.

The two pre-training tasks (Devlin et al. 2019, §3.1) are scored on held-out text: Table 6 of the
paper reports the masked-LM perplexity of held-out data, and Google's ``run_pretraining.py`` prints
``masked_lm_accuracy`` and ``next_sentence_accuracy`` at the end of pre-training. Masking is
random, so a metric computed on freshly masked batches moves by chance from one evaluation to the
next; :func:`fixed_masked_batches` masks the held-out set once, with a seeded collator, so every
evaluation of every run scores the very same predictions.

    batches = fixed_masked_batches(eval_dataset, MLMCollator(tok, seed=0), batch_size=32, num_batches=20)
    metrics = evaluate_pretraining(model, batches)   # {"mlm_accuracy": ..., "mlm_perplexity": ..., ...}

A model that ignores its input can still score: always predicting the training data's most frequent
token is right wherever that token was masked. :func:`unigram_baseline` gives that floor (top-1, and
top-k for the k most frequent tokens) on the same fixed batches, so that an MLM accuracy is read
against it: a model stuck near it has learned token frequencies, not context.

    counts = token_counts(train_dataset, tok.all_special_ids, tok.vocab_size)
    unigram_baseline(counts, batches)   # {"unigram_accuracy": ..., "unigram_top5_accuracy": ...}
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bertmini.pretraining.masking import IGNORE_INDEX

__all__ = ["fixed_masked_batches", "evaluate_pretraining", "token_counts", "unigram_baseline"]

Batch = dict[str, torch.Tensor]


def fixed_masked_batches(dataset: Sequence[Mapping[str, torch.Tensor]], collator: Callable[[list], Batch],
                         batch_size: int, num_batches: int | None = None) -> list[Batch]:
    """The first ``num_batches`` batches of ``dataset`` (in order), masked once by ``collator``.

    The pre-training datasets are already shuffled when built, so the first examples are a fair
    sample. Materialized as a list: every call of :func:`evaluate_pretraining` sees the same masks.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(dataset) if num_batches is None else min(len(dataset), batch_size * num_batches)
    return [collator([dataset[i] for i in range(start, min(start + batch_size, n))])
            for start in range(0, n, batch_size)]


def evaluate_pretraining(model: nn.Module, loader: Iterable[Mapping[str, torch.Tensor]],
                         autocast_dtype: torch.dtype | None = None) -> dict[str, float]:
    """Masked-LM accuracy, loss and perplexity (+ NSP accuracy and loss when batches carry NSP labels).

    ``mlm_loss`` is the mean cross-entropy over *all* masked tokens of the set (not a mean of batch
    means) and ``mlm_perplexity = exp(mlm_loss)``. Works with bertmini's and transformers'
    ``BertForPreTraining`` (and ``BertForMaskedLM``): MLM logits may be dense ``(B, T, V)`` or, as
    bertmini returns them when given labels, ``(n_masked, V)`` in row-major order of the masked positions.
    """
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    autocast = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext()
    was_training = model.training
    model.eval()
    sums = {"mlm_ce": 0.0, "mlm_correct": 0, "mlm_n": 0, "nsp_ce": 0.0, "nsp_correct": 0, "nsp_n": 0}
    try:
        with torch.no_grad(), autocast:
            for batch in loader:
                batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
                out = model(**batch)
                _accumulate(sums, "mlm", _mlm_logits(out, batch["labels"]), batch["labels"])
                if batch.get("next_sentence_label") is not None:
                    _accumulate(sums, "nsp", out.seq_relationship_logits, batch["next_sentence_label"])
    finally:
        model.train(was_training)
    if sums["mlm_n"] == 0:
        raise ValueError("no masked tokens in the evaluation batches: is the loader empty?")
    mlm_loss = sums["mlm_ce"] / sums["mlm_n"]
    metrics = {"mlm_accuracy": sums["mlm_correct"] / sums["mlm_n"], "mlm_loss": mlm_loss,
               "mlm_perplexity": math.exp(mlm_loss)}
    if sums["nsp_n"]:
        metrics.update(nsp_accuracy=sums["nsp_correct"] / sums["nsp_n"], nsp_loss=sums["nsp_ce"] / sums["nsp_n"])
    return metrics


def _mlm_logits(out: Any, labels: torch.Tensor) -> torch.Tensor:
    """Logits at the masked positions, ``(n_masked, V)``, whatever layout the model returned."""
    logits = getattr(out, "prediction_logits", None)
    if logits is None:
        logits = getattr(out, "logits", None)
    selected = labels != IGNORE_INDEX
    if logits is None:  # bertmini returns None when nothing is masked
        if selected.any():
            raise ValueError(f"{type(out).__name__} has no prediction_logits/logits to score the masked tokens")
        return torch.empty(0, 1, device=labels.device)
    return logits[selected] if logits.dim() == 3 else logits


def _accumulate(sums: dict[str, Any], task: str, logits: torch.Tensor, labels: torch.Tensor) -> None:
    labels = labels.reshape(-1)
    targets = labels[labels != IGNORE_INDEX]
    if targets.numel() == 0:
        return
    if logits.shape[0] != targets.numel():
        raise ValueError(f"{task}: {logits.shape[0]} rows of logits for {targets.numel()} labels")
    logits = logits.float()
    sums[f"{task}_ce"] += float(F.cross_entropy(logits, targets, reduction="sum"))
    sums[f"{task}_correct"] += int((logits.argmax(-1) == targets).sum())
    sums[f"{task}_n"] += targets.numel()


def token_counts(dataset: Any, special_ids: Iterable[int], vocab_size: int) -> torch.Tensor:
    """How often each id occurs in ``dataset.tensors["input_ids"]`` (a :class:`PretrainingDataset`), ``(V,)``.

    Only the tokens masking may choose are counted: padding (``attention_mask`` 0) and special ids
    never become MLM targets.
    """
    ids = dataset.tensors["input_ids"].long()
    keep = ~torch.isin(ids, torch.tensor(sorted(set(special_ids)), dtype=ids.dtype))
    if "attention_mask" in dataset.tensors:
        keep &= dataset.tensors["attention_mask"].bool()
    return torch.bincount(ids[keep], minlength=vocab_size)


def unigram_baseline(counts: torch.Tensor, loader: Iterable[Mapping[str, torch.Tensor]],
                     top_k: int = 5) -> dict[str, float]:
    """MLM accuracy of a model that always predicts the most frequent training token (``unigram_accuracy``),
    and how often the target is among the ``top_k`` most frequent (``unigram_top{k}_accuracy``).

    ``counts``: training token counts (:func:`token_counts`); ``loader``: the masked evaluation batches,
    e.g. those of :func:`fixed_masked_batches`, so that it scores the very targets the model is scored on.
    """
    if not counts.any():
        raise ValueError("token counts are all zero: no training tokens to take frequencies from")
    ranked = counts.argsort(descending=True, stable=True)[:top_k]  # ties: the lower id, deterministically
    targets = torch.cat([b["labels"][b["labels"] != IGNORE_INDEX].reshape(-1).cpu() for b in loader] or
                        [torch.empty(0, dtype=torch.long)])
    if targets.numel() == 0:
        raise ValueError("no masked tokens in the evaluation batches: is the loader empty?")
    return {"unigram_accuracy": float((targets == ranked[0]).double().mean()),
            f"unigram_top{top_k}_accuracy": float(torch.isin(targets, ranked).double().mean())}
