"""Compare a bertmini model with its transformers twin, output by output (chapter 6, tests, bench).

transformers is the oracle: `twin_outputs_differ` runs both models on the same inputs and returns
the max absolute difference of every tensor they return, counting real tokens only (what a padded
position holds is undefined in both libraries).
"""
from __future__ import annotations

import torch

from bertmini.config import BertConfig

__all__ = ["CLASSES", "hf_twin", "model_outputs", "max_abs_diffs"]
CLASSES = ("BertModel", "BertForPreTraining", "BertForMaskedLM", "BertForSequenceClassification",
           "BertForTokenClassification", "BertForQuestionAnswering")
FIELDS = ("last_hidden_state", "pooler_output", "prediction_logits", "seq_relationship_logits",
          "logits", "start_logits", "end_logits", "loss")


def hf_twin(name: str, config: BertConfig, attn: str = "eager") -> torch.nn.Module:
    """transformers' class `name` built from the same config (no download), in eval mode."""
    import transformers

    hf_config = transformers.BertConfig(**config.to_dict())
    return getattr(transformers, name)._from_config(hf_config, attn_implementation=attn).eval()


def model_outputs(model: torch.nn.Module, inputs: dict, **kw) -> dict[str, torch.Tensor]:
    """Every tensor a model returns, by field name, with all hidden states and attentions."""
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True, output_attentions=True, **kw)
    got = {n: getattr(out, n) for n in FIELDS if getattr(out, n, None) is not None}
    got.update({f"hidden_states.{i}": h for i, h in enumerate(out.hidden_states)})
    got.update({f"attentions.{i}": a for i, a in enumerate(out.attentions)})
    return got


def max_abs_diffs(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor],
                  attention_mask: torch.Tensor) -> dict[str, float]:
    """Max |ours - theirs| per output, over real tokens (and real query/key pairs for attentions)."""
    missing = set(ours) - set(theirs)
    if missing:
        raise KeyError(f"outputs missing from the reference: {sorted(missing)}")
    keep = attention_mask.bool()
    diffs = {}
    for name, value in ours.items():
        ref = theirs[name]
        if value.shape != ref.shape:
            raise ValueError(f"{name}: shape {tuple(value.shape)} != reference {tuple(ref.shape)}")
        if name.startswith("attentions"):  # (B, h, T, T)
            pair = (keep[:, None, :, None] & keep[:, None, None, :]).expand_as(value)
            value, ref = value[pair], ref[pair]
        elif value.dim() >= 2 and value.shape[:2] == keep.shape:  # per-token tensors
            value, ref = value[keep], ref[keep]
        diffs[name] = (value.float() - ref.float()).abs().max().item()
    return diffs
