"""``TrainConfig``: every knob of :class:`bertmini.training.Trainer`, validated when built.

Defaults follow BERT pretraining (Devlin et al. 2019, §A.2): Adam with lr 1e-4, β = (0.9, 0.999),
L2 weight decay 0.01, linear warmup then linear decay, gradient clipping at norm 1.0. Fine-tuning
(§A.3) typically sets lr 2e-5..5e-5, ``epochs`` 2..4 and ``warmup_ratio`` 0.1.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from bertmini.errors import integer, number, require
from bertmini.precision import check_precision
from bertmini.training.yaml_config import check_keys

__all__ = ["TrainConfig"]

_CHOICES = {"schedule": ("linear", "onecycle", "constant"), "early_stopping_mode": ("min", "max")}
# The numeric fields' valid values; the messages quote them ("expected a number > 0").
_BOUNDS = {
    "lr": number(0, low_open=True), "weight_decay": number(0), "eps": number(0, low_open=True),
    "max_steps": integer(1, optional=True), "epochs": number(0, low_open=True, optional=True),
    "warmup_steps": integer(0),
    "warmup_ratio": number(0, 1, high_open=True), "grad_clip": number(0, optional=True), "grad_accum": integer(1),
    "layerwise_lr_decay": number(0, 1, low_open=True, optional=True), "freeze_layers": integer(0),
    "seed": integer(), "log_every": integer(1), "eval_every": integer(0), "save_every": integer(0),
    "keep_last": integer(1, optional=True), "early_stopping_patience": integer(1, optional=True),
}
_BETA = number(0, 1, high_open=True)
_FLAGS = ("freeze_embeddings", "compile", "progress")
_TEXTS = ("device", "early_stopping_metric")  # schedule, precision...: checked against their choices


@dataclass
class TrainConfig:
    # optimization
    lr: float = 1e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-6
    max_steps: int | None = None  # optimizer steps; give this or `epochs`
    time_budget_min: float | None = None  # minutes of training: calibrates max_steps (then only a cap), see budget.py
    epochs: float | None = None  # -> max_steps = ceil(epochs * len(loader) / grad_accum)
    warmup_steps: int = 0  # or warmup_ratio (a fraction of max_steps), not both
    warmup_ratio: float = 0.0
    schedule: str = "linear"  # linear | onecycle | constant
    grad_clip: float | None = 1.0  # max global gradient norm; None or 0 disables
    grad_accum: int = 1  # micro-batches per optimizer step
    layerwise_lr_decay: float | None = None  # e.g. 0.9: layer i of L gets lr * 0.9 ** (L - i)
    freeze_embeddings: bool = False
    freeze_layers: int = 0  # freeze encoder layers 0 .. k-1
    # hardware
    precision: str = "auto"  # auto (bf16 where native, fp16 on older GPUs, else fp32) | fp32 | bf16 | fp16 (CUDA)
    compile: bool = False  # torch.compile the model
    device: str = "auto"  # auto (cuda > mps > cpu) or a torch device string
    seed: int = 0
    # monitoring and checkpoints
    out_dir: str | None = None  # None: write nothing (no metrics, no checkpoints)
    log_every: int = 10
    eval_every: int = 0  # 0: evaluate only at the end
    save_every: int = 0  # 0: save only at the end
    keep_last: int | None = 2  # training checkpoints kept; None keeps all
    resume: bool | str = False  # True: latest checkpoint in out_dir (fresh start if none); or a checkpoint path
    progress: bool = True  # tqdm bar on a TTY, else one printed line per log; False: silent
    early_stopping_patience: int | None = None  # evaluations without improvement before stopping
    early_stopping_metric: str = "loss"  # a key of eval_fn's dict; it also picks the best/ model (if present)
    early_stopping_mode: str = "min"  # min | max

    def __post_init__(self) -> None:
        if isinstance(self.betas, list):
            self.betas = tuple(self.betas)  # JSON/YAML give lists
        self._check_types()
        for key, choices in _CHOICES.items():
            if getattr(self, key) not in choices:
                raise ValueError(f"TrainConfig.{key}: expected one of {choices}, got {getattr(self, key)!r}")
        check_precision(self.precision, "TrainConfig.precision")
        if (self.max_steps is None) == (self.epochs is None):
            raise ValueError(f"TrainConfig: give exactly one of max_steps / epochs "
                             f"(got max_steps={self.max_steps}, epochs={self.epochs})")
        if self.time_budget_min is not None and not self.time_budget_min > 0:
            raise ValueError(f"TrainConfig.time_budget_min: expected minutes > 0, got {self.time_budget_min!r}")
        if self.warmup_steps and self.warmup_ratio:
            raise ValueError("TrainConfig: set warmup_steps or warmup_ratio, not both")
        if self.resume is True and not self.out_dir:
            raise ValueError("TrainConfig.resume=True needs out_dir (where the checkpoints are)")

    def _check_types(self) -> None:
        """Every field's type and range, first: the checks after it compare values. Messages give the
        valid values: ``TrainConfig.lr: expected a number > 0, got 'abc'``."""
        for key, bounds in _BOUNDS.items():
            bounds.check(getattr(self, key), f"TrainConfig.{key}")
        for key in _FLAGS:
            require(isinstance(getattr(self, key), bool), f"TrainConfig.{key}", "true or false", getattr(self, key))
        for key in _TEXTS:
            require(isinstance(getattr(self, key), str), f"TrainConfig.{key}", "a string", getattr(self, key))
        require(self.out_dir is None or isinstance(self.out_dir, (str, os.PathLike)), "TrainConfig.out_dir",
                "null or a folder path", self.out_dir)
        require(isinstance(self.resume, (bool, str, os.PathLike)), "TrainConfig.resume",
                "true, false or a checkpoint folder path", self.resume)
        require(isinstance(self.betas, tuple) and len(self.betas) == 2 and all(_BETA.ok(b) for b in self.betas),
                "TrainConfig.betas", "two numbers in [0, 1), e.g. [0.9, 0.999]", self.betas)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "TrainConfig") -> "TrainConfig":
        """Build from a dict (a parsed YAML/JSON file); an unknown key is an error naming it."""
        check_keys(data, [f.name for f in fields(cls)], source)
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
