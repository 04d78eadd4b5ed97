"""ONNX export: ONNX Runtime's logits equal bertmini's to 1e-4 at two batch sizes and two sequence lengths
(one exported file: the axes are dynamic), with padding; a model in training mode is refused."""
from __future__ import annotations

import pytest
import torch

from bertmini import BertConfig
from bertmini.compression import OnnxClassifier, export_onnx
from bertmini.errors import InputError
from bertmini.heads import BertForSequenceClassification

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def batch(b: int, t: int, vocab: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(b * 100 + t)
    ids = torch.randint(5, vocab, (b, t), generator=g)
    mask = torch.ones_like(ids)
    mask[0, t // 2:] = 0  # one padded row
    types = torch.zeros_like(ids)
    types[:, t // 2:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def check_parity(model, path, vocab):
    session = OnnxClassifier(export_onnx(model, path))
    for b, t in ((1, 5), (3, 5), (1, 23), (3, 23)):
        inputs = batch(b, t, vocab)
        with torch.no_grad():
            expected = model(**inputs).logits
        torch.testing.assert_close(session(inputs), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_tiny_model_parity(tmp_path):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, id2label={0: "a", 1: "b", 2: "c"})
    check_parity(BertForSequenceClassification(config).eval(), tmp_path / "tiny.onnx", 120)


@pytest.mark.slow
def test_minilm_parity(minilm_dir, tmp_path):
    model = BertForSequenceClassification.from_pretrained(minilm_dir)
    check_parity(model, tmp_path / "minilm.onnx", 30000)


def test_training_mode_is_refused(tmp_path):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64)
    with pytest.raises(InputError, match=r"the model is in training mode .* call model.eval\(\) first"):
        export_onnx(BertForSequenceClassification(config).train(), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
