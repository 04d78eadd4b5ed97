"""Attention-head importance and pruning (Michel et al. 2019, "Are Sixteen Heads Really Better than One?").

Each head's context vector gets a gate ξ_h (1 by default) before the output projection mixes the heads
(§3: Att(x) = Σ_h ξ_h · Att_h(x)). A head's importance is how much the loss would change if its gate
moved: I_h = E_x |∂L(x)/∂ξ_h| (§4.1, eq. 2), normalised by the l2 norm within each layer (§4.2). With
the gates at 0 the heads are switched off; :func:`prune_heads` then removes them for real, slicing
their rows out of Q, K and V and their columns out of the output projection, so the model shrinks.
Pruned heads are recorded in ``config.pruned_heads`` (numbered as in the unpruned layer, HF's field), and
loading such a checkpoint builds the smaller matrices (:class:`bertmini.encoder.BertEncoder`).
"""
from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn

from bertmini.errors import InputError

__all__ = ["attention_layers", "head_gates", "mask_heads", "head_importance", "heads_to_prune", "prune_heads"]


def attention_layers(model: nn.Module) -> list[nn.Module]:
    """The ``BertAttention`` module of every encoder layer of a BertModel or a model with ``.bert``."""
    bert = getattr(model, "bert", model)
    if not hasattr(bert, "encoder"):
        raise InputError(f"expected a bertmini BERT model (with .encoder or .bert.encoder), got {type(model).__name__}")
    return [layer.attention for layer in bert.encoder.layer]


@contextmanager
def head_gates(model: nn.Module, gates: Sequence[Tensor]) -> Iterator[None]:
    """Multiply each head's context by its gate (one (heads,) tensor per layer) inside the ``with`` block."""
    layers = attention_layers(model)
    if len(gates) != len(layers) or any(g.shape != (a.self.num_heads,) for g, a in zip(gates, layers)):
        raise InputError(f"head_gates: expected one gate per head, shapes {[(a.self.num_heads,) for a in layers]}, "
                         f"got {[tuple(g.shape) for g in gates]}")

    def gate_hook(gate: Tensor):
        def hook(module: nn.Module, args: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            ctx = args[0].unflatten(-1, (gate.numel(), -1))  # (B, T, heads, d_k)
            return ((ctx * gate.to(ctx.dtype)[:, None]).flatten(-2), *args[1:])
        return hook

    handles = [a.output.dense.register_forward_pre_hook(gate_hook(g)) for g, a in zip(gates, layers)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def mask_heads(model: nn.Module, heads: Mapping[int, Iterable[int]]) -> Iterator[None]:
    """Switch off ``heads`` ({layer: [head, ...]}) by zeroing their gates: what pruning them computes."""
    gates = [torch.ones(a.self.num_heads) for a in attention_layers(model)]
    for layer, hs in heads.items():
        gates[layer][list(hs)] = 0.0
    with head_gates(model, gates):
        yield


def head_importance(model: nn.Module, batches: Iterable[Mapping[str, Any]], normalize: bool = True) -> Tensor:
    """(layers, heads) importance: Σ over batches of |∂L/∂ξ_h| (the model's own loss; batches need labels),
    then divided by each layer's l2 norm when ``normalize``. The model's weights get no gradients."""
    counts = {a.self.num_heads for a in attention_layers(model)}
    if len(counts) != 1:
        raise InputError(f"head_importance: layers have different head counts {sorted(counts)}; "
                         "compute importance before pruning")
    device, heads = next(model.parameters()).device, counts.pop()
    gates = [torch.ones(heads, device=device, requires_grad=True) for _ in attention_layers(model)]
    scores = torch.zeros(len(gates), gates[0].numel(), device=device)
    was_training = model.training
    model.eval()  # dropout off: the gradient of the model that will be pruned
    try:
        with head_gates(model, gates):
            for batch in batches:
                loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
                scores += torch.stack(torch.autograd.grad(loss, gates)).abs()  # (L, H)
    finally:
        model.train(was_training)
    return scores / scores.norm(dim=-1, keepdim=True).clamp(min=1e-12) if normalize else scores


def heads_to_prune(importance: Tensor, fraction: float) -> dict[int, list[int]]:
    """The ``fraction`` of all heads with the lowest importance, as {layer: [heads]}; each layer keeps its
    most important head, so the count may fall short of the fraction when one layer holds the weakest."""
    if not 0 <= fraction < 1:
        raise InputError(f"heads_to_prune: fraction must be in [0, 1), got {fraction}")
    layers, heads = importance.shape
    keep_best = {(l, int(importance[l].argmax())) for l in range(layers)}
    order = [(i // heads, i % heads) for i in importance.flatten().argsort().tolist()]
    chosen = [lh for lh in order if lh not in keep_best][:round(fraction * layers * heads)]
    return {l: sorted(h for ll, h in chosen if ll == l) for l in sorted({l for l, _ in chosen})}


def prune_heads(model: nn.Module, heads: Mapping[int, Iterable[int]]) -> nn.Module:
    """Remove ``heads`` ({layer: [head, ...]}, numbered as in the unpruned layer) from ``model``, in place;
    ``config.pruned_heads`` records them, so ``save_pretrained``/``from_pretrained`` keep the smaller model."""
    config = model.config
    layers = attention_layers(model)
    merged = {l: list(hs) for l, hs in config.pruned_heads.items()}
    for layer, hs in heads.items():
        hs = list(hs)
        if not 0 <= layer < len(layers):
            raise InputError(f"prune_heads: layer {layer} does not exist (the model has {len(layers)} layers)")
        again = sorted(set(hs) & set(merged.get(layer, [])))
        if again:
            raise InputError(f"prune_heads: head(s) {again} of layer {layer} are already pruned")
        merged[layer] = merged.get(layer, []) + hs
    try:
        new_config = dataclasses.replace(config, pruned_heads=merged)  # validates: heads exist, one is left
    except ValueError as err:
        raise InputError(f"prune_heads: {err}") from None
    for layer, hs in heads.items():
        alive = [h for h in range(config.num_attention_heads) if h not in config.pruned_heads.get(layer, [])]
        layers[layer].prune_heads([alive.index(h) for h in set(hs)])  # original numbers -> current positions
    config.pruned_heads = new_config.pruned_heads  # the head and its .bert share one config
    return model
