"""Static attention figures for the book and its PDF (no JavaScript): one head's map, every head of every
layer as a grid (as in Clark et al. 2019, Fig. 1-2), statistics by layer, per-head statistics as heat
maps, and raw attention beside attention rollout (Abnar & Zuidema 2020, Fig. 2).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from bertmini.analysis.capture import Attentions, as_maps
from bertmini.analysis.rollout import attention_rollout
from bertmini.errors import require

__all__ = ["plot_head", "plot_layer_grid", "plot_by_layer", "plot_head_values", "plot_rollout"]


def _heatmap(ax: plt.Axes, matrix: torch.Tensor, tokens: Sequence[str], title: str, labels: bool = True) -> None:
    ax.imshow(matrix, cmap="Blues", vmin=0)
    ax.set_title(title, fontsize=9)
    if labels:
        ticks = range(len(tokens))
        ax.set_xticks(ticks, tokens, rotation=90, fontsize=8)
        ax.set_yticks(ticks, tokens, fontsize=8)
        ax.set(xlabel="key (attended to)", ylabel="query")
    else:
        ax.set_xticks([])
        ax.set_yticks([])


def _check_index(value: int, size: int, name: str) -> None:
    require(-size <= value < size, name, f"an index in [0, {size})", value)


def plot_head(att: Attentions, layer: int, head: int) -> Figure:
    """One head's (T, T) map as a heat map with the tokens on both axes."""
    maps = as_maps(att.maps, att.tokens)
    _check_index(layer, maps.shape[0], "layer")
    _check_index(head, maps.shape[1], "head")
    fig, ax = plt.subplots(figsize=(0.3 * len(att.tokens) + 2, 0.3 * len(att.tokens) + 1.5))
    _heatmap(ax, maps[layer, head], att.tokens, f"layer {layer % len(maps)}, head {head % maps.shape[1]}")
    fig.tight_layout()
    return fig


def plot_layer_grid(att: Attentions, layers: Sequence[int] | None = None) -> Figure:
    """Every head of the chosen layers (default: all) as small maps, rows = layers, columns = heads."""
    maps = as_maps(att.maps, att.tokens)
    layers = list(range(len(maps))) if layers is None else list(layers)
    for layer in layers:
        _check_index(layer, len(maps), "layers")
    n_heads = maps.shape[1]
    fig, axes = plt.subplots(len(layers), n_heads, figsize=(1.1 * n_heads, 1.1 * len(layers)), squeeze=False)
    for r, layer in enumerate(layers):
        for h in range(n_heads):
            _heatmap(axes[r, h], maps[layer, h], att.tokens, f"{layer}-{h}" if r == 0 or h == 0 else "", labels=False)
        axes[r, 0].set_ylabel(f"layer {layer}", fontsize=8)
    fig.suptitle("attention of every head (layer-head); rows: query, columns: key", fontsize=10)
    fig.tight_layout()
    return fig


def plot_by_layer(series: Mapping[str, torch.Tensor], ylabel: str, ax: plt.Axes | None = None) -> Figure:
    """Per named (L, heads) statistic, its mean over heads by layer (a line) and each head (dots)."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3.5))
    else:
        fig = ax.figure
    for name, values in series.items():
        layers = torch.arange(values.shape[0])
        line = ax.plot(layers, values.mean(1), "o-", label=name)[0]
        ax.scatter(layers.repeat_interleave(values.shape[1]), values.flatten(), s=8, alpha=0.3, color=line.get_color())
    ax.set(xlabel="layer", ylabel=ylabel, xticks=range(max(v.shape[0] for v in series.values())))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_head_values(values: Mapping[str, torch.Tensor], fmt: str = ".2f") -> Figure:
    """One heat map per named (L, heads) statistic, the value written in each cell."""
    fig, axes = plt.subplots(1, len(values), figsize=(5.5 * len(values), 3.2), squeeze=False)
    for ax, (name, grid) in zip(axes[0], values.items()):
        image = ax.imshow(grid, cmap="viridis")
        for (layer, head), v in zip(torch.cartesian_prod(torch.arange(grid.shape[0]), torch.arange(grid.shape[1])),
                                    grid.flatten()):
            ax.text(int(head), int(layer), format(float(v), fmt), ha="center", va="center", fontsize=6, color="w")
        ax.set(title=name, xlabel="head", ylabel="layer", xticks=range(grid.shape[1]), yticks=range(grid.shape[0]))
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


def plot_rollout(att: Attentions, residual: float = 0.5) -> Figure:
    """The last layer's raw attention (mean over heads) beside the rollout through all layers."""
    maps = as_maps(att.maps, att.tokens)
    fig, (left, right) = plt.subplots(1, 2, figsize=(0.55 * len(att.tokens) + 3, 0.3 * len(att.tokens) + 1.5))
    _heatmap(left, maps[-1].mean(0), att.tokens, f"raw attention, layer {len(maps) - 1} (mean of heads)")
    _heatmap(right, attention_rollout(maps, residual)[-1], att.tokens, f"rollout through {len(maps)} layers")
    fig.tight_layout()
    return fig
