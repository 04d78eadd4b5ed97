"""Drift tests: the attention written inline in chapters 2 and 3 must equal bertmini's.

Each check also runs on a mutated copy of the notebook (scaling removed, heads split wrongly, ...)
and must fail there: a comparison too loose to notice such a bug would be a test that cannot fail.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from bertmini import BertConfig
from bertmini.attention import BertAttention, padding_mask, scaled_dot_product_attention

from nbutils import load_notebook_defs, mutate

ROOT = Path(__file__).resolve().parents[1]
CH02 = ROOT / "chapters" / "02_attention.ipynb"
CH03 = ROOT / "chapters" / "03_multi_head_attention.ipynb"
TOL = 1e-5  # float32 round-off of the same formula computed in another order
BUG = 1e-3  # a mutant must be off by far more than round-off


# ---------------------------------------------------------------- chapter 2: attention(q, k, v, mask)

def ch02_error(attention, batch: int = 2, heads: int = 3, t_q: int = 5, t_k: int = 6, d_k: int = 8,
               seed: int = 0) -> float:
    """Largest difference of the notebook's `attention` to bertmini's and torch's, with a random bool mask."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, t_q, d_k, generator=g)
    k, v = torch.randn(2, batch, heads, t_k, d_k, generator=g).unbind(0)
    keep = torch.rand(batch, 1, t_q, t_k, generator=g) > 0.4
    keep[..., 0] = True  # torch's SDPA gives NaN for a row with nothing to attend to
    out, weights = attention(q, k, v, keep)
    ref_out, ref_weights = scaled_dot_product_attention(q, k, v, keep)
    torch_out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    unmasked = attention(q, k, v)[0] - F.scaled_dot_product_attention(q, k, v)
    return max((out - ref_out).abs().max().item(), (weights - ref_weights).abs().max().item(),
               (out - torch_out).abs().max().item(), unmasked.abs().max().item())


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 3), heads=st.integers(1, 4), t_q=st.integers(1, 9), t_k=st.integers(1, 9),
       d_k=st.sampled_from([1, 2, 8, 64]), seed=st.integers(0, 2**16))
def test_ch02_attention_equals_package_and_torch(batch, heads, t_q, t_k, d_k, seed):
    attention = load_notebook_defs(CH02, ["attention"])["attention"]
    assert ch02_error(attention, batch, heads, t_q, t_k, d_k, seed) < TOL


def test_ch02_attention_additive_padding_mask_matches_bool():
    attention = load_notebook_defs(CH02, ["attention"])["attention"]
    q, k, v = torch.randn(3, 2, 4, 7, 16, generator=torch.Generator().manual_seed(1)).unbind(0)
    attention_mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    out, weights = attention(q, k, v, attention_mask.bool()[:, None, None, :])
    ref_out, ref_weights = scaled_dot_product_attention(q, k, v, padding_mask(attention_mask, q.dtype))
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(weights, ref_weights)
    assert (weights[1, ..., 4:] == 0).all()


@pytest.mark.parametrize("old, new", [
    ("/ math.sqrt(d_k)", ""),  # no scaling
    ("softmax(dim=-1)", "softmax(dim=-2)"),  # normalize over queries instead of keys
    ("masked_fill(~mask", "masked_fill(mask"),  # inverted mask
])
def test_ch02_drift_test_catches_mutants(old, new, tmp_path):
    mutant = load_notebook_defs(mutate(CH02, "def attention(", old, new, tmp_path), ["attention"])["attention"]
    assert ch02_error(mutant) > BUG


# ---------------------------------------------------------------- chapter 3: MultiHeadSelfAttention

def random_bert_attention(hidden: int, heads: int, seed: int) -> BertAttention:
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=50, hidden_size=hidden, num_hidden_layers=1, num_attention_heads=heads,
                     intermediate_size=4 * hidden, max_position_embeddings=32)
    attn = BertAttention(cfg).eval()
    with torch.no_grad():  # non-trivial biases and LayerNorm, so that every parameter is checked
        for p in attn.parameters():
            p.normal_(0.0, 0.3)
    return attn


