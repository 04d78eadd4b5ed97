"""Test-session environment, for unit tests and notebooks (nbval kernels inherit it).

Nothing may reach the Hugging Face hub during tests, and the offline data sets are found in
../shared/data when BERTMINI_DATA_DIR is not set.
"""
import os
from pathlib import Path

for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(var, "1")
os.environ.setdefault("MPLBACKEND", "Agg")
_shared = Path(__file__).resolve().parent.parent / "shared" / "data"
if "BERTMINI_DATA_DIR" not in os.environ and _shared.is_dir():
    os.environ["BERTMINI_DATA_DIR"] = str(_shared)
