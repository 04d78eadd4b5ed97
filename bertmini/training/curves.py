"""``plot_curves``: the training and eval loss curves and the LR schedule of a run's ``metrics.jsonl``."""
from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["plot_curves"]


def plot_curves(jsonl_path: str | os.PathLike, png_path: str | os.PathLike | None = None):
    """Loss curves (training losses and eval losses) and the LR schedule from ``metrics.jsonl``.

    Uses matplotlib's object API with the Agg canvas (no pyplot state, works headless and in notebooks);
    returns the Figure and writes ``png_path`` when given.
    """
    from matplotlib.figure import Figure

    records = [json.loads(line) for line in Path(jsonl_path).read_text().splitlines() if line.strip()]
    if not records:
        raise ValueError(f"{jsonl_path}: no metrics recorded")
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_loss, ax_lr = fig.subplots(1, 2)
    keys = sorted({k for r in records for k in r if "loss" in k})
    for key in keys:
        points = [(r["step"], r[key]) for r in records if key in r]
        ax_loss.plot(*zip(*points), label=key, marker="o" if key.startswith("eval_") else None)
    ax_loss.set(xlabel="step", ylabel="loss", title="loss")
    ax_loss.legend()
    lr = [(r["step"], r["lr"]) for r in records if "lr" in r]
    if lr:
        ax_lr.plot(*zip(*lr))
    ax_lr.set(xlabel="step", ylabel="learning rate", title="learning rate")
    if png_path is not None:
        fig.savefig(png_path, dpi=100)
    return fig
