"""The efficiency ladder of chapter 13: fine-tuning step throughput, one lever at a time.

Each rung adds one lever to the one before and is timed on the same examples: dynamic padding and
length bucketing (padding computed on less, Devlin et al. 2019 §A.2 trains on short sequences for
the same reason), fused attention (`scaled_dot_product_attention`; Dao et al. 2022 for the kernel
idea), bertmini's own kernels (fused Q/K/V projection, cheaper CPU dropout), the last layer computed
at [CLS] only and the padding skipped in the layers before it (the classifier reads nothing else), and
mixed precision (Micikevicius et al. 2018)
where the hardware multiplies bf16 natively (`bertmini.precision` decides). transformers' model is
the baseline and the reference: both sides run the same weights, batches, optimizer (fused AdamW)
and threads.

The rungs are timed round-robin (A, B, C, ..., A, B, C, ...) and each reports the median of its
rounds, so a machine that gets busier mid-run slows every rung alike rather than the last ones.
"""
from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from bertmini.heads import BertForSequenceClassification
from bertmini.precision import autocast, resolve_precision
from bertmini.training.batching import bucket_batches, pad_collate

__all__ = ["Rung", "LADDER", "AUTO_REFERENCE", "UNBUCKETED", "PADDINGS", "ladder_models", "make_batches",
           "padding_fraction", "train_pass", "time_rungs"]

PADDINGS = ("max_length", "longest", "bucketed")


@dataclass(frozen=True)
class Rung:
    """One configuration of the fine-tuning step.

    library: "transformers" or "bertmini"; padding: one of PADDINGS; attention: transformers'
    attn_implementation ("eager" | "sdpa"; bertmini picks its own path); cls_only: bertmini computes
    the last layer at [CLS] only and skips padding in the others (off: every position of every layer, as
    transformers does); precision: fp32 | auto.
    """
    name: str
    library: str
    padding: str
    attention: str = "sdpa"
    cls_only: bool = True
    precision: str = "fp32"


LADDER = (
    Rung("transformers, eager attention, padded to max_length", "transformers", "max_length", "eager"),
    Rung("+ dynamic padding (each batch to its longest)", "transformers", "longest", "eager"),
    Rung("+ length bucketing", "transformers", "bucketed", "eager"),
    Rung("+ SDPA attention", "transformers", "bucketed", "sdpa"),
    Rung("bertmini: fused QKV, fast CPU dropout", "bertmini", "bucketed", cls_only=False),
    Rung("+ last layer at [CLS] only, padding skipped", "bertmini", "bucketed"),
    Rung("+ automatic precision", "bertmini", "bucketed", precision="auto"),
)
# Off the ladder: transformers' best rung in automatic precision, the reference for bertmini's last rung.
AUTO_REFERENCE = Rung("transformers, bucketed, SDPA, automatic precision", "transformers", "bucketed", "sdpa",
                      precision="auto")
# Off the ladder: random batches padded to their longest (no bucketing), where skipping padding matters most.
UNBUCKETED = (Rung("transformers, random batches, SDPA", "transformers", "longest"),
              Rung("bertmini, random batches, padding skipped", "bertmini", "longest"))


def make_batches(features: Sequence[Mapping[str, Any]], batch_size: int, padding: str, max_length: int,
                 seed: int = 0) -> list[dict[str, Tensor]]:
    """Training batches of ``features`` in a seeded order: shuffled and padded to ``max_length`` or to each
    batch's longest, or length-bucketed (similar lengths together) and padded to the longest."""
    if padding not in PADDINGS:
        raise ValueError(f"padding: expected one of {PADDINGS}, got {padding!r}")
    if padding == "bucketed":
        order = bucket_batches([len(f["input_ids"]) for f in features], batch_size, shuffle=True, seed=seed)
    else:
        idx = list(range(len(features)))
        random.Random(seed).shuffle(idx)
        order = [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
    width = {"pad_to_multiple_of": max_length, "max_width": max_length} if padding == "max_length" else {}
    return [pad_collate([features[i] for i in rows], **width) for rows in order]


def padding_fraction(batches: Sequence[Mapping[str, Tensor]]) -> float:
    """The share of the positions the model computes that are padding."""
    masks = [b["attention_mask"] for b in batches]
    return 1.0 - sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)


