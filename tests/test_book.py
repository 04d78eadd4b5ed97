"""The book builds offline with warnings as errors, from the committed notebook outputs, and its links resolve."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [c["file"] for part in toc["parts"] for c in part["chapters"]]


def test_every_chapter_is_in_the_toc_and_executed():
    listed = {f for f in toc_files() if f.startswith("chapters/")}
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


@pytest.fixture(scope="module")
def built_html(tmp_path_factory) -> Path:
    """The book built once for this module's checks: its html folder."""
    out = tmp_path_factory.mktemp("book")
    result = build_book(ROOT, out)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return out / "_build" / "html"


@pytest.mark.slow
def test_book_builds_with_warnings_as_errors(built_html):
    for page in toc_files() + ["intro"]:
        assert (built_html / f"{page}.html").is_file(), page


class _Links(HTMLParser):
    """Collects a page's ids (anchors) and the local targets of its href and src attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.targets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)
            if name in ("href", "src") and value and not urlsplit(value).scheme and not value.startswith("//"):
                self.targets.append(value)


def broken_links(html_root: Path) -> list[str]:
    """Every local href/src in the built pages whose file, or whose #anchor in that file, does not exist.

    The theme's template fragments under _static/ are not pages (their links are Jinja), so they are skipped.
    """
    pages = {p.resolve(): p for p in html_root.rglob("*.html") if "_static" not in p.relative_to(html_root).parts}
    parsed: dict[Path, _Links] = {}

    def parse(path: Path) -> _Links:
        if path not in parsed:
            parsed[path] = _Links()
            parsed[path].feed(path.read_text(encoding="utf-8"))
        return parsed[path]

    broken = []
    for path, page in sorted(pages.items()):
        for target in parse(path).targets:
            parts = urlsplit(target)
            dest = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if dest.is_dir():
                dest = dest / "index.html"
            where = f"{page.relative_to(html_root)} -> {target}"
            if not dest.exists():
                broken.append(f"{where}: no such file")
            elif parts.fragment and dest.suffix == ".html" and unquote(parts.fragment) not in parse(dest).ids:
                broken.append(f"{where}: no anchor #{parts.fragment}")
    return broken


@pytest.mark.slow
def test_every_internal_link_and_anchor_resolves(built_html):
    """Offline link check: chapter cross-references, the toc, figures and static files all exist."""
    assert broken_links(built_html) == []


def test_the_link_check_finds_a_missing_file_and_a_missing_anchor(tmp_path):
    (tmp_path / "a.html").write_text('<h1 id="top">A</h1><a href="b.html#nowhere">b</a> <a href="#top">top</a>'
                                     '<img src="missing.png"> <a href="https://example.org/x.html">out</a>')
    (tmp_path / "b.html").write_text('<a href="a.html#top">a</a>')
    assert broken_links(tmp_path) == ["a.html -> b.html#nowhere: no anchor #nowhere",
                                      "a.html -> missing.png: no such file"]


@pytest.mark.slow
def test_math_renders_offline_and_chinese_survives(built_html):
    """MathJax comes from the book's own _static/ (no CDN); the glossary's Chinese is in the page as text."""
    page = (built_html / "chapters" / "02_attention.html").read_text(encoding="utf-8")
    scripts = re.findall(r'<script[^>]*src="([^"]*mathjax[^"]*)"', page, flags=re.IGNORECASE)
    assert scripts == ["../_static/mathjax/tex-chtml.js"], scripts
    assert (built_html / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert "预训练" in (built_html / "glossary.html").read_text(encoding="utf-8")


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
    # Tracked files plus new ones not yet committed (not ignored): the tree as the next commit will have it.
    tracked = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True)
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


_CITATION = re.compile(r"\b([A-Z][A-Za-z'-]+)(?: et al\.| (?:&|and) [A-Z][A-Za-z'-]+),? \(?((?:19|20)\d\d)\b")


def citations(text: str) -> set[tuple[str, str]]:
    """(first author's surname, year) of each "Name et al. 2019" / "Name & Other 2019" in `text`."""
    return set(_CITATION.findall(text))


def missing_references(cited: set[tuple[str, str]], references: str) -> list[str]:
    entries = references.split("\n- ")
    return sorted(f"{name} {year}" for name, year in cited
                  if not any(name in entry and year in entry for entry in entries))


def test_every_cited_paper_is_on_the_references_page():
    """Chapters, package docstrings and the README cite by "Author et al. year": references.md lists each."""
    sources = [*(ROOT / "chapters").glob("*.ipynb"), *(ROOT / "bertmini").rglob("*.py"), ROOT / "README.md"]
    cited = set().union(*(citations(p.read_text(encoding="utf-8")) for p in sources))
    assert len(cited) > 30, sorted(cited)
    assert missing_references(cited, (ROOT / "references.md").read_text(encoding="utf-8")) == []


def test_the_reference_check_flags_a_missing_paper():
    cited = citations("as shown (Devlin et al. 2019; Hinton & Salakhutdinov 2006), and Vaswani et al. (2017)")
    assert cited == {("Devlin", "2019"), ("Hinton", "2006"), ("Vaswani", "2017")}
    page = "- **Devlin et al. 2019.** BERT.\n- **Vaswani et al. 2017.** Attention."
    assert missing_references(cited, page) == ["Hinton 2006"]
