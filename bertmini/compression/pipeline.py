"""The whole compression table of chapter 13: one teacher, every technique, measured alike.

Starting from an SST-2-fine-tuned teacher, :func:`compression_table` distills students (DistilBERT's
recipe, Sanh et al. 2019, §3: layers taken from the teacher, soft targets at temperature T), quantizes
Linear layers to dynamic int8, prunes the least important heads (Michel et al. 2019, §4) with and without
a short recovery, and exports to ONNX; then it measures each variant (:func:`bertmini.compression.measure_row`).
``bench/bench_compression.py`` and the chapter call it, at full size or with :meth:`Settings.quick`.
"""
from __future__ import annotations

import copy
import importlib.util
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from bertmini.compression.distillation import distill, student_from_teacher, teacher_logits
from bertmini.compression.export import OnnxClassifier, export_onnx
from bertmini.compression.measure import (
    Workload,
    disk_mb,
    file_mb,
    make_batches,
    measure_row,
    parameter_count,
    torch_predict,
)
from bertmini.compression.pruning import head_importance, heads_to_prune, prune_heads
from bertmini.compression.quantization import quantize_int8
from bertmini.compression.report import Row
from bertmini.config import BertConfig
from bertmini.finetuning import encode_classification, load_sst2
from bertmini.finetuning.tasks import subset
from bertmini.heads import BertForSequenceClassification
from bertmini.precision import cpu_bf16_feature
from bertmini.tokenizer import WordPieceTokenizer

__all__ = ["Settings", "SST2", "load_sst2_features", "compression_table"]


@dataclass
class Settings:
    max_train: int | None = None  # training sentences for the students (None: all 67,349)
    max_eval: int | None = None  # dev / test sentences scored (None: all 872 / 1,821)
    epochs: float = 1.0  # student training
    students: dict[str, list[int]] = field(default_factory=lambda: {"student-L3": [0, 2, 4], "student-L2": [0, 3]})
    narrow: str | None = "mini"  # a BertConfig preset trained from scratch by distillation (None: skip)
    prune: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # the sweep
    prune_rows: tuple[float, ...] = (0.3, 0.5)  # fractions that also get table rows
    importance_examples: int = 1024
    recovery_examples: int = 8000  # a short distillation of the 50%-pruned model (0: skip)
    temperature: float = 2.0
    alpha: float = 0.5
    runs: int = 20  # timed calls per latency
    threads: int | None = 2
    onnx: bool = True
    seed: int = 0

    @classmethod
    def quick(cls, **overrides: Any) -> "Settings":
        """A smoke run: a few hundred sentences, two-layer students, three pruning levels, few timings."""
        small = dict(max_train=400, max_eval=128, epochs=1.0, students={"student-L2": [0, 3]}, narrow=None,
                     prune=(0.2, 0.5), prune_rows=(0.5,), importance_examples=64, recovery_examples=0, runs=3)
        return replace(cls(**small), **overrides)


@dataclass
class SST2:
    train: list[dict]
    dev: list[dict]
    test: list[dict]


def load_sst2_features(tokenizer: WordPieceTokenizer, settings: Settings, max_length: int = 64,
                       data_dir: str | None = None) -> SST2:
    """Encoded SST-2 train / dev / labelled test (subsets as ``settings`` asks, the same ones every run)."""
    splits = {}
    for split, limit in (("train", settings.max_train), ("validation", settings.max_eval),
                         ("test", settings.max_eval)):
        examples = subset(load_sst2(split, data_dir=data_dir).examples, limit, settings.seed)
        splits[split] = encode_classification(examples, tokenizer, max_length).features
    return SST2(splits["train"], splits["validation"], splits["test"])


def _workload(data: SST2, settings: Settings, pad_id: int) -> Workload:
    return Workload(dev=make_batches(data.dev, 128, len(data.dev), pad_id),
                    test=make_batches(data.test, 128, len(data.test), pad_id),
                    b1=make_batches(data.dev, 1, 32, pad_id), b32=make_batches(data.dev, 32, 8, pad_id),
                    runs=settings.runs, threads=settings.threads)


def _row(name: str, model: nn.Module, work: Workload, precision: str = "fp32", **extra: Any) -> Row:
    return measure_row(name, torch_predict(model, precision), parameter_count(model), disk_mb(model), work,
                       precision=precision, **extra)


