"""Measuring and reporting: parameter counts through int8, sizes on disk, batches of real lengths, accuracy,
the latency median, and the table / JSON / plot."""
from __future__ import annotations

import json

import pytest
import torch

from bertmini import BertConfig
from bertmini.compression import (
    Row,
    Workload,
    accuracy,
    disk_mb,
    latency_ms,
    make_batches,
    markdown_table,
    measure_row,
    parameter_count,
    plot_accuracy_vs_size,
    quantize_int8,
    torch_predict,
    write_report,
)
from bertmini.heads import BertForSequenceClassification


def tiny() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64)
    return BertForSequenceClassification(config).eval()


def features(n: int) -> list[dict]:
    return [{"input_ids": list(range(5, 8 + i % 4)), "token_type_ids": [0] * (3 + i % 4), "labels": i % 2}
            for i in range(n)]


def test_make_batches_pads_each_batch_to_its_longest():
    batches = make_batches(features(10), 4, count=2)
    assert len(batches) == 2 and batches[0]["input_ids"].shape == (4, 6) and batches[1]["labels"].shape == (4,)
    assert len(make_batches(features(10), 4, count=100)) == 3


def test_accuracy_counts_argmax_hits():
    batches = make_batches(features(6), 3, count=10)
    always_one = lambda batch: torch.tensor([[0.0, 1.0]]).expand(len(batch["input_ids"]), 2)  # noqa: E731
    assert accuracy(always_one, batches) == pytest.approx(0.5)


def test_latency_is_the_median(monkeypatch):
    ticks = iter([0.0, 0.001, 1.0, 1.100, 2.0, 2.003])  # calls of 1, 100 and 3 ms
    monkeypatch.setattr("bertmini.compression.measure.time.perf_counter", lambda: next(ticks))
    assert latency_ms(lambda batch: None, [{}], runs=3, warmup=0) == pytest.approx(3.0)


def test_sizes_and_parameter_counts():
    model = tiny()
    n = sum(p.numel() for p in model.parameters())
    assert parameter_count(model) == n
    assert disk_mb(model) == pytest.approx(4 * n / 1e6, abs=0.01)  # 4 bytes a weight, plus a small header
    quantized = quantize_int8(model, "eager")
    assert parameter_count(quantized) == n
    assert disk_mb(quantized) < disk_mb(model)


def test_measure_row_and_report(tmp_path):
    model, feats = tiny(), features(8)
    work = Workload(dev=make_batches(feats, 4, 2), test=None, b1=make_batches(feats, 1, 2),
                    b32=make_batches(feats, 4, 1), runs=1, threads=1)
    row = measure_row("tiny", torch_predict(model), parameter_count(model), disk_mb(model), work, note="x")
    assert row.test_acc is None and 0 <= row.dev_acc <= 1 and row.extra == {"note": "x"}
    other = Row("half", 500_000, 2.0, 1.0, 10.0, 0.9, 0.85)
    table = markdown_table([row, other])
    assert "| half | 0.5 | 2.0 | 1.0 | 10 | 90.00 % | 85.00 % |" in table and "| - |" in table
    write_report([row, other], tmp_path, {"threads": 1})
    data = json.loads((tmp_path / "compression.json").read_text())
    assert data["meta"] == {"threads": 1} and data["rows"][1]["model"] == "half"
    assert (tmp_path / "compression.md").read_text().startswith("| model |")
    fig = plot_accuracy_vs_size([row, other], tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 0 and fig.axes[0].get_xlabel() == "size on disk (MB)"
