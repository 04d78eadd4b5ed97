"""Small helpers shared by the package, the notebooks and the scripts.

One place reads the environment: ``BERTMINI_FAST`` (CI's fast mode) and
``BERTMINI_DATA_DIR`` (where the offline data sets live).
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import torch

__all__ = ["fast_mode", "data_dir", "get_device", "set_seed"]


def fast_mode() -> bool:
    """True when ``BERTMINI_FAST`` is set to a true value: notebooks and demos cut steps and data."""
    return os.environ.get("BERTMINI_FAST", "").strip().lower() in {"1", "true", "yes", "on"}


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """Folder holding the local data sets (WikiText-2 raw, SST-2, ...).

    Order: the explicit ``override`` (a ``--data-dir`` option), then ``BERTMINI_DATA_DIR``,
    then ``./data`` and ``../shared/data`` relative to the working directory.
    """
    if override is not None:
        path = Path(override).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"data dir {str(path)!r} does not exist")
        return path
    env = os.environ.get("BERTMINI_DATA_DIR")
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"BERTMINI_DATA_DIR={env!r} is not a directory")
        return path
    for candidate in (Path("data"), Path("../shared/data"), Path("../../shared/data")):
        if (candidate / "wikitext-2-raw").is_dir() or (candidate / "sst2").is_dir():
            return candidate
    raise FileNotFoundError(
        "no local data sets found: set BERTMINI_DATA_DIR or pass --data-dir "
        "(see data/README.md for how to get them)"
    )


def get_device(prefer: str | None = None) -> torch.device:
    """cuda, then mps, then cpu (or ``prefer`` when given, e.g. ``"cpu"``)."""
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def set_seed(seed: int) -> None:
    """Seed Python, torch (CPU and CUDA) for reproducible runs."""
    random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
