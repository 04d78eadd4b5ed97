"""A time budget for training: time a few steps, then choose ``max_steps`` to fit the budget.

With ``TrainConfig.time_budget_min`` set, ``max_steps`` is only a cap: on a fresh start the Trainer
measures its step time, and the run gets the steps that fit. One config then keeps its promise on
any machine: a CPU with native bf16 reaches the cap, one without (fp32, about half the speed) runs
fewer steps in the same minutes.

Calibration runs ``WARMUP_STEPS`` untimed steps (allocation, oneDNN kernel selection, compilation
under ``compile``), then ``TIMED_STEPS`` timed ones (their median counts), each on batches that have just run
once untimed, so that kernels built for a new tensor shape are not timed (a long run has seen its shapes);
all through the real step code, on a deep copy of the model with a fresh optimizer. Every RNG and every
``stateful`` object (the masking collator) is restored afterwards, so the run is bit-identical to one
given the chosen ``max_steps`` directly. Then::

    max_steps = min(cap, floor(MARGIN * budget_s / step_time))     # MARGIN = 0.9

The 10% left over pays for the evaluations, the checkpoints and the calibration itself.
A budget too small for one step is an error, not a silent one-step run. The chosen
``max_steps`` is checkpointed: a resumed run keeps it and never recalibrates (exact resume); one resumed
from a checkpoint written without a budget keeps the cap. The step time is what the machine gives at
calibration: a machine that gets busier later overruns the budget by that much.

A token budget is the machine-independent alternative (:func:`steps_for_tokens`): runs compared at
equal tokens have seen equal data, whatever the speed of the machine or of the variant.
"""
from __future__ import annotations

import copy
import math
import statistics
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import torch
import torch.distributed as dist

from bertmini.training import state as ckpt

if TYPE_CHECKING:
    from bertmini.training.trainer import Trainer

__all__ = ["WARMUP_STEPS", "TIMED_STEPS", "MARGIN", "steps_for_budget", "steps_for_tokens", "measure_step_time"]

WARMUP_STEPS, TIMED_STEPS, MARGIN = 4, 9, 0.9
clock = time.perf_counter  # module-level so that tests can fake the clock


def steps_for_budget(budget_min: float, step_time: float, cap: int) -> int:
    """Optimizer steps that fit ``budget_min`` minutes at ``step_time`` seconds each, at most ``cap``."""
    budget_s = budget_min * 60
    if step_time > budget_s:
        raise ValueError(f"time_budget_min={budget_min:g} ({budget_s:.3g} s) is too small for even one optimizer "
                         f"step: a step takes {step_time:.3g} s here; give more minutes or a cheaper step "
                         "(smaller batch, sequence or model)")
    return max(1, min(cap, math.floor(MARGIN * budget_s / step_time)))


def steps_for_tokens(token_budget: int, tokens_per_step: int, cap: int | None = None) -> int:
    """Optimizer steps whose ``tokens_per_step`` fit in ``token_budget`` (whole steps), at most ``cap``."""
    if tokens_per_step < 1:
        raise ValueError(f"tokens_per_step: expected an integer >= 1, got {tokens_per_step!r}")
    if tokens_per_step > token_budget:
        raise ValueError(f"token_budget={token_budget:,} is too small for even one optimizer step: a step reads "
                         f"{tokens_per_step:,} tokens; give more tokens or a smaller batch or sequence length")
    steps = token_budget // tokens_per_step
    return steps if cap is None else min(cap, steps)


def _cycle(loader: Iterable) -> Iterator[Any]:
    """Batches of ``loader``, restarting it when exhausted (a short loader still gives enough steps)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("train_loader is empty")


@contextmanager
def _scratch_copy(trainer: Trainer) -> Iterator[None]:
    """Point ``trainer`` at a deep copy of its model with a fresh optimizer, schedule and scaler; then
    put everything back: the attributes, the token count, every RNG and the stateful objects."""
    names = ("model", "ddp", "engine", "optimizer", "scheduler", "scaler", "tokens")
    saved = {name: getattr(trainer, name) for name in names}
    rng = ckpt.rng_state()
    states = {name: copy.deepcopy(obj.state_dict()) for name, obj in trainer.stateful.items()}
    try:
        # A fresh optimizer, not a deep copy: the LR scheduler patches optimizer.step with a reference
        # to the original optimizer, which a copy would keep stepping.
        trainer.model = copy.deepcopy(trainer.model).train()
        trainer.optimizer = trainer._new_optimizer(trainer.model)
        trainer.scheduler = torch.optim.lr_scheduler.LambdaLR(trainer.optimizer, lambda step: 1.0)
        trainer.scaler = torch.amp.GradScaler(trainer.device.type, enabled=saved["scaler"].is_enabled())
        trainer.ddp, trainer.engine = trainer._wrap(trainer.model)
        yield
    finally:
        for name, value in saved.items():
            setattr(trainer, name, value)
        ckpt.set_rng_state(rng)
        for name, obj in trainer.stateful.items():
            obj.load_state_dict(states[name])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_step_time(trainer: Trainer) -> float:
    """Seconds per optimizer step of ``trainer`` (the slowest rank's under DDP, so that all ranks choose
    the same ``max_steps``), measured on a copy; ``trainer`` itself is left exactly as it was."""
    with _scratch_copy(trainer):
        batches = _cycle(trainer.loader)
        for _ in range(WARMUP_STEPS):
            trainer._optimizer_step(batches)
        times = []
        for _ in range(TIMED_STEPS):
            # Each timed step's batches run once untimed first: CPU kernels (oneDNN) are built per tensor shape
            # and cached, MLM batches change shape every step (the number of masked tokens varies), and a long
            # run pays for a shape once; timing first sights made a run fill 60% of its budget.
            group = [next(batches) for _ in range(trainer.cfg.grad_accum)]
            trainer._optimizer_step(iter(group))
            _sync(trainer.device)
            start = clock()
            trainer._optimizer_step(iter(group))
            _sync(trainer.device)
            times.append(clock() - start)
        step_time = statistics.median(times)  # one step slowed by another process does not set the budget
    if trainer.world > 1:
        slowest = torch.tensor([step_time], dtype=torch.float64, device=trainer.device)
        dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
        step_time = float(slowest)
    return step_time
