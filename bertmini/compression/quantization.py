"""Post-training dynamic int8 quantization of the Linear layers (Jacob et al. 2018, §2; Zafrir et al. 2019).

Weights are stored as int8 with a float scale; at run time each activation is scaled to int8 too
("dynamic": the scale comes from the batch itself, so no calibration data is needed), the matmul
accumulates in int32 and one multiplication by both scales returns to float::

    y ≈ (s_x s_w) · (x_q @ w_qᵀ) + b,   x_q = round(x / s_x), w_q = round(w / s_w), s = max|·| / 127

:func:`int8_linear` is that formula in plain torch (per-row scales), for reading. :func:`quantize_int8`
swaps every ``nn.Linear`` of a model for a fast kernel, through one of two APIs:

* ``"eager"``: ``torch.ao.quantization.quantize_dynamic`` (fbgemm/x86 or qnnpack kernels). Deprecated
  (torch 2.13 warns that it moves to torchao and will be removed), but present, and faster on CPU here;
* ``"torchao"``: ``torchao.quantization.quantize_(model, Int8DynamicActivationInt8WeightConfig())``,
  its maintained replacement (``pip install torchao``).

``"auto"`` takes ``"eager"`` while torch has it, else ``"torchao"``. Both run on CPU only.
"""
from __future__ import annotations

import copy
import warnings

import torch
from torch import Tensor, nn

from bertmini.errors import InputError

__all__ = ["METHODS", "int8_linear", "int8_engines", "resolve_method", "quantize_int8"]

METHODS = ("auto", "eager", "torchao")
INT8_ENGINES = ("x86", "fbgemm", "qnnpack", "onednn")  # torch's quantized CPU backends


def _symmetric_int8(t: Tensor) -> tuple[Tensor, Tensor]:
    """Per-row symmetric int8: (values in [-127, 127] as int8, (rows, 1) float scales)."""
    scale = t.abs().amax(dim=-1, keepdim=True).clamp(min=1e-8) / 127
    return torch.round(t / scale).clamp(-127, 127).to(torch.int8), scale


def int8_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weightᵀ + bias`` with int8 weights (a scale per output row) and int8 activations (a scale
    per token, computed on the fly); the int8 products are summed exactly, as an int32 kernel would."""
    x_q, s_x = _symmetric_int8(x)  # (..., in), (..., 1)
    w_q, s_w = _symmetric_int8(weight)  # (out, in), (out, 1)
    acc = x_q.to(torch.int32) @ w_q.to(torch.int32).T  # (..., out), exact: |acc| < 127² · in
    y = acc.to(torch.float32) * s_x * s_w.T
    return y if bias is None else y + bias


def int8_engines() -> list[str]:
    """The int8 CPU backends this torch build has (empty when it has none, e.g. some ARM builds)."""
    return [e for e in torch.backends.quantized.supported_engines if e in INT8_ENGINES]


def resolve_method(method: str) -> str:
    """``"auto"`` -> ``"eager"`` when torch still ships ``quantize_dynamic``, else ``"torchao"``."""
    if method not in METHODS:
        raise InputError(f"quantize_int8: method must be one of {METHODS}, got {method!r}")
    if method == "auto":
        return "eager" if hasattr(torch.ao.quantization, "quantize_dynamic") else "torchao"
    return method


def _check_cpu_int8(model: nn.Module) -> None:
    devices = {p.device.type for p in model.parameters()}
    if devices != {"cpu"}:
        raise InputError(f"quantize_int8: dynamic int8 kernels run on CPU, but the model is on {sorted(devices)}; "
                         "move it with model.cpu() first")
    if not int8_engines():
        raise InputError(f"quantize_int8: this torch build has no int8 CPU backend "
                         f"(torch.backends.quantized.supported_engines has none of {INT8_ENGINES}); "
                         "keep the model in float32")


def quantize_int8(model: nn.Module, method: str = "auto") -> nn.Module:
    """A copy of ``model`` in eval mode whose Linear layers compute in dynamic int8 (the embeddings and
    LayerNorms stay float32). The original model is left as it was."""
    method = resolve_method(method)
    _check_cpu_int8(model)
    model = copy.deepcopy(model).eval()
    if method == "eager":
        with warnings.catch_warnings():  # its deprecation notice is in this module's docstring
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
    except ImportError as err:
        raise InputError(f"quantize_int8(method='torchao') needs torchao: pip install torchao ({err})") from None
    quantize_(model, Int8DynamicActivationInt8WeightConfig())
    return model
