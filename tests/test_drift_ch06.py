"""Chapter 6's inline parameter formula and assembled model must stay equal to the package.

Each comparison is a function that also runs on mutated copies of the notebook (LayerNorm parameters
forgotten, the pooler without tanh, the padding mask dropped, ...) and must fail there.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bertmini import BertConfig, BertModel

from nbutils import load_notebook_defs, mutate

NOTEBOOK = Path(__file__).resolve().parents[1] / "chapters" / "06_bert.ipynb"
NAMES = ["param_breakdown", "param_count", "group_of", "AssembledBert"]
DEFS = load_notebook_defs(NOTEBOOK, NAMES)


def meta_model(config: BertConfig, pooler: bool = True) -> BertModel:
    """Shapes without memory: counting bert-large costs no allocation."""
    with torch.device("meta"):
        return BertModel(config, add_pooling_layer=pooler)


def count_error(defs: dict, config: BertConfig, pooler: bool = True) -> int:
    """Notebook formula minus the parameters of the package's BertModel (0 when they agree)."""
    return defs["param_count"](config, pooler) - meta_model(config, pooler).num_parameters()


@pytest.mark.parametrize("preset", ["tiny", "mini", "small", "medium", "base", "large"])
@pytest.mark.parametrize("vocab_size", [1000, 8000, 30522])
def test_param_count_matches_num_parameters(preset: str, vocab_size: int) -> None:
    assert count_error(DEFS, BertConfig.preset(preset, vocab_size=vocab_size)) == 0


@pytest.mark.parametrize("overrides", [
    {"intermediate_size": 300, "max_position_embeddings": 128, "type_vocab_size": 3},
    {"num_attention_heads": 4},  # heads reshape Q/K/V, they never change the count
])
def test_param_count_general_shapes_and_no_pooler(overrides: dict) -> None:
    config = BertConfig.preset("mini", **overrides)
    for pooler in (True, False):
        assert count_error(DEFS, config, pooler) == 0


def breakdown_error(defs: dict, config: BertConfig) -> dict[str, int]:
    """Per part: parameters grouped by the notebook's `group_of` minus the notebook's `param_breakdown` (all 0)."""
    counted = dict.fromkeys(defs["param_breakdown"](config), 0)
    for name, p in meta_model(config).named_parameters():
        counted[defs["group_of"](name)] += p.numel()
    return {part: counted[part] - n for part, n in defs["param_breakdown"](config).items()}


def test_breakdown_matches_grouped_parameter_names() -> None:
    assert set(breakdown_error(DEFS, BertConfig.preset("small", vocab_size=5000)).values()) == {0}


def test_bert_base_is_109_482_240() -> None:
    assert DEFS["param_count"](BertConfig.preset("base")) == 109_482_240


def assembled_error(AssembledBert) -> float:
    """Largest difference of the notebook's AssembledBert to BertModel (padded batch, two segments): exactly 0."""
    torch.manual_seed(0)
    config = BertConfig.preset("tiny", vocab_size=200)
    reference = BertModel(config).eval()
    assembled = AssembledBert(config).eval()
    assembled.load_state_dict(reference.state_dict())  # strict: the names must be HF's
    ids = torch.randint(0, 200, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    types = (torch.arange(9) >= 4).long().expand(2, 9) * mask
    with torch.no_grad():
        hidden, pooled = assembled(ids, mask, types)
        out = reference(ids, attention_mask=mask, token_type_ids=types)
    return max((hidden - out.last_hidden_state).abs().max().item(), (pooled - out.pooler_output).abs().max().item())


def test_assembled_bert_equals_package_model() -> None:
    assert assembled_error(DEFS["AssembledBert"]) == 0


def ch06_error(defs: dict, definition: str) -> float:
    """The chapter-6 drift comparison of `definition` on bert-mini (small and fixed)."""
    config = BertConfig.preset("mini", vocab_size=1000)
    if definition == "param_breakdown":
        return max(abs(count_error(defs, config, pooler)) for pooler in (True, False))
    if definition == "group_of":
        return max(abs(e) for e in breakdown_error(defs, config).values())
    return assembled_error(defs["AssembledBert"])


@pytest.mark.parametrize("definition, old, new", [
    pytest.param("param_breakdown", '"embeddings": V * H + P * H + T * H + 2 * H,',
                 '"embeddings": V * H + P * H + T * H,', id="embedding-LayerNorm-forgotten"),
    pytest.param("param_breakdown", "4 * (H * H + H)", "4 * H * H", id="attention-without-biases"),
    pytest.param("param_breakdown", "(I * H + H) + 2 * H)", "(I * H + H))", id="ffn-LayerNorm-forgotten"),
    pytest.param("param_breakdown", "(H * H + H) if pooler else 0", "H * H if pooler else 0",
                 id="pooler-without-bias"),
    pytest.param("group_of", '".intermediate." in name or ".output." in name', '".intermediate." in name',
                 id="ffn-output-counted-as-pooler"),
    pytest.param("group_of", 'if ".attention." in name:', 'if ".attention.self." in name:',
                 id="attention-output-counted-as-ffn"),
    pytest.param("group_of", 'name.startswith("embeddings.")', 'name.startswith("embeddings.word")',
                 id="only-word-embeddings-as-embeddings"),
    pytest.param("AssembledBert", "torch.tanh(self.pooler.dense(x[:, 0]))", "self.pooler.dense(x[:, 0])",
                 id="pooler-without-tanh"),
    pytest.param("AssembledBert", "self.pooler.dense(x[:, 0])", "self.pooler.dense(x.mean(dim=1))",
                 id="mean-pooling-not-CLS"),
    pytest.param("AssembledBert", "x, _ = layer(x, mask)", "x, _ = layer(x, None)", id="padding-mask-dropped"),
    pytest.param("AssembledBert", "self.embeddings(input_ids, token_type_ids)", "self.embeddings(input_ids)",
                 id="segment-ids-dropped"),
])
def test_ch06_drift_test_catches_mutants(definition: str, old: str, new: str, tmp_path: Path) -> None:
    path = mutate(NOTEBOOK, f"{'class' if definition[0].isupper() else 'def'} {definition}(", old, new, tmp_path)
    assert ch06_error(load_notebook_defs(path, NAMES), definition) > 0
