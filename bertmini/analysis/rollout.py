"""Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers", §3).

Raw attention of a deep layer mixes tokens that are already mixtures. Rollout follows the mixing through
the layers: average the heads (W), add the residual connection as an identity (A = 0.5 W + 0.5 I), make
each row sum to 1 again, and multiply the layers' matrices: rollout_l = A_l A_(l-1) ... A_1. Row i of the
last product says how much each input token contributes to position i's final vector, under the
(strong) assumption that information flows linearly through attention and residuals only.
"""
from __future__ import annotations

import torch

from bertmini.analysis.capture import as_maps
from bertmini.errors import require

__all__ = ["residual_attention", "attention_rollout"]


def residual_attention(maps: torch.Tensor, residual: float = 0.5) -> torch.Tensor:
    """(L, T, T): per layer, ``(1 - residual) * mean over heads + residual * I``, rows renormalised."""
    require(0.0 <= residual <= 1.0, "residual", "a weight in [0, 1]", residual)
    maps = as_maps(maps)
    eye = torch.eye(maps.shape[-1], dtype=maps.dtype)
    mixed = (1 - residual) * maps.mean(1) + residual * eye
    return mixed / mixed.sum(-1, keepdim=True)


def attention_rollout(maps: torch.Tensor, residual: float = 0.5) -> torch.Tensor:
    """(L, T, T): the rollout up to each layer; ``[-1]`` is the whole model's."""
    steps = residual_attention(maps, residual)
    out = [steps[0]]
    for step in steps[1:]:
        out.append(step @ out[-1])
    return torch.stack(out)
