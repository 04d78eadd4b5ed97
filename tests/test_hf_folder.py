"""HF-format checkpoints: legacy names, partial checkpoints, clear errors, atomic saves."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

import bertmini
from bertmini import BertConfig, BertForSequenceClassification, BertModel
from bertmini.hf_folder import CONFIG_NAME, WEIGHTS_NAME


def small() -> BertConfig:
    return BertConfig(vocab_size=97, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=32)


def write_folder(folder, config: BertConfig, state: dict, legacy_bin: bool = False) -> None:
    folder.mkdir(exist_ok=True)
    (folder / CONFIG_NAME).write_text(config.to_json_string())
    if legacy_bin:
        torch.save(state, folder / "pytorch_model.bin")
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(folder / WEIGHTS_NAME))


def test_save_load_roundtrip_keeps_outputs(tmp_path):
    model = BertForSequenceClassification(small()).eval()
    model.save_pretrained(tmp_path)
    again = BertForSequenceClassification.from_pretrained(tmp_path)
    ids = torch.randint(0, 97, (2, 9))
    torch.testing.assert_close(model(ids).logits, again(ids).logits, atol=0, rtol=0)
    assert json.loads((tmp_path / CONFIG_NAME).read_text())["architectures"] == ["BertForSequenceClassification"]


def test_legacy_gamma_beta_and_position_ids_bin(tmp_path):
    model = BertModel(small()).eval()
    state = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
             for k, v in model.state_dict().items()}
    state["embeddings.position_ids"] = torch.arange(32)[None]
    write_folder(tmp_path, model.config, state, legacy_bin=True)
    loaded = BertModel.from_pretrained(tmp_path)
    assert loaded.load_report.missing_keys == [] and loaded.load_report.unexpected_keys == []
    ids = torch.randint(0, 97, (1, 6))
    torch.testing.assert_close(model(ids).last_hidden_state, loaded(ids).last_hidden_state, atol=0, rtol=0)


def test_base_checkpoint_into_head_model_reports_new_head(tmp_path):
    base = BertModel(small())
    base.save_pretrained(tmp_path)
    model = BertForSequenceClassification.from_pretrained(tmp_path, id2label={0: "neg", 1: "pos", 2: "neutral"})
    assert model.load_report.missing_keys == ["classifier.weight", "classifier.bias"]
    assert model.config.num_labels == 3
    assert BertForSequenceClassification.from_pretrained(tmp_path, num_labels=5).classifier.out_features == 5
    torch.testing.assert_close(model.bert.encoder.layer[0].output.dense.weight, base.encoder.layer[0].output.dense.weight)


def test_head_checkpoint_into_base_model_reports_unused_head(tmp_path):
    BertForSequenceClassification(small()).save_pretrained(tmp_path)
    model = BertModel.from_pretrained(tmp_path)
    assert model.load_report.unexpected_keys == ["classifier.bias", "classifier.weight"]


def test_pretraining_decoder_stays_tied_after_load(tmp_path):
    model = bertmini.BertForPreTraining(small())
    model.save_pretrained(tmp_path)
    loaded = bertmini.BertForPreTraining.from_pretrained(tmp_path)
    assert loaded.cls.predictions.decoder.weight is loaded.bert.embeddings.word_embeddings.weight


def test_shape_mismatch_names_key_and_shapes(tmp_path):
    BertModel(small()).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"shape mismatch for 'bert.embeddings.word_embeddings.weight': "
                                         r"checkpoint has \(97, 16\), model expects \(120, 16\)"):
        BertForSequenceClassification.from_pretrained(tmp_path, vocab_size=120)


def test_missing_required_key(tmp_path):
    model = BertModel(small())
    state = {k: v for k, v in model.state_dict().items() if k != "encoder.layer.0.output.dense.weight"}
    write_folder(tmp_path, model.config, state)
    with pytest.raises(KeyError, match="required key 'encoder.layer.0.output.dense.weight' is missing"):
        BertModel.from_pretrained(tmp_path)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint folder .* not found"):
        BertModel.from_pretrained(tmp_path / "nope")
    (tmp_path / CONFIG_NAME).write_text(small().to_json_string())
    with pytest.raises(FileNotFoundError, match="no model.safetensors or pytorch_model.bin found"):
        BertModel.from_pretrained(tmp_path)
    (tmp_path / WEIGHTS_NAME).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00garbage!")
    with pytest.raises(ValueError, match=r"model.safetensors: corrupt or unreadable weights file"):
        BertModel.from_pretrained(tmp_path)
    (tmp_path / CONFIG_NAME).write_text('{"hidden_size": 16,\n "oops"}')
    with pytest.raises(ValueError, match=r"config.json: line 2: invalid JSON at column 8"):
        BertModel.from_pretrained(tmp_path)


def test_crash_mid_save_leaves_old_checkpoint_intact(tmp_path, monkeypatch):
    old = BertModel(small()).eval()
    old.save_pretrained(tmp_path)
    (tmp_path / "vocab.txt").write_text("[PAD]\n")  # a user's file beside the checkpoint

    def crash(state, path, metadata=None):
        with open(path, "wb") as handle:
            handle.write(b"half a file")
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr("bertmini.hf_folder.save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        BertModel(small()).save_pretrained(tmp_path)
    monkeypatch.undo()
    loaded = BertModel.from_pretrained(tmp_path)
    ids = torch.randint(0, 97, (1, 5))
    torch.testing.assert_close(old(ids).last_hidden_state, loaded(ids).last_hidden_state, atol=0, rtol=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors", "vocab.txt"]
