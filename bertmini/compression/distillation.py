"""Knowledge distillation: a small student learns the teacher's soft targets (Hinton et al. 2015, §2).

The loss mixes the KL divergence between temperature-softened distributions, scaled by T² so its
gradients keep their size as T grows (§2), with the ordinary cross-entropy on the hard labels::

    L = α · T² · KL(softmax(z_t / T) ‖ softmax(z_s / T)) + (1 - α) · CE(z_s, y)

DistilBERT (Sanh et al. 2019, §3) initializes the student from every other teacher layer and adds a
cosine loss between hidden states; :func:`student_from_teacher` and :func:`hidden_state_loss` do both.
:class:`DistillStep` is a step hook for :class:`bertmini.training.Trainer`; the teacher is a model run
alongside, or its logits computed once (:func:`teacher_logits`), which makes a student run cheaper.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bertmini.config import BertConfig
from bertmini.errors import InputError
from bertmini.finetuning.inference import forward_features
from bertmini.training import TrainConfig, Trainer
from bertmini.training.batching import BatchLoader

__all__ = ["distillation_loss", "hidden_state_loss", "DistillStep", "student_from_teacher", "teacher_logits",
           "distill"]

INDEX_KEY = "index"  # the feature key that points a batch row at its precomputed teacher logits


def distillation_loss(student: Tensor, teacher: Tensor, labels: Tensor, temperature: float = 2.0,
                      alpha: float = 0.5) -> Tensor:
    """α · T² · KL(p_t^T ‖ p_s^T) + (1 - α) · CE(z_s, y), averaged over the batch; logits (B, C)."""
    if temperature <= 0 or not 0 <= alpha <= 1:
        raise InputError(f"distillation_loss: expected temperature > 0 and alpha in [0, 1], "
                         f"got temperature={temperature}, alpha={alpha}")
    student, teacher = student.float(), teacher.float()
    log_p_s = F.log_softmax(student / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher / temperature, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1).mean()  # (B, C) -> scalar
    return alpha * temperature ** 2 * kl + (1 - alpha) * F.cross_entropy(student, labels)


def hidden_state_loss(student: Sequence[Tensor], teacher: Sequence[Tensor], layer_map: Mapping[int, int],
                      attention_mask: Tensor | None = None) -> Tensor:
    """Mean over mapped layers of 1 - cos(h_s, h_t) per real token (DistilBERT's cosine loss).

    ``student``/``teacher``: hidden states as models return them (index 0 = embeddings, i = layer i);
    ``layer_map``: student index -> teacher index.
    """
    losses = []
    for s, t in layer_map.items():
        if student[s].shape != teacher[t].shape:
            raise InputError(f"hidden_state_loss: student state {s} has shape {tuple(student[s].shape)} but "
                             f"teacher state {t} has {tuple(teacher[t].shape)}; matching needs equal hidden sizes")
        cos = F.cosine_similarity(student[s].float(), teacher[t].float(), dim=-1)  # (B, T)
        keep = attention_mask.bool() if attention_mask is not None else torch.ones_like(cos, dtype=torch.bool)
        losses.append((1 - cos)[keep].mean())
    return torch.stack(losses).mean()


class DistillStep:
    """Step hook: the distillation loss, plus ``hidden_weight`` · :func:`hidden_state_loss` if asked.

    ``teacher``: a model (run without gradients on the same batch) or a (N, C) tensor of logits that
    batches index through their ``index`` key (features carry it; see :func:`teacher_logits`).
    """

    def __init__(self, teacher: nn.Module | Tensor, temperature: float = 2.0, alpha: float = 0.5,
                 hidden_weight: float = 0.0, layer_map: Mapping[int, int] | None = None) -> None:
        if hidden_weight and (isinstance(teacher, Tensor) or not layer_map):
            raise InputError("DistillStep: hidden-state matching needs a teacher model (not precomputed logits) "
                             "and a layer_map {student layer: teacher layer}")
        self.teacher, self.temperature, self.alpha = teacher, temperature, alpha
        self.hidden_weight, self.layer_map = hidden_weight, dict(layer_map or {})

    def _teacher(self, batch: Mapping[str, Any], inputs: dict[str, Tensor]) -> Any:
        if isinstance(self.teacher, Tensor):
            if INDEX_KEY not in batch:
                raise InputError(f"DistillStep: precomputed teacher logits need batch[{INDEX_KEY!r}] "
                                 f"(batch keys: {sorted(batch)})")
            return self.teacher.to(batch[INDEX_KEY].device)[batch[INDEX_KEY]], None
        self.teacher.eval()
        with torch.no_grad():
            out = self.teacher(**inputs, output_hidden_states=bool(self.hidden_weight))
        return out.logits, out.hidden_states

    def __call__(self, model: nn.Module, batch: Mapping[str, Any], backward: Callable[[Tensor], None]) -> dict:
        if "labels" not in batch:
            raise InputError(f"DistillStep needs batch['labels'] (batch keys: {sorted(batch)})")
        inputs = {k: v for k, v in batch.items() if k not in ("labels", INDEX_KEY)}
        out = model(**inputs, output_hidden_states=bool(self.hidden_weight))
        t_logits, t_states = self._teacher(batch, inputs)
        kd = distillation_loss(out.logits, t_logits, batch["labels"], self.temperature, self.alpha)
        logs = {"kd_loss": kd}
        loss = kd
        if self.hidden_weight:
            logs["hidden_loss"] = hidden_state_loss(out.hidden_states, t_states, self.layer_map,
                                                    inputs.get("attention_mask"))
            loss = kd + self.hidden_weight * logs["hidden_loss"]
        backward(loss)
        return {"loss": loss, **logs}


def student_from_teacher(teacher: nn.Module, layers: Sequence[int]) -> nn.Module:
    """A shallower copy of ``teacher`` keeping encoder ``layers`` (e.g. [0, 2, 4]): its embeddings, those
    layers in order, pooler and head, as DistilBERT initializes its student (§3); in the teacher's mode."""
    total = teacher.config.num_hidden_layers
    if not layers or any(not 0 <= i < total for i in layers) or len(set(layers)) != len(layers):
        raise InputError(f"student_from_teacher: layers must be distinct indices in [0, {total}), got {list(layers)}")
    data = teacher.config.to_dict()
    data["num_hidden_layers"] = len(layers)
    pruned = teacher.config.pruned_heads
    data["pruned_heads"] = {new: pruned[old] for new, old in enumerate(layers) if old in pruned}
    student = type(teacher)(BertConfig.from_dict(data))
    rename = {f"encoder.layer.{old}.": f"encoder.layer.{new}." for new, old in enumerate(layers)}
    state = {}
    for key, value in teacher.state_dict().items():
        if "encoder.layer." not in key:
            state[key] = value
            continue
        prefix, rest = key.split("encoder.layer.", 1)
        old = f"encoder.layer.{rest.split('.', 1)[0]}."
        if old in rename:
            state[prefix + rename[old] + rest.split(".", 1)[1]] = value
    student.load_state_dict(state)
    return student.to(next(teacher.parameters()).device).train(teacher.training)


def teacher_logits(teacher: nn.Module, features: list[dict[str, Any]], batch_size: int = 128,
                   precision: str = "auto") -> Tensor:
    """(N, C) float32 logits of ``teacher`` on ``features``, in order; each feature gains its ``index`` so
    that training batches can find its row (a student run then never runs the teacher)."""
    for i, feature in enumerate(features):
        feature[INDEX_KEY] = i
    return torch.stack(forward_features(teacher, features, batch_size, precision=precision))


def distill(student: nn.Module, teacher: nn.Module | Tensor, features: list[dict[str, Any]], epochs: float = 1.0,
            batch_size: int = 32, lr: float = 1e-4, temperature: float = 2.0, alpha: float = 0.5,
            hidden_weight: float = 0.0, layer_map: Mapping[int, int] | None = None, seed: int = 0,
            precision: str = "auto", log_every: int = 200, progress: bool = True) -> dict[str, Any]:
    """Train ``student`` on ``features`` with :class:`DistillStep` through the Trainer (AdamW, linear decay
    after 10% warm-up, length-bucketed batches); returns the Trainer's summary. With precomputed logits,
    the features must carry their ``index`` (:func:`teacher_logits` adds it)."""
    step = DistillStep(teacher, temperature, alpha, hidden_weight, layer_map)
    loader = BatchLoader(features, batch_size, student.config.pad_token_id, bucket=True, seed=seed)
    config = TrainConfig(lr=lr, epochs=epochs, warmup_ratio=0.1, seed=seed, precision=precision, device="cpu",
                         log_every=log_every, progress=progress)
    summary = Trainer(student, loader, config, train_step=step).train()
    student.eval()
    return summary
