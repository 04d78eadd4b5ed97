"""``python -m bertmini finetune``: fine-tune a BERT checkpoint on one task (BERT paper §4, §A.3).

    python -m bertmini finetune --task sst2 --model PATH [--config configs/finetune_sst2_minilm.yaml]
                                [--data-dir DIR] [--out DIR] [--lr 3e-5 ...] [key=value ...]

Options (:mod:`bertmini.finetuning.options`) come from, in increasing priority: their defaults,
``--config`` (a flat YAML mapping of option names), ``key=value`` arguments, then ``--flags``. ``--out``
receives the best checkpoint (on the dev metric) in Hugging Face format with its tokenizer (``predict``
and transformers load it), ``metrics.json``, a confusion-matrix or per-entity F1 figure, ``errors.jsonl``
(wrong predictions, most confident first) and ``train/metrics.jsonl`` + ``train/curves.png``. With
``--seeds 1,2,3`` each seed runs in ``out/seed-<s>/``; ``out/metrics.json`` gives mean ± std and ``out``
holds the best seed's model.

``--out`` belongs to one run (:mod:`bertmini.runfolder`). A folder that already holds a run or a model is
refused unless ``--overwrite`` is given, which deletes that run's files first so that nothing mixes;
``--out`` may never be, contain or lie inside the ``--model`` folder; and a run locks ``--out``, so that a
second run into it stops at once with an error naming the first. Training writes into a scratch folder of
its own, renamed ``train/`` once done; a crashed run's scratch folder is deleted by the next run in ``--out``.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bertmini.errors import INPUT_ERRORS, report
from bertmini.finetuning.evaluation import evaluate
from bertmini.finetuning.inference import check_max_length, resolve_model_path
from bertmini.finetuning.losses import build_step, class_weights
from bertmini.finetuning.options import FinetuneOptions, build_parser, parse_options
from bertmini.finetuning.plots import plot_confusion_matrix, plot_f1_bars
from bertmini.finetuning.tasks import TASKS, Splits, Task, encode, load_splits, subset
from bertmini.runfolder import delete, lock_folder, refuse_overlap, sweep_temps, temp_dir
from bertmini.tokenizer import WordPieceTokenizer
from bertmini.training.batching import BatchLoader
from bertmini.training.curves import plot_curves
from bertmini.training.train_config import TrainConfig
from bertmini.training.trainer import Trainer
from bertmini.utils import get_device, set_seed

__all__ = ["FinetuneOptions", "build_parser", "parse_options", "run", "main"]

MODEL_FILES = ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json")
RUN_FILES = (*MODEL_FILES, "metrics.json", "errors.jsonl", "confusion_matrix.png", "entity_f1.png", "train")


@dataclass
class _Data:
    splits: Splits
    train: Any
    eval: Any
    test: Any
    n_truncated: dict[str, int]


def _prepare(task: Task, opts: FinetuneOptions, tokenizer: WordPieceTokenizer) -> _Data:
    splits = load_splits(task.name, opts.data_dir, opts.skip_bad, opts.eval_fraction, opts.eval_test)
    for note in splits.skip_notes:  # --skip-bad: say so on the console, not only in metrics.json
        print(note)
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


def _run_files(out: Path) -> list[str]:
    """The names in ``out`` that a fine-tuning run writes (``seed-*/`` folders included)."""
    if not out.is_dir():
        return []
    return sorted(p.name for p in out.iterdir() if p.name in RUN_FILES or p.name.startswith("seed-"))


def _refuse_existing(out: Path, overwrite: bool) -> None:
    """FileExistsError when ``out`` holds a run or a model and ``overwrite`` is off: a new run would replace
    some of its files and append to its training log."""
    names = [] if overwrite else _run_files(out)
    if names:
        what = ("a finished fine-tuning run" if "metrics.json" in names else
                "a model" if set(names) <= set(MODEL_FILES) else "an unfinished fine-tuning run")
        raise FileExistsError(f"{out} already holds {what} ({', '.join(names)}): pass --overwrite to delete it "
                              "and train again, or choose another --out")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def train_one(task: Task, opts: FinetuneOptions, seed: int, model_path: Path, tokenizer: WordPieceTokenizer,
              data: _Data, out: Path) -> dict[str, Any]:
    """Fine-tune with one seed; write the best checkpoint and its reports into ``out``."""
    set_seed(seed)  # the new head's initialization
    names = data.splits.label_names
    overrides = {**({"id2label": dict(enumerate(names))} if names else {}),
                 **({"classifier_pooling": opts.pooling} if opts.pooling else {})}
    model = task.model_cls.from_pretrained(model_path, **overrides)
    weights = class_weights(opts.class_weights, data.train.features, len(names)) if opts.class_weights else None
    step = build_step(weights, opts.label_smoothing, opts.focal_gamma, opts.rdrop_alpha, opts.fgm_epsilon)
    loader = BatchLoader(data.train.features, opts.batch_size, tokenizer.pad_token_id, opts.bucket, seed,
                         opts.pad_to_multiple_of)
    scoring = dict(batch_size=opts.eval_batch_size, pad_token_id=tokenizer.pad_token_id, precision=opts.precision,
                   n_best=opts.n_best, max_answer_length=opts.max_answer_length,
                   pad_to_multiple_of=opts.pad_to_multiple_of)
    scratch = temp_dir(out / "train")  # this run's own, whatever else writes into `out`; becomes train/
    trainer = Trainer(model, loader, _train_config(opts, task, seed, scratch), train_step=step,
                      eval_fn=lambda m: evaluate(task, m, data.splits.eval, data.eval, names, **scoring).metrics)
    scoring["precision"] = trainer.precision.precision  # evaluate as trained: resolved once, by the Trainer
    summary = trainer.train()
    best = task.model_cls.from_pretrained(scratch / "best").to(trainer.device)
    for name in ("checkpoints", "best", "final"):  # training state and duplicates of the model saved below
        shutil.rmtree(scratch / name, ignore_errors=True)
    os.replace(scratch, out / "train")  # fails on a non-empty train/ instead of mixing two runs' logs
    result = evaluate(task, best, data.splits.eval, data.eval, names, **scoring)
    best.save_pretrained(out)
    tokenizer.save(out)
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
        "device": str(trainer.device), "precision": trainer.precision.to_dict(), "options": asdict(opts),
    }
    if data.test is not None:
        metrics["test"] = evaluate(task, best, data.splits.test, data.test, names, **scoring).metrics
    _write_json(out / "metrics.json", metrics)
    return metrics


def run(opts: FinetuneOptions) -> dict[str, Any]:
    """Check and lock ``--out``, then :func:`train_seeds`; returns the run's ``metrics.json``."""
    start = time.perf_counter()
    task = TASKS[opts.task]
    opts.max_length = opts.max_length or (384 if task.kind == "qa" else 128)
    opts.out = opts.out or f"runs/finetune-{task.name}"
    out = Path(opts.out)
    _train_config(opts, task, opts.seed, out)  # check the training options before the slow data preparation
    model_path = resolve_model_path(opts.model)
    check_max_length(opts.max_length, model_path)  # like the device, before the slow data preparation
    get_device(opts.device)  # a bad --device fails here, before the slow data preparation
    refuse_overlap(model_path, out, "--model", "--out")  # --overwrite included: it would delete the input
    _refuse_existing(out, opts.overwrite)  # before the lock too, so that a refused folder is left as it was
    with lock_folder(out, "choose another --out"):
        _refuse_existing(out, opts.overwrite)  # another run may have finished meanwhile
        sweep_temps(out)  # what killed runs left; no live writer owns it now
        return train_seeds(task, opts, model_path, out, start)


def train_seeds(task: Task, opts: FinetuneOptions, model_path: Path, out: Path, start: float) -> dict[str, Any]:
    """Prepare the data once, clear an old run (``--overwrite``), fine-tune once per seed, write
    ``metrics.json``; returns it. The caller holds ``out``'s lock."""
    tokenizer = WordPieceTokenizer.from_file(model_path)
    data = _prepare(task, opts, tokenizer)
    if opts.overwrite:  # only now: a failed data preparation leaves the old run whole
        for name in _run_files(out):
            delete(out / name)
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
                   "precision": runs[0]["precision"], "options": asdict(opts)}
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
    except INPUT_ERRORS as err:  # bad options, data, paths: one line; a bug keeps its traceback
        return report(err)
    print(_summary(metrics, opts.out))
    return 0
