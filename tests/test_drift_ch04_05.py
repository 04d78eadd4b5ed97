"""Drift tests: the from-scratch code of chapters 4 (embeddings) and 5 (encoder layer) must stay
equal to the package (and to transformers where it has the same module).

Every comparison is a function (``*_error`` returns the largest difference, ``check_*`` raises
AssertionError) that also runs on mutated copies of the notebooks (a missing LayerNorm, ReLU for
GELU, no 1/sqrt(d_k), ...) and must fail there: a comparison that cannot fail guards nothing.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from bertmini import BertConfig
from bertmini.attention import padding_mask
from bertmini.embeddings import BertEmbeddings, sinusoidal_positions
from bertmini.encoder import ACT2FN, BertLayer

from nbutils import excess, load_notebook_defs, mutate

CHAPTERS = Path(__file__).resolve().parents[1] / "chapters"
NB04, NB05 = CHAPTERS / "04_embeddings.ipynb", CHAPTERS / "05_encoder_layer.ipynb"
CH04_NAMES, CH05_NAMES = ["sinusoidal_table", "Embeddings"], ["gelu", "gelu_tanh", "layer_norm", "EncoderLayer"]
CH04, CH05 = load_notebook_defs(NB04, CH04_NAMES), load_notebook_defs(NB05, CH05_NAMES)
BUG = 10  # a mutant must miss a comparison's tolerance (see nbutils.excess) at least tenfold


def tiny_config(**overrides) -> BertConfig:
    base = dict(vocab_size=97, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                intermediate_size=128, max_position_embeddings=40)
    return BertConfig(**{**base, **overrides})


def randomize(module: nn.Module, seed: int) -> nn.Module:
    """Random values in every parameter (LayerNorm γ/β included), so no weight is trivially 0 or 1."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return module


# ---- chapter 4 ------------------------------------------------------------------------------

def sinusoidal_excess(sinusoidal_table, n: int = 50, dim: int = 16) -> float:
    """Notebook table vs the package's, in units of 1e-7 (the same ops in the same order: exactly 0)."""
    return excess(sinusoidal_table(n, dim), sinusoidal_positions(n, dim), rtol=0, atol=1e-7)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 600), dim=st.integers(1, 80))
def test_ch04_sinusoidal_table_equals_package(n: int, dim: int) -> None:
    torch.testing.assert_close(CH04["sinusoidal_table"](n, dim), sinusoidal_positions(n, dim), rtol=0, atol=0)
    assert sinusoidal_excess(CH04["sinusoidal_table"], n, dim) == 0


def test_ch04_sinusoidal_table_is_the_formula() -> None:
    table = CH04["sinusoidal_table"](50, 16)
    pos, i = 37, 3
    assert table[pos, 2 * i].item() == pytest.approx(math.sin(pos / 10000 ** (2 * i / 16)), abs=1e-5)
    assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(pos / 10000 ** (2 * i / 16)), abs=1e-5)


def embeddings_excess(defs: dict, position_embedding: str = "learned", with_types: bool = True) -> float:
    """Notebook `Embeddings` vs BertEmbeddings with the same random weights (LayerNorm γ/β included)."""
    cfg = tiny_config(position_embedding=position_embedding)
    ours = randomize(defs["Embeddings"](cfg), seed=1).eval()
    if position_embedding == "sinusoidal":  # randomize overwrote the fixed table: refill it the notebook's way
        ours.position_embeddings.weight.data.copy_(defs["sinusoidal_table"](40, 32))
    package = BertEmbeddings(cfg).eval()
    package.load_state_dict(ours.state_dict())
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(0, cfg.vocab_size, (3, 17), generator=gen)
    types = torch.randint(0, 2, (3, 17), generator=gen) if with_types else None
    with torch.no_grad():
        return excess(ours(ids, types), package(ids, types), rtol=0, atol=1e-6)


@pytest.mark.parametrize("position_embedding", ["learned", "sinusoidal"])
@pytest.mark.parametrize("with_types", [True, False])
def test_ch04_embeddings_equal_package(position_embedding: str, with_types: bool) -> None:
    assert embeddings_excess(CH04, position_embedding, with_types) <= 1


