"""`python -m bertmini <command>`: pretrain, finetune, predict, search.

Each command lives in its own module with its own `main(argv)`; this file only dispatches.
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "pretrain": ("bertmini.pretraining.cli", "pretrain BERT with MLM (+NSP) from a YAML config"),
    "finetune": ("bertmini.finetuning.cli", "fine-tune a checkpoint on sst2, trec, sms_spam, wnut17 or squad"),
    "predict": ("bertmini.finetuning.predict", "run a fine-tuned checkpoint on text or a file"),
    "search": ("bertmini.retrieval.cli", "build a passage index (search index) and query it (search query)"),
}


def usage() -> str:
    lines = ["usage: python -m bertmini <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines.append("\n`python -m bertmini <command> --help` gives each command's options.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in {"-h", "--help"}:
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; expected one of {', '.join(COMMANDS)}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    try:
        return int(module.main(rest) or 0)
    except SystemExit as done:  # argparse's --help (0) and usage errors (2): returned like every other status
        return done.code if isinstance(done.code, int) else 1
