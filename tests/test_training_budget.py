"""TrainConfig.time_budget_min (bertmini.training.budget): calibration picks max_steps, the run equals one given that
max_steps directly, a resumed run keeps it (exact resume, no recalibration), and impossible budgets fail."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from bertmini.training import budget
from bertmini.training.budget import TIMED_STEPS, WARMUP_STEPS, measure_step_time, steps_for_budget, steps_for_tokens
from bertmini.training.trainer import Trainer

from test_training_trainer import Crash, Toy, config, make_data

pytestmark = pytest.mark.slow  # calibrated training runs: not in the quick subset (pytest -m 'not slow')

CALIBRATION_STEPS = WARMUP_STEPS + 2 * TIMED_STEPS  # each timed step runs once untimed first


def fake_clock(monkeypatch, step_time: float) -> None:
    """Each timed step takes ``step_time`` s, except one that another process slowed 10x (the median
    ignores it)."""
    steps = [step_time] * TIMED_STEPS
    steps[1] *= 10
    ticks = iter([t for i, d in enumerate(steps) for t in (1000.0 * (i + 1), 1000.0 * (i + 1) + d)])
    monkeypatch.setattr(budget, "clock", lambda: next(ticks))


def no_clock(monkeypatch) -> None:
    monkeypatch.setattr(budget, "clock", lambda: pytest.fail("calibrated again on resume"))


def budgeted(path, **overrides):
    """A cap of 20 steps and 0.1 min = 6 s: at 0.5 s/step, floor(0.9 * 6 / 0.5) = 10 steps fit."""
    return config(path, **{"max_steps": 20, "time_budget_min": 0.1, "warmup_steps": 0, "warmup_ratio": 0.2,
                           "grad_accum": 2, **overrides})


def records(path) -> list[dict]:
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


def test_steps_for_budget():
    assert steps_for_budget(24, 0.78, 5000) == 1661  # floor(0.9 * 1440 / 0.78)
    assert steps_for_budget(24, 0.2, 5000) == 5000  # the cap
    assert steps_for_budget(0.1, 5.9, 100) == 1  # one step fits the budget, if not its margin
    with pytest.raises(ValueError, match=r"time_budget_min=0.1 \(6 s\) is too small for even one optimizer step: "
                                         r"a step takes 10 s here"):
        steps_for_budget(0.1, 10.0, 100)
    with pytest.raises(ValueError, match=r"a step takes 10 s here; give more minutes or a cheaper step"):
        steps_for_budget(0.1, 10.0, 100)


def test_steps_for_tokens():
    assert steps_for_tokens(1_000_000, 32 * 128) == 244  # floor(1e6 / 4096): whole steps only
    assert steps_for_tokens(1_000_000, 32 * 128, cap=100) == 100
    assert steps_for_tokens(4096, 4096) == 1
    with pytest.raises(ValueError, match=r"token_budget=4,095 is too small for even one optimizer step: a step reads "
                                         r"4,096 tokens; give more tokens or a smaller batch or sequence length"):
        steps_for_tokens(4095, 4096)
    with pytest.raises(ValueError, match=r"tokens_per_step: expected an integer >= 1, got 0"):
        steps_for_tokens(100, 0)


def test_calibration_fits_max_steps_and_the_schedule_into_the_budget(tmp_path, monkeypatch, capsys):
    fake_clock(monkeypatch, 0.5)
    loader, collator = make_data()
    trainer = Trainer(Toy(), loader, budgeted(tmp_path, progress=True), stateful=collator)
    assert trainer.max_steps == 20  # the cap, until train() calibrates
    summary = trainer.train()
    assert (trainer.max_steps, summary["step"], len(summary["losses"]), trainer.step_time) == (10, 10, 10, 0.5)
    assert "time budget 0.1 min: 10 steps at 0.50 s/step (cap 20)" in capsys.readouterr().out
    logged = records(tmp_path)
    assert [r["step"] for r in logged] == list(range(1, 11))  # calibration logged nothing
    lrs = [r["lr"] for r in logged]  # warmup_ratio applies to the chosen 10 steps: 2 warmup steps, decay to 0
    assert lrs[:3] == pytest.approx([0.0, 5e-3, 1e-2]) and lrs[-1] == pytest.approx(1e-2 * 1 / 8)


def test_fast_steps_stop_at_the_cap(tmp_path, monkeypatch):
    fake_clock(monkeypatch, 0.01)  # 540 steps would fit
    loader, collator = make_data()
    assert Trainer(Toy(), loader, budgeted(None, out_dir=None), stateful=collator).train()["step"] == 20


@pytest.mark.parametrize("restore_rng", [True, False])
def test_budgeted_run_equals_a_run_given_its_max_steps(tmp_path, monkeypatch, restore_rng):
    if not restore_rng:  # the test's own control: calibration draws random numbers that must be given back
        monkeypatch.setattr(budget.ckpt, "set_rng_state", lambda state: None)
    loader, collator = make_data()
    direct = Trainer(Toy(), loader, budgeted(tmp_path / "direct", max_steps=10, time_budget_min=None),
                     stateful=collator)
    reference = direct.train()["losses"]
    fake_clock(monkeypatch, 0.5)
    loader, collator = make_data()
    run = Trainer(Toy(), loader, budgeted(tmp_path / "budget"), stateful=collator)
    losses = run.train()["losses"]
    assert len(losses) == len(reference) == 10
    same_params = all(torch.equal(p, q) for p, q in zip(run.model.parameters(), direct.model.parameters()))
    assert (losses == reference and same_params) == restore_rng
    if restore_rng:
        strip = lambda rs: [{k: v for k, v in r.items() if k not in ("elapsed", "tokens_per_s")} for r in rs]  # noqa
        assert strip(records(tmp_path / "budget")) == strip(records(tmp_path / "direct"))


def test_resume_keeps_the_calibrated_max_steps_bit_for_bit(tmp_path, monkeypatch):
    fake_clock(monkeypatch, 0.5)
    loader, collator = make_data()
    full = Trainer(Toy(), loader, budgeted(tmp_path / "a"), stateful=collator)
    reference = full.train()["losses"]
    fake_clock(monkeypatch, 0.5)
    loader, collator = make_data()
    crash = Crash(at=CALIBRATION_STEPS * 2 + 15)  # the step hook also runs the calibration's micro-batches
    with pytest.raises(RuntimeError, match="preempted"):  # dies in step 8: the last checkpoint is step 6
        Trainer(Toy(), loader, budgeted(tmp_path / "b", save_every=3, keep_last=None), train_step=crash,
                stateful=collator).train()
    no_clock(monkeypatch)
    for resume, first in ((True, 6), (str(tmp_path / "b" / "checkpoints" / "step-0000003"), 3)):
        loader, collator = make_data(seed=999)  # collator and model state come from the checkpoint
        resumed = Trainer(Toy(seed=7), loader, budgeted(tmp_path / "b", resume=resume, keep_last=None),
                          stateful=collator)
        assert resumed.train()["losses"] == reference[first:]
        assert (resumed.max_steps, resumed.step_time) == (10, 0.5)
        for p, q in zip(resumed.model.parameters(), full.model.parameters()):
            torch.testing.assert_close(p, q, atol=0, rtol=0)
    assert [r["loss"] for r in records(tmp_path / "b")] == reference
    assert [r["lr"] for r in records(tmp_path / "b")] == [r["lr"] for r in records(tmp_path / "a")]


def test_a_budget_too_small_for_one_step_is_an_error(tmp_path, monkeypatch):
    fake_clock(monkeypatch, 10.0)
    loader, collator = make_data()
    trainer = Trainer(Toy(), loader, budgeted(tmp_path), stateful=collator)
    with pytest.raises(ValueError, match=r"time_budget_min=0.1 \(6 s\) is too small for even one optimizer step: "
                                         r"a step takes 10 s here"):
        trainer.train()
    assert not (tmp_path / "metrics.jsonl").exists() and not (tmp_path / "checkpoints").exists()


def test_measuring_leaves_the_trainer_as_it_was(tmp_path):
    loader, collator = make_data(n=8)  # 2 batches: the calibration's 16 micro-batches cycle the loader
    trainer = Trainer(Toy(), loader, budgeted(tmp_path), stateful=collator)
    model, optimizer, weights = trainer.model, trainer.optimizer, copy.deepcopy(trainer.model.state_dict())
    rng, masks = torch.get_rng_state(), collator.state_dict()["gen"]
    assert measure_step_time(trainer) > 0  # the real clock
    assert trainer.model is model and trainer.optimizer is optimizer and not optimizer.state
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng) and torch.equal(collator.state_dict()["gen"], masks)
    assert trainer.tokens == 0 and trainer.step == 0 and not any(tmp_path.iterdir())  # no logs, no checkpoints


def test_each_timed_step_reruns_batches_that_just_ran_untimed(tmp_path, monkeypatch):
    """CPU kernels are built per tensor shape: a timed step must not be the first sight of its batches' shapes."""
    loader, collator = make_data(n=40)  # 10 batches: every group of 2 micro-batches is new until the loader cycles
    trainer = Trainer(Toy(), loader, budgeted(tmp_path), stateful=collator)
    seen, timed = [], []  # input batches of each optimizer step; indices of the steps the clock timed
    step = trainer._optimizer_step

    def recording(batches):
        group = [next(batches) for _ in range(trainer.cfg.grad_accum)]
        seen.append([b["input_ids"].clone() for b in group])
        return step(iter(group))

    ticks = iter(range(1000))
    monkeypatch.setattr(trainer, "_optimizer_step", recording)
    monkeypatch.setattr(budget, "clock", lambda: timed.append(len(seen)) or float(next(ticks)))
    measure_step_time(trainer)
    starts = timed[::2]  # clock() before and after each timed step
    assert len(starts) == TIMED_STEPS and len(seen) == WARMUP_STEPS + 2 * TIMED_STEPS
    for k in starts:  # seen[k] is the timed step; seen[k - 1] ran just before it, untimed
        assert all(torch.equal(a, b) for a, b in zip(seen[k], seen[k - 1]))
        assert not all(torch.equal(a, b) for a, b in zip(seen[k], seen[k - 2]))
