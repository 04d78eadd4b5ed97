"""The import rule of ARCHITECTURE.md: the package reads like the book, and imports run backwards only.

Layers, in book order: the package root (Part I, the model, and the shared basics), ``training/`` (the
engine, chapter 8), ``pretraining/`` (Part II), ``finetuning/`` (Part III), ``analysis/`` and
``compression/`` (Part IV, chapters 12-13), ``retrieval/`` (chapter 14). A module may import its own layer and earlier ones, never a later one;
and no two modules import each other, even lazily inside a function (imports under ``if TYPE_CHECKING``
serve annotations only and do not count).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bertmini"
LAYERS = ["", "training", "pretraining", "finetuning", "analysis", "compression", "retrieval"]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path) -> set[str]:
    """Every ``bertmini`` module that ``path`` imports, at the top or inside functions, made absolute."""
    here = module_name(path, root).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and _is_type_checking(block.test)
                   for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in typing_only:  # annotations only: no import at run time, so no cycle
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == root.name}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = ".".join(base + (node.module.split(".") if node.module else []))
            if target.split(".")[0] != root.name:
                continue
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names if (root.parent / f"{target}.{a.name}".replace(".", "/")
                                                                    ).with_suffix(".py").is_file()}
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def layer(module: str) -> int:
    """0 for the package root's modules, else the index of the subpackage (``bertmini.training.x`` -> 1)."""
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS[1:] else 0


def violations(root: Path) -> list[str]:
    """``importer -> imported`` pairs that break the rule (a later layer, or a cycle of two)."""
    graph = {module_name(p, root): imports_of(p, root) for p in sorted(root.rglob("*.py"))}
    bad = [f"{a} -> {b} (layer {layer(b)} after {layer(a)})" for a, deps in graph.items() for b in sorted(deps)
           if layer(b) > layer(a)]
    bad += [f"{a} <-> {b} (cycle)" for a, deps in graph.items() for b in sorted(deps)
            if a < b and a in graph.get(b, ()) and not b.startswith(a + ".") and not a.startswith(b + ".")]
    return bad


def test_imports_run_backwards_in_book_order():
    assert violations(PACKAGE) == []


def test_the_package_tree_is_the_books_parts():
    subpackages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert set(subpackages) <= set(LAYERS[1:]), subpackages
    names = {p.stem for p in PACKAGE.rglob("*.py")} - {"__init__", "__main__"}
    clashes = sorted((a, b) for a in names for b in names if a != b and b.startswith(a))
    assert not clashes, f"file names that differ only by a suffix (checkpoint / checkpointing): {clashes}"


@pytest.mark.parametrize("source, expected", [
    ("from bertmini.finetuning.cli import main\n", "bertmini.training.fake -> bertmini.finetuning.cli"),
    ("def f():\n    from ..pretraining import corpus\n", "bertmini.training.fake -> bertmini.pretraining"),
])
def test_the_rule_catches_a_forward_import(tmp_path, source, expected):
    root = tmp_path / "bertmini"
    for sub in ("training", "pretraining", "finetuning"):
        (root / sub).mkdir(parents=True)
        (root / sub / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "finetuning" / "cli.py").write_text("")
    (root / "pretraining" / "corpus.py").write_text("")
    (root / "training" / "fake.py").write_text(source)
    assert any(v.startswith(expected) for v in violations(root)), violations(root)


def test_the_rule_catches_a_cycle(tmp_path):
    root = tmp_path / "bertmini"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "model.py").write_text("def load():\n    from .hf_folder import read\n")
    (root / "hf_folder.py").write_text("from .model import BertModel\n")
    assert "bertmini.hf_folder <-> bertmini.model (cycle)" in violations(root)
