"""The book builds offline with warnings as errors, from the committed notebook outputs."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [c["file"] for part in toc["parts"] for c in part["chapters"]]


def test_every_chapter_is_in_the_toc_and_executed():
    listed = set(toc_files())
    on_disk = {f"chapters/{p.stem}" for p in (ROOT / "chapters").glob("*.ipynb")}
    assert listed == on_disk, f"toc vs chapters/: only in toc {listed - on_disk}, only on disk {on_disk - listed}"
    for name in sorted(on_disk):
        nb = json.loads((ROOT / f"{name}.ipynb").read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert any(c.get("outputs") for c in code), f"{name}: no executed outputs committed"
        assert not any(o.get("output_type") == "error" for c in code for o in c.get("outputs", [])), f"{name}: error output"
        assert nb["metadata"]["kernelspec"]["language"] == "python", f"{name}: kernelspec language missing"
        assert "colab-badge.svg" in "".join(nb["cells"][0]["source"]), f"{name}: no Colab badge in the first cell"


def build_book(source: Path, out: Path) -> subprocess.CompletedProcess:
    """``jupyter-book build SOURCE -W -n`` (warnings are errors) into ``out``."""
    exe = shutil.which("jupyter-book") or str(Path(sys.executable).parent / "jupyter-book")
    if not Path(exe).exists() and shutil.which(exe) is None:
        pytest.fail("jupyter-book is not installed: pip install -r requirements.txt")
    return subprocess.run([exe, "build", str(source), "-W", "-n", "--keep-going", "--path-output", str(out)],
                          capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_book_builds_with_warnings_as_errors(tmp_path):
    result = build_book(ROOT, tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert (tmp_path / "_build" / "html" / "chapters" / "06_bert.html").is_file()


# Markdown that breaks a -W build when read: YAML front matter with a Python tag, a heading starting at H3
# (as in site-packages/cuda/pathfinder/README.md of a CUDA build of torch).
BAD_MARKDOWN = "---\nfoo: !!python/object:os.system\n---\n### Deep heading\n"
VENV_LIKE = [".venv/lib/python3.11/site-packages/cuda/pathfinder", "venv/lib/python3.11/site-packages/pkg",
             "env/lib/python3.11/site-packages/pkg", "my-env/lib/python3.11/site-packages/pkg", ".tox/py311",
             ".pytest_cache", "runs/sst2"]


@pytest.mark.slow
def test_virtual_environments_in_the_tree_do_not_reach_the_book(tmp_path):
    """README command 1 creates .venv/ in the checkout: its Markdown files must not be read by the build."""
    tree = tmp_path / "tree"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    for name in tracked.stdout.split("\0"):
        if name and (ROOT / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
    for folder in VENV_LIKE:
        (tree / folder).mkdir(parents=True)
        (tree / folder / "README.md").write_text(BAD_MARKDOWN)
    (tree / "my-env" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    result = build_book(tree, tmp_path / "out")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    built = {p.relative_to(tmp_path / "out" / "_build" / "html").as_posix()
             for p in (tmp_path / "out" / "_build" / "html").rglob("*.html")}
    assert not [p for p in built if "site-packages" in p or p.startswith(("runs/", ".pytest"))], built


def test_the_decoy_markdown_does_break_a_build(tmp_path):
    """The test above can fail: the same file, listed in the toc, stops the build."""
    pytest.importorskip("jupyter_book")
    (tmp_path / "_config.yml").write_text("title: decoy\nexecute:\n  execute_notebooks: 'off'\n")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: bad\n")
    (tmp_path / "intro.md").write_text("# Intro\n")
    (tmp_path / "bad.md").write_text(BAD_MARKDOWN)
    assert build_book(tmp_path, tmp_path / "out").returncode != 0
