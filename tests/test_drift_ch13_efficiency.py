"""Chapter 13's efficiency section: its inline pieces must stay equal to the package's.

* ``explicit_attention``: the formula written out, against ``bertmini.attention.scaled_dot_product_attention``;
* ``pad_back``: packed real-token rows back to the padded (B, T) layout, against ``bertmini.attention.pad_rows``;
* ``cls_rows``: the rows the sentence classifier reads, against ``bertmini.heads.cls_only``.

Each comparison also runs on mutated copies of the notebook (no 1/√d_k, the mask dropped, rows placed at
the pads, the wrong position selected) and must fail there.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bertmini.attention import pad_rows, scaled_dot_product_attention
from bertmini.heads import cls_only

from nbutils import fails, load_notebook_defs, mutate

NB13 = Path(__file__).resolve().parents[1] / "chapters" / "13_efficient_bert.ipynb"
NAMES = ["explicit_attention", "pad_back", "cls_rows"]
CH13 = load_notebook_defs(NB13, NAMES)


def random_keep(seed: int, b: int = 4, t: int = 9) -> torch.Tensor:
    """(B, T) bool: each row's first 1..T positions kept, as an attention mask keeps real tokens."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    return torch.arange(t) < lengths[:, None]


def check_explicit_attention(explicit_attention, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    q, k, v = torch.randn(3, 2, 3, 9, 8, generator=g).unbind(0)
    keep = random_keep(seed, b=2)
    mask = (~keep[:, None, None, :]).float() * torch.finfo(torch.float32).min  # (B, 1, 1, T) additive
    expected, _ = scaled_dot_product_attention(q, k, v, mask)
    torch.testing.assert_close(explicit_attention(q, k, v, mask), expected, atol=1e-5, rtol=0)


def check_pad_back(pad_back, seed: int) -> None:
    keep = random_keep(seed)
    rows = torch.randn(int(keep.sum()), 5, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(pad_back(rows, keep), pad_rows(rows, keep), atol=0, rtol=0)


def check_cls_rows(cls_rows, seed: int) -> None:
    ids = torch.randint(0, 100, (3, 2 + seed % 7), generator=torch.Generator().manual_seed(seed))
    assert torch.equal(cls_rows(ids), cls_only(ids))


CHECKS = {"explicit_attention": check_explicit_attention, "pad_back": check_pad_back, "cls_rows": check_cls_rows}


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_explicit_attention_equals_bertmini(seed):
    check_explicit_attention(CH13["explicit_attention"], seed)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_pad_back_equals_pad_rows(seed):
    check_pad_back(CH13["pad_back"], seed)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_cls_rows_equals_cls_only(seed):
    check_cls_rows(CH13["cls_rows"], seed)


@pytest.mark.parametrize("definition,old,new", [
    pytest.param("explicit_attention", " / math.sqrt(q.size(-1))", "", id="no-1/sqrt(d_k)"),
    pytest.param("explicit_attention", "scores = scores + mask", "pass", id="mask-ignored"),
    pytest.param("explicit_attention", "scores.softmax(-1)", "scores.softmax(-2)", id="softmax-over-queries"),
    pytest.param("pad_back", "out[keep] = rows", "out[~keep] = rows[: int((~keep).sum())]", id="rows-at-the-pads"),
    pytest.param("pad_back", "rows.new_zeros(", "rows.new_ones(", id="pads-not-zero"),
    pytest.param("cls_rows", "select[:, 0] = True", "select[:, -1] = True", id="last-position-not-cls"),
])
def test_ch13_drift_test_catches_mutants(definition, old, new, tmp_path):
    defs = load_notebook_defs(mutate(NB13, f"def {definition}(", old, new, tmp_path), NAMES)
    assert any(fails(CHECKS[definition], defs[definition], seed) for seed in range(5))
