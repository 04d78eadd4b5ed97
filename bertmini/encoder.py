"""The Transformer encoder layer as BERT uses it (Vaswani et al. 2017, §3.1; BERT §3).

Post-LN: x = LN(x + Attention(x)); x = LN(x + FFN(x)), with FFN(x) = W2 GELU(W1 x), GELU exact (erf).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bertmini.attention import BertAttention, pad_rows
from bertmini.config import BertConfig
from bertmini.ops import Dropout

__all__ = ["ACT2FN", "BertIntermediate", "BertOutput", "BertLayer", "BertEncoder"]

ACT2FN = {
    "gelu": F.gelu,  # exact: x * Φ(x) via erf, as in the original BERT code
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "tanh": torch.tanh,
}


class BertIntermediate(nn.Module):
    """First half of the position-wise FFN: H -> intermediate_size (4H), then the activation."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACT2FN[config.hidden_act]

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(hidden))


class BertOutput(nn.Module):
    """Second half of the FFN: back to H, dropout, residual, LayerNorm."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(
        self, hidden: torch.Tensor, mask: torch.Tensor | None = None, output_attentions: bool = False,
        select: torch.Tensor | None = None, keep: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, probs = self.attention(hidden, mask, output_attentions, select, keep)
        return self.output(self.intermediate(attended), attended), probs


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))
        for i, heads in config.pruned_heads.items():  # a pruned checkpoint: build the smaller matrices
            self.layer[i].attention.prune_heads(heads)

    def forward(
        self, hidden: torch.Tensor, mask: torch.Tensor | None = None,
        output_attentions: bool = False, output_hidden_states: bool = False, select: torch.Tensor | None = None,
        keep: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None, tuple[torch.Tensor, ...] | None]:
        """Returns (last hidden state, all hidden states incl. embeddings, per-layer attentions).

        With `select` (B, T) bool, the last layer computes only the selected positions: nothing
        after it looks at the others, and the last hidden state is then (n_selected, H).
        With `keep` (B, T) bool, the real tokens (unpadding; not with hidden states or attentions
        requested): every position-wise step runs on those rows only, and padded positions of the
        last hidden state are zeros. Padding keys are masked out, so real tokens get the same values.
        """
        states = [hidden] if output_hidden_states else None
        attentions = [] if output_attentions else None
        last = len(self.layer) - 1
        hidden = hidden if keep is None else hidden[keep]  # (n_real, H)
        for i, layer in enumerate(self.layer):
            if keep is not None and i == last and select is not None:  # the select path wants (B, T, H)
                hidden, keep = pad_rows(hidden, keep), None
            hidden, probs = layer(hidden, mask, output_attentions, select if i == last else None, keep)
            if states is not None:
                states.append(hidden)
            if attentions is not None:
                attentions.append(probs)
        hidden = hidden if keep is None else pad_rows(hidden, keep)
        return hidden, (tuple(states) if states else None), (tuple(attentions) if attentions is not None else None)
