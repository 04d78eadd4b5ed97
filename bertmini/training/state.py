"""Training-state checkpoints: atomic folders, keep-last-K rotation, RNG capture for exact resume.

A *model* checkpoint (``save_pretrained``) is enough to use a model; resuming *training* exactly needs
everything that decides the next loss: weights, AdamW moments, the LR schedule position, the fp16 loss
scale, every random number generator (dropout, masking) and the position in the data. Layout::

    out_dir/checkpoints/step-0000100/state.pt    one file, written to a temporary folder then renamed
    out_dir/best/                                the best model on the dev metric (early stopping)
    out_dir/final/                               the model at the end

A crash while writing leaves the previous checkpoint whole: the new folder only appears, in one
``os.replace``, once its file is complete and fsync'ed.
"""
from __future__ import annotations

import math
import os
import pickle
import random
import re
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from bertmini.errors import InputError
from bertmini.runfolder import temp_dir, temp_path

__all__ = ["atomic_dir", "save_checkpoint", "load_checkpoint", "list_checkpoints", "latest_checkpoint",
           "rotate_checkpoints", "rng_state", "set_rng_state", "save_model", "describe_state", "restore_weights"]

STATE_FILE = "state.pt"
_STEP_DIR = re.compile(r"^step-(\d+)$")


@contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary sibling of ``target``; when the block succeeds it becomes ``target``.

    ``os.replace`` cannot rename over a non-empty folder, so an existing ``target`` is first moved
    aside and deleted after the swap (the only window where neither exists is between two renames).
    Both side names are this process's own (:func:`~bertmini.runfolder.temp_path`); a save killed midway
    leaves them for :func:`~bertmini.runfolder.sweep_temps`.
    """
    target = Path(target)
    tmp = temp_dir(target)
    try:
        yield tmp
        old = temp_path(target, "old")
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fsync_save(obj: Any, path: Path) -> None:
    torch.save(obj, path)
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def save_checkpoint(folder: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (anything ``torch.save`` takes) as ``folder/state.pt``, atomically."""
    with atomic_dir(folder) as tmp:
        _fsync_save(state, tmp / STATE_FILE)
    return Path(folder)


def load_checkpoint(folder: str | os.PathLike) -> dict[str, Any]:
    """Read a folder written by :func:`save_checkpoint` (tensors land on the CPU).

    ``weights_only=False`` because RNG states hold NumPy arrays: only load checkpoints you wrote.
    """
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no training checkpoint at {str(path)!r} (expected a folder holding {STATE_FILE})")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as err:  # truncated or foreign: say which file
        raise InputError(f"{path}: unreadable training checkpoint ({type(err).__name__}: {err}); delete its folder "
                         "to resume from the one before") from None


def list_checkpoints(root: str | os.PathLike) -> list[Path]:
    """``root/step-*`` folders, oldest step first (``.tmp-step-*``/``.old-step-*`` leftovers are ignored)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def rotate_checkpoints(root: str | os.PathLike, keep_last: int | None) -> None:
    """Delete all but the newest ``keep_last`` checkpoints (``None`` keeps them all)."""
    if keep_last is None:
        return
    for stale in list_checkpoints(root)[:-keep_last] if keep_last > 0 else list_checkpoints(root):
        shutil.rmtree(stale)


def rng_state() -> dict[str, Any]:
    """Every generator a training step may draw from: Python, NumPy (if loaded), torch CPU and CUDA."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if "numpy" in sys.modules:  # only if something uses it; never import it just for this
        import numpy as np
        state["numpy"] = np.random.get_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        import numpy as np
        np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_model(model: nn.Module, folder: str | os.PathLike) -> Path:
    """The model alone, atomically: ``save_pretrained`` when the model has it, else ``model.pt``."""
    with atomic_dir(folder) as tmp:
        if hasattr(model, "save_pretrained"):
            model.save_pretrained(tmp)
        else:
            _fsync_save(model.state_dict(), tmp / "model.pt")
    return Path(folder)


def describe_state(state: Mapping[str, torch.Tensor]) -> str:
    """A model's size from its state dict: ``2 layers x 64 hidden (FFN 128), vocab 1000, 64 positions`` for
    BERT, else its tensor and value counts."""
    shapes = {key: tuple(value.shape) for key, value in state.items()}
    words = next((s for k, s in shapes.items() if k.endswith("word_embeddings.weight")), None)
    if words is None or len(words) != 2:
        return f"{len(shapes)} tensors of {sum(math.prod(s) for s in shapes.values()):,} values"
    layers = len({m.group(1) for k in shapes if (m := re.search(r"encoder\.layer\.(\d+)\.", k))})
    ffn = next((s[0] for k, s in shapes.items() if k.endswith("intermediate.dense.weight")), "?")
    positions = next((s[0] for k, s in shapes.items() if k.endswith("position_embeddings.weight")), "?")
    return f"{layers} layers x {words[1]} hidden (FFN {ffn}), vocab {words[0]}, {positions} positions"


def restore_weights(model: nn.Module, optimizer: torch.optim.Optimizer, state: Mapping[str, Any],
                    path: str | os.PathLike) -> None:
    """Load a training checkpoint's model and optimizer state, or say in one line why it does not fit this
    run (torch would list every mismatched tensor): a checkpoint of another model size, another head, or
    other parameter groups (layer-wise LR decay, freezing) is someone else's run in this out_dir."""
    ours, theirs = model.state_dict(), state["model"]
    differ = [k for k in ours.keys() | theirs.keys()
              if k not in ours or k not in theirs or ours[k].shape != theirs[k].shape]
    if differ:
        first = sorted(differ)[0]
        shape = lambda d: tuple(d[first].shape) if first in d else "absent"  # noqa: E731
        detail = "" if describe_state(theirs) != describe_state(ours) else \
            f" (first difference: {first!r} is {shape(theirs)} there, {shape(ours)} here)"
        raise InputError(f"{path} was written by a model of {describe_state(theirs)}, the config builds "
                         f"{describe_state(ours)}{detail}: use another out_dir or delete it")
    model.load_state_dict(theirs)
    try:
        optimizer.load_state_dict(state["optimizer"])
    except ValueError as err:  # torch: "loaded state dict has a different number of parameter groups"
        raise InputError(f"{path}: its optimizer state does not fit this run's parameter groups ({err}; were "
                         "layerwise_lr_decay or freezing changed?): use another out_dir or delete it") from None
