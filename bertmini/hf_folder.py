"""Hugging Face checkpoint format: read and write `config.json` + `model.safetensors`.

Module names equal HF's BERT, so keys load as they are. The loader also copes with what older
checkpoints carry (TF-era `LayerNorm.gamma/beta`, the saved `position_ids` buffer), with base-model
checkpoints loaded under a task head (the head is new and reported) and the reverse.
"""
from __future__ import annotations

import json
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from bertmini.config import BertConfig
from bertmini.errors import InputKeyError
from bertmini.runfolder import temp_path

__all__ = ["LoadReport", "load_state_dict", "load_pretrained", "save_pretrained", "WEIGHTS_NAME", "CONFIG_NAME"]
log = logging.getLogger(__name__)
WEIGHTS_NAME, LEGACY_WEIGHTS_NAME, CONFIG_NAME = "model.safetensors", "pytorch_model.bin", "config.json"
DROPPED_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")
# Keys that alias another parameter (tied decoder, shared bias): never required, never saved.
ALIASES = ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")


@dataclass
class LoadReport:
    missing_keys: list[str] = field(default_factory=list)  # newly initialized
    unexpected_keys: list[str] = field(default_factory=list)  # in the file, unused


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Tensors from model.safetensors (preferred) or pytorch_model.bin, with errors naming the file."""
    for name, reader in ((WEIGHTS_NAME, load_file), (LEGACY_WEIGHTS_NAME, _load_bin)):
        path = folder / name
        if path.is_file():
            try:
                return reader(str(path))
            except (SafetensorError, RuntimeError, OSError, EOFError, ValueError) as err:
                raise ValueError(f"{path}: corrupt or unreadable weights file ({err})") from None
    raise FileNotFoundError(f"{folder}: no {WEIGHTS_NAME} or {LEGACY_WEIGHTS_NAME} found")


def _load_bin(path: str) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


def normalize_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename TF-era LayerNorm.gamma/beta and drop saved buffers that are not parameters."""
    out = {}
    for key, value in state.items():
        if key.endswith(DROPPED_BUFFERS):
            continue
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        out[key] = value
    return out


def _match_prefix(state: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Add or strip `bert.` so a base checkpoint fits a head model and vice versa."""
    wants_prefix = hasattr(model, "bert")
    has_prefix = any(k.startswith("bert.") for k in state)
    if wants_prefix and not has_prefix:
        return {f"bert.{k}": v for k, v in state.items()}
    if not wants_prefix and has_prefix:
        return {(k[5:] if k.startswith("bert.") else k): v for k, v in state.items()}
    return state


def _is_required(key: str) -> bool:
    """Encoder and embedding weights must come from the checkpoint; heads and pooler may be new."""
    base = key[5:] if key.startswith("bert.") else key
    return base.startswith(("embeddings.", "encoder."))


def load_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str = "state dict") -> LoadReport:
    """Copy `state` into `model`, checking names and shapes; returns what was missing / unexpected."""
    state = _match_prefix(normalize_keys(state), model)
    own = model.state_dict()
    report = LoadReport()
    for key, tensor in own.items():
        if key not in state:
            if key.endswith(ALIASES):
                continue
            if _is_required(key):
                raise InputKeyError(f"{source}: required key {key!r} is missing from the checkpoint")
            report.missing_keys.append(key)
        elif state[key].shape != tensor.shape:
            raise ValueError(f"{source}: shape mismatch for {key!r}: checkpoint has {tuple(state[key].shape)}, "
                             f"model expects {tuple(tensor.shape)}")
    report.unexpected_keys = sorted(k for k in state if k not in own)
    with torch.no_grad():
        for key, tensor in own.items():
            if key in state:
                tensor.copy_(state[key])
    if report.missing_keys:
        log.warning("%s: newly initialized (not in the checkpoint): %s", source, report.missing_keys)
    if report.unexpected_keys:
        log.warning("%s: unused keys in the checkpoint: %s", source, report.unexpected_keys)
    return report


def load_pretrained(cls: type[nn.Module], path: str | os.PathLike, **overrides: Any) -> nn.Module:
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder {str(folder)!r} not found (bertmini never downloads; "
                                "for a hub name use transformers' snapshot_download first)")
    data = BertConfig.from_json_file(folder / CONFIG_NAME).to_dict()
    data.update(overrides)
    model = cls(BertConfig.from_dict(data, source=str(folder / CONFIG_NAME)))
    model.load_report = load_state_dict(model, read_weights(folder), source=str(folder))
    model.eval()  # like HF: dropout off until .train()
    return model


def _atomic_write(target: Path, write: Any) -> None:
    """write(tmp_path) then rename over `target`: a crash leaves the old file whole.

    The file gets the mode of any new file, 0666 minus the umask: created here with that mode, it is set
    back to it after `write` (safetensors writes 0600 files, as ``mkstemp`` would).
    """
    tmp = str(temp_path(target))
    try:
        with open(tmp, "xb") as handle:
            mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
        write(tmp)
        os.chmod(tmp, mode)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_pretrained(model: nn.Module, path: str | os.PathLike) -> None:
    """Write model.safetensors then config.json, each atomically; other files in the folder are kept."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not k.endswith(ALIASES)}
    _atomic_write(folder / WEIGHTS_NAME, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    if getattr(model, "reads", None) == "mean":
        log.warning("%s: this classifier mean-pools (classifier_pooling='mean'); transformers' "
                    "BertForSequenceClassification reads the pooled [CLS] instead, so load it with bertmini "
                    "(or export it to ONNX)", folder)
    config = model.config.to_dict()
    config["architectures"] = [type(model).__name__]
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    _atomic_write(folder / CONFIG_NAME, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
