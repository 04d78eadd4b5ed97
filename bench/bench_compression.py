"""The compression table of chapter 13: teacher, distilled students, int8, pruned heads and ONNX, measured alike.

For each variant: parameters, size on disk, CPU latency at batch 1 and 32 (median of --runs timed calls
after 3 warm-up calls, --threads fixed, on real SST-2 dev sentences), SST-2 dev and labelled-test accuracy.
On a CPU with native bf16 the teacher and first student are also timed under precision "auto" (bf16).
Writes compression.json (rows, the pruning sweep, the settings and machine) and compression.md to --out,
plus accuracy_vs_size.png, and prints the table. Student training is most of the time; --max-train caps it
(--max-train 4000 --runs 5 took 54 min on 2 cores shared with several other jobs).

    python bench/bench_compression.py --teacher runs/sst2-minilm --out runs/compression [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import asdict

import torch

from bertmini.compression import markdown_table, plot_accuracy_vs_size, write_report
from bertmini.compression.pipeline import Settings, compression_table
from bertmini.precision import cpu_bf16_feature


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", required=True, help="SST-2-fine-tuned checkpoint folder (with vocab.txt)")
    parser.add_argument("--out", required=True, help="folder for compression.json / .md / accuracy_vs_size.png")
    parser.add_argument("--quick", action="store_true", help="smoke run: a few hundred sentences, few timings")
    parser.add_argument("--threads", type=int, default=2, help="torch / ONNX Runtime threads while timing")
    parser.add_argument("--runs", type=int, help="timed calls per latency (default 20, quick 3)")
    parser.add_argument("--epochs", type=float, help="student training epochs (default 1)")
    parser.add_argument("--max-train", type=int, help="training sentences for the students (default: all)")
    parser.add_argument("--data-dir", help="folder holding sst2/ (default: BERTMINI_DATA_DIR)")
    args = parser.parse_args()
    overrides = {k: v for k, v in (("threads", args.threads), ("runs", args.runs), ("epochs", args.epochs),
                                   ("max_train", args.max_train)) if v is not None}
    settings = Settings.quick(**overrides) if args.quick else Settings(**overrides)
    start = time.perf_counter()
    rows, sweep = compression_table(args.teacher, settings, data_dir=args.data_dir)
    meta = {"teacher": os.path.abspath(args.teacher), "settings": asdict(settings), "pruning_sweep": sweep,
            "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "cpu_bf16": cpu_bf16_feature(), "wall_s": round(time.perf_counter() - start)}
    out = write_report(rows, args.out, meta)
    plot_accuracy_vs_size(rows, out / "accuracy_vs_size.png")
    print(markdown_table(rows))
    print(json.dumps({"pruning_sweep": sweep}, indent=None))
    print(f"wrote {out}/compression.json, compression.md, accuracy_vs_size.png in {meta['wall_s']} s")


if __name__ == "__main__":
    main()
