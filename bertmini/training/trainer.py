"""One trainer for pretraining (Part II) and fine-tuning (Part III).

    from bertmini.training.train_config import TrainConfig
    from bertmini.training.trainer import Trainer
    from bertmini.training.curves import plot_curves
    cfg = TrainConfig(lr=1e-4, max_steps=1_000, warmup_steps=100, out_dir="runs/mlm")
    summary = Trainer(model, loader, cfg, eval_fn=dev_metrics, stateful={"collator": collator}).train()
    plot_curves("runs/mlm/metrics.jsonl", "runs/mlm/curves.png")

One optimizer step = ``grad_accum`` micro-batches, each run by a step hook (:mod:`bertmini.finetuning.losses`,
default ``model(**batch).loss``) under autocast, then gradient clipping, AdamW and the LR schedule
(Devlin et al. 2019, §A.2). Every ``log_every`` steps a line goes to ``out_dir/metrics.jsonl``; every
``eval_every`` steps ``eval_fn(model) -> dict`` runs (early stopping keeps the best model in ``best/``);
every ``save_every`` steps and at the end a full training state is saved (:mod:`bertmini.training.state`).
``precision`` is resolved once for the device (:mod:`bertmini.precision`; ``trainer.precision``), and
``time_budget_min`` turns ``max_steps`` into a cap on what fits the budget (:mod:`bertmini.training.budget`).

Exact resume: the data order of epoch e is a function of ``seed + e`` alone, so a resumed run rebuilds
the epoch, skips the batches already consumed, then restores the RNG and ``stateful`` objects (anything
with ``state_dict``/``load_state_dict``, e.g. a masking collator's generator) to their saved values.
With ``num_workers=0`` the losses then match an uninterrupted run bit for bit.

Under ``torchrun`` (RANK/WORLD_SIZE/LOCAL_RANK set) the model is wrapped in DistributedDataParallel,
the loader gets a DistributedSampler, and only rank 0 logs and writes files; ``eval_fn`` runs on
every rank so that all ranks take the same early-stopping decision.
"""
from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, RandomSampler
from tqdm import tqdm

from bertmini.errors import InputKeyError
from bertmini.precision import autocast, resolve_precision
from bertmini.training import state as ckpt
from bertmini.training.budget import measure_step_time, steps_for_budget
from bertmini.training.curves import plot_curves
from bertmini.training.distributed import gather_from_ranks, init_distributed, shard_loader
from bertmini.training.optim import build_optimizer, build_scheduler, freeze
from bertmini.training.steps import StepFn, model_loss
from bertmini.training.train_config import TrainConfig
from bertmini.utils import set_seed

__all__ = ["TrainConfig", "Trainer", "plot_curves"]


def _seed_epoch(loader: Iterable, seed: int, epoch: int) -> None:
    """Make epoch ``epoch``'s order depend on ``seed + epoch`` only, never on the global RNG."""
    if hasattr(getattr(loader, "sampler", None), "set_epoch"):
        loader.sampler.set_epoch(epoch)
    if isinstance(loader, DataLoader):
        loader.generator = torch.Generator().manual_seed(seed + epoch)  # worker seeds
        if isinstance(loader.sampler, RandomSampler):
            loader.sampler.generator = torch.Generator().manual_seed(seed + epoch)


def _to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _count_tokens(batch: Mapping[str, Any]) -> int:
    """Real (non-padding) tokens, counted on the CPU copy so the GPU is not synchronized."""
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum())
    return int(batch["input_ids"].numel()) if "input_ids" in batch else 0