def check_sinusoidal_option(Embeddings) -> None:
    """Without any copying, the notebook's sinusoidal table is the package's, frozen; [PAD] has no gradient."""
    cfg = tiny_config(position_embedding="sinusoidal")
    ours, package = Embeddings(cfg), BertEmbeddings(cfg)
    torch.testing.assert_close(ours.position_embeddings.weight, package.position_embeddings.weight, rtol=0, atol=0)
    assert not ours.position_embeddings.weight.requires_grad
    assert ours.word_embeddings.padding_idx == package.word_embeddings.padding_idx == cfg.pad_token_id


def test_ch04_sinusoidal_option_matches_package_without_copying() -> None:
    check_sinusoidal_option(CH04["Embeddings"])


def test_ch04_embeddings_equal_transformers() -> None:
    transformers = pytest.importorskip("transformers")
    from transformers.models.bert.modeling_bert import BertEmbeddings as HFBertEmbeddings

    cfg = tiny_config()
    ours = randomize(CH04["Embeddings"](cfg), seed=3).eval()
    hf = HFBertEmbeddings(transformers.BertConfig(
        vocab_size=97, hidden_size=32, max_position_embeddings=40, layer_norm_eps=1e-12)).eval()
    hf.load_state_dict(ours.state_dict())
    ids = torch.randint(0, cfg.vocab_size, (2, 11), generator=torch.Generator().manual_seed(4))
    types = (torch.arange(11) >= 6).long().expand(2, 11)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, types), hf(ids, types), rtol=0, atol=1e-6)


def test_ch04_embeddings_train_mode_applies_dropout() -> None:
    ours = CH04["Embeddings"](tiny_config(hidden_dropout_prob=0.5)).train()
    ids = torch.randint(0, 97, (2, 10))
    assert (ours(ids) == 0).float().mean() > 0.2  # dropout zeroes about half


def ch04_fails(defs: dict, definition: str) -> bool:
    """Whether the chapter-4 drift tests reject `defs` (all checks of the mutated definition, fixed inputs)."""
    if definition == "sinusoidal_table":
        return sinusoidal_excess(defs["sinusoidal_table"]) > BUG
    if embeddings_excess(defs) > BUG or embeddings_excess(defs, "sinusoidal", with_types=False) > BUG:
        return True
    try:
        check_sinusoidal_option(defs["Embeddings"])
    except AssertionError:
        return True
    return False


@pytest.mark.parametrize("definition, old, new", [
    pytest.param("sinusoidal_table", "torch.arange(0, dim, 2, dtype=torch.float32)",
                 "torch.arange((dim + 1) // 2, dtype=torch.float32)", id="exponent-i/d-not-2i/d"),
    pytest.param("sinusoidal_table", "math.log(10000.0)", "math.log(1000.0)", id="base-1000"),
    pytest.param("sinusoidal_table", "torch.arange(num_positions, dtype=torch.float32)",
                 "torch.arange(1, num_positions + 1, dtype=torch.float32)", id="positions-from-1"),
    pytest.param("Embeddings", "return self.dropout(self.LayerNorm(x))", "return self.dropout(x)",
                 id="no-LayerNorm"),
    pytest.param("Embeddings", "positions = torch.arange(T, device=input_ids.device)",
                 "positions = torch.arange(1, T + 1, device=input_ids.device)", id="position-ids-off-by-one"),
    pytest.param("Embeddings", "self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)",
                 "self.word_embeddings(input_ids)", id="no-segment-embeddings"),
    pytest.param("Embeddings", "self.position_embeddings.weight.requires_grad_(False)",
                 "self.position_embeddings.weight.requires_grad_(True)", id="sinusoidal-table-trained"),
])
def test_ch04_drift_test_catches_mutants(definition: str, old: str, new: str, tmp_path: Path) -> None:
    path = mutate(NB04, f"{'class' if definition[0].isupper() else 'def'} {definition}(", old, new, tmp_path)
    assert ch04_fails(load_notebook_defs(path, CH04_NAMES), definition)


# ---- chapter 5 ------------------------------------------------------------------------------

