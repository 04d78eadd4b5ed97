"""Wall-clock time of each chapter under nbval in fast mode (BERTMINI_FAST=1), as CI runs it, or in full mode.

One pytest process per chapter (kernel start-up included), timed from outside, plus the slowest cell
from pytest's ``--durations``; the load average after each chapter says how busy the machine was. The table it prints is what intro.md's reading guide quotes;
re-run it on a quiet machine (the numbers in the book were taken on a shared 2-core CPU, niced).

    python bench/time_chapters.py                      # every chapter in chapters/
    python bench/time_chapters.py 09 10                # chapters whose names start with 09 or 10
    python bench/time_chapters.py --out times.json     # also write the table as JSON
    python bench/time_chapters.py --full 01 02         # full mode (BERTMINI_FAST unset): long runs included
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def chapters(prefixes: list[str]) -> list[Path]:
    found = sorted((ROOT / "chapters").glob("*.ipynb"))
    return [p for p in found if not prefixes or p.name.startswith(tuple(prefixes))]


def time_one(notebook: Path, timeout_s: int, full: bool = False) -> dict:
    env = {**os.environ, "BERTMINI_FAST": "1", "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    if full:
        del env["BERTMINI_FAST"]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env",
           "--nbval-cell-timeout=900", "--durations=1", str(notebook.relative_to(ROOT))]
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
    seconds = time.perf_counter() - start
    lines = result.stdout.strip().splitlines()
    tail = lines[-1] if lines else result.stderr[-200:]
    slowest = next((line.split("::")[-1] + " " + line.split()[0] for line in lines if " call " in line), "")
    return {"chapter": notebook.stem, "seconds": round(seconds, 1), "passed": result.returncode == 0,
            "load_after": round(os.getloadavg()[0], 1), "slowest_cell": slowest, "summary": tail}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prefixes", nargs="*", help="chapter name prefixes (default: all)")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per chapter")
    parser.add_argument("--full", action="store_true", help="full mode: BERTMINI_FAST unset")
    args = parser.parse_args()
    mode = "full" if args.full else "fast"
    print(f"# {mode} mode, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}")
    rows = []
    for notebook in chapters(args.prefixes):
        row = time_one(notebook, args.timeout, args.full)
        rows.append(row)
        print(f"{row['chapter']:32s} {row['seconds']:7.1f} s  {'ok' if row['passed'] else 'FAILED'}  "
              f"load {row['load_after']:4.1f}  slowest: {row['slowest_cell']}  ({row['summary']})", flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
