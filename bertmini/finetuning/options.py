"""The options of ``python -m bertmini finetune``: defaults, types, checks, and how flags, ``--config`` and
``key=value`` arguments combine (see :mod:`bertmini.finetuning.cli`).

Each option is a dataclass field whose metadata gives its kind (int, float, bool, ints, weights, str) and
help text, so the argparse flags, the YAML keys and the error messages all come from one definition.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from typing import Any

from bertmini.config import POOLINGS
from bertmini.errors import integer, number
from bertmini.finetuning.tasks import TASKS
from bertmini.training.yaml_config import apply_overrides, check_keys, load_config

__all__ = ["FinetuneOptions", "build_parser", "parse_options"]

# The numeric options' valid values (the training ones, lr, epochs, warmup..., TrainConfig checks).
_BOUNDS = {
    **{name: integer(1) for name in ("batch_size", "eval_batch_size", "doc_stride", "max_answer_length", "n_best",
                                     "pad_to_multiple_of")},
    **{name: integer(1, optional=True) for name in ("max_length", "max_train_examples", "max_eval_examples")},
    "n_errors": integer(0), "eval_fraction": number(0, 1, low_open=True, high_open=True),
    "label_smoothing": number(0, 1, high_open=True), "focal_gamma": number(0, optional=True),
    "rdrop_alpha": number(0, optional=True), "fgm_epsilon": number(0, low_open=True, optional=True),
}


def _opt(default: Any, kind: str, help_: str) -> Any:
    return field(default=default, metadata={"kind": kind, "help": help_})


@dataclass
class FinetuneOptions:
    """Every option of a fine-tuning run; the CLI flag of ``max_length`` is ``--max-length``."""
    task: str | None = _opt(None, "str", f"one of {', '.join(TASKS)}")
    model: str | None = _opt(None, "str", "HF-format folder (ours or transformers'), or a hub name (fetched "
                                          "only when no such path exists)")
    out: str | None = _opt(None, "str", "output folder (default runs/finetune-<task>); a folder holding a run "
                                        "or a model is refused unless --overwrite")
    overwrite: bool = _opt(False, "bool", "replace the run already in --out: its files are deleted first")
    data_dir: str | None = _opt(None, "str", "offline data sets (default $BERTMINI_DATA_DIR)")
    seed: int = _opt(0, "int", "seed of the new head, dropout and batch order")
    seeds: list[int] | None = _opt(None, "ints", "comma-separated seeds: one run each, reported as mean ± std")
    # data
    max_length: int | None = _opt(None, "int", "tokens per input, longer ones are cut (default 128; squad 384)")
    batch_size: int = _opt(32, "int", "examples per micro-batch")
    eval_batch_size: int = _opt(64, "int", "examples per evaluation batch")
    bucket: bool = _opt(True, "bool", "length-bucketed batches (each padded to its own longest input)")
    pad_to_multiple_of: int = _opt(1, "int", "round each batch's padded length up to a multiple of this (never "
                                             "past the longest input), training and evaluation: few tensor shapes "
                                             "keep CPU memory from growing over long runs (1: no rounding)")
    max_train_examples: int | None = _opt(None, "int", "train on a random subset of this many examples")
    max_eval_examples: int | None = _opt(None, "int", "evaluate on a random subset of this many examples")
    eval_fraction: float = _opt(0.1, "float", "dev share carved from train (trec, sms_spam) or of the SQuAD "
                                              "dev articles (squad)")
    eval_test: bool = _opt(False, "bool", "also score the labelled test split (sst2, trec, wnut17)")
    skip_bad: bool = _opt(False, "bool", "skip (and count) malformed rows instead of stopping")
    doc_stride: int = _opt(128, "int", "squad: context tokens shared by neighbouring windows")
    max_answer_length: int = _opt(30, "int", "squad: longest answer span, in tokens")
    n_best: int = _opt(20, "int", "squad: start/end candidates paired per window")
    # optimization (§A.3: lr 2e-5..5e-5, 2-4 epochs, batch 16/32, warmup 10%)
    lr: float = _opt(5e-5, "float", "peak learning rate")
    epochs: float = _opt(3.0, "float", "passes over the training set (ignored when max_steps is set)")
    max_steps: int | None = _opt(None, "int", "optimizer steps (overrides epochs)")
    warmup_ratio: float = _opt(0.1, "float", "fraction of the steps with linear warmup")
    schedule: str = _opt("linear", "str", "linear | onecycle | constant")
    weight_decay: float = _opt(0.01, "float", "AdamW weight decay (not on biases and LayerNorm)")
    grad_clip: float = _opt(1.0, "float", "max gradient norm (0 disables)")
    grad_accum: int = _opt(1, "int", "micro-batches per optimizer step")
    precision: str = _opt("auto", "str", "auto (bf16 where the hardware has it, fp16 on older GPUs, else fp32) | "
                                        "fp32 | bf16 | fp16 (CUDA)")
    compile: bool = _opt(False, "bool", "torch.compile the model")
    device: str = _opt("auto", "str", "auto (cuda > mps > cpu) or a torch device")
    eval_every: int = _opt(0, "int", "steps between dev evaluations (0: only at the end)")
    early_stopping_patience: int | None = _opt(None, "int", "stop after this many evaluations without a better "
                                                            "dev score (the best checkpoint is kept)")
    log_every: int = _opt(50, "int", "steps between training log lines")
    progress: bool = _opt(True, "bool", "progress bar / log lines")
    pooling: str | None = _opt(None, "str", "what a sentence classifier reads: cls (the pooled [CLS], BERT §4.1) or "
                                            "mean (every real token's last state, averaged: for a model pre-trained "
                                            "without NSP, chapter 9); default: the model's config (cls)")
    freeze_embeddings: bool = _opt(False, "bool", "do not train the embeddings")
    freeze_layers: int = _opt(0, "int", "do not train the first k encoder layers")
    layerwise_lr_decay: float | None = _opt(None, "float", "layer i of L gets lr * decay^(L-i)")
    # loss
    class_weights: str | list[float] | None = _opt(None, "weights", "'auto' (inverse frequency) or one weight "
                                                                    "per label, comma-separated")
    label_smoothing: float = _opt(0.0, "float", "label smoothing epsilon")
    focal_gamma: float | None = _opt(None, "float", "focal loss with this gamma instead of cross-entropy")
    rdrop_alpha: float | None = _opt(None, "float", "R-Drop: weight of the KL between two dropout passes")
    fgm_epsilon: float | None = _opt(None, "float", "FGM adversarial training: embedding perturbation norm")
    n_errors: int = _opt(50, "int", "wrong predictions written to errors.jsonl")

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task: expected one of {list(TASKS)}, got {self.task!r}")
        if not self.model:
            raise ValueError("model: give --model (a checkpoint folder or hub name)")
        if self.early_stopping_patience is not None and not self.eval_every:
            raise ValueError(f"early_stopping_patience={self.early_stopping_patience} needs eval_every > 0 "
                             "(steps between dev evaluations)")
        logit_losses = {"class_weights": self.class_weights, "label_smoothing": self.label_smoothing,
                        "focal_gamma": self.focal_gamma, "rdrop_alpha": self.rdrop_alpha}
        if TASKS[self.task].kind == "qa" and any(logit_losses.values()):
            set_ = sorted(k for k, v in logit_losses.items() if v)
            raise ValueError(f"{', '.join(set_)}: these act on class logits (classification, NER), not on squad")
        if self.fgm_epsilon is not None and self.freeze_embeddings:
            raise ValueError("fgm_epsilon perturbs along the embedding gradient: it needs freeze_embeddings=false")
        if self.pooling is not None:
            if self.pooling not in POOLINGS:
                raise ValueError(f"option pooling: expected one of {list(POOLINGS)}, got {self.pooling!r}")
            if TASKS[self.task].kind != "classification":
                raise ValueError(f"option pooling: {self.task} is not a sentence classification task (its head "
                                 "reads every token)")
        if self.seeds is not None and not self.seeds:
            raise ValueError("seeds: expected at least one seed, e.g. 1,2,3")
        for name, bounds in _BOUNDS.items():
            bounds.check(getattr(self, name), f"option {name}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> FinetuneOptions:
        kinds = {f.name: f.metadata["kind"] for f in fields(cls)}
        check_keys(data, kinds, source)
        return cls(**{k: _convert(k, v, kinds[k], source) for k, v in data.items()})


def _convert(name: str, value: Any, kind: str, source: str) -> Any:
    """A YAML value or a command-line string as the option's type; None stays None."""
    if value is None:
        return None
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "false", "1", "0", "yes", "no"):
                return str(value).lower() in ("true", "1", "yes")
            raise ValueError
        if isinstance(value, bool):
            raise ValueError  # True is an int in Python, but never a valid number of steps
        if kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind == "float":
            return float(value)  # flags and key=value arguments arrive as strings
        if kind == "ints":
            return [int(v) for v in (value.split(",") if isinstance(value, str) else
                                     value if isinstance(value, list) else [value])]
        if kind == "weights":
            return value if value == "auto" else [float(v) for v in (value.split(",") if isinstance(value, str)
                                                                     else value)]
        return str(value)
    except (TypeError, ValueError):
        expected = {"ints": "comma-separated integers", "weights": "'auto' or comma-separated numbers"}.get(kind, kind)
        raise ValueError(f"{source}: option {name}: expected {expected}, got {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bertmini finetune",
                                     description="Fine-tune a BERT checkpoint on one task (BERT paper §4, §A.3).",
                                     epilog="key=value arguments set any option, e.g. lr=3e-5 bucket=false")
    parser.add_argument("--config", help="YAML file: a flat mapping of the options below (names with _)")
    for f in fields(FinetuneOptions):
        flag, kind = "--" + f.name.replace("_", "-"), f.metadata["kind"]
        default = "" if f.default is None or kind == "bool" else f" (default {f.default})"
        if kind == "bool":
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=f"{f.metadata['help']} (default {f.default})")
        else:
            parser.add_argument(flag, dest=f.name, default=argparse.SUPPRESS, metavar=kind.upper(),
                                help=f.metadata["help"] + default)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="option overrides (after --config)")
    return parser


def parse_options(argv: list[str]) -> FinetuneOptions:
    """Defaults < --config YAML < key=value < --flags."""
    args = vars(build_parser().parse_intermixed_args(argv))
    config, overrides = args.pop("config", None), args.pop("overrides", [])
    data = load_config(config, overrides) if config else apply_overrides({}, overrides)
    source = config or "key=value arguments"
    check_keys(data, [f.name for f in fields(FinetuneOptions)], source)
    kinds = {f.name: f.metadata["kind"] for f in fields(FinetuneOptions)}
    data.update({k: _convert(k, v, kinds[k], "command line") for k, v in args.items()})  # errors name the flags
    return FinetuneOptions.from_dict(data, source)
