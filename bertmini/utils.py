"""Small helpers shared by the package, the notebooks and the scripts.

One place reads the environment: ``BERTMINI_FAST`` (CI's fast mode), ``BERTMINI_DATA_DIR`` (where the
offline data sets live) and ``BERTMINI_RUNS`` (where chapters and commands put their runs).
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import torch

from bertmini.errors import InputError

__all__ = ["fast_mode", "data_dir", "local_data_dir", "runs_dir", "get_device", "check_device", "set_seed"]

_NO_DATA = ("no local data sets found: set BERTMINI_DATA_DIR or pass --data-dir "
            "(see data/README.md for how to get them)")


def fast_mode() -> bool:
    """True when ``BERTMINI_FAST`` is set to a true value: notebooks and demos cut steps and data."""
    return os.environ.get("BERTMINI_FAST", "").strip().lower() in {"1", "true", "yes", "on"}


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """Folder holding the local data sets (WikiText-2 raw, SST-2, ...); raises when there is none.

    Order: the explicit ``override`` (a ``--data-dir`` option), then ``BERTMINI_DATA_DIR``,
    then ``./data`` and ``../shared/data`` relative to the working directory.
    """
    found = local_data_dir(override)
    if found is None:
        raise FileNotFoundError(_NO_DATA)
    return found


def local_data_dir(override: str | os.PathLike | None = None) -> Path | None:
    """Like :func:`data_dir`, but ``None`` when no local copy exists (on Colab): the loaders then read the
    same data sets from the Hugging Face hub. A folder that is named but missing is still an error."""
    if override is not None:
        path = Path(override).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"data dir {str(path)!r} " + ("is a file, expected a folder" if path.exists()
                                                                  else "does not exist"))
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
    return None


def runs_dir(name: str | None = None) -> Path:
    """Where runs go: ``BERTMINI_RUNS`` if set, else ``runs/`` in the working directory (``runs/name``)."""
    root = Path(os.environ.get("BERTMINI_RUNS") or "runs").expanduser()
    return root / name if name else root


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def get_device(prefer: str | torch.device | None = None) -> torch.device:
    """cuda, then mps, then cpu; or ``prefer`` when given (``"cpu"``, ``"cuda:1"``; ``"auto"`` picks), checked
    by :func:`check_device`."""
    if prefer is not None and prefer != "auto":
        return check_device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def check_device(name: str | torch.device) -> torch.device:
    """``name`` as a torch.device that this machine has; else an InputError saying why and what to use.

    Checked where the device is resolved, so ``--device cuda`` on a CPU-only torch fails at once with a
    sentence, not later with torch's ``AssertionError: Torch not compiled with CUDA enabled``.
    """
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise InputError(f"device {name!r}: expected auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no GPU is visible"
            raise InputError(f"device {name!r}: CUDA is not available ({why}; torch {torch.__version__}): "
                             "use device cpu or auto")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise InputError(f"device {name!r}: expected a GPU index in [0, {count}), this machine has {count} GPU(s)")
    if device.type == "mps" and not _mps_available():
        raise InputError(f"device {name!r}: MPS (Apple GPU) is not available here: use device cpu or auto")
    return device


def set_seed(seed: int) -> None:
    """Seed Python, torch (CPU and CUDA) for reproducible runs."""
    random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