def activations_excess(gelu, gelu_tanh, scale: float = 3.0, seed: int = 0) -> float:
    """Notebook GELUs vs the package's ("gelu" = erf, "gelu_new" = tanh) and torch's, in assert_close units."""
    x = torch.randn(257, generator=torch.Generator().manual_seed(seed)) * scale
    return max(excess(gelu(x), ACT2FN["gelu"](x)), excess(gelu_tanh(x), ACT2FN["gelu_new"](x)),
               excess(gelu(x), F.gelu(x)))


@settings(max_examples=20, deadline=None)
@given(scale=st.floats(0.01, 20.0), seed=st.integers(0, 2**16))
def test_ch05_activations_equal_package(scale: float, seed: int) -> None:
    assert activations_excess(CH05["gelu"], CH05["gelu_tanh"], scale, seed) <= 1


def test_ch05_exact_and_tanh_gelu_differ() -> None:
    x = torch.linspace(-4, 4, 801)
    gap = (CH05["gelu"](x) - CH05["gelu_tanh"](x)).abs().max().item()
    assert 4e-4 < gap < 5e-4


def layer_norm_excess(layer_norm, hidden: int = 8, shift: float = 3.0, scale: float = 10.0, seed: int = 0) -> float:
    """Notebook `layer_norm` vs nn.LayerNorm(eps=1e-12) with random γ/β, in units of rtol = atol = 1e-4.

    In float64: the formula is what is compared, not float32 round-off (two features with a mean far above
    their spread lose digits to cancellation in either order of summation)."""
    gen = torch.Generator().manual_seed(seed)
    ln = nn.LayerNorm(hidden, eps=1e-12).double()
    with torch.no_grad():
        ln.weight.copy_(torch.randn(hidden, generator=gen))
        ln.bias.copy_(torch.randn(hidden, generator=gen))
        x = torch.randn(3, 5, hidden, generator=gen, dtype=torch.float64) * scale + shift
        return excess(layer_norm(x, ln.weight, ln.bias), ln(x), rtol=1e-4, atol=1e-4)


@settings(max_examples=20, deadline=None)
@given(hidden=st.integers(2, 64), shift=st.floats(-5, 5), scale=st.floats(0.1, 1e3), seed=st.integers(0, 2**16))
def test_ch05_layer_norm_equals_torch(hidden: int, shift: float, scale: float, seed: int) -> None:
    assert layer_norm_excess(CH05["layer_norm"], hidden, shift, scale, seed) <= 1


def _layers(cfg: BertConfig, seed: int, EncoderLayer=None) -> tuple[nn.Module, BertLayer]:
    package = randomize(BertLayer(cfg), seed).eval()
    ours = (EncoderLayer or CH05["EncoderLayer"])(cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size,
                                                  eps=cfg.layer_norm_eps).eval()
    return ours.load_bert(package.state_dict()), package


