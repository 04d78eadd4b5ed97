"""The efficiency ladder's pieces (chapter 13): batches per padding scheme, the padding share, timed steps."""
from __future__ import annotations

import pytest
import torch

import bertmini
from bertmini.compression.ladder import LADDER, Rung, make_batches, padding_fraction, time_rungs, train_pass
from bertmini.hf_folder import load_state_dict

from hf_parity import hf_twin
from test_model import tiny_config

LENGTHS = [3, 9, 4, 8, 3, 10, 5, 7]


def features(lengths=LENGTHS) -> list[dict]:
    return [{"input_ids": [2] + [7] * (n - 2) + [3], "token_type_ids": [0] * n, "labels": i % 3}
            for i, n in enumerate(lengths)]


def test_make_batches_pads_as_asked():
    fixed = make_batches(features(), 4, "max_length", 12)
    assert {b["input_ids"].shape for b in fixed} == {(4, 12)}
    longest = make_batches(features(), 4, "longest", 12)
    assert all(b["input_ids"].shape[1] == int(b["attention_mask"].sum(1).max()) for b in longest)
    bucketed = make_batches(features(), 4, "bucketed", 12)
    assert sorted(sorted(b["attention_mask"].sum(1).tolist()) for b in bucketed) == [[3, 3, 4, 5], [7, 8, 9, 10]]
    expected = r"padding: expected one of \('max_length', 'longest', 'bucketed'\), got 'none'"
    with pytest.raises(ValueError, match=expected):
        make_batches(features(), 4, "none", 12)


def test_padding_fraction_counts_pad_positions():
    batches = make_batches(features(), 4, "max_length", 12)
    assert padding_fraction(batches) == pytest.approx(1 - sum(LENGTHS) / (len(LENGTHS) * 12))
    assert padding_fraction(make_batches(features([5] * 8), 4, "longest", 12)) == 0.0


def tiny_models() -> dict[str, torch.nn.Module]:
    config = tiny_config("BertForSequenceClassification")
    ours = bertmini.BertForSequenceClassification(config)
    models = {"bertmini": ours}
    for attn in ("eager", "sdpa"):
        models[f"transformers-{attn}"] = hf_twin("BertForSequenceClassification", config, attn)
        load_state_dict(ours, models[f"transformers-{attn}"].state_dict())
    return models


def test_train_pass_updates_the_model():
    model = tiny_models()["bertmini"]
    before = model.classifier.weight.detach().clone()
    seconds = train_pass(model, make_batches(features(), 4, "bucketed", 12),
                         torch.optim.AdamW(model.parameters(), lr=1e-2), cls_only=False)
    assert seconds > 0 and model.training
    assert not torch.equal(model.classifier.weight, before)


def test_time_rungs_reports_every_rung_and_round():
    rows = time_rungs(LADDER, tiny_models(), features(), batch_size=4, max_length=12, rounds=2)
    assert [r["name"] for r in rows] == [r.name for r in LADDER]
    assert all(len(r["seconds"]) == 2 and r["examples_per_s"] > 0 for r in rows)
    assert rows[0]["padding"] > rows[2]["padding"]  # max_length pads more than bucketing


def test_time_rungs_names_a_missing_model():
    with pytest.raises(KeyError, match=r"rung 'x' needs a model under 'transformers-eager'; got \['bertmini'\]"):
        time_rungs([Rung("x", "transformers", "longest", "eager")], {"bertmini": tiny_models()["bertmini"]},
                   features(), 4, 12)
