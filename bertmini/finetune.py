"""``python -m bertmini finetune``: fine-tune a BERT checkpoint on one task (BERT paper §4, §A.3).

    python -m bertmini finetune --task sst2 --model PATH [--config configs/finetune_sst2_minilm.yaml]
                                [--data-dir DIR] [--out DIR] [--lr 3e-5 ...] [key=value ...]

Options come from, in increasing priority: the defaults below, ``--config`` (a flat YAML mapping of
option names), ``key=value`` arguments, then ``--flags``. ``--out`` receives the best checkpoint (on the
dev metric) in Hugging Face format with its tokenizer (``predict`` and transformers load it),
``metrics.json``, a confusion-matrix or per-entity F1 figure, ``errors.jsonl`` (wrong predictions, most
confident first) and ``train/metrics.jsonl`` + ``train/curves.png``. With ``--seeds 1,2,3`` each seed
runs in ``out/seed-<s>/``; ``out/metrics.json`` gives mean ± std and ``out`` holds the best seed's model.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .configfile import apply_overrides, check_keys, load_config
from .finetune_tasks import TASKS, BatchLoader, Splits, Task, build_step, class_weights, encode, evaluate, \
    load_splits, subset
from .inference import resolve_model_path
from .tasks.plots import plot_confusion_matrix, plot_f1_bars
from .tokenizer import WordPieceTokenizer
from .training import Trainer, TrainConfig, plot_curves
from .utils import set_seed

__all__ = ["FinetuneOptions", "build_parser", "parse_options", "run", "main"]

MODEL_FILES = ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json")


def _opt(default: Any, kind: str, help_: str) -> Any:
    return field(default=default, metadata={"kind": kind, "help": help_})


@dataclass
class FinetuneOptions:
    """Every option of a fine-tuning run; the CLI flag of ``max_length`` is ``--max-length``."""
    task: str | None = _opt(None, "str", f"one of {', '.join(TASKS)}")
    model: str | None = _opt(None, "str", "HF-format folder (ours or transformers'), or a hub name (fetched "
                                          "only when no such path exists)")
    out: str | None = _opt(None, "str", "output folder (default runs/finetune-<task>)")
    data_dir: str | None = _opt(None, "str", "offline data sets (default $BERTMINI_DATA_DIR)")
    seed: int = _opt(0, "int", "seed of the new head, dropout and batch order")
    seeds: list[int] | None = _opt(None, "ints", "comma-separated seeds: one run each, reported as mean ± std")
    # data
    max_length: int | None = _opt(None, "int", "tokens per input, longer ones are cut (default 128; squad 384)")
    batch_size: int = _opt(32, "int", "examples per micro-batch")
    eval_batch_size: int = _opt(64, "int", "examples per evaluation batch")
    bucket: bool = _opt(True, "bool", "length-bucketed batches (each padded to its own longest input)")
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
    precision: str = _opt("fp32", "str", "fp32 | bf16 (autocast) | fp16 (CUDA)")
    compile: bool = _opt(False, "bool", "torch.compile the model")
    device: str = _opt("auto", "str", "auto (cuda > mps > cpu) or a torch device")
    eval_every: int = _opt(0, "int", "steps between dev evaluations (0: only at the end)")
    early_stopping_patience: int | None = _opt(None, "int", "stop after this many evaluations without a better "
                                                            "dev score (the best checkpoint is kept)")
    log_every: int = _opt(50, "int", "steps between training log lines")
    progress: bool = _opt(True, "bool", "progress bar / log lines")
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
        if self.seeds is not None and not self.seeds:
            raise ValueError("seeds: expected at least one seed, e.g. 1,2,3")
        for name in ("batch_size", "eval_batch_size", "doc_stride", "max_answer_length", "n_best", "max_length",
                     "max_train_examples", "max_eval_examples", "n_errors"):
            if getattr(self, name) is not None and getattr(self, name) < (0 if name == "n_errors" else 1):
                raise ValueError(f"{name}: expected a positive number, got {getattr(self, name)}")

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
    check_keys(data, {f.name for f in fields(FinetuneOptions)}, source)
    data.update(args)
    return FinetuneOptions.from_dict(data, source)


@dataclass
class _Data:
    splits: Splits
    train: Any
    eval: Any
    test: Any
    n_truncated: dict[str, int]


def _prepare(task: Task, opts: FinetuneOptions, tokenizer: WordPieceTokenizer) -> _Data:
    splits = load_splits(task.name, opts.data_dir, opts.skip_bad, opts.eval_fraction, opts.eval_test)
    splits.train = subset(splits.train, opts.max_train_examples)
    splits.eval = subset(splits.eval, opts.max_eval_examples)
    if splits.test is not None:
        splits.test = subset(splits.test, opts.max_eval_examples)
    encoded, truncated = {}, {}
    for name in ("train", "eval", "test"):
        examples = getattr(splits, name)
        if examples is not None:
            encoded[name], truncated[name] = encode(task, examples, tokenizer, opts.max_length, opts.doc_stride)
    return _Data(splits, encoded["train"], encoded["eval"], encoded.get("test"), truncated)


def _train_config(opts: FinetuneOptions, task: Task, seed: int, out: Path) -> TrainConfig:
    return TrainConfig(
        lr=opts.lr, weight_decay=opts.weight_decay, max_steps=opts.max_steps,
        epochs=None if opts.max_steps else opts.epochs, warmup_ratio=opts.warmup_ratio, schedule=opts.schedule,
        grad_clip=opts.grad_clip or None, grad_accum=opts.grad_accum, layerwise_lr_decay=opts.layerwise_lr_decay,
        freeze_embeddings=opts.freeze_embeddings, freeze_layers=opts.freeze_layers, precision=opts.precision,
        compile=opts.compile, device=opts.device, seed=seed, out_dir=str(out), log_every=opts.log_every,
        eval_every=opts.eval_every, progress=opts.progress, early_stopping_patience=opts.early_stopping_patience,
        early_stopping_metric=task.metric, early_stopping_mode="max", keep_last=1)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def train_one(task: Task, opts: FinetuneOptions, seed: int, model_path: Path, tokenizer: WordPieceTokenizer,
              data: _Data, out: Path) -> dict[str, Any]:
    """Fine-tune with one seed; write the best checkpoint and its reports into ``out``."""
    set_seed(seed)  # the new head's initialization
    names = data.splits.label_names
    model = task.model_cls.from_pretrained(model_path, **({"id2label": dict(enumerate(names))} if names else {}))
    weights = class_weights(opts.class_weights, data.train.features, len(names)) if opts.class_weights else None
    step = build_step(weights, opts.label_smoothing, opts.focal_gamma, opts.rdrop_alpha, opts.fgm_epsilon)
    loader = BatchLoader(data.train.features, opts.batch_size, tokenizer.pad_token_id, opts.bucket, seed)
    scoring = dict(batch_size=opts.eval_batch_size, pad_token_id=tokenizer.pad_token_id, precision=opts.precision,
                   n_best=opts.n_best, max_answer_length=opts.max_answer_length)
    trainer = Trainer(model, loader, _train_config(opts, task, seed, out / "train"), train_step=step,
                      eval_fn=lambda m: evaluate(task, m, data.splits.eval, data.eval, names, **scoring).metrics)
    summary = trainer.train()
    best = task.model_cls.from_pretrained(out / "train" / "best").to(trainer.device)
    result = evaluate(task, best, data.splits.eval, data.eval, names, **scoring)
    best.save_pretrained(out)
    tokenizer.save(out)
    for name in ("checkpoints", "best", "final"):  # training state and duplicates of the model saved above
        shutil.rmtree(out / "train" / name, ignore_errors=True)
    plot_curves(out / "train" / "metrics.jsonl", out / "train" / "curves.png")
    if task.kind == "classification":
        plot_confusion_matrix(result.details["confusion_matrix"], names, out / "confusion_matrix.png",
                              title=f"{task.name} dev")
    elif task.kind == "ner":
        plot_f1_bars(result.details["per_entity"], out / "entity_f1.png", title=f"{task.name} dev F1 per entity type")
    _write_jsonl(out / "errors.jsonl", result.errors[:opts.n_errors])
    metrics = {
        "task": task.name, "model": opts.model, "seed": seed, "metric": task.metric, "dev": result.metrics,
        **result.details, "label_names": names, **data.splits.notes,
        "n_train_examples": len(data.splits.train), "n_eval_examples": len(data.splits.eval),
        "n_train_features": len(data.train), "n_truncated": data.n_truncated, "n_skipped": data.splits.skipped,
        "steps": summary["step"], "best_step": trainer.best_step, "stopped_early": summary["stopped_early"],
        "train_time_s": round(summary["elapsed"], 2),
        "examples_per_s": round(loader.examples_seen / max(summary["elapsed"], 1e-9), 1),
        "device": str(trainer.device), "options": asdict(opts),
    }
    if data.test is not None:
        metrics["test"] = evaluate(task, best, data.splits.test, data.test, names, **scoring).metrics
    _write_json(out / "metrics.json", metrics)
    return metrics


def run(opts: FinetuneOptions) -> dict[str, Any]:
    """Prepare the data once, fine-tune once per seed, write ``metrics.json``; returns it."""
    start = time.perf_counter()
    task = TASKS[opts.task]
    opts.max_length = opts.max_length or (384 if task.kind == "qa" else 128)
    opts.out = opts.out or f"runs/finetune-{task.name}"
    out = Path(opts.out)
    _train_config(opts, task, opts.seed, out)  # check the training options before the slow data preparation
    model_path = resolve_model_path(opts.model)
    tokenizer = WordPieceTokenizer.from_file(model_path)
    data = _prepare(task, opts, tokenizer)
    seeds = opts.seeds or [opts.seed]
    runs = [train_one(task, opts, seed, model_path, tokenizer, data, out if len(seeds) == 1 else out / f"seed-{seed}")
            for seed in seeds]
    if len(seeds) == 1:
        metrics = runs[0]
    else:  # mean ± sample std over seeds; the best seed's model is copied to `out`
        best = max(range(len(runs)), key=lambda i: runs[i]["dev"][task.metric])
        for name in MODEL_FILES:
            shutil.copy2(out / f"seed-{seeds[best]}" / name, out / name)
        scores = {k: [r["dev"][k] for r in runs] for k in runs[0]["dev"]}
        metrics = {"task": task.name, "model": opts.model, "metric": task.metric, "seeds": seeds,
                   "dev_mean": {k: statistics.mean(v) for k, v in scores.items()},
                   "dev_std": {k: statistics.stdev(v) for k, v in scores.items()},
                   "best_seed": seeds[best], "runs": [{"seed": r["seed"], "dir": f"seed-{r['seed']}", "dev": r["dev"],
                                                       "best_step": r["best_step"]} for r in runs],
                   **{k: runs[0][k] for k in ("n_train_examples", "n_eval_examples", "n_truncated", "n_skipped")},
                   "train_time_s": round(sum(r["train_time_s"] for r in runs), 2),
                   "examples_per_s": round(statistics.mean(r["examples_per_s"] for r in runs), 1),
                   "options": asdict(opts)}
    metrics["wall_time_s"] = round(time.perf_counter() - start, 2)  # data preparation included
    _write_json(out / "metrics.json", metrics)
    return metrics


def _summary(metrics: dict[str, Any], out: str) -> str:
    if "dev_mean" in metrics:
        scores = ", ".join(f"{k} {metrics['dev_mean'][k]:.4f} ± {metrics['dev_std'][k]:.4f}"
                           for k in metrics["dev_mean"])
        return f"{metrics['task']} dev over seeds {metrics['seeds']}: {scores} -> {out}"
    scores = ", ".join(f"{k} {v:.4f}" for k, v in metrics["dev"].items())
    return f"{metrics['task']} dev: {scores} (best step {metrics['best_step']}/{metrics['steps']}) -> {out}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        opts = parse_options(argv)
        metrics = run(opts)
    except (OSError, ValueError, KeyError, ArithmeticError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        return 2
    print(_summary(metrics, opts.out))
    return 0
