"""``TrainConfig``: every knob of :class:`bertmini.training.Trainer`, validated when built.

Defaults follow BERT pretraining (Devlin et al. 2019, §A.2): Adam with lr 1e-4, β = (0.9, 0.999),
L2 weight decay 0.01, linear warmup then linear decay, gradient clipping at norm 1.0. Fine-tuning
(§A.3) typically sets lr 2e-5..5e-5, ``epochs`` 2..4 and ``warmup_ratio`` 0.1.
"""
from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

__all__ = ["TrainConfig"]

_CHOICES = {"schedule": ("linear", "onecycle", "constant"), "precision": ("fp32", "bf16", "fp16"),
            "early_stopping_mode": ("min", "max")}


@dataclass
class TrainConfig:
    # optimization
    lr: float = 1e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-6
    max_steps: int | None = None  # optimizer steps; give this or `epochs`
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
    precision: str = "fp32"  # fp32 | bf16 (autocast) | fp16 (autocast + GradScaler, CUDA only)
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
        self.betas = tuple(self.betas)  # JSON/YAML give lists
        for key, choices in _CHOICES.items():
            if getattr(self, key) not in choices:
                raise ValueError(f"TrainConfig.{key}: expected one of {choices}, got {getattr(self, key)!r}")
        if (self.max_steps is None) == (self.epochs is None):
            raise ValueError(f"TrainConfig: give exactly one of max_steps / epochs "
                             f"(got max_steps={self.max_steps}, epochs={self.epochs})")
        checks = {
            "max_steps": self.max_steps is None or self.max_steps >= 1,
            "epochs": self.epochs is None or self.epochs > 0,
            "grad_accum": self.grad_accum >= 1, "log_every": self.log_every >= 1,
            "warmup_steps": self.warmup_steps >= 0, "warmup_ratio": 0 <= self.warmup_ratio < 1,
            "eval_every": self.eval_every >= 0, "save_every": self.save_every >= 0,
            "freeze_layers": self.freeze_layers >= 0, "lr": self.lr > 0,
            "layerwise_lr_decay": self.layerwise_lr_decay is None or 0 < self.layerwise_lr_decay <= 1,
            "keep_last": self.keep_last is None or self.keep_last >= 1,
            "early_stopping_patience": self.early_stopping_patience is None or self.early_stopping_patience >= 1,
        }
        for key, ok in checks.items():
            if not ok:
                raise ValueError(f"TrainConfig.{key}: invalid value {getattr(self, key)!r}")
        if self.warmup_steps and self.warmup_ratio:
            raise ValueError("TrainConfig: set warmup_steps or warmup_ratio, not both")
        if self.resume is True and not self.out_dir:
            raise ValueError("TrainConfig.resume=True needs out_dir (where the checkpoints are)")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "TrainConfig") -> "TrainConfig":
        """Build from a dict (a parsed YAML/JSON file); an unknown key is an error naming it."""
        valid = [f.name for f in fields(cls)]
        for key in data:
            if key not in valid:
                close = difflib.get_close_matches(key, valid, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"{source}: unknown key {key!r}{hint}; valid keys: {', '.join(valid)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