class Trainer:
    """``Trainer(model, train_loader, config, eval_fn=None, train_step=None, stateful=None).train()``.

    ``config``: a :class:`TrainConfig` or a dict (keys validated). ``train_loader``: a DataLoader (or any
    sized iterable of dict batches). ``eval_fn(model) -> dict[str, float]``. ``train_step``: a step hook
    (:mod:`bertmini.finetuning.losses`). ``stateful``: an object or ``{name: object}`` with state_dict/load_state_dict
    whose state is checkpointed per rank (masking collators).
    """

    def __init__(self, model: nn.Module, train_loader: Iterable, config: TrainConfig | Mapping[str, Any],
                 eval_fn: Callable[[nn.Module], Mapping[str, float]] | None = None,
                 train_step: StepFn | None = None, stateful: Any = None) -> None:
        cfg = self.cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
        self.rank, self.world, self.device, self._owns_group = init_distributed(cfg.device)
        self.precision = resolve_precision(cfg.precision, self.device)
        if cfg.progress and self.rank == 0:
            print(f"precision: {self.precision}", flush=True)
        set_seed(cfg.seed + self.rank)  # distinct dropout masks per rank
        self.model = model.to(self.device)
        freeze(self.model, cfg.freeze_embeddings, cfg.freeze_layers)
        self.loader = shard_loader(train_loader, self.rank, self.world, cfg.seed)
        if len(self.loader) == 0:
            raise ValueError("train_loader is empty")
        self.optimizer = self._new_optimizer(self.model)
        self._peak_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self._build_schedule(cfg.max_steps or math.ceil(cfg.epochs * len(self.loader) / cfg.grad_accum))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.precision == "fp16")
        self.ddp, self.engine = self._wrap(self.model)
        self.train_step = train_step or model_loss
        self.eval_fn = eval_fn
        self.stateful = stateful if isinstance(stateful, Mapping) else {"stateful": stateful} if stateful else {}
        self.out = Path(cfg.out_dir) if cfg.out_dir else None
        self.step = self.epoch = self.batch_in_epoch = self.tokens = 0
        self.elapsed, self.best, self.best_step, self.bad_evals = 0.0, None, None, 0
        self.step_time: float | None = None  # seconds per step, measured for the time budget
        self.last_eval: dict[str, float] = {}
        self.saved_step, self.saved_path = None, None  # the newest training checkpoint (rank 0 has the path)

    # -- construction pieces (the time-budget calibration builds them again for a copy) -----------
    def _new_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        cfg = self.cfg
        return build_optimizer(model, cfg.lr, cfg.weight_decay, cfg.betas, cfg.eps, cfg.layerwise_lr_decay)

    def _wrap(self, model: nn.Module) -> tuple[DDP | None, nn.Module]:
        """``(ddp, engine)``: DDP under torchrun, then torch.compile when asked."""
        ddp = DDP(model, device_ids=[self.device.index] if self.device.type == "cuda" else None) \
            if self.world > 1 else None
        engine = ddp or model
        return ddp, torch.compile(engine) if self.cfg.compile else engine

    def _build_schedule(self, max_steps: int) -> None:
        """(Re)build the LR schedule for ``max_steps``, from the peak rates as if built the first time."""
        for group, peak in zip(self.optimizer.param_groups, self._peak_lrs):
            group["lr"] = peak
            group.pop("initial_lr", None)
        self.max_steps = max_steps
        warmup = self.cfg.warmup_steps or round(self.cfg.warmup_ratio * max_steps)
        self.scheduler = build_scheduler(self.optimizer, self.cfg.schedule, warmup, max_steps)

    def _calibrate(self) -> None:
        """Fit ``max_steps`` (a cap, then) and the schedule into ``time_budget_min`` (:mod:`bertmini.training.budget`)."""
        cap, budget = self.max_steps, self.cfg.time_budget_min
        self.step_time = measure_step_time(self)
        self._build_schedule(steps_for_budget(budget, self.step_time, cap))
        if self.cfg.progress and self.rank == 0:
            print(f"time budget {budget:g} min: {self.max_steps:,} steps at {self.step_time:.2f} s/step "
                  f"(cap {cap:,})", flush=True)

    # -- data -------------------------------------------------------------------------------------
    def _batches(self, restore: dict | None) -> Iterator[Mapping[str, Any]]:
        """Endless batches; on resume skip the consumed ones *then* restore RNG + stateful objects."""
        skip = self.batch_in_epoch
        while True:
            _seed_epoch(self.loader, self.cfg.seed, self.epoch)
            it = iter(self.loader)
            for _ in range(skip):
                next(it, None)
            if restore is not None:
                ckpt.set_rng_state(restore["rng"])
                for name, obj in self.stateful.items():
                    obj.load_state_dict(restore["stateful"][name])
                restore = None
            self.batch_in_epoch = skip
            for batch in it:
                self.batch_in_epoch += 1
                yield batch
            self.epoch, skip = self.epoch + 1, 0

    # -- one optimizer step -----------------------------------------------------------------------
    def _backward(self, loss: torch.Tensor) -> None:
        with torch.autocast(self.device.type, enabled=False):  # backward follows the forward's dtypes
            self.scaler.scale(loss / self.cfg.grad_accum).backward()

    def _autocast(self):
        return autocast(self.device, self.precision)

    def _optimizer_step(self, batches: Iterator) -> dict[str, float]:
        totals: dict[str, torch.Tensor] = {}
        for micro in range(self.cfg.grad_accum):
            batch = next(batches)
            self.tokens += _count_tokens(batch) * self.world
            last = micro == self.cfg.grad_accum - 1
            with (self.ddp.no_sync() if self.ddp and not last else nullcontext()), self._autocast():
                logs = self.train_step(self.engine, _to_device(batch, self.device), self._backward)
            if "loss" not in logs:
                raise ValueError(f"the step hook must return a dict with 'loss', got keys {sorted(logs)}")
            for key, value in logs.items():
                value = torch.as_tensor(value, device=self.device).detach().float() / self.cfg.grad_accum
                totals[key] = totals.get(key, 0.0) + value
        if self.world > 1:  # the mean over ranks: every rank sees a NaN and stops together
            stacked = torch.stack([totals[k] for k in sorted(totals)])
            dist.all_reduce(stacked)
            totals = dict(zip(sorted(totals), (stacked / self.world).unbind()))
        values = {k: float(v) for k, v in totals.items()}
        lr = max(group["lr"] for group in self.optimizer.param_groups)
        if not math.isfinite(values["loss"]):
            last = ckpt.latest_checkpoint(self.out / "checkpoints") if self.out else None
            raise FloatingPointError(f"step {self.step + 1}: loss is {values['loss']} (lr {lr:.3g}); stopping "
                                     f"before the update. Last good checkpoint: {last or 'none saved'}")
        self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the fp16-scaled ones
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        if self.cfg.grad_clip:
            values["grad_norm"] = float(nn.utils.clip_grad_norm_(params, self.cfg.grad_clip))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return {**values, "lr": lr}

    # -- evaluation, checkpoints, logs ------------------------------------------------------------
    def _evaluate(self) -> bool:
        """Run eval_fn, keep the best model; True when early stopping says stop."""
        self.model.eval()
        with torch.no_grad():
            results = {k: float(v) for k, v in self.eval_fn(self.model).items()}
        self.model.train()
        self.last_eval = results
        self._log({"step": self.step, **{k if k.startswith("eval_") else f"eval_{k}": v for k, v in results.items()}})
        name, cfg = self.cfg.early_stopping_metric, self.cfg
        if name not in results:
            if cfg.early_stopping_patience is None:
                return False  # eval_fn only for logs: no best/ model without its metric
            raise InputKeyError(f"early_stopping_metric={name!r} is not among eval_fn's results {sorted(results)}")
        value = results[name]
        if self.best is None or (value < self.best if cfg.early_stopping_mode == "min" else value > self.best):
            self.best, self.best_step, self.bad_evals = value, self.step, 0
            if self.out and self.rank == 0:
                ckpt.save_model(self.model, self.out / "best")
                (self.out / "best" / "eval_results.json").write_text(json.dumps({"step": self.step, **results}))
            return False
        self.bad_evals += 1
        return cfg.early_stopping_patience is not None and self.bad_evals >= cfg.early_stopping_patience

    def _save(self) -> None:
        mine = {"rng": ckpt.rng_state(), "stateful": {k: o.state_dict() for k, o in self.stateful.items()}}
        ranks = gather_from_ranks(mine)  # collective: every rank takes part
        if self.rank == 0:
            counters = {k: getattr(self, k) for k in ("step", "epoch", "batch_in_epoch", "tokens", "elapsed",
                                                       "best", "best_step", "bad_evals", "max_steps", "step_time")}
            state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                     "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                     "ranks": ranks, "trainer": counters, "config": self.cfg.to_dict()}
            root = self.out / "checkpoints"
            self.saved_path = ckpt.save_checkpoint(root / f"step-{self.step:07d}", state)
            ckpt.rotate_checkpoints(root, self.cfg.keep_last)
        self.saved_step = self.step
        if self.world > 1:
            dist.barrier()  # no rank moves on (or exits) before the checkpoint is on disk

    def _resume(self) -> dict | None:
        """Load the checkpoint named by ``config.resume``; return this rank's RNG/stateful part for later."""
        if not self.cfg.resume:
            return None
        path = ckpt.latest_checkpoint(self.out / "checkpoints") if self.cfg.resume is True else Path(self.cfg.resume)
        if path is None:
            return None  # resume=True with nothing saved yet: a fresh start (preemptible jobs rerun one command)
        state = ckpt.load_checkpoint(path)
        counters = dict(state["trainer"])
        max_steps = counters.pop("max_steps", None)
        if self.cfg.time_budget_min and counters.get("step_time") and max_steps != self.max_steps:
            self._build_schedule(max_steps)  # the calibrated length, kept (before the optimizer's lrs load)
        ckpt.restore_weights(self.model, self.optimizer, state, path)  # or one line on why they do not fit
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        for key, value in counters.items():
            setattr(self, key, value)
        self.saved_step, self.saved_path = self.step, path
        if len(state["ranks"]) != self.world:
            raise ValueError(f"{path}: written by {len(state['ranks'])} process(es), resumed with {self.world}: "
                             "the data shards and RNG streams would differ")
        if self.out and self.rank == 0:  # forget what was logged after the checkpoint (it will be redone)
            metrics = self.out / "metrics.jsonl"
            if metrics.exists():
                kept = [l for l in metrics.read_text().splitlines() if json.loads(l)["step"] <= self.step]
                metrics.write_text("".join(l + "\n" for l in kept))
        return state["ranks"][self.rank]

    def _log(self, record: dict[str, Any]) -> None:
        if self.out and self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            with open(self.out / "metrics.jsonl", "a") as handle:
                handle.write(json.dumps(record) + "\n")

    # -- the loop ---------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        """Train to ``max_steps`` (or early stop); returns a summary (final loss, per-step losses, best...)."""
        cfg = self.cfg
        restore = self._resume()
        if cfg.time_budget_min and restore is None:  # a fresh start; a resumed run keeps its max_steps
            self._calibrate()
        batches = self._batches(restore)
        self.model.train()
        bar = tqdm(total=self.max_steps, initial=self.step, disable=None if cfg.progress and self.rank == 0 else True,
                   dynamic_ncols=True)
        losses, window, stopped = [], [], False
        start, elapsed0, tokens0 = time.perf_counter(), self.elapsed, self.tokens
        tick, tick_tokens = start, self.tokens
        try:
            while self.step < self.max_steps and not stopped:
                values = self._optimizer_step(batches)
                self.step += 1
                self.elapsed = elapsed0 + time.perf_counter() - start
                losses.append(values["loss"])
                window.append(values)
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == self.max_steps:
                    now = time.perf_counter()
                    keys = {k for v in window for k in v} - {"lr"}  # a hook may log a key only on some steps
                    record = {k: sum(v[k] for v in window if k in v) / sum(k in v for v in window) for k in keys}
                    record.update(step=self.step, epoch=self.epoch, lr=values["lr"], elapsed=round(self.elapsed, 3),
                                  tokens_per_s=round((self.tokens - tick_tokens) / max(now - tick, 1e-9), 1))
                    self._log(record)
                    bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{values['lr']:.2e}",
                                    tok_s=f"{record['tokens_per_s']:.0f}")
                    if bar.disable and cfg.progress and self.rank == 0:
                        print(f"step {self.step}/{self.max_steps} | loss {record['loss']:.4f} | "
                              f"lr {values['lr']:.2e} | {record['tokens_per_s']:.0f} tok/s", flush=True)
                    window, tick, tick_tokens = [], now, self.tokens
                due = cfg.eval_every and self.step % cfg.eval_every == 0
                if self.eval_fn and (due or self.step == self.max_steps):
                    stopped = self._evaluate()
                if self.out and cfg.save_every and self.step % cfg.save_every == 0:
                    self._save()
            if self.out:
                if self.saved_step != self.step:
                    self._save()
                if self.rank == 0:
                    ckpt.save_model(self.model, self.out / "final")
        finally:
            bar.close()
            if self._owns_group:
                dist.destroy_process_group()
        return {"step": self.step, "epoch": self.epoch, "loss": losses[-1] if losses else None, "losses": losses,
                "eval": self.last_eval, "best_metric": self.best, "best_step": self.best_step, "stopped_early": stopped,
                "tokens": self.tokens - tokens0, "elapsed": self.elapsed,
                "checkpoint": str(self.saved_path) if self.saved_path else None}
