"""Finding a checkpoint folder, and batched inference: shared by ``finetune`` (dev scores) and ``predict``.

Inference runs the model in eval mode (dropout off) without autograd, on batches of inputs of
similar length each padded only to its own longest member (dynamic padding, as in fine-tuning,
BERT paper §4), and hands the outputs back in input order.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from bertmini.config import BertConfig
from bertmini.errors import integer, read_json, require
from bertmini.heads import BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification
from bertmini.precision import autocast, resolve_precision
from bertmini.training.batching import bucket_batches, pad_collate

__all__ = ["ARCHITECTURES", "resolve_model_path", "model_kind", "check_max_length", "autocast", "forward_features"]

# config.json "architectures" entry -> (kind of task, class)
ARCHITECTURES: dict[str, tuple[str, type[nn.Module]]] = {
    "BertForSequenceClassification": ("classification", BertForSequenceClassification),
    "BertForTokenClassification": ("ner", BertForTokenClassification),
    "BertForQuestionAnswering": ("qa", BertForQuestionAnswering),
}
INPUT_KEYS = ("input_ids", "token_type_ids", "attention_mask")
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")  # "bert-base-uncased", "org/name"


def resolve_model_path(name_or_path: str) -> Path:
    """A local HF-format folder; a name that is no existing path but looks like a hub id
    (``org/name``) is fetched with ``huggingface_hub.snapshot_download`` (weights, config, vocab)."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise NotADirectoryError(f"model {str(path)!r} is a file; expected a Hugging Face format folder "
                                     "(config.json, model.safetensors, vocab.txt)")
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"model folder {str(path)!r} has no config.json (expected a Hugging Face "
                                    "format folder: config.json, model.safetensors, vocab.txt)")
        return path
    if not _HUB_NAME.fullmatch(name_or_path):
        raise FileNotFoundError(f"model folder {str(path)!r} not found")
    from huggingface_hub import snapshot_download

    try:
        files = ["*.json", "vocab.txt", "*.safetensors"]
        folder = Path(snapshot_download(name_or_path, allow_patterns=files))
        if not any(folder.glob("*.safetensors")):  # older repos ship only PyTorch pickles
            folder = Path(snapshot_download(name_or_path, allow_patterns=[*files, "pytorch_model.bin"]))
    except Exception as err:  # offline, unknown repo, ...: say both what was tried and why it failed
        raise FileNotFoundError(f"model {name_or_path!r}: no such local folder, and fetching it from the "
                                f"Hugging Face hub failed: {type(err).__name__}: {err}") from err
    return folder


def model_kind(folder: Path) -> tuple[str, type[nn.Module]]:
    """``("classification" | "ner" | "qa", class)`` from config.json's ``architectures``."""
    config_path = folder / "config.json"
    architectures = read_json(config_path, dict).get("architectures") or []
    for name in architectures:
        if name in ARCHITECTURES:
            return ARCHITECTURES[name]
    raise ValueError(f"{config_path}: architectures {architectures} has no fine-tuned task head; expected one of "
                     f"{list(ARCHITECTURES)} (fine-tune it first: python -m bertmini finetune ...)")


def check_max_length(max_length: int, folder: Path, option: str = "--max-length") -> None:
    """``max_length`` must fit the model's position embeddings: a longer input would fail inside the model."""
    positions = BertConfig.from_json_file(folder / "config.json").max_position_embeddings
    valid = integer(1, positions)
    require(valid.ok(max_length), option, f"{valid} (the model's max_position_embeddings)", max_length)


@torch.no_grad()
def forward_features(model: nn.Module, features: Sequence[Mapping[str, Any]], batch_size: int = 64,
                     pad_token_id: int = 0, precision: str = "auto", pad_to_multiple_of: int = 1
                     ) -> list[torch.Tensor]:
    """Per feature, in input order, the float32 CPU output cut to the feature's length:
    logits ``(C,)`` (sequence classification), ``(T, C)`` (token classification) or
    ``(T, 2)`` start/end logits (question answering). Only ``input_ids``/``token_type_ids``/
    ``attention_mask`` are fed; labels in the features are ignored. ``precision``: auto | fp32 | bf16 | fp16
    (:mod:`bertmini.precision`), resolved once for the model's device. ``pad_to_multiple_of`` rounds each
    batch's padded length up (never past the longest feature), for few distinct tensor shapes; the outputs
    do not change, as attention masks make the padded positions no-ops."""
    device = next(model.parameters()).device
    choice = resolve_precision(precision, device)
    lengths = [len(f["input_ids"]) for f in features]
    outputs: list[torch.Tensor] = [torch.empty(0)] * len(features)
    was_training = model.training
    model.eval()
    try:
        for batch in bucket_batches(lengths, batch_size, shuffle=False):  # similar lengths: little padding
            inputs = pad_collate([{k: features[i][k] for k in INPUT_KEYS if k in features[i]} for i in batch],
                                 pad_token_id, pad_to_multiple_of, max(lengths))
            with autocast(device, choice):
                out = model(**{k: v.to(device) for k, v in inputs.items()})
            if getattr(out, "start_logits", None) is not None:
                values = torch.stack([out.start_logits, out.end_logits], dim=-1)  # (B, T, 2)
            else:
                values = out.logits  # (B, C) or (B, T, C)
            values = values.float().cpu()
            for row, i in enumerate(batch):
                outputs[i] = values[row, :lengths[i]] if values.dim() == 3 else values[row]
    finally:
        model.train(was_training)
    return outputs
