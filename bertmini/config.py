"""BERT's hyper-parameters, with Hugging Face's field names so `config.json` files round-trip.

Presets follow the BERT paper (Devlin et al. 2019, §3: BERT-base L=12/H=768, BERT-large L=24/H=1024)
and the "Well-Read Students" compact models (Turc et al. 2019: mini 4/256, small 4/512, medium 8/512).
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertmini.errors import DataFormatError, is_int, is_number, read_json

__all__ = ["BertConfig", "PRESETS"]

# (layers, hidden); heads = hidden / 64 and intermediate = 4 * hidden, as in the paper.
PRESETS: dict[str, tuple[int, int]] = {
    "tiny": (2, 128),
    "mini": (4, 256),
    "small": (4, 512),
    "medium": (8, 512),
    "base": (12, 768),
    "large": (24, 1024),
}
POOLINGS = ("cls", "mean")  # classifier_pooling's values
ACTIVATIONS = ("gelu", "relu", "gelu_new", "gelu_pytorch_tanh", "tanh")
# Keys HF writes into config.json that carry no meaning for the model; accepted and dropped.
HF_BOOKKEEPING = {
    "architectures", "model_type", "transformers_version", "torch_dtype", "dtype", "gradient_checkpointing",
    "position_embedding_type", "use_cache", "classifier_dropout", "_name_or_path", "is_decoder",
    "add_cross_attention", "chunk_size_feed_forward", "output_attentions", "output_hidden_states",
    "return_dict", "torchscript", "tie_word_embeddings", "problem_type", "bos_token_id",
    "eos_token_id", "sep_token_id", "cls_token_id", "tokenizer_class", "prefix", "task_specific_params",
    "finetuning_task", "decoder_start_token_id", "_attn_implementation_autoset", "directionality",
    "pooler_fc_size", "pooler_num_attention_heads", "pooler_num_fc_layers", "pooler_size_per_head",
    "pooler_type", "layout_mode",
}


@dataclass
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    initializer_range: float = 0.02
    # Task heads: label names for classifiers (HF's id2label / label2id).
    id2label: dict[int, str] = field(default_factory=lambda: {0: "LABEL_0", 1: "LABEL_1"})
    # bertmini extras (ignored by transformers): sinusoidal positions for chapter 4.
    position_embedding: str = "learned"
    # What a sentence classifier reads: "cls", the pooled [CLS] (BERT §4.1, transformers' only way), or "mean",
    # the mean of the last layer's real tokens (chapter 9: a model pre-trained without NSP never trained [CLS]).
    classifier_pooling: str = "cls"
    # Attention heads removed per layer, numbered as in the unpruned layer (HF's old field; chapter 13).
    pruned_heads: dict[int, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            self.id2label = {int(k): str(v) for k, v in self.id2label.items()}
        except (AttributeError, ValueError):
            raise ValueError(f"id2label must map integer label ids to names, got {self.id2label!r}") from None
        try:  # config.json keys are strings
            self.pruned_heads = {int(k): sorted({int(h) for h in v}) for k, v in self.pruned_heads.items()}
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"pruned_heads must map layer indices to lists of head indices, "
                             f"got {self.pruned_heads!r}") from None
        self.validate()

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @property
    def label2id(self) -> dict[str, int]:
        return {v: k for k, v in self.id2label.items()}

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def validate(self) -> None:
        """Raise ValueError naming the field and what was expected."""
        positive = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                    "intermediate_size", "max_position_embeddings", "type_vocab_size")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by "
                             f"num_attention_heads {self.num_attention_heads}")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act {self.hidden_act!r} is not one of {ACTIVATIONS}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not is_number(getattr(self, name), 0.0) or not getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        for name, low in (("layer_norm_eps", 0.0), ("initializer_range", 0.0)):
            if not is_number(getattr(self, name), low):
                raise ValueError(f"{name} must be a number >= {low:g}, got {getattr(self, name)!r}")
        if not is_int(self.pad_token_id) or not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"pad_token_id {self.pad_token_id} is outside the vocabulary [0, {self.vocab_size})")
        if self.position_embedding not in ("learned", "sinusoidal"):
            raise ValueError(f"position_embedding must be 'learned' or 'sinusoidal', got {self.position_embedding!r}")
        if self.classifier_pooling not in POOLINGS:
            raise ValueError(f"classifier_pooling must be one of {POOLINGS}, got {self.classifier_pooling!r}")
        if not self.id2label:
            raise ValueError("id2label must name at least one label")
        layers, heads_per_layer = self.num_hidden_layers, self.num_attention_heads
        for layer, heads in self.pruned_heads.items():
            if not 0 <= layer < layers:
                raise ValueError(f"pruned_heads: layer {layer} does not exist (num_hidden_layers {layers})")
            bad = [h for h in heads if not 0 <= h < heads_per_layer]
            if bad:
                raise ValueError(f"pruned_heads: layer {layer} has no head {bad[0]} "
                                 f"(heads are 0..{heads_per_layer - 1})")
            if len(heads) == heads_per_layer:
                raise ValueError(f"pruned_heads: pruning all {len(heads)} heads of layer {layer} leaves it no "
                                 "attention; keep at least one head")

    # ---- presets -------------------------------------------------------------------------
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "BertConfig":
        """`BertConfig.preset("mini", vocab_size=8000)`: a named size with 64-wide heads and 4x FFN."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        layers, hidden = PRESETS[name]
        base = dict(num_hidden_layers=layers, hidden_size=hidden,
                    num_attention_heads=hidden // 64, intermediate_size=4 * hidden)
        base.update(overrides)
        return cls.from_dict(base)

    # ---- dict / JSON, compatible with HF's config.json -------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "BertConfig":
        data = dict(data)
        if "num_labels" in data:  # HF's shorthand; a different count replaces the label names
            count = int(data.pop("num_labels"))
            if len(data.get("id2label") or {}) != count:
                data["id2label"] = {i: f"LABEL_{i}" for i in range(count)}
        data.pop("label2id", None)
        if data.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{source}: position_embedding_type {data['position_embedding_type']!r} "
                             "is not supported (only 'absolute')")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in data if k not in known and k not in HF_BOOKKEEPING)
        if unknown:
            raise ValueError(f"{source}: unknown config key(s) {unknown}; valid keys are {sorted(known)}")
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["id2label"] = {str(k): v for k, v in self.id2label.items()}
        out["pruned_heads"] = {str(k): v for k, v in self.pruned_heads.items() if v}
        if not out["pruned_heads"]:  # unpruned models keep the config.json they always had
            del out["pruned_heads"]
        if self.classifier_pooling == "cls":  # likewise [CLS] classifiers
            del out["classifier_pooling"]
        out["label2id"] = self.label2id
        out["model_type"] = "bert"
        out["position_embedding_type"] = "absolute"
        return out

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "BertConfig":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {str(path)!r} not found")
        try:
            return cls.from_dict(read_json(path, dict), source=str(path))
        except (ValueError, TypeError) as err:  # a value of the wrong kind: name the file it came from
            raise DataFormatError(str(err) if str(err).startswith(str(path)) else f"{path}: {err}") from None

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path: str | os.PathLike) -> None:
        Path(path).write_text(self.to_json_string(), encoding="utf-8")
