"""The whole BERT encoder (Devlin et al. 2019, §3): embeddings -> L encoder layers -> pooler.

`BertPreTrainedModel` is the base of every model class here: it owns weight initialization and the
Hugging Face checkpoint format (`from_pretrained` / `save_pretrained`, see `checkpoint.py`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bertmini.attention import padding_mask
from bertmini.config import BertConfig
from bertmini.embeddings import BertEmbeddings
from bertmini.encoder import BertEncoder
from bertmini.hf_folder import load_pretrained, save_pretrained

__all__ = ["BertModelOutput", "BertPreTrainedModel", "BertPooler", "BertModel", "check_inputs"]


@dataclass
class BertModelOutput:
    last_hidden_state: torch.Tensor  # (B, T, H)
    pooler_output: torch.Tensor | None = None  # (B, H)
    hidden_states: tuple[torch.Tensor, ...] | None = None  # L + 1 tensors of (B, T, H)
    attentions: tuple[torch.Tensor, ...] | None = None  # L tensors of (B, heads, T, T)


def check_inputs(config: BertConfig, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None,
                 attention_mask: torch.Tensor | None) -> None:
    """Turn the errors torch would raise deep inside an embedding lookup into messages naming the input."""
    for name, ids in (("input_ids", input_ids), ("token_type_ids", token_type_ids)):
        if ids is not None and not isinstance(ids, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of token ids, got {type(ids).__name__}")
        if ids is not None and (ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool):
            raise ValueError(f"{name} must be an integer tensor (torch.long, or int32), got dtype {ids.dtype}: "
                             "pass token ids, e.g. from the tokenizer")
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (batch, seq_len), got shape {tuple(input_ids.shape)}")
    batch, seq_len = input_ids.shape
    if batch == 0 or seq_len == 0:
        raise ValueError(f"empty batch: input_ids has shape {tuple(input_ids.shape)}")
    if seq_len > config.max_position_embeddings:
        raise ValueError(f"sequence length {seq_len} exceeds max_position_embeddings "
                         f"{config.max_position_embeddings}; truncate the input")
    if torch.compiler.is_compiling():  # data-dependent checks would break the graph
        return
    low, high = int(input_ids.min()), int(input_ids.max())
    if low < 0 or high >= config.vocab_size:
        bad = low if low < 0 else high
        raise ValueError(f"input_ids contains id {bad}, outside the vocabulary [0, {config.vocab_size})")
    if token_type_ids is not None and token_type_ids.numel():
        if token_type_ids.shape != input_ids.shape:
            raise ValueError(f"token_type_ids shape {tuple(token_type_ids.shape)} != input_ids shape {(batch, seq_len)}")
        if int(token_type_ids.min()) < 0 or int(token_type_ids.max()) >= config.type_vocab_size:
            raise ValueError(f"token_type_ids must be in [0, {config.type_vocab_size}), "
                             f"got values in [{int(token_type_ids.min())}, {int(token_type_ids.max())}]")
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask shape {tuple(attention_mask.shape)} != input_ids shape {(batch, seq_len)}")


class BertPreTrainedModel(nn.Module):
    """Initialization as in BERT's TF code / HF: N(0, initializer_range) weights, zero biases, unit LayerNorm."""

    config: BertConfig

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
            if module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, BertEmbeddings):
            module.reset_sinusoids()

    def post_init(self) -> None:
        self.apply(self._init_weights)
        tie = getattr(self, "tie_weights", None)
        if tie is not None:
            tie()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        params = {id(p): p for n, p in self.named_parameters()
                  if not (exclude_embeddings and "embeddings" in n)}
        return sum(p.numel() for p in params.values())

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **config_overrides: Any) -> "BertPreTrainedModel":
        """Load an HF-format folder (config.json + model.safetensors or pytorch_model.bin)."""
        return load_pretrained(cls, path, **config_overrides)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write config.json + model.safetensors that transformers' BertFor*.from_pretrained loads."""
        save_pretrained(self, path)


class BertPooler(nn.Module):
    """tanh(W h_[CLS] + b): the sentence vector used by NSP and classifiers (§3.1, §4.1)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden[:, 0]))  # (B, H)


class BertModel(BertPreTrainedModel):
    def __init__(self, config: BertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.post_init()

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
        output_attentions: bool = False, output_hidden_states: bool = False, select: torch.Tensor | None = None,
    ) -> BertModelOutput:
        """`select` (B, T) bool, used by the pretraining heads (the masked tokens) and the sentence
        classifier ([CLS]): only these positions' final states are wanted, so the last layer skips the
        rest and `last_hidden_state` is (n_selected, H) in row-major order; the layers before it skip the
        padding (no selected row reads it). Position 0 ([CLS]) must be selected, for the pooler."""
        check_inputs(self.config, input_ids, token_type_ids, attention_mask)
        if select is not None and not torch.compiler.is_compiling() and not bool(select[:, 0].all()):
            raise ValueError("select must include position 0 ([CLS]) of every sequence, for the pooler")
        hidden = self.embeddings(input_ids, token_type_ids, position_ids)
        mask = padding_mask(attention_mask, hidden.dtype)
        partial = select is not None and not (output_attentions or output_hidden_states)
        # Unpadding: a caller that selects rows reads no padded position, so the layers can skip them.
        keep = attention_mask.bool() if partial and mask is not None and not torch.compiler.is_compiling() else None
        hidden, states, attentions = self.encoder(hidden, mask, output_attentions, output_hidden_states,
                                                  select if partial else None, keep)
        if select is None:
            cls = hidden[:, 0]
        else:
            hidden = hidden if partial else hidden[select]
            cls = hidden[select.cumsum(1)[select] == 1]  # the first selected row of each sequence is [CLS]
        pooled = self.pooler(cls[:, None]) if self.pooler is not None else None
        return BertModelOutput(hidden, pooled, states, attentions)
