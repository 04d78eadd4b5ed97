"""Drift tests: the from-scratch code of chapters 4 (embeddings) and 5 (encoder layer) must stay
equal to the package (and to transformers where it has the same module)."""
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

from nbutils import load_notebook_defs

CHAPTERS = Path(__file__).resolve().parents[1] / "chapters"
CH04 = load_notebook_defs(CHAPTERS / "04_embeddings.ipynb", ["sinusoidal_table", "Embeddings"])
CH05 = load_notebook_defs(CHAPTERS / "05_encoder_layer.ipynb", ["gelu", "gelu_tanh", "layer_norm", "EncoderLayer"])


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

@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 600), dim=st.integers(1, 80))
def test_ch04_sinusoidal_table_equals_package(n: int, dim: int) -> None:
    torch.testing.assert_close(CH04["sinusoidal_table"](n, dim), sinusoidal_positions(n, dim), rtol=0, atol=0)


def test_ch04_sinusoidal_table_is_the_formula() -> None:
    table = CH04["sinusoidal_table"](50, 16)
    pos, i = 37, 3
    assert table[pos, 2 * i].item() == pytest.approx(math.sin(pos / 10000 ** (2 * i / 16)), abs=1e-5)
    assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(pos / 10000 ** (2 * i / 16)), abs=1e-5)


@pytest.mark.parametrize("position_embedding", ["learned", "sinusoidal"])
@pytest.mark.parametrize("with_types", [True, False])
def test_ch04_embeddings_equal_package(position_embedding: str, with_types: bool) -> None:
    cfg = tiny_config(position_embedding=position_embedding)
    ours = randomize(CH04["Embeddings"](cfg), seed=1).eval()
    if position_embedding == "sinusoidal":  # randomize overwrote the fixed table: refill it the notebook's way
        ours.position_embeddings.weight.data.copy_(CH04["sinusoidal_table"](40, 32))
    package = BertEmbeddings(cfg).eval()
    package.load_state_dict(ours.state_dict())
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(0, cfg.vocab_size, (3, 17), generator=gen)
    types = torch.randint(0, 2, (3, 17), generator=gen) if with_types else None
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, types), package(ids, types), rtol=0, atol=1e-6)


def test_ch04_sinusoidal_option_matches_package_without_copying() -> None:
    cfg = tiny_config(position_embedding="sinusoidal")
    ours, package = CH04["Embeddings"](cfg), BertEmbeddings(cfg)
    torch.testing.assert_close(ours.position_embeddings.weight, package.position_embeddings.weight, rtol=0, atol=0)
    assert not ours.position_embeddings.weight.requires_grad
    assert ours.word_embeddings.padding_idx == package.word_embeddings.padding_idx == cfg.pad_token_id


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


# ---- chapter 5 ------------------------------------------------------------------------------

@settings(max_examples=20, deadline=None)
@given(scale=st.floats(0.01, 20.0), seed=st.integers(0, 2**16))
def test_ch05_activations_equal_package(scale: float, seed: int) -> None:
    x = torch.randn(257, generator=torch.Generator().manual_seed(seed)) * scale
    torch.testing.assert_close(CH05["gelu"](x), ACT2FN["gelu"](x))
    torch.testing.assert_close(CH05["gelu_tanh"](x), ACT2FN["gelu_new"](x))
    torch.testing.assert_close(CH05["gelu"](x), F.gelu(x))


def test_ch05_exact_and_tanh_gelu_differ() -> None:
    x = torch.linspace(-4, 4, 801)
    gap = (CH05["gelu"](x) - CH05["gelu_tanh"](x)).abs().max().item()
    assert 4e-4 < gap < 5e-4


@settings(max_examples=20, deadline=None)
@given(hidden=st.integers(2, 64), shift=st.floats(-5, 5), scale=st.floats(0.1, 1e3), seed=st.integers(0, 2**16))
def test_ch05_layer_norm_equals_torch(hidden: int, shift: float, scale: float, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    ln = nn.LayerNorm(hidden, eps=1e-12)
    with torch.no_grad():
        ln.weight.copy_(torch.randn(hidden, generator=gen))
        ln.bias.copy_(torch.randn(hidden, generator=gen))
        x = torch.randn(3, 5, hidden, generator=gen) * scale + shift
        torch.testing.assert_close(CH05["layer_norm"](x, ln.weight, ln.bias), ln(x), rtol=1e-4, atol=1e-4)


def _layers(cfg: BertConfig, seed: int) -> tuple[nn.Module, BertLayer]:
    package = randomize(BertLayer(cfg), seed).eval()
    ours = CH05["EncoderLayer"](cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size,
                                eps=cfg.layer_norm_eps).eval()
    return ours.load_bert(package.state_dict()), package


@pytest.mark.parametrize("padded", [False, True])
def test_ch05_encoder_layer_equals_package(padded: bool) -> None:
    cfg = tiny_config()
    ours, package = _layers(cfg, seed=5)
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(3, 9, cfg.hidden_size, generator=gen)
    attention_mask = torch.ones(3, 9, dtype=torch.long)
    if padded:
        attention_mask[1, 5:] = 0
        attention_mask[2, 2:] = 0
    mask = padding_mask(attention_mask, x.dtype)
    assert (mask is None) != padded
    with torch.no_grad():
        torch.testing.assert_close(ours(x, mask), package(x, mask)[0], rtol=1e-5, atol=1e-5)


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
