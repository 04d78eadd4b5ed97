"""Chapter 6's inline parameter formula and assembled model must stay equal to the package."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bertmini import BertConfig, BertModel
from nbutils import load_notebook_defs

NOTEBOOK = Path(__file__).resolve().parents[1] / "chapters" / "06_bert.ipynb"
DEFS = load_notebook_defs(NOTEBOOK, ["param_breakdown", "param_count", "group_of", "AssembledBert"])


def meta_model(config: BertConfig, pooler: bool = True) -> BertModel:
    """Shapes without memory: counting bert-large costs no allocation."""
    with torch.device("meta"):
        return BertModel(config, add_pooling_layer=pooler)


@pytest.mark.parametrize("preset", ["tiny", "mini", "small", "medium", "base", "large"])
@pytest.mark.parametrize("vocab_size", [1000, 8000, 30522])
def test_param_count_matches_num_parameters(preset: str, vocab_size: int) -> None:
    config = BertConfig.preset(preset, vocab_size=vocab_size)
    assert DEFS["param_count"](config) == meta_model(config).num_parameters()


@pytest.mark.parametrize("overrides", [
    {"intermediate_size": 300, "max_position_embeddings": 128, "type_vocab_size": 3},
    {"num_attention_heads": 4},  # heads reshape Q/K/V, they never change the count
])
def test_param_count_general_shapes_and_no_pooler(overrides: dict) -> None:
    config = BertConfig.preset("mini", **overrides)
    for pooler in (True, False):
        assert DEFS["param_count"](config, pooler) == meta_model(config, pooler).num_parameters()


def test_breakdown_matches_grouped_parameter_names() -> None:
    config = BertConfig.preset("small", vocab_size=5000)
    counted = dict.fromkeys(DEFS["param_breakdown"](config), 0)
    for name, p in meta_model(config).named_parameters():
        counted[DEFS["group_of"](name)] += p.numel()
    assert counted == DEFS["param_breakdown"](config)


def test_bert_base_is_109_482_240() -> None:
    assert DEFS["param_count"](BertConfig.preset("base")) == 109_482_240


def test_assembled_bert_equals_package_model() -> None:
    torch.manual_seed(0)
    config = BertConfig.preset("tiny", vocab_size=200)
    reference = BertModel(config).eval()
    assembled = DEFS["AssembledBert"](config).eval()
    assembled.load_state_dict(reference.state_dict())  # strict: the names must be HF's
    ids = torch.randint(0, 200, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    with torch.no_grad():
        hidden, pooled = assembled(ids, mask)
        out = reference(ids, mask)
    assert torch.equal(hidden, out.last_hidden_state)
    assert torch.equal(pooled, out.pooler_output)
