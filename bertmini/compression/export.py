"""Export a classifier to ONNX (the Open Neural Network Exchange format, onnx.ai) and run it with ONNX Runtime.

``torch.onnx.export`` in torch >= 2.9 defaults to the dynamo exporter: it traces the model with
``torch.export`` and takes the dynamic dimensions as ``dynamic_shapes`` (``torch.export.Dim`` per axis);
the older TorchScript exporter (``dynamo=False``) takes ``dynamic_axes`` instead. We use the default,
dynamo path, with batch and sequence length dynamic, so one file serves every input shape.
ONNX Runtime then runs the graph on CPU with its own fused kernels, no Python in the loop.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch import Tensor, nn

from bertmini.errors import InputError

__all__ = ["INPUT_NAMES", "LogitsOnly", "export_onnx", "OnnxClassifier"]

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


class LogitsOnly(nn.Module):
    """The model's logits as a plain tensor: an exported graph returns tensors, not output dataclasses.

    It asks for the hidden states (unused, so the exporter drops them) to turn off the classifiers'
    [CLS]-only last layer, whose row count is data-dependent and cannot be traced by ``torch.export``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor) -> Tensor:
        return self.model(input_ids, attention_mask, token_type_ids, output_hidden_states=True).logits


def export_onnx(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model`` (in eval mode, on CPU) as ONNX with dynamic batch and sequence axes; returns the path."""
    if model.training:
        raise InputError("export_onnx: the model is in training mode (dropout would be baked into the graph "
                         "or dropped silently); call model.eval() first")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = torch.full((2, 8), 5, dtype=torch.long)  # a padded second row: the mask path is traced too
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence", max=model.config.max_position_embeddings)
    axes = {name: {0: batch, 1: seq} for name in INPUT_NAMES}
    with warnings.catch_warnings():  # the exporter's notes on optional torchvision ops and axis renaming
        warnings.simplefilter("ignore")
        torch.onnx.export(LogitsOnly(model).eval(), (ids, mask, torch.zeros_like(ids)), str(path), dynamo=True,
                          input_names=list(INPUT_NAMES), output_names=["logits"], dynamic_shapes=axes,
                          verbose=False)
    return path


class OnnxClassifier:
    """``OnnxClassifier(path)(batch)`` -> (B, C) logits, on CPU; ``batch`` holds ``input_ids`` and optionally
    ``attention_mask``/``token_type_ids`` (a tokenizer's or ``pad_collate``'s tensors)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, batch: Mapping[str, Tensor]) -> Tensor:
        ids = batch["input_ids"]
        defaults = {"attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
        feed = {n: batch[n].cpu().numpy().astype(np.int64) if n in batch else defaults[n].numpy()
                for n in INPUT_NAMES}
        return torch.from_numpy(self.session.run(None, feed)[0])
