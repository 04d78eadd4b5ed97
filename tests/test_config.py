"""BertConfig: presets, HF config.json compatibility, validation messages."""
from __future__ import annotations

import pytest
import transformers

from bertmini import BertConfig


@pytest.mark.parametrize("name,layers,hidden", [("tiny", 2, 128), ("mini", 4, 256), ("small", 4, 512),
                                                ("medium", 8, 512), ("base", 12, 768), ("large", 24, 1024)])
def test_presets(name, layers, hidden):
    config = BertConfig.preset(name, vocab_size=1000)
    assert (config.num_hidden_layers, config.hidden_size) == (layers, hidden)
    assert config.head_dim == 64 and config.intermediate_size == 4 * hidden and config.vocab_size == 1000


def test_base_matches_hf_defaults():
    ours = BertConfig.preset("base").to_dict()
    theirs = transformers.BertConfig().to_dict()
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                "hidden_act", "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "initializer_range"):
        assert ours[key] == theirs[key], key


def test_json_roundtrip_through_hf(tmp_path):
    config = BertConfig.preset("mini", vocab_size=777, id2label={0: "neg", 1: "pos"})
    config.to_json_file(tmp_path / "config.json")
    hf = transformers.BertConfig.from_pretrained(tmp_path)
    assert hf.hidden_size == 256 and hf.num_labels == 2 and hf.id2label == {0: "neg", 1: "pos"}
    hf.save_pretrained(tmp_path)
    assert BertConfig.from_json_file(tmp_path / "config.json") == config


@pytest.mark.parametrize("kwargs,match", [
    ({"hidden_size": 250, "num_attention_heads": 4}, "hidden_size 250 is not divisible by num_attention_heads 4"),
    ({"vocab_size": 0}, "vocab_size must be a positive integer, got 0"),
    ({"hidden_act": "swish"}, "hidden_act 'swish' is not one of"),
    ({"hidden_dropout_prob": 1.5}, r"hidden_dropout_prob must be in \[0, 1\), got 1.5"),
    ({"pad_token_id": 50, "vocab_size": 10}, r"pad_token_id 50 is outside the vocabulary \[0, 10\)"),
])
def test_validation_messages(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BertConfig(**kwargs)


def test_unknown_keys_and_presets():
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['hiden_size'\]; valid keys are"):
        BertConfig.from_dict({"hiden_size": 128})
    with pytest.raises(ValueError, match=r"unknown preset 'huge'; choose one of"):
        BertConfig.preset("huge")
    with pytest.raises(ValueError, match="position_embedding_type 'relative_key' is not supported"):
        BertConfig.from_dict({"position_embedding_type": "relative_key"})