def train_pass(model: nn.Module, batches: Sequence[Mapping[str, Tensor]], optimizer: torch.optim.Optimizer,
               precision: str = "fp32", cls_only: bool = True,
               clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds (by ``clock``) for one training step (forward, backward, optimizer) on each batch, in train mode.

    ``cls_only=False`` asks for the hidden states, which makes bertmini compute every position of every
    layer (the states are kept for backward anyway, so asking costs nothing else).
    """
    device = next(model.parameters()).device
    choice = resolve_precision(precision, device)
    extra = {} if cls_only else {"output_hidden_states": True}
    model.train()
    start = clock()
    for batch in batches:
        with autocast(device, choice):
            loss = model(**{k: v.to(device) for k, v in batch.items()}, **extra).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return clock() - start


def ladder_models(folder: str, id2label: Mapping[int, str]) -> dict[str, nn.Module]:
    """bertmini's and transformers' (eager and SDPA) sequence classifiers from one HF folder, all with
    the same weights (transformers' copies get bertmini's freshly initialized classifier)."""
    import transformers  # here, not at the top: importing it takes seconds

    ours = BertForSequenceClassification.from_pretrained(folder, id2label=dict(id2label))
    models: dict[str, nn.Module] = {"bertmini": ours}
    for attention in ("eager", "sdpa"):
        theirs = transformers.BertForSequenceClassification.from_pretrained(
            folder, attn_implementation=attention, id2label=dict(id2label))
        theirs.load_state_dict(ours.state_dict())
        models[f"transformers-{attention}"] = theirs
    return models


@dataclass
class _Entry:
    rung: Rung
    model: nn.Module
    optimizer: torch.optim.Optimizer
    batches: list[dict[str, Tensor]]


def time_rungs(rungs: Sequence[Rung], models: Mapping[str, nn.Module], features: Sequence[Mapping[str, Any]],
               batch_size: int, max_length: int, rounds: int = 3,
               clock: Callable[[], float] = time.perf_counter) -> list[dict[str, Any]]:
    """Examples/s of each rung: the median over ``rounds`` round-robin passes (after one warm-up step each).

    ``clock``: wall time by default; on a busy machine, ``time.process_time`` with one thread counts only
    the CPU time this process got, which other processes barely change.

    ``models`` maps "bertmini" and "transformers-eager" / "transformers-sdpa" to models with the same
    weights; one AdamW per model (its state does not change the speed). Returns one dict per rung:
    name, examples_per_s, seconds (every round), padding (share of computed positions).
    """
    optimizers = {key: torch.optim.AdamW(m.parameters(), lr=1e-5, fused=True) for key, m in models.items()}
    entries = []
    for rung in rungs:
        key = rung.library if rung.library == "bertmini" else f"transformers-{rung.attention}"
        if key not in models:
            raise KeyError(f"rung {rung.name!r} needs a model under {key!r}; got {sorted(models)}")
        batches = make_batches(features, batch_size, rung.padding, max_length)
        entries.append(_Entry(rung, models[key], optimizers[key], batches))
    for e in entries:  # warm-up: first calls allocate and pick kernels
        train_pass(e.model, e.batches[:1], e.optimizer, e.rung.precision, e.rung.cls_only)
    times: list[list[float]] = [[] for _ in entries]
    for _ in range(rounds):
        for e, seconds in zip(entries, times):
            seconds.append(train_pass(e.model, e.batches, e.optimizer, e.rung.precision, e.rung.cls_only, clock))
    return [{"name": e.rung.name, "examples_per_s": len(features) / statistics.median(seconds),
             "seconds": seconds, "padding": padding_fraction(e.batches)} for e, seconds in zip(entries, times)]
