"""Every chapter runs from any working directory, with no checkout around it (as on Colab).

A chapter must not reach for the checkout's layout (``Path("..")``, ``"../runs"``, the old ``configs/``
folder), change the working directory, or call ``data_dir()``, which raises where there is no local copy of
the data sets. It names its data with ``bertmini.sources.data_text`` / ``local_data_dir()`` (hub
fallback), its configs by their shipped names, and its runs folder once with ``runs_dir()``.

(a) checks the code cells of every chapter statically; (b) executes one chapter, copied to a folder
outside the checkout, under nbval.
"""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))

_MAGIC_CD = re.compile(r"^\s*[%!]\s*cd\b")  # the %cd magic (and !cd, which only looks like it)
_FORBIDDEN_CALLS = {"chdir": "changes the working directory",
                    "data_dir": "data_dir() raises where there is no local data (Colab): use local_data_dir() "
                                "or bertmini.sources.data_text"}


def _parent_path(text: str) -> bool:
    """``".."``, ``"../x"``, ``"x/../y"``, ``"x/.."`` (either slash): a path that leaves the working directory."""
    parts = re.split(r"[/\\]", text)
    return text == ".." or (len(parts) > 1 and ".." in parts)


def _code(source: str) -> str:
    """The cell as Python: IPython magics and shell lines become ``pass`` (same indent)."""
    lines = []
    for line in source.splitlines():
        body = line.lstrip()
        lines.append(line[: len(line) - len(body)] + "pass" if body.startswith(("%", "!")) else line)
    return "\n".join(lines)


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def violations(source: str) -> list[str]:
    """What in one code cell ties it to the checkout's layout or to the working directory."""
    found = [f"changes directory: {line.strip()!r}" for line in source.splitlines() if _MAGIC_CD.match(line)]
    for node in ast.walk(ast.parse(_code(source))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _parent_path(node.value):
                found.append(f"a path out of the working directory: {node.value!r}")
            elif node.value == "configs":  # Path(...) / "configs": that folder is inside the package now
                found.append("the checkout's configs/ folder: name the shipped config instead ('pretrain_cpu')")
        elif isinstance(node, ast.Call) and _called_name(node.func) in _FORBIDDEN_CALLS:
            name = _called_name(node.func)
            found.append(f"{name}(...): {_FORBIDDEN_CALLS[name]}")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name.rsplit(".", 1)[-1] in _FORBIDDEN_CALLS:
                    found.append(f"imports {alias.name}: {_FORBIDDEN_CALLS[alias.name.rsplit('.', 1)[-1]]}")
    return found


def code_cells(path: Path) -> list[tuple[int, str]]:
    """``(index in the notebook, source)`` of every code cell."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [(i, "".join(c["source"]) if isinstance(c["source"], list) else c["source"])
            for i, c in enumerate(cells) if c["cell_type"] == "code"]


# ------------------------------------------------------------------------------------------ (a) static
def test_there_are_chapters():
    assert len(CHAPTERS) >= 11, CHAPTERS


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_no_chapter_depends_on_the_checkout_or_the_working_directory(chapter):
    problems = [f"cell {i}: {problem}" for i, source in code_cells(chapter)
                for problem in violations(source)]
    assert not problems, f"{chapter.name}:\n" + "\n".join(problems)


MUTANTS = [
    'cfg = load_settings(Path("..") / "configs" / "pretrain_cpu.yaml")',
    'RUNS = Path("../runs")',
    "out = os.path.join('..', 'runs', name)",
    'print(open(f"../runs/{name}/metrics.json").read())',
    "path = Path('data') / '..' / 'x'",
    'with contextlib.chdir(ROOT):\n    pass',
    'os.chdir("/tmp")',
    "if True:\n    %cd ..",
    'wiki = data_dir() / "wikitext-2-raw"',
    "from bertmini.utils import data_dir, get_device",
    'text = (bertmini.utils.data_dir() / "sst2" / "dev.tsv").read_text()',
    'CONFIGS = Path("configs")',
]
CLEAN = [
    "DATA = local_data_dir()  # None on Colab",
    "from bertmini.utils import local_data_dir, runs_dir",
    'splits = load_splits("squad", DATA, skip_bad=False, eval_fraction=0.2, test=False)',
    'load_sst2("train", data_dir=DATA)',
    'print("python -m bertmini pretrain --config", f"configs/{CONFIG}.yaml")',
    'print(text[:240], "...")',
    'RUN = runs_dir() / "pretrain-cpu"',
    'first = path.parent / (m["runs"][0]["dir"] if "runs" in m else "")',
]


@pytest.mark.parametrize("source", MUTANTS)
def test_the_check_flags_each_way_of_depending_on_the_checkout(source):
    assert violations(source), source


@pytest.mark.parametrize("source", CLEAN)
def test_the_check_passes_what_the_chapters_do_now(source):
    assert violations(source) == []


# -------------------------------------------------------------------------------------- (b) executed
# Chapter 7 reads both kinds of data file (WikiText and a Gutenberg book, through data_text), writes them to
# a temporary folder and builds a cached dataset there: about 30 s in fast mode.
EXECUTED = ROOT / "chapters" / "07_pretraining_data.ipynb"
WATCHED = ["runs", ".cache", "chapters"]  # where a chapter that assumed the checkout would write


def _snapshot() -> set[str]:
    """Every file and folder under the watched places of the checkout (bytecode caches aside)."""
    seen = set()
    for name in WATCHED:
        top = ROOT / name
        if top.exists():
            seen.add(name)
            seen.update(str(p.relative_to(ROOT)) for p in top.rglob("*") if "__pycache__" not in p.parts)
    return seen


@pytest.mark.slow
def test_a_chapter_runs_from_a_folder_outside_the_checkout(tmp_path):
    from bertmini.utils import local_data_dir

    data = local_data_dir()
    if data is None:
        pytest.skip("no local data sets (BERTMINI_DATA_DIR): offline, the chapter has nothing to read")
    work, scratch = tmp_path / "elsewhere", tmp_path / "tmp"
    work.mkdir()
    scratch.mkdir()
    copy = work / EXECUTED.name
    shutil.copy2(EXECUTED, copy)
    env = {k: v for k, v in os.environ.items() if k not in ("BERTMINI_RUNS", "PYTEST_ADDOPTS")}
    env.update(BERTMINI_FAST="1", BERTMINI_DATA_DIR=str(data.resolve()), TMPDIR=str(scratch), MPLBACKEND="Agg",
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    before = _snapshot()
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                             "--nbval-current-env", str(copy)],
                            cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0 and " passed" in result.stdout, result.stdout[-6000:] + result.stderr[-3000:]
    new = sorted(_snapshot() - before)
    assert not new, f"the chapter wrote into the checkout: {new[:20]}"
    # Runs, if any, go to runs/ in the working directory (BERTMINI_RUNS is unset): under tmp_path, and never
    # next to it, where a "../runs" would have put them.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "tmp"], sorted(tmp_path.iterdir())


# Absolute paths of the machine that executed a notebook (a venv, a home, a scratch folder): committed outputs
# must speak of the project only.
_MACHINE_PATH = re.compile(r"(?<![\w.])/(?:root|home/\w+|Users/\w+|work|tmp)/[\w.-]+")


def machine_paths(notebook: dict) -> list[str]:
    """Every absolute machine path in a notebook's sources and text outputs."""
    texts = []
    for cell in notebook["cells"]:
        texts.append("".join(cell["source"]))
        for out in cell.get("outputs", []):
            texts.append("".join(out.get("text", "")))
            texts += ["".join(v) for k, v in out.get("data", {}).items() if k == "text/plain"]
    return [m for text in texts for m in _MACHINE_PATH.findall(text)]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_no_machine_paths_in_committed_notebooks(path):
    assert machine_paths(json.loads(path.read_text())) == []


def test_machine_path_check_catches_a_venv_path_in_an_output():
    cell = {"source": ["print(x)"], "outputs": [
        {"output_type": "stream", "text": ["Failed to load /root/.cache/venv/lib/torchao/_C.so\n"]}]}
    assert machine_paths({"cells": [cell]}) == ["/root/.cache"]
    cell["outputs"][0]["text"] = ["saved to runs/sst2-minilm and bertmini/tokenizer.py\n"]
    assert machine_paths({"cells": [cell]}) == []
