"""BERT's input representation (Devlin et al. 2019, §3, Figure 2).

The input vector of a token is the sum of its token, segment (token type) and position embeddings,
followed by LayerNorm and dropout. Positions are learned, as in BERT; the fixed sinusoids of
Vaswani et al. 2017 (§3.5) are an option for comparison in chapter 4.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from bertmini.config import BertConfig
from bertmini.ops import Dropout

__all__ = ["sinusoidal_positions", "BertEmbeddings"]


def sinusoidal_positions(num_positions: int, dim: int) -> torch.Tensor:
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(...): (num_positions, dim)."""
    position = torch.arange(num_positions, dtype=torch.float32)[:, None]  # (P, 1)
    inv_freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(num_positions, dim)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq[: dim // 2])
    return table


class BertEmbeddings(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.sinusoidal = config.position_embedding == "sinusoidal"
        if self.sinusoidal:
            # Same parameter name as the learned table, so checkpoints keep HF's keys; frozen.
            self.position_embeddings.weight.requires_grad_(False)
        self.reset_sinusoids()

    def reset_sinusoids(self) -> None:
        """Refill the fixed table (called again after weight initialization)."""
        if self.sinusoidal:
            weight = self.position_embeddings.weight
            with torch.no_grad():
                weight.copy_(sinusoidal_positions(weight.size(0), weight.size(1)))

    def forward(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        seq_len = input_ids.size(1)
        if position_ids is None:
            position_ids = torch.arange(seq_len, device=input_ids.device)[None, :]  # (1, T)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(position_ids)  # (B, T, H)
        return self.dropout(self.LayerNorm(x))
