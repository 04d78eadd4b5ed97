"""bertmini.analysis.rollout against a 2-layer case computed by hand (Abnar & Zuidema 2020, §3)."""
from __future__ import annotations

import pytest
import torch

from bertmini.analysis.rollout import attention_rollout, residual_attention
from bertmini.errors import InputError


def test_two_layers_by_hand():
    layer1 = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]]])  # mean of heads: [[1, 0], [.5, .5]]
    layer2 = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]] * 2)
    maps = torch.stack([layer1, layer2])  # (L=2, heads=2, T=2, T=2)
    # A1 = .5 W1 + .5 I = [[1, 0], [.25, .75]]; A2 = [[.5, .5], [.5, .5]]; rollout = A2 @ A1
    expected_a1 = torch.tensor([[1.0, 0.0], [0.25, 0.75]])
    out = attention_rollout(maps)
    torch.testing.assert_close(out[0], expected_a1)
    torch.testing.assert_close(out[1], torch.tensor([[0.625, 0.375], [0.625, 0.375]]))


def test_rows_stay_distributions_and_residual_one_is_identity():
    maps = torch.rand(3, 4, 5, 5).softmax(-1)
    out = attention_rollout(maps)
    torch.testing.assert_close(out.sum(-1), torch.ones(3, 5))
    torch.testing.assert_close(attention_rollout(maps, residual=1.0)[-1], torch.eye(5))
    torch.testing.assert_close(residual_attention(maps, 0.0), maps.mean(1))
    with pytest.raises(InputError, match=r"residual: expected a weight in \[0, 1\], got 1.5"):
        residual_attention(maps, 1.5)
