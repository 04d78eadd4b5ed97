"""``python -m bertmini pretrain --config configs/X.yaml [--data-dir DIR] [key=value ...]``.

Pre-trains ``BertForPreTraining`` on masked LM (+ next sentence prediction) as in Devlin et al. 2019
(§3.1, Appendix A.2), from one YAML file with five sections (see ``configs/*.yaml``):

* ``model``: ``preset`` + BertConfig overrides (vocab_size comes from the tokenizer), or ``init_from``
  an HF-format folder (phase 2 of the paper's recipe starts from phase 1);
* ``tokenizer``: ``path`` to an existing vocabulary, or a WordPiece vocabulary trained on the training
  corpus (``vocab_size``, ``lowercase``, ``min_frequency``), saved in ``out_dir/tokenizer`` and reused;
* ``data``: ``train`` sources and an ``eval`` source (readers ``text``, ``wikitext``, ``gutenberg``, ``tsv``
  with a ``path`` under the data dir, or ``hf``: a ``datasets`` name), ``mode`` nsp|packed and masking;
* ``train``: :class:`~bertmini.training.train_config.TrainConfig` fields + ``batch_size`` (per process),
  ``eval_batches`` and ``token_budget`` (input tokens to train on: it sets ``max_steps``, then a cap, as
  ``time_budget_min`` does for minutes); ``out_dir``: where everything goes.

Any key can be overridden on the command line: ``train.max_steps=100 model.preset=small``, or a whole
value with YAML: ``'data.eval={reader: wikitext, path: wikitext-2-raw/wiki.valid.raw}'``.
A rerun of the same command resumes from the newest checkpoint (``train.resume`` defaults to true). A run
locks ``out_dir`` first (:mod:`bertmini.runfolder`): a second run into it stops with an error naming the
first; then it deletes the temporary folders that killed saves left there.
Outputs: ``final/`` (weights + tokenizer files, loadable by transformers), ``curves.png``, ``summary.json``
(its ``eval`` holds the held-out MLM accuracy next to ``unigram_accuracy``, the score of always predicting
the most frequent training token: :func:`~bertmini.pretraining.evaluation.unigram_baseline`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch.distributed as dist
from torch.utils.data import DataLoader

from bertmini.config import BertConfig
from bertmini.errors import INPUT_ERRORS, ConfigError, report
from bertmini.heads import BertForPreTraining
from bertmini.pretraining.build import build_dataset, describe_source, setup_tokenizer
from bertmini.pretraining.evaluation import (
    evaluate_pretraining,
    fixed_masked_batches,
    token_counts,
    unigram_baseline,
)
from bertmini.pretraining.masking import MLMCollator
from bertmini.pretraining.seq_warmup import SeqWarmupStep
from bertmini.pretraining.settings import PretrainSettings, load_settings
from bertmini.runfolder import lock_folder, sweep_temps
from bertmini.training import state as ckpt
from bertmini.training.budget import steps_for_tokens
from bertmini.training.curves import plot_curves
from bertmini.training.distributed import init_distributed
from bertmini.training.train_config import TrainConfig
from bertmini.training.trainer import Trainer
from bertmini.utils import local_data_dir, set_seed

__all__ = ["main", "run"]

def _rank0_first(fn, rank: int, world: int):
    """Rank 0 runs ``fn`` (training a vocabulary, building caches) before the others, which then reuse it."""
    if world > 1 and rank != 0:
        dist.barrier()
    result = fn()
    if world > 1 and rank == 0:
        dist.barrier()
    return result


def _claim_out_dir(held: ExitStack, out: Path, rank: int, world: int) -> None:
    """Rank 0 locks ``out_dir`` into ``held`` and deletes what killed saves left there; every rank learns
    whether that failed (the others would wait forever at a barrier for a rank 0 that quit)."""
    error: OSError | None = None
    if rank == 0:
        try:
            held.enter_context(lock_folder(out, "choose another out_dir"))
            sweep_temps(out)  # no live writer owns a temporary folder now
        except OSError as err:  # FolderInUse, or a folder we may not write
            error = err
    if world > 1:
        box = [error]
        dist.broadcast_object_list(box, src=0)
        error = box[0]
    if error is not None:
        raise error


def _build_model(settings: PretrainSettings, vocab_size: int, max_seq_length: int) -> BertForPreTraining:
    spec = dict(settings.model)
    init_from = spec.pop("init_from", None)
    if init_from:
        model = BertForPreTraining.from_pretrained(init_from)
        if model.config.vocab_size != vocab_size:
            raise ConfigError(f"{settings.source}: model.init_from {init_from!r} has vocab_size "
                              f"{model.config.vocab_size}, the tokenizer has {vocab_size}: use its tokenizer")
    else:
        model = BertForPreTraining(BertConfig.preset(spec.pop("preset"), vocab_size=vocab_size, **spec))
    if max_seq_length > model.config.max_position_embeddings:
        raise ConfigError(f"{settings.source}: data.max_seq_length {max_seq_length} exceeds the model's "
                          f"max_position_embeddings {model.config.max_position_embeddings}")
    return model


def _fit_token_budget(settings: PretrainSettings, cfg: TrainConfig, world: int) -> TrainConfig:
    """``cfg`` with the ``max_steps`` that fit ``train.token_budget`` (sequence positions, padding included:
    the same count for every run of a config), at most the configured ``max_steps``."""
    if settings.token_budget is None:
        return cfg
    per_step = settings.batch_size * settings.data["max_seq_length"] * cfg.grad_accum * world
    try:
        steps = steps_for_tokens(settings.token_budget, per_step, cfg.max_steps)
    except ValueError as err:
        raise ConfigError(f"{settings.source}: train.{err}") from None
    return dataclasses.replace(cfg, max_steps=steps)


def run(settings: PretrainSettings, data_root: Path | None) -> dict[str, Any]:
    """Tokenizer → datasets → model → Trainer → ``final/`` + ``curves.png`` + ``summary.json``."""
    start = time.perf_counter()
    cfg, data, out = settings.train, settings.data, settings.out_dir
    rank, world, device, created = init_distributed(cfg.device)
    say = print if rank == 0 else (lambda *a, **k: None)
    held = ExitStack()  # out_dir's lock, released in `finally`
    try:
        _claim_out_dir(held, out, rank, world)  # before anything is written
        tok, reused = _rank0_first(lambda: setup_tokenizer(settings, data_root), rank, world)
        say(f"tokenizer: {'reused' if reused else 'trained'} {tok!r}")
        train_ds = _rank0_first(lambda: build_dataset(settings, data["train"], tok, data_root, say), rank, world)
        eval_ds = None if data["eval"] is None else _rank0_first(
            lambda: build_dataset(settings, [data["eval"]], tok, data_root, say, dupe_factor=1), rank, world)
        if len(train_ds) < settings.batch_size:
            corpora = "; ".join(describe_source(src, data_root) for src in data["train"])
            raise ConfigError(f"{settings.source}: data.train yields {len(train_ds)} training examples ({corpora}), "
                              f"fewer than train.batch_size={settings.batch_size}: add text or lower the batch size")
        set_seed(cfg.seed)  # the same initial weights on every rank and every run
        model = _build_model(settings, tok.vocab_size, data["max_seq_length"])
        masking = dict(mlm_probability=data["mlm_probability"], whole_word=data["whole_word"],
                       max_predictions=data["max_predictions"])
        collator = MLMCollator(tok, seed=cfg.seed + rank, short_length=data["warmup_seq_length"],
                               short_batches=data["warmup_seq_steps"] * cfg.grad_accum, **masking)
        loader = DataLoader(train_ds, batch_size=settings.batch_size, shuffle=True, drop_last=True,
                            collate_fn=collator, num_workers=0,  # the collator's RNG is checkpointed: no workers
                            pin_memory=device.type == "cuda")
        eval_fn = None
        if eval_ds is not None:
            batches = fixed_masked_batches(eval_ds, MLMCollator(tok, seed=data["seed"], **masking),
                                           settings.batch_size, settings.eval_batches)
            # in the precision the Trainer resolved for its device (`trainer` exists by the first call)
            eval_fn = lambda m: evaluate_pretraining(m, batches, trainer.precision.dtype)  # noqa: E731
        say(f"model: {model.config.num_hidden_layers} layers x {model.config.hidden_size}, "
            f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters; train {len(train_ds):,} "
            f"{data['mode']} examples of {data['max_seq_length']} tokens; eval {len(eval_ds or ()):,}; "
            f"global batch {settings.batch_size * cfg.grad_accum * world}")
        if data["warmup_seq_length"]:
            pieces = data["max_seq_length"] // data["warmup_seq_length"]
            say(f"sequence-length warmup: the first {data['warmup_seq_steps']:,} steps on pieces of "
                f"{data['warmup_seq_length']} tokens (each block cut in {pieces}), then whole blocks, positions "
                f"{data['warmup_seq_length']}+ copied from the first {data['warmup_seq_length']}")
        cfg = _fit_token_budget(settings, cfg, world)
        latest = ckpt.latest_checkpoint(out / "checkpoints") if cfg.resume is True else cfg.resume
        if latest:
            say(f"resuming from {latest}")
        warmup_step = SeqWarmupStep(collator, model, data["warmup_seq_length"], data["max_seq_length"]) \
            if data["warmup_seq_length"] else None
        trainer = Trainer(model, loader, cfg, eval_fn=eval_fn, train_step=warmup_step, stateful={"collator": collator})
        result = trainer.train()
        if not result["losses"] and (out / "summary.json").is_file():  # a finished run, rerun: keep its record
            say("the run was already complete")
            if rank == 0:
                tok.save(out / "final")  # the trainer rewrote final/ from the last checkpoint
            return json.loads((out / "summary.json").read_text())
        metrics = result["eval"] or (eval_fn(trainer.model) if eval_fn else {})
        if eval_fn:  # the floor to read mlm_accuracy against, on the same masked targets
            metrics = {**metrics, **unigram_baseline(token_counts(train_ds, collator.special_ids, tok.vocab_size),
                                                     batches)}
        summary = {
            "wall_time_s": round(time.perf_counter() - start, 1), "train_time_s": round(trainer.elapsed, 1),
            "steps": trainer.step, "tokens": trainer.tokens,
            "tokens_per_s": round(trainer.tokens / max(trainer.elapsed, 1e-9), 1),
            "train_examples": len(train_ds), "eval_examples": len(eval_ds or ()), "world_size": world,
            "num_parameters": sum(p.numel() for p in model.parameters()), "eval": metrics,
            "precision": trainer.precision.to_dict(), "time_budget_min": cfg.time_budget_min,
            "token_budget": settings.token_budget,
            "step_time_s": trainer.step_time and round(trainer.step_time, 4),  # time-budget calibration, or None
            "config": {**settings.raw, "vocab_size": tok.vocab_size},
        }
        if rank == 0:
            _finish(out, tok, summary)
        return summary
    finally:
        held.close()
        if created:
            dist.destroy_process_group()


def _finish(out: Path, tok: Any, summary: dict[str, Any]) -> None:
    """Tokenizer files into ``final/`` (next to the Trainer's weights), curves, summary, a short report."""
    tok.save(out / "final")
    if (out / "metrics.jsonl").is_file():
        plot_curves(out / "metrics.jsonl", out / "curves.png")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    minutes, seconds = divmod(summary["train_time_s"], 60)
    print(f"done: {summary['steps']} steps, {summary['tokens'] / 1e6:.2f}M tokens in {int(minutes)}m{seconds:04.1f}s "
          f"of training ({summary['tokens_per_s']:,.0f} tokens/s); wall time {summary['wall_time_s']:.0f}s")
    if summary["eval"]:
        print("held-out: " + ", ".join(f"{k} {v:.4g}" for k, v in summary["eval"].items()))
        print(f"held-out MLM accuracy {summary['eval']['mlm_accuracy']:.2%}; always predicting the most frequent "
              f"training token scores {summary['eval']['unigram_accuracy']:.2%} (the unigram baseline)")
    print(f"saved: {out / 'final'} (BertForPreTraining + tokenizer), {out / 'curves.png'}, {out / 'summary.json'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bertmini pretrain",
                                     description="Pre-train BERT (MLM + NSP) from a YAML config.")
    parser.add_argument("--config", required=True, help="a YAML file, e.g. configs/pretrain_cpu.yaml")
    parser.add_argument("--data-dir", help="folder of the local data sets (default: BERTMINI_DATA_DIR, ./data)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides with dotted keys, e.g. train.max_steps=100 model.preset=small")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = load_settings(args.config, args.overrides)
        run(settings, local_data_dir(args.data_dir))
    except INPUT_ERRORS as err:  # bad config, data, paths: one line; a bug keeps its traceback
        return report(err)
    return 0