def copy_weights(mha, state: dict) -> None:
    """Load a BertAttention state dict (bertmini and transformers share the names) into the notebook's module."""
    names = {"self.query": "query", "self.key": "key", "self.value": "value", "output.dense": "out"}
    mha.load_state_dict({f"{new}.{p}": state[f"{old}.{p}"] for old, new in names.items() for p in ("weight", "bias")})


def ch03_error(mha_class, hidden: int = 32, heads: int = 4, seed: int = 0) -> float:
    """Largest difference of the notebook's module to bertmini's BertAttention on padded random input."""
    bert = random_bert_attention(hidden, heads, seed)
    mha = mha_class(hidden, heads)
    copy_weights(mha, bert.state_dict())
    x = torch.randn(3, 7, hidden, generator=torch.Generator().manual_seed(seed))
    attention_mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2, [1] * 2 + [0] * 5])
    mask = padding_mask(attention_mask, x.dtype)
    with torch.no_grad():
        out, weights = mha(x, attention_mask)
        context, ref_weights = bert.self(x, mask, output_attentions=True)
        fast_context, _ = bert.self(x, mask)  # SDPA path
        sublayer, _ = bert(x, mask)
    return max((out - bert.output.dense(context)).abs().max().item(),
               (out - bert.output.dense(fast_context)).abs().max().item(),
               (weights - ref_weights).abs().max().item(),
               (bert.output.LayerNorm(x + out) - sublayer).abs().max().item())


@pytest.mark.parametrize("hidden, heads, seed", [(32, 4, 0), (48, 3, 1), (16, 1, 2), (64, 16, 3)])
def test_ch03_multi_head_attention_equals_package(hidden, heads, seed):
    cls = load_notebook_defs(CH03, ["MultiHeadSelfAttention"])["MultiHeadSelfAttention"]
    assert ch03_error(cls, hidden, heads, seed) < TOL


def test_ch03_multi_head_attention_equals_transformers():
    transformers = pytest.importorskip("transformers")
    from transformers.models.bert import modeling_bert

    cls = load_notebook_defs(CH03, ["MultiHeadSelfAttention"])["MultiHeadSelfAttention"]
    hidden, heads = 32, 4
    bert = random_bert_attention(hidden, heads, seed=5)
    hf_cfg = transformers.BertConfig(hidden_size=hidden, num_attention_heads=heads, attn_implementation="eager")
    hf = modeling_bert.BertAttention(hf_cfg).eval()
    hf.load_state_dict(bert.state_dict())
    mha = cls(hidden, heads)
    copy_weights(mha, hf.state_dict())
    x = torch.randn(2, 6, hidden)
    attention_mask = torch.tensor([[1] * 6, [1] * 3 + [0] * 3])
    with torch.no_grad():
        out, weights = mha(x, attention_mask)
        hf_out, hf_weights = hf(x, attention_mask=padding_mask(attention_mask, x.dtype))
    torch.testing.assert_close(hf.output.LayerNorm(x + out), hf_out)
    torch.testing.assert_close(weights, hf_weights)


def test_ch03_rejects_indivisible_heads():
    cls = load_notebook_defs(CH03, ["MultiHeadSelfAttention"])["MultiHeadSelfAttention"]
    with pytest.raises(ValueError, match="hidden_size 30 is not a multiple of num_heads 4"):
        cls(30, 4)


@pytest.mark.parametrize("old, new", [
    ("/ math.sqrt(self.head_dim)", ""),  # no scaling
    ("view(B, T, self.num_heads, self.head_dim).transpose(1, 2)",
     "reshape(B, self.num_heads, T, self.head_dim)"),  # heads cut across tokens
    ("context.transpose(1, 2).reshape(B, T, H)", "context.reshape(B, T, H)"),  # heads merged wrongly
    ("masked_fill(~keep", "masked_fill(keep"),  # inverted padding mask
])
def test_ch03_drift_test_catches_mutants(old, new, tmp_path):
    path = mutate(CH03, "class MultiHeadSelfAttention(", old, new, tmp_path)
    mutant = load_notebook_defs(path, ["MultiHeadSelfAttention"])["MultiHeadSelfAttention"]
    assert ch03_error(mutant) > BUG
