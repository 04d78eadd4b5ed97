"""Step hooks: what one micro-batch of training computes, and the default one.

A step hook runs the forward pass, calls ``backward`` on its loss, and returns the
values to log; the Trainer (:mod:`bertmini.training.trainer`) calls it under autocast.
Fine-tuning's hooks (label smoothing, R-Drop, FGM) are in :mod:`bertmini.finetuning.losses`.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol

from torch import Tensor, nn

__all__ = ["StepFn", "model_loss"]


class StepFn(Protocol):
    def __call__(self, model: nn.Module, batch: Mapping[str, Any],
                 backward: Callable[[Tensor], None]) -> dict[str, Tensor | float]: ...


def model_loss(model: nn.Module, batch: Mapping[str, Any], backward: Callable[[Tensor], None]) -> dict[str, Tensor]:
    """Default hook: ``model(**batch).loss``; components such as ``mlm_loss``/``nsp_loss`` are logged too."""
    out = model(**batch)
    if getattr(out, "loss", None) is None:
        raise ValueError(f"the model returned no .loss: does the batch hold labels? (batch keys: {sorted(batch)})")
    backward(out.loss)
    parts = {k: v for k, v in getattr(out, "__dict__", {}).items() if k.endswith("_loss") and v is not None}
    return {"loss": out.loss, **parts}
