"""bertmini.analysis.divergence: Jensen-Shannon divergence on known distributions, and two models' maps."""
from __future__ import annotations

import math

import pytest
import torch

from bertmini.analysis.divergence import attention_change, js_divergence, map_divergence
from bertmini.errors import InputError

from test_analysis_capture import TEXTS, tiny_model


def test_known_values():
    p, q = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    torch.testing.assert_close(js_divergence(p, q), torch.tensor(math.log(2)))  # disjoint: the maximum
    torch.testing.assert_close(js_divergence(p, p), torch.tensor(0.0))
    half = torch.tensor([0.5, 0.5])  # JS(p, half) = (KL(p||m) + KL(half||m)) / 2 with m = [.75, .25]
    expected = (math.log(1 / 0.75) + 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)) / 2
    torch.testing.assert_close(js_divergence(p, half), torch.tensor(expected))
    with pytest.raises(InputError, match=r"q: expected the shape of p, \(2,\), got \(3,\)"):
        js_divergence(p, torch.ones(3) / 3)


def test_maps_and_models():
    maps = torch.rand(2, 4, 5, 5).softmax(-1)
    assert map_divergence(maps, maps).abs().max() < 1e-6
    model, tok = tiny_model(0)
    other = tiny_model(1)[0]
    assert attention_change(model, model, tok, TEXTS).abs().max() < 1e-6
    change = attention_change(model, other, tok, TEXTS, batch_size=3)
    assert change.shape == (2, 4) and float(change.min()) > 0
    with pytest.raises(InputError, match="expected at least one text of <= 4 tokens, got none"):
        attention_change(model, other, tok, TEXTS, max_length=4)
