"""Dynamic int8: the written-out matmul against float and against both quantized kernels, whole models
(tiny and MiniLM) close to float32 and smaller, and clear errors without an int8 backend."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from bertmini import BertConfig
from bertmini.compression import disk_mb, int8_linear, parameter_count, quantization, quantize_int8
from bertmini.errors import InputError
from bertmini.heads import BertForSequenceClassification


def tiny() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64)
    return BertForSequenceClassification(config).eval()


def test_int8_linear_is_close_to_float_and_exact_in_its_integers():
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(4, 6, 64, generator=g), torch.randn(48, 64, generator=g), torch.randn(48, generator=g)
    y = int8_linear(x, w, b)
    exact = x @ w.T + b
    assert (y - exact).abs().max() < 0.02 * exact.abs().max()  # int8 keeps ~2 significant digits
    x_scale, w_scale = x.abs().amax(-1, keepdim=True) / 127, w.abs().amax(-1, keepdim=True) / 127
    emulated = (torch.round(x / x_scale) @ torch.round(w / w_scale).T) * x_scale * w_scale.T + b  # float64-free check
    torch.testing.assert_close(y, emulated, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("method", ["eager", "torchao"])
def test_int8_linear_is_close_to_the_kernels(method):
    if method == "torchao":
        pytest.importorskip("torchao")
    torch.manual_seed(1)
    layer = nn.Sequential(nn.Linear(64, 48)).eval()
    x = torch.randn(5, 64)
    quantized = quantize_int8(layer, method)
    with torch.no_grad():
        ours, theirs, exact = int8_linear(x, layer[0].weight, layer[0].bias), quantized(x), layer(x)
    scale = exact.abs().max()
    assert (theirs - exact).abs().max() < 0.03 * scale and (ours - theirs).abs().max() < 0.03 * scale


@pytest.mark.parametrize("method", ["eager", "torchao"])
def test_quantized_tiny_model_stays_close_and_shrinks(method):
    if method == "torchao":
        pytest.importorskip("torchao")
    model = tiny()
    quantized = quantize_int8(model, method)
    ids = torch.randint(5, 120, (3, 9))
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    with torch.no_grad():
        ref, got = model(ids, mask).logits, quantized(ids, mask).logits
    torch.testing.assert_close(got, ref, atol=0.05, rtol=0.05)
    assert type(model.bert.encoder.layer[0].attention.self.query) is nn.Linear  # the original is untouched
    assert parameter_count(quantized) == parameter_count(model)


@pytest.mark.slow
@pytest.mark.parametrize("method,cosine", [("eager", 0.85), ("torchao", 0.99)])
def test_quantized_minilm_agrees_with_float(minilm_dir, method, cosine):
    """MiniLM's sentence vectors (mean of the last layer) keep their direction. torch.ao's per-tensor
    activation scale is the coarser: measured cosine 0.90 against torchao's per-token 0.995."""
    if method == "torchao":
        pytest.importorskip("torchao")
    model = BertForSequenceClassification.from_pretrained(minilm_dir)
    quantized = quantize_int8(model, method)
    torch.manual_seed(0)
    ids = torch.randint(1000, 20000, (4, 16))
    with torch.no_grad():
        ref, got = (m.bert(ids).last_hidden_state.mean(1) for m in (model, quantized))
    assert torch.nn.functional.cosine_similarity(ref, got).min() > cosine
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))  # ~half of MiniLM
    assert disk_mb(quantized) == pytest.approx(disk_mb(model) - 3 * linear / 1e6, rel=0.02)  # 4 bytes -> 1


def test_no_int8_backend_is_a_clear_error(monkeypatch):
    assert quantization.int8_engines()  # this machine has one; fake a build without
    monkeypatch.setattr(quantization, "int8_engines", lambda: [])
    with pytest.raises(InputError, match=r"no int8 CPU backend \(torch.backends.quantized.supported_engines has "
                                         r"none of \('x86', 'fbgemm', 'qnnpack', 'onednn'\)\)"):
        quantize_int8(tiny())


def test_bad_method_and_device():
    with pytest.raises(InputError, match=r"method must be one of \('auto', 'eager', 'torchao'\), got 'int4'"):
        quantize_int8(tiny(), "int4")
    model = tiny().to("meta")
    with pytest.raises(InputError, match=r"run on CPU, but the model is on \['meta'\]"):
        quantize_int8(model)


def test_auto_falls_back_to_torchao_when_torch_drops_quantize_dynamic(monkeypatch):
    assert quantization.resolve_method("auto") == "eager"
    monkeypatch.delattr(torch.ao.quantization, "quantize_dynamic")
    assert quantization.resolve_method("auto") == "torchao"
