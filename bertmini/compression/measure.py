"""What a compressed model costs and keeps: parameters, bytes on disk, CPU latency, accuracy.

Latency is the median of ``runs`` timed calls after ``warmup`` untimed ones, on real sentences, with a
fixed number of threads (the median shrugs off the odd slow call that a busy machine adds). Size is that
of the file a user would ship: model.safetensors for float models, the ``torch.save`` of the state dict
for int8 models (their packed weights are not plain tensors), the .onnx file (and its external data).
"""
from __future__ import annotations

import io
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from bertmini.compression.report import Row
from bertmini.precision import autocast, resolve_precision
from bertmini.training.batching import pad_collate

__all__ = ["Predict", "torch_predict", "parameter_count", "disk_mb", "file_mb", "make_batches", "latency_ms",
           "accuracy", "Workload", "measure_row"]

Predict = Callable[[Mapping[str, Tensor]], Tensor]  # a batch of inputs -> (B, C) logits
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def torch_predict(model: nn.Module, precision: str = "fp32") -> Predict:
    """Logits of ``model`` in eval mode without autograd, under autocast for ``precision`` (fp32 | bf16 | auto)."""
    device = next(model.parameters()).device
    choice = resolve_precision(precision, device)
    model.eval()

    def predict(batch: Mapping[str, Tensor]) -> Tensor:
        with torch.inference_mode(), autocast(device, choice):
            return model(**{k: batch[k].to(device) for k in INPUTS if k in batch}).logits.float().cpu()
    return predict


def parameter_count(model: nn.Module) -> int:
    """Float parameters plus the weights int8 modules pack away (which ``parameters()`` no longer lists)."""
    total = sum(p.numel() for p in model.parameters())
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if callable(weight) and not isinstance(weight, Tensor):  # torch.ao's quantized Linear: weight()
            total += weight().numel() + (module.bias().numel() if module.bias() is not None else 0)
    return total


def disk_mb(model: nn.Module) -> float:
    """Megabytes (10⁶ bytes) of the checkpoint ``model`` would save as (see the module docstring)."""
    plain = all(type(t) in (Tensor, nn.Parameter) for t in model.state_dict().values())
    if plain and hasattr(model, "save_pretrained"):
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            return file_mb(Path(tmp) / "model.safetensors")
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes / 1e6


def file_mb(path: str | Path) -> float:
    """Megabytes of a file plus its ONNX external-data file, if any."""
    path = Path(path)
    extra = path.with_name(path.name + ".data")
    return (path.stat().st_size + (extra.stat().st_size if extra.is_file() else 0)) / 1e6


def make_batches(features: Sequence[Mapping[str, Any]], batch_size: int, count: int,
                 pad_token_id: int = 0) -> list[dict[str, Tensor]]:
    """``count`` batches of consecutive features (in file order: the mix of lengths real traffic has),
    each padded to its own longest; with labels when the features have them."""
    keys = (*INPUTS, "labels")
    batches = []
    for start in range(0, len(features), batch_size):
        if len(batches) == count:
            break
        chunk = [{k: f[k] for k in keys if k in f} for f in features[start:start + batch_size]]
        batches.append(pad_collate(chunk, pad_token_id))
    return batches


def latency_ms(predict: Predict, batches: Sequence[Mapping[str, Tensor]], runs: int = 20, warmup: int = 3,
               threads: int | None = None) -> float:
    """Median milliseconds per call over ``runs`` calls cycling through ``batches``, after ``warmup`` calls."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        for i in range(warmup):
            predict(batches[i % len(batches)])
        times = []
        for i in range(runs):
            start = time.perf_counter()
            predict(batches[i % len(batches)])
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return 1000 * statistics.median(times)


def accuracy(predict: Predict, batches: Sequence[Mapping[str, Tensor]]) -> float:
    """Fraction of rows whose argmax logit equals ``labels``, over every batch."""
    correct = total = 0
    for batch in batches:
        correct += int((predict(batch).argmax(-1) == batch["labels"]).sum())
        total += len(batch["labels"])
    return correct / total


@dataclass
class Workload:
    """What every variant is measured on: scored batches (dev, optionally test) and timed batches."""
    dev: list[dict[str, Tensor]]
    test: list[dict[str, Tensor]] | None
    b1: list[dict[str, Tensor]]  # single sentences
    b32: list[dict[str, Tensor]]  # batches of 32
    runs: int = 20
    threads: int | None = None


def measure_row(name: str, predict: Predict, parameters: int, size_mb: float, work: Workload, **extra: Any) -> Row:
    """One table row: ``predict`` scored on the dev (and test) batches and timed at batch 1 and 32."""
    return Row(name, parameters, size_mb, latency_ms(predict, work.b1, work.runs, threads=work.threads),
               latency_ms(predict, work.b32, work.runs, threads=work.threads), accuracy(predict, work.dev),
               accuracy(predict, work.test) if work.test else None, dict(extra))
