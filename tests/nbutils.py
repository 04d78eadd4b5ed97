"""Load functions/classes defined inline in a chapter notebook, to test them against the package.

The drift rule: a notebook that re-implements something "from scratch" must stay equal to the
package's version; tests pull the notebook's definition out with :func:`load_notebook_defs`.
A drift test must also be able to fail: :func:`mutate` plants a realistic bug in a copy of the
notebook, and each drift test file checks that its comparison reports every such mutant.
"""
from __future__ import annotations

import ast
import json
import os
from pathlib import Path


def _cell_sources(nb_path: Path) -> list[str]:
    """Code cell sources, with IPython magics/shell lines (``%pip``, ``!ls``) replaced by ``pass``."""
    cells = json.loads(nb_path.read_text(encoding="utf-8"))["cells"]
    sources = []
    for cell in cells:
        if cell["cell_type"] == "code":
            src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            lines = [_drop_magic(ln) for ln in src.splitlines()]
            sources.append("\n".join(lines))
    return sources


def _drop_magic(line: str) -> str:
    """``%pip ...`` -> ``pass`` at the same indent, so an ``if IN_COLAB:`` block still parses."""
    body = line.lstrip()
    return line[: len(line) - len(body)] + "pass" if body.startswith(("%", "!")) else line


def load_notebook_defs(path: str | os.PathLike, names: list[str] | tuple[str, ...]) -> dict:
    """Execute only the top-level ``def``/``class`` statements called ``names`` from notebook ``path``.

    The last definition of a name wins (as when running the notebook top to bottom). Notebook
    helpers those definitions call (other top-level defs), and the top-level imports and literal
    constants (``PREFIX = "##"``) they use, come along; any other notebook state does not.
    """
    path = Path(path)
    defs: dict[str, ast.stmt] = {}  # every top-level def/class of the notebook
    support: list[ast.stmt] = []  # imports and constant assignments, in notebook order
    for i, src in enumerate(_cell_sources(path)):
        try:
            tree = ast.parse(src)
        except SyntaxError as e:
            raise SyntaxError(f"{path.name}: code cell {i} does not parse: {e}") from e
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defs[node.name] = node
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                support.append(node)
            elif isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
                try:
                    ast.literal_eval(node.value)
                except ValueError:
                    continue
                support.append(node)
    missing = [n for n in names if n not in defs]
    if missing:
        raise KeyError(f"{path.name}: no top-level def or class named {', '.join(missing)}")
    # Pull in the notebook's helper defs that the requested ones use, transitively.
    chosen, todo = [], list(names)
    while todo:
        name = todo.pop()
        if name in defs and name not in chosen:
            chosen.append(name)
            todo.extend(n.id for n in ast.walk(defs[name]) if isinstance(n, ast.Name))
    used = {n.id for d in chosen for n in ast.walk(defs[d]) if isinstance(n, ast.Name)}
    needed = [s for s in support if _bound_names(s) & used]
    chosen_defs = [node for node in defs.values() if node.name in chosen]  # notebook order
    module = ast.Module(body=needed + chosen_defs, type_ignores=[])
    namespace: dict = {}
    exec(compile(module, str(path), "exec"), namespace)
    return {n: namespace[n] for n in names}


def _bound_names(node: ast.stmt) -> set[str]:
    if isinstance(node, ast.Assign):
        return {t.id for t in node.targets}
    return {(a.asname or a.name).split(".")[0] for a in node.names}


def mutate(nb_path: str | os.PathLike, definition: str, old: str, new: str, tmp_path: str | os.PathLike) -> Path:
    """Copy of notebook ``nb_path`` (written into ``tmp_path``) with ``old`` replaced by ``new`` in the code cell
    containing ``definition`` (e.g. ``"def attention("``); ``old`` must occur exactly once in that cell."""
    nb_path = Path(nb_path)
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    cells = [c for c in nb["cells"] if c["cell_type"] == "code" and definition in "".join(c["source"])]
    assert len(cells) == 1, f"{nb_path.name}: expected one code cell containing {definition!r}, got {len(cells)}"
    src = "".join(cells[0]["source"])
    assert src.count(old) == 1, f"{nb_path.name}: mutation target {old!r} must occur once in the {definition!r} cell"
    cells[0]["source"] = src.replace(old, new)
    out = Path(tmp_path) / nb_path.name
    out.write_text(json.dumps(nb), encoding="utf-8")
    return out


def excess(actual, expected, rtol: float = 1.3e-6, atol: float = 1e-5) -> float:
    """How far ``actual`` is from ``expected`` in units of ``torch.testing.assert_close``'s tolerance:
    ``max |a - e| / (atol + rtol·|e|)``, so <= 1 passes assert_close with the same rtol/atol (its float32
    defaults here) and a planted bug should give far more. A shape or dtype mismatch, or a NaN, counts as ``inf``."""
    import math

    import torch

    actual, expected = torch.as_tensor(actual).detach(), torch.as_tensor(expected).detach()
    if actual.shape != expected.shape or actual.dtype != expected.dtype:
        return math.inf
    a, e = actual.double(), expected.double()
    if a.numel() == 0:
        return 0.0
    ratio = ((a - e).abs() / (atol + rtol * e.abs())).masked_fill(a == e, 0.0)  # equal infinities are equal
    return ratio.nan_to_num(nan=math.inf).max().item()


def fails(check, *args) -> bool:
    """Whether `check(*args)` raises AssertionError (any other exception is an error of the test itself)."""
    try:
        check(*args)
    except AssertionError:
        return True
    return False
