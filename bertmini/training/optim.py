"""Optimizer, learning-rate schedules, layer-wise LR decay and freezing for BERT-named models.

BERT is trained with Adam(W) (β1=0.9, β2=0.999, L2 weight decay 0.01), a linear warmup over the first
steps then a linear decay of the learning rate (Devlin et al. 2019, §A.2; fine-tuning §A.3).
Like the original code, biases and LayerNorm gains get no weight decay: decaying them toward zero
does not regularize anything useful (a LayerNorm gain of 0 silences the layer).

Layer-wise LR decay (Clark et al. 2020, ELECTRA; Sun et al. 2019) gives the heads the full rate,
encoder layer i of L the rate ``lr * decay**(L - i)`` and the embeddings ``lr * decay**(L + 1)``:
low layers hold general features that fine-tuning should move least.
"""
from __future__ import annotations

import re
from typing import Callable

import torch
from torch import nn

__all__ = ["layer_depth", "freeze", "param_groups", "build_optimizer", "build_scheduler", "lr_lambda"]

_LAYER = re.compile(r"(?:^|\.)encoder\.layer\.(\d+)\.")


def layer_depth(name: str, num_layers: int) -> int:
    """0 for embeddings, i + 1 for ``encoder.layer.i``, ``num_layers + 1`` for everything above (pooler, heads)."""
    match = _LAYER.search(name)
    if match:
        return int(match.group(1)) + 1
    if "embeddings." in name:
        return 0
    return num_layers + 1


def _num_layers(model: nn.Module) -> int:
    return 1 + max((int(m.group(1)) for n, _ in model.named_parameters() if (m := _LAYER.search(n))), default=-1)


def freeze(model: nn.Module, embeddings: bool = False, layers: int = 0) -> list[str]:
    """Set ``requires_grad=False`` on the embeddings and/or the first ``layers`` encoder layers.

    Returns the frozen parameter names. Tied weights (the MLM decoder shares the word embeddings)
    freeze together, since they are one tensor.
    """
    num_layers = _num_layers(model)
    if layers > num_layers:
        raise ValueError(f"freeze_layers={layers} but the model has {num_layers} layers named "
                         f"'encoder.layer.<i>' (expected 0 <= freeze_layers <= {num_layers})")
    if embeddings and not any("embeddings." in n for n, _ in model.named_parameters()):
        raise ValueError("freeze_embeddings=True but no parameter name contains 'embeddings.'")
    frozen = []
    for name, param in model.named_parameters():
        depth = layer_depth(name, num_layers)
        if (embeddings and depth == 0) or 1 <= depth <= layers:
            param.requires_grad_(False)
            frozen.append(name)
    return frozen


def param_groups(model: nn.Module, lr: float, weight_decay: float,
                 layerwise_lr_decay: float | None = None) -> list[dict]:
    """AdamW parameter groups: (lr scale, decay or not) -> params. Frozen parameters are left out.

    Each group carries ``lr`` (its own peak rate) and ``name`` (e.g. ``"layer3/no_decay"``) for logs.
    """
    num_layers = _num_layers(model)
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():  # named_parameters() yields a tied tensor once
        if not param.requires_grad:
            continue
        depth = layer_depth(name, num_layers) if layerwise_lr_decay is not None else num_layers + 1
        decay = param.ndim >= 2  # biases and LayerNorm gains are 1-D: BERT's ["bias", "LayerNorm"] exclusion
        if (depth, decay) not in groups:
            scale = layerwise_lr_decay ** (num_layers + 1 - depth) if layerwise_lr_decay is not None else 1.0
            label = "embeddings" if depth == 0 else f"layer{depth - 1}" if depth <= num_layers else "head"
            groups[depth, decay] = {"params": [], "lr": lr * scale, "weight_decay": weight_decay if decay else 0.0,
                                    "name": f"{label}/{'decay' if decay else 'no_decay'}"}
        groups[depth, decay]["params"].append(param)
    if not groups:
        raise ValueError("no trainable parameters: everything is frozen")
    return [groups[key] for key in sorted(groups)]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float], eps: float,
                    layerwise_lr_decay: float | None = None) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`, with the fused kernel on CUDA and CPU."""
    groups = param_groups(model, lr, weight_decay, layerwise_lr_decay)
    # The fused kernel (CUDA and CPU) updates all tensors in one pass; per-tensor Adam costs more
    # than the forward pass of a small BERT on a CPU. torch < 2.4 has no fused AdamW on CPU.
    devices = ("cuda", "cpu") if torch.__version__ >= (2, 4) else ("cuda",)
    fused = all(p.device.type in devices for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused or None)


def lr_lambda(schedule: str, warmup_steps: int, max_steps: int) -> Callable[[int], float]:
    """Multiplier of the peak LR at optimizer step ``step``: linear warmup, then linear decay or constant.

    Matches transformers' ``get_linear_schedule_with_warmup`` / ``get_constant_schedule_with_warmup``.
    """
    def linear(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (max_steps - step) / max(1, max_steps - warmup_steps))

    def constant(step: int) -> float:
        return min(1.0, step / warmup_steps) if warmup_steps > 0 else 1.0

    return {"linear": linear, "constant": constant}[schedule]


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: str, warmup_steps: int,
                    max_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """``linear`` (BERT), ``constant`` (after warmup) or ``onecycle`` (warmup then cosine annealing,
    Smith & Topin 2019; the warmup fraction defaults to 0.3 when ``warmup_steps`` is 0)."""
    if schedule == "onecycle":
        # torch peaks at step pct * total - 1: "+ 1" puts the peak at step `warmup_steps`, as in `linear`
        pct = (warmup_steps + 1) / max_steps if warmup_steps > 0 else 0.3
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=max_steps,
            pct_start=min(max(pct, 1e-6), 1 - 1e-6), cycle_momentum=False)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(schedule, warmup_steps, max_steps))

