"""The compression table and the accuracy-vs-size plot (the trade-off of Sanh et al. 2019, Table 3).

One :class:`Row` per model variant; :func:`markdown_table` prints them, :func:`write_report` stores them as
JSON and markdown, :func:`plot_accuracy_vs_size` draws accuracy against megabytes on disk.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

__all__ = ["Row", "COLUMNS", "markdown_table", "write_report", "plot_accuracy_vs_size"]


@dataclass
class Row:
    model: str
    parameters: int
    disk_mb: float
    latency_b1_ms: float
    latency_b32_ms: float
    dev_acc: float
    test_acc: float | None = None
    extra: dict[str, float | str] = field(default_factory=dict)  # e.g. latency in auto precision, notes


# (header, attribute, format)
COLUMNS = [("model", "model", "{}"), ("params (M)", "parameters", "{:.1f}"), ("disk MB", "disk_mb", "{:.1f}"),
           ("b1 ms", "latency_b1_ms", "{:.1f}"), ("b32 ms", "latency_b32_ms", "{:.0f}"),
           ("SST-2 dev", "dev_acc", "{:.2%}"), ("SST-2 test", "test_acc", "{:.2%}")]


def _cell(row: Row, attr: str, fmt: str) -> str:
    value = getattr(row, attr)
    if value is None:
        return "-"
    return fmt.format(value / 1e6 if attr == "parameters" else value).replace("%", " %")


def markdown_table(rows: Sequence[Row]) -> str:
    """The rows as a GitHub-flavoured markdown table (extra fields left out; they are in the JSON)."""
    lines = ["| " + " | ".join(h for h, _, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(r, a, f) for _, a, f in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def write_report(rows: Sequence[Row], out: str | Path, meta: dict | None = None) -> Path:
    """``out``/compression.json (rows and ``meta``: machine, threads, runs) and ``out``/compression.md."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = {"meta": meta or {}, "rows": [asdict(r) for r in rows]}
    (out / "compression.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    (out / "compression.md").write_text(markdown_table(rows) + "\n", encoding="utf-8")
    return out


def plot_accuracy_vs_size(rows: Sequence[Row], path: str | Path | None = None, title: str = "SST-2 dev accuracy"):
    """Accuracy against size on disk, one labelled point per model; returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for row in rows:
        ax.scatter(row.disk_mb, 100 * row.dev_acc, s=30)
        ax.annotate(row.model, (row.disk_mb, 100 * row.dev_acc), textcoords="offset points", xytext=(4, 3),
                    fontsize=8)
    ax.set(xlabel="size on disk (MB)", ylabel="accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