def _students(teacher: nn.Module, logits: torch.Tensor, data: SST2, settings: Settings,
              log: Callable[[str], None]) -> dict[str, nn.Module]:
    kd = dict(epochs=settings.epochs, temperature=settings.temperature, alpha=settings.alpha, seed=settings.seed,
              progress=False)
    models: dict[str, nn.Module] = {}
    for name, layers in settings.students.items():
        log(f"distilling {name} (teacher layers {layers}) on {len(data.train)} sentences")
        models[name] = student_from_teacher(teacher, layers)
        distill(models[name], logits, data.train, **kd)
    if settings.narrow:
        log(f"distilling student-{settings.narrow} (BERT-{settings.narrow} shape, random init)")
        torch.manual_seed(settings.seed)
        config = BertConfig.preset(settings.narrow, vocab_size=teacher.config.vocab_size,
                                   id2label=teacher.config.id2label)
        models[f"student-{settings.narrow}"] = BertForSequenceClassification(config)
        distill(models[f"student-{settings.narrow}"], logits, data.train, **{**kd, "lr": 5e-4})
    return models


def _pruning(teacher: nn.Module, logits: torch.Tensor, data: SST2, work: Workload, settings: Settings,
             log: Callable[[str], None]) -> tuple[list[Row], list[dict]]:
    batches = make_batches(data.train[:settings.importance_examples], 32, 10 ** 9, teacher.config.pad_token_id)
    importance = head_importance(teacher, batches)
    rows, sweep = [], []
    for fraction in settings.prune:
        pruned = prune_heads(copy.deepcopy(teacher), heads_to_prune(importance, fraction))
        row = _row(f"pruned {fraction:.0%}", pruned, work)
        log(f"pruned {fraction:.0%} of heads: dev {row.dev_acc:.2%}, b32 {row.latency_b32_ms:.0f} ms")
        sweep.append({"fraction": fraction, "dev_acc": row.dev_acc, "latency_b32_ms": row.latency_b32_ms,
                      "parameters": row.parameters})
        if any(abs(fraction - f) < 1e-9 for f in settings.prune_rows):
            rows.append(row)
        if abs(fraction - 0.5) < 1e-9 and settings.recovery_examples:
            recovery = data.train[:settings.recovery_examples]
            log(f"recovering the 50%-pruned model: distillation on {len(recovery)} sentences")
            distill(pruned, logits, recovery, epochs=1.0, seed=settings.seed,
                    temperature=settings.temperature, alpha=settings.alpha, progress=False)
            rows.append(_row("pruned 50% + KD", pruned, work))
    return rows, sweep


def _onnx_row(name: str, model: nn.Module, work: Workload) -> Row:
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "model.onnx")
        return measure_row(f"{name} ONNX", OnnxClassifier(path, work.threads), parameter_count(model),
                           file_mb(path), work, precision="fp32", runtime="onnxruntime")


def compression_table(teacher_dir: str | Path, settings: Settings, data_dir: str | None = None,
                      log: Callable[[str], None] = print) -> tuple[list[Row], list[dict]]:
    """Rows for the teacher and every variant, and the pruning sweep (fraction -> dev accuracy, latency)."""
    teacher = BertForSequenceClassification.from_pretrained(teacher_dir).eval()
    tokenizer = WordPieceTokenizer.from_file(teacher_dir)
    data = load_sst2_features(tokenizer, settings, data_dir=data_dir)
    work = _workload(data, settings, tokenizer.pad_token_id)
    log(f"teacher logits on {len(data.train)} training sentences")
    logits = teacher_logits(teacher, data.train)
    students = _students(teacher, logits, data, settings, log)
    rows = [_row("teacher", teacher, work)] + [_row(name, m, work) for name, m in students.items()]
    first = next(iter(students))
    for method in ("eager", "torchao") if importlib.util.find_spec("torchao") else ("eager",):
        log(f"int8 ({method})")
        rows.append(_row(f"teacher int8 ({method})", quantize_int8(teacher, method), work))
    rows.append(_row(f"{first} int8 (eager)", quantize_int8(students[first], "eager"), work))
    pruned_rows, sweep = _pruning(teacher, logits, data, work, settings, log)
    rows += pruned_rows
    if settings.onnx:
        log("ONNX export")
        rows += [_onnx_row("teacher", teacher, work), _onnx_row(first, students[first], work)]
    if cpu_bf16_feature():  # native bf16 matmuls: what precision "auto" picks here
        rows += [_row(f"{name} (auto: bf16)", m, work, "auto") for name, m in (("teacher", teacher),
                                                                               (first, students[first]))]
    return rows, sweep