def encoder_layer_excess(EncoderLayer, padded: bool = True, seed: int = 5) -> float:
    """Notebook `EncoderLayer` vs BertLayer with the same random weights, in units of rtol = atol = 1e-5."""
    cfg = tiny_config()
    ours, package = _layers(cfg, seed, EncoderLayer)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(3, 9, cfg.hidden_size, generator=gen)
    attention_mask = torch.ones(3, 9, dtype=torch.long)
    if padded:
        attention_mask[1, 5:] = 0
        attention_mask[2, 2:] = 0
    mask = padding_mask(attention_mask, x.dtype)
    assert (mask is None) != padded
    with torch.no_grad():
        return excess(ours(x, mask), package(x, mask)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("padded", [False, True])
def test_ch05_encoder_layer_equals_package(padded: bool) -> None:
    assert encoder_layer_excess(CH05["EncoderLayer"], padded) <= 1


def test_ch05_encoder_layer_equals_transformers() -> None:
    transformers = pytest.importorskip("transformers")
    from transformers.models.bert.modeling_bert import BertLayer as HFBertLayer

    cfg = tiny_config()
    ours, package = _layers(cfg, seed=7)
    hf_cfg = transformers.BertConfig(hidden_size=32, num_attention_heads=4, intermediate_size=128, layer_norm_eps=1e-12)
    hf_cfg._attn_implementation = "eager"
    hf = HFBertLayer(hf_cfg).eval()
    hf.load_state_dict(package.state_dict())
    x = torch.randn(2, 7, 32, generator=torch.Generator().manual_seed(8))
    mask = padding_mask(torch.tensor([[1] * 7, [1] * 4 + [0] * 3]), x.dtype)
    with torch.no_grad():
        out = hf(x, mask)
        out = out[0] if isinstance(out, tuple) else out
        torch.testing.assert_close(ours(x, mask), out, rtol=1e-5, atol=1e-5)


def test_ch05_load_bert_covers_every_parameter() -> None:
    cfg = tiny_config()
    ours, package = _layers(cfg, seed=9)
    mapped = {f"{theirs}.{p}" for theirs in ours.BERT_NAMES.values() for p in ("weight", "bias")}
    assert mapped == set(package.state_dict())
    for ours_name, theirs in ours.BERT_NAMES.items():
        assert torch.equal(getattr(ours, ours_name).weight, package.get_submodule(theirs).weight)


@pytest.mark.parametrize("hidden", [32, 128, 768])
def test_ch05_parameter_count_is_12h2_plus_13h(hidden: int) -> None:
    cfg = BertConfig(hidden_size=hidden, num_attention_heads=hidden // 32, intermediate_size=4 * hidden)
    ours = CH05["EncoderLayer"](hidden, cfg.num_attention_heads, 4 * hidden)
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in BertLayer(cfg).parameters()) == 12 * hidden**2 + 13 * hidden


def ch05_excess(defs: dict, definition: str) -> float:
    """The chapter-5 drift comparison of `definition`, on fixed inputs."""
    if definition in ("gelu", "gelu_tanh"):
        return activations_excess(defs["gelu"], defs["gelu_tanh"])
    if definition == "layer_norm":
        return layer_norm_excess(defs["layer_norm"])
    return encoder_layer_excess(defs["EncoderLayer"])


@pytest.mark.parametrize("definition, old, new", [
    pytest.param("gelu", "torch.erf(x / math.sqrt(2.0))",
                 "torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3))", id="gelu-is-tanh-approx"),
    pytest.param("gelu", "x / math.sqrt(2.0)", "x", id="gelu-erf-without-sqrt2"),
    pytest.param("gelu", "return 0.5 * x * (1.0 + torch.erf(", "return x * (1.0 + torch.erf(", id="gelu-no-half"),
    pytest.param("gelu_tanh", "torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3))",
                 "torch.erf(x / math.sqrt(2.0))", id="gelu_tanh-is-exact-erf"),
    pytest.param("gelu_tanh", "0.044715 * x**3", "0.044715 * x**2", id="gelu_tanh-cubic-term-squared"),
    pytest.param("gelu_tanh", "math.sqrt(2.0 / math.pi)", "(2.0 / math.pi)", id="gelu_tanh-no-sqrt"),
    pytest.param("layer_norm", "unbiased=False", "unbiased=True", id="layer_norm-unbiased-variance"),
    pytest.param("layer_norm", "(x - mean) / torch.sqrt", "x / torch.sqrt", id="layer_norm-no-centering"),
    pytest.param("layer_norm", "mean = x.mean(dim=-1, keepdim=True)", "mean = x.mean(dim=1, keepdim=True)",
                 id="layer_norm-mean-over-tokens"),
    pytest.param("EncoderLayer", "/ math.sqrt(q.size(-1))", "", id="attention-no-1/sqrt(d_k)"),
    pytest.param("EncoderLayer", "gelu(self.ffn_in(x))", "torch.relu(self.ffn_in(x))", id="ffn-relu-not-gelu"),
    pytest.param("EncoderLayer", "x = self.attn_norm(x + self.dropout(self.attn_out(context)))",
                 "x = x + self.dropout(self.attn_out(context))", id="no-LayerNorm-after-attention"),
    pytest.param("EncoderLayer", "return self.ffn_norm(x + self.dropout(h))", "return self.ffn_norm(self.dropout(h))",
                 id="no-residual-around-ffn"),
    pytest.param("EncoderLayer", "scores = scores + mask", "scores = scores - mask", id="padding-mask-sign"),
])
def test_ch05_drift_test_catches_mutants(definition: str, old: str, new: str, tmp_path: Path) -> None:
    path = mutate(NB05, f"{'class' if definition[0].isupper() else 'def'} {definition}(", old, new, tmp_path)
    assert ch05_excess(load_notebook_defs(path, CH05_NAMES), definition) > BUG
