"""PNG figures for the fine-tuning chapters: a confusion matrix and a per-entity-type F1 bar chart.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so importing this module never
changes the global backend of a notebook or needs a display.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["plot_confusion_matrix", "plot_f1_bars"]


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def plot_confusion_matrix(cm: torch.Tensor | Sequence[Sequence[int]], label_names: Sequence[str],
                          path: str | os.PathLike, normalize: bool = False, title: str = "Confusion matrix") -> Path:
    """Heat map of ``cm[true, pred]`` with counts (or row-normalized rates) written in each cell."""
    cm = torch.as_tensor(cm, dtype=torch.float)
    if cm.shape != (len(label_names), len(label_names)):
        raise ValueError(f"confusion matrix shape {tuple(cm.shape)} does not match {len(label_names)} label names")
    if normalize:
        cm = cm / cm.sum(1, keepdim=True).clamp(min=1)
    size = 1.5 + 0.6 * len(label_names)
    fig = Figure(figsize=(size + 1, size))
    ax = fig.add_subplot()
    image = ax.imshow(cm.numpy(), cmap="Blues")
    fig.colorbar(image, ax=ax)
    ticks = range(len(label_names))
    ax.set_xticks(ticks, labels=label_names, rotation=45, ha="right")
    ax.set_yticks(ticks, labels=label_names)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    threshold = cm.max().item() / 2
    for (i, j) in [(i, j) for i in ticks for j in ticks]:
        value = cm[i, j].item()
        ax.text(j, i, f"{value:.2f}" if normalize else f"{int(value)}", ha="center", va="center",
                color="white" if value > threshold else "black", fontsize=8)
    return _save(fig, path)


def plot_f1_bars(scores: Mapping[str, Mapping[str, float]], path: str | os.PathLike,
                 title: str = "F1 per entity type") -> Path:
    """Horizontal bars of F1 per class/entity type (from ``entity_scores`` or ``per_class_scores``),
    annotated with the support; a ``"micro"`` row is drawn last, in a different colour."""
    if not scores:
        raise ValueError("no scores to plot")
    names = [n for n in scores if n != "micro"] + (["micro"] if "micro" in scores else [])
    f1 = [scores[n]["f1"] for n in names]
    fig = Figure(figsize=(6, 1 + 0.4 * len(names)))
    ax = fig.add_subplot()
    bars = ax.barh(names, f1, color=["tab:gray" if n == "micro" else "tab:blue" for n in names])
    for bar, name in zip(bars, names):
        ax.text(bar.get_width() + 0.01, bar.get_y() + bar.get_height() / 2,
                f"{scores[name]['f1']:.2f} (n={int(scores[name]['support'])})", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1.2), xlabel="F1", title=title)
    return _save(fig, path)
