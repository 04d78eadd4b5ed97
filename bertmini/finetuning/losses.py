"""Fine-tuning losses and the Trainer's *step hooks*.

The Trainer runs one step hook per micro-batch::

    logs = step(model, batch, backward)   # logs["loss"]: the loss to report; other keys are logged too

``backward(loss)`` applies the gradient-accumulation scale and the fp16 loss scale, then runs autograd.
A hook calls it once per loss it wants gradients from: most hooks once, FGM twice. Hooks compose:
``FGM(RDrop(alpha=1.0, loss_fn=focal_loss))``.

Losses take ``(logits, labels)``, logits ``(N, C)`` or ``(B, T, C)`` and labels with -100 ignored:

* :func:`cross_entropy` — written out (class weights, label smoothing; Szegedy et al. 2016), equal to torch's.
* :func:`focal_loss` — ``-α_t (1 - p_t)^γ log p_t`` (Lin et al. 2017); γ = 0 and no α give cross-entropy.
* :func:`symmetric_kl` — ``½ (KL(P‖Q) + KL(Q‖P))`` per example, the R-Drop regularizer.

Hooks (besides :func:`bertmini.training.steps.model_loss`, the model's own ``.loss``): :class:`LogitsLoss`,
:class:`RDrop` (Liang et al. 2021), :class:`FGM` (Fast Gradient Method on word embeddings, Miyato et al.
2017); :func:`build_step` picks them from the fine-tuning options, :func:`class_weights` weighs classes.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bertmini.heads import IGNORE_INDEX
from bertmini.training.steps import StepFn, model_loss

__all__ = ["cross_entropy", "focal_loss", "symmetric_kl", "LogitsLoss", "RDrop", "FGM"]

LossFn = Callable[[Tensor, Tensor], Tensor]


def _flat(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """(B, T, C) token logits and (B, T) labels -> (B*T, C) and (B*T,)."""
    return logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)


def cross_entropy(logits: Tensor, labels: Tensor, weight: Tensor | None = None,
                  label_smoothing: float = 0.0) -> Tensor:
    """Mean cross-entropy; with smoothing ε the target is ``(1-ε)·onehot + ε/C`` (torch's convention:
    the weighted mean divides by the weights of the true classes)."""
    logits, labels = _flat(logits, labels)
    keep = labels != IGNORE_INDEX
    logp, labels = F.log_softmax(logits[keep].float(), dim=-1), labels[keep]
    w = weight.to(logp) if weight is not None else torch.ones(logp.shape[-1], device=logp.device)
    nll = -logp.gather(1, labels[:, None]).squeeze(1) * w[labels]
    smooth = -(logp * w).sum(-1) / logp.shape[-1]  # cross-entropy against the uniform distribution
    return ((1 - label_smoothing) * nll + label_smoothing * smooth).sum() / w[labels].sum()


def focal_loss(logits: Tensor, labels: Tensor, gamma: float = 2.0, alpha: float | Tensor | None = None) -> Tensor:
    """Mean focal loss: easy examples (p_t → 1) are down-weighted by ``(1 - p_t)^γ``.

    ``alpha``: a tensor of per-class weights, or a float for two classes (α for label 1, 1-α for label 0).
    """
    logits, labels = _flat(logits, labels)
    keep = labels != IGNORE_INDEX
    logits, labels = logits[keep].float(), labels[keep]
    logp_t = F.log_softmax(logits, dim=-1).gather(1, labels[:, None]).squeeze(1)
    loss = -((1 - logp_t.exp()) ** gamma) * logp_t
    if isinstance(alpha, float):
        if logits.shape[-1] != 2:
            raise ValueError(f"focal_loss: a float alpha needs 2 classes, got {logits.shape[-1]}; "
                             "pass a tensor of per-class weights")
        alpha = torch.tensor([1 - alpha, alpha], device=logits.device)
    if alpha is not None:
        loss = loss * alpha.to(loss)[labels]
    return loss.mean()


def symmetric_kl(p_logits: Tensor, q_logits: Tensor, labels: Tensor | None = None) -> Tensor:
    """``½ (KL(P‖Q) + KL(Q‖P))`` summed over classes, averaged over examples (label -100 positions skipped)."""
    p_logits, q_logits = (x.reshape(-1, x.shape[-1]).float() for x in (p_logits, q_logits))
    if labels is not None:
        keep = labels.reshape(-1) != IGNORE_INDEX
        p_logits, q_logits = p_logits[keep], q_logits[keep]
    logp, logq = F.log_softmax(p_logits, -1), F.log_softmax(q_logits, -1)
    return 0.5 * ((logp.exp() * (logp - logq)).sum(-1) + (logq.exp() * (logq - logp)).sum(-1)).mean()


def _logits(model: nn.Module, batch: Mapping[str, Any], who: str) -> tuple[Tensor, Tensor]:
    """Run the model without labels (so it skips its own loss) and return (logits, labels)."""
    if "labels" not in batch:
        raise ValueError(f"{who} needs batch['labels'] (batch keys: {sorted(batch)})")
    out = model(**{k: v for k, v in batch.items() if k != "labels"})
    if getattr(out, "logits", None) is None:
        raise ValueError(f"{who} needs a model output with .logits, got {type(out).__name__}")
    return out.logits, batch["labels"]


class LogitsLoss:
    """Replace the model's loss: ``loss_fn(model(**inputs).logits, batch["labels"])``,
    e.g. ``LogitsLoss(partial(cross_entropy, weight=w, label_smoothing=0.1))``."""

    def __init__(self, loss_fn: LossFn = cross_entropy) -> None:
        self.loss_fn = loss_fn

    def __call__(self, model: nn.Module, batch: Mapping[str, Any], backward: Callable[[Tensor], None]) -> dict:
        logits, labels = _logits(model, batch, "LogitsLoss")
        loss = self.loss_fn(logits, labels)
        backward(loss)
        return {"loss": loss}


class RDrop:
    """R-Drop: two forward passes (two dropout masks) of the same batch,
    ``loss = ½ (L(z₁, y) + L(z₂, y)) + α · ½ (KL(P₁‖P₂) + KL(P₂‖P₁))`` (Liang et al. 2021, eq. 3; the KL
    is averaged, not summed, over examples so that α does not depend on the batch size)."""

    def __init__(self, alpha: float = 1.0, loss_fn: LossFn = cross_entropy) -> None:
        self.alpha, self.loss_fn = alpha, loss_fn

    def __call__(self, model: nn.Module, batch: Mapping[str, Any], backward: Callable[[Tensor], None]) -> dict:
        logits1, labels = _logits(model, batch, "RDrop")
        logits2, _ = _logits(model, batch, "RDrop")
        task = 0.5 * (self.loss_fn(logits1, labels) + self.loss_fn(logits2, labels))
        kl = symmetric_kl(logits1, logits2, labels)
        loss = task + self.alpha * kl
        backward(loss)
        return {"loss": loss, "task_loss": task, "kl": kl}


class FGM:
    """Adversarial training on the word embeddings (Miyato et al. 2017; FGM as used for BERT fine-tuning).

    1. clean forward/backward (``inner``) fills the embedding gradient g;
    2. add ``r = ε · g / ‖g‖₂`` to the embedding matrix, forward/backward again: the gradients add up;
    3. put the saved embedding matrix back, bit for bit.

    With ``grad_accum > 1`` g also holds the earlier micro-batches' gradients (only its direction is used).
    """

    def __init__(self, inner: StepFn = model_loss, epsilon: float = 1.0,
                 param_name: str = "word_embeddings.weight") -> None:
        self.inner, self.epsilon, self.param_name = inner, epsilon, param_name

    def _param(self, model: nn.Module) -> nn.Parameter:
        # suffix match: DDP adds "module.", torch.compile "_orig_mod."
        found = [p for n, p in model.named_parameters() if n.endswith(self.param_name)]
        if len(found) != 1:
            raise ValueError(f"FGM: expected one parameter named '*{self.param_name}', found {len(found)}")
        return found[0]

    def __call__(self, model: nn.Module, batch: Mapping[str, Any], backward: Callable[[Tensor], None]) -> dict:
        logs = self.inner(model, batch, backward)
        emb = self._param(model)
        if emb.grad is None:
            raise ValueError(f"FGM: '{self.param_name}' has no gradient (frozen embeddings?)")
        norm = emb.grad.norm()  # the direction is what matters: fp16 loss scaling cancels out
        if not (torch.isfinite(norm) and norm > 0):
            return logs  # nothing to attack (or fp16 overflow: the scaler skips this step anyway)
        saved = emb.detach().clone()
        with torch.no_grad():
            emb.add_(emb.grad * (self.epsilon / norm))
        adversarial = self.inner(model, batch, backward)
        with torch.no_grad():
            emb.copy_(saved)
        return {**logs, "adv_loss": adversarial["loss"]}


def class_weights(spec: str | Sequence[float], features: Sequence[dict], num_labels: int) -> torch.Tensor:
    """``"auto"``: inverse frequency ``N / (C · n_c)`` over the training labels (tokens for NER),
    so every class carries the same total weight; or explicit per-class weights."""
    if spec == "auto":
        labels = [l for f in features for l in (f["labels"] if isinstance(f["labels"], list) else [f["labels"]])
                  if l != IGNORE_INDEX]
        counts = torch.bincount(torch.tensor(labels), minlength=num_labels).float()
        return len(labels) / (num_labels * counts.clamp(min=1))
    if isinstance(spec, str) or len(spec) != num_labels:
        raise ValueError(f"class_weights: expected 'auto' or {num_labels} numbers (one per label), got {spec!r}")
    return torch.tensor([float(w) for w in spec])



def build_step(weights: torch.Tensor | None, label_smoothing: float, focal_gamma: float | None,
               rdrop_alpha: float | None, fgm_epsilon: float | None) -> StepFn:
    """The Trainer's step hook: the model's own loss, or a replacement loss (weighted / smoothed
    cross-entropy, focal), optionally wrapped in R-Drop and then FGM adversarial training."""
    if focal_gamma is not None and label_smoothing:
        raise ValueError("focal_gamma and label_smoothing are alternatives: set one of them")
    loss_fn = None
    if focal_gamma is not None:
        loss_fn = partial(focal_loss, gamma=focal_gamma, alpha=weights)
    elif weights is not None or label_smoothing:
        loss_fn = partial(cross_entropy, weight=weights, label_smoothing=label_smoothing)
    step: StepFn = model_loss
    if rdrop_alpha is not None:
        step = RDrop(rdrop_alpha, loss_fn or cross_entropy)
    elif loss_fn is not None:
        step = LogitsLoss(loss_fn)
    return FGM(step, fgm_epsilon) if fgm_epsilon is not None else step

