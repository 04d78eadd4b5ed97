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


@pytest.mark.slow
def test_book_builds_with_warnings_as_errors(tmp_path):
    if shutil.which("jupyter-book") is None and not (Path(sys.executable).parent / "jupyter-book").exists():
        pytest.fail("jupyter-book is not installed: pip install -r requirements.txt")
    exe = shutil.which("jupyter-book") or str(Path(sys.executable).parent / "jupyter-book")
    result = subprocess.run([exe, "build", str(ROOT), "-W", "-n", "--keep-going", "--path-output", str(tmp_path)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert (tmp_path / "_build" / "html" / "chapters" / "06_bert.html").is_file()
