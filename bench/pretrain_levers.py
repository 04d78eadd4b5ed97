"""Which pre-training levers pay off on a CPU budget: pre-train variants of one config, fine-tune each on SST-2.

Every variant is the base config plus dotted overrides, exactly as ``python -m bertmini pretrain`` takes them,
and every variant gets the same budget: ``--minutes`` (``train.time_budget_min``: equal wall clock, the
question of issue 12) or ``--tokens`` (``train.token_budget``: equal data, machine-independent). Each
pre-trained model is then fine-tuned on SST-2 subsets (``--labels``, the same subset for every model) over
``--seeds``; so is a randomly initialized model with the first variant's architecture and vocabulary, at the
best learning rate of ``--random-lrs`` (chosen on SST-2 dev, as the pre-trained models' is from ``--lrs``), and
for every model the best classifier pooling of ``--poolings`` (the pooled [CLS], or the mean of the tokens).

Out, in ``--out``: ``results.json`` and ``results.md`` (variant, steps, tokens seen, held-out MLM accuracy,
the unigram baseline, SST-2 dev accuracy mean ± std per label count and its gain over random init),
rewritten after every variant; ``pretrain/<variant>/``, ``random-init-like-<first variant>/`` and
``finetune/<model>/n<labels>-lr<lr>/``. A rerun reuses every finished pre-training and fine-tuning run, so
an interrupted sweep continues where it stopped. Held-out MLM accuracies are comparable only between
variants with the same vocabulary, sequence length and data.mode (the eval set is built like the training set).
Run one sweep at a time on an otherwise idle machine: a time budget measures the machine's speed.

    python bench/pretrain_levers.py --list
    python bench/pretrain_levers.py --out /tmp/levers --minutes 15 --variants base,no_seq_warmup,mini
    python bench/pretrain_levers.py --out /tmp/levers --tokens 20000000 --variants base,mask30
    python bench/pretrain_levers.py --pretrained runs/pretrain-cpu --labels 500,1000,4000,all --poolings cls,mean
    python bench/pretrain_levers.py --quick --out /tmp/levers-quick    # the pipeline, tiny settings, < 1 min
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bertmini.config import POOLINGS
from bertmini.finetuning.cli import main as finetune_main
from bertmini.finetuning.options import FinetuneOptions
from bertmini.heads import BertForPreTraining
from bertmini.pretraining.cli import main as pretrain_main
from bertmini.tokenizer import WordPieceTokenizer
from bertmini.utils import set_seed

TAPT_SHARE = 0.25  # of the budget, for the second phase of a two-phase variant
WIKI = "{reader: wikitext, path: wikitext-2-raw/wiki.test.raw}"
SST2 = "{reader: tsv, path: sst2/train.tsv, column: sentence}"  # sentences only, labels never read
BOOKS = "{reader: gutenberg, path: gutenberg-nltk, split: chapter}"  # 14 public-domain books
NO_WARMUP = ["data.warmup_seq_length=null", "data.warmup_seq_steps=0"]
# name -> (what it tests, overrides of the base config, pretrain_cpu); each variant changes one thing of it
LEVERS: dict[str, tuple[str, list[str]]] = {
    "base": ("the CPU default as shipped (pretrain_cpu)", []),
    "no_seq_warmup": ("whole 128-token blocks from the first step: the unigram plateau", NO_WARMUP),
    "seq_warmup32": ("warmup on 32-token pieces (base 16)", ["data.warmup_seq_length=32"]),
    "seq_warmup_500": ("500 warmup steps (base 1,000)", ["data.warmup_seq_steps=500"]),
    "nsp": ("MLM + NSP pairs (BERT §3.1) instead of packed MLM; no sequence-length warmup",
            ["data.mode=nsp", *NO_WARMUP]),
    "mini": ("mini 4 x 256 instead of tiny 2 x 128: fewer steps in the budget", ["model.preset=mini"]),
    "lr2e-3": ("peak lr 2e-3 (base 1e-3)", ["train.lr=2.0e-3"]),
    "lr5e-4": ("peak lr 5e-4", ["train.lr=5.0e-4"]),
    "mask30": ("masking rate 0.3 (Wettig et al. 2022)", ["data.mlm_probability=0.3"]),
    "dropout0.1": ("dropout 0.1 while pre-training (BERT's; base 0)", ["model.hidden_dropout_prob=0.1",
                                                                      "model.attention_probs_dropout_prob=0.1"]),
    "beta999": ("AdamW beta2 0.999 (BERT's; base 0.98)", ["train.betas=[0.9, 0.999]"]),
    "batch64": ("batch 64 (base 32)", ["train.batch_size=64"]),
    "seq64": ("64-token blocks, batch 64: the same tokens per step", ["data.max_seq_length=64",
                                                                      "train.batch_size=64"]),
    "vocab4k": ("vocabulary 4,096 (base 8,192)", ["tokenizer.vocab_size=4096"]),
    "sst2_only": ("self-pre-training on SST-2's training sentences only (Krishna et al. 2023)",
                  [f"data.train=[{SST2}]"]),
    "wiki_only": ("Wikipedia only: no SST-2 text before fine-tuning on SST-2", [f"data.train=[{WIKI}]"]),
    "plus_books": ("+ 14 public-domain books (the corpus's 88%: KJV, Milton...)",
                   [f"data.train=[{BOOKS}, {WIKI}, {SST2}]"]),
    "then_tapt": (f"the base for {1 - TAPT_SHARE:.0%} of the budget, then MLM on SST-2's sentences only "
                  "(pretrain_cpu_tapt_sst2; Gururangan et al. 2020)", []),
    "compile": ("torch.compile: more steps in the same minutes, if it pays for its compile time",
                ["train.compile=true"]),
}
# Two-phase variants: name -> overrides of the second phase, TAPT_CONFIG continued from the first one's final/.
TAPT_CONFIG = "pretrain_cpu_tapt_sst2"
SECOND_PHASE: dict[str, list[str]] = {"then_tapt": []}
QUICK = {"config": "pretrain_tiny_test", "tokens": 8 * 64 * 4, "variants": "base,nsp", "labels": "64",
         "seeds": "1,2", "lrs": "1e-3", "random_lrs": "1e-3,3e-3", "epochs": 1.0, "min_steps": 1,
         "max_eval_examples": 64}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/pretrain-levers", help="everything goes here (default %(default)s)")
    p.add_argument("--config", default="pretrain_cpu", help="the base pretrain config (default %(default)s)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="training minutes per variant (train.time_budget_min)")
    budget.add_argument("--tokens", type=int, help="input tokens per variant (train.token_budget)")
    p.add_argument("--variants", default=",".join(LEVERS), help="comma-separated names of --list (default: all)")
    p.add_argument("--labels", default="1000,4000", help="SST-2 training subset sizes, 'all' for all 67k "
                                                         "(default %(default)s)")
    p.add_argument("--seeds", default="1,2,3", help="fine-tuning seeds (default %(default)s)")
    p.add_argument("--lrs", default="1e-4", help="fine-tuning lr grid of the pre-trained models")
    p.add_argument("--random-lrs", default="1e-4,3e-4,1e-3", help="fine-tuning lr grid of random init")
    p.add_argument("--poolings", default="cls", help="what the classifier reads, a grid for every model: cls, mean "
                                                     "or cls,mean (finetune --pooling; default %(default)s)")
    p.add_argument("--epochs", type=float, default=3.0, help="fine-tuning epochs (default %(default)s)")
    p.add_argument("--min-steps", type=int, default=500, help="fine-tuning steps at least, for small subsets "
                                                               "(more epochs; default %(default)s)")
    p.add_argument("--epochs-all", type=float, default=1.0, help="fine-tuning epochs with all labels")
    p.add_argument("--max-length", type=int, default=64, help="fine-tuning tokens per sentence (SST-2 is short)")
    p.add_argument("--max-eval-examples", type=int, help="score a subset of SST-2 dev (default: all 872)")
    p.add_argument("--data-dir", help="the local data sets (default $BERTMINI_DATA_DIR)")
    p.add_argument("--pretrained", help="a finished pre-training run (its folder, e.g. runs/pretrain-cpu): fine-tune "
                                        "it and random init like it, without pre-training (no budget)")
    p.add_argument("--quick", action="store_true", help=f"smoke test: {QUICK}")
    p.add_argument("--list", action="store_true", help="print the levers and exit")
    args = p.parse_args(argv)
    if args.quick:
        vars(args).update(QUICK, minutes=None)
    if args.minutes is None and args.tokens is None and not (args.list or args.pretrained):
        p.error("give the budget: --minutes or --tokens (or --pretrained RUN)")
    if args.pretrained and not (Path(args.pretrained) / "summary.json").is_file():
        p.error(f"--pretrained: {args.pretrained} holds no summary.json: not a finished pre-training run")
    unknown = sorted(set(args.variants.split(",")) - set(LEVERS))
    if unknown:
        p.error(f"unknown variants {unknown}; see --list")
    if set(args.poolings.split(",")) - set(POOLINGS):
        p.error(f"--poolings: expected some of {','.join(POOLINGS)}, got {args.poolings!r}")
    bad = [n for n in args.labels.split(",") if n != "all" and not (n.isdigit() and int(n) > 0)]
    if bad:
        p.error(f"--labels: expected label counts (integers >= 1) or 'all', got {bad}")
    return args


def _common(args: argparse.Namespace) -> list[str]:
    return ["--data-dir", args.data_dir] if args.data_dir else []


def _run(config: str, out: Path, overrides: list[str], share: float, args: argparse.Namespace) -> dict[str, Any]:
    """One pre-training run with ``share`` of the budget (a rerun resumes or reuses it); its summary.json."""
    budget = (f"train.time_budget_min={args.minutes * share:g}" if args.minutes else
              f"train.token_budget={int(args.tokens * share)}")
    argv = ["--config", config, *_common(args), f"out_dir={out}", f"data.cache_dir={Path(args.out) / 'cache'}",
            "train.max_steps=100000000", budget, *overrides]  # the budget, not the config's max_steps, ends a run
    if pretrain_main(argv) != 0:
        raise SystemExit(f"pre-training into {out} failed (see the error above)")
    return json.loads((out / "summary.json").read_text())


def pretrain(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Pre-train one variant under the shared budget into ``pretrain/<name>``; its summary (both phases' counts)."""
    out = Path(args.out) / "pretrain" / name
    if name not in SECOND_PHASE:
        return _run(args.config, out, LEVERS[name][1], 1.0, args)
    first = out.with_name(f"{name}.phase1")  # not inside `out`: a run may not start from its own folder
    one = _run(args.config, first, LEVERS[name][1], 1 - TAPT_SHARE, args)
    two = _run(TAPT_CONFIG, out, [f"model.init_from={first / 'final'}", f"tokenizer.path={first / 'final'}",
                                  *SECOND_PHASE[name]], TAPT_SHARE, args)
    return {**two, **{k: one[k] + two[k] for k in ("steps", "tokens", "train_time_s")}}


def random_init(like: Path, out: Path) -> Path:
    """A randomly initialized model with the architecture and tokenizer of ``like`` (seeded: the same every run)."""
    if not (out / "config.json").is_file():
        set_seed(0)
        BertForPreTraining(BertForPreTraining.from_pretrained(like).config).save_pretrained(out)
        WordPieceTokenizer.from_file(like).save(out)
    return out


def fit_epochs(n_labels: int | None, args: argparse.Namespace) -> float:
    """Epochs for a training subset: ``--epochs``, raised so that a small one still gets ``--min-steps`` steps
    (1,000 labels are 32 batches an epoch), and ``--epochs-all`` for all 67k labels."""
    if n_labels is None:
        return args.epochs_all
    batch = FinetuneOptions.__dataclass_fields__["batch_size"].default  # the fine-tuning runs' batch size
    return max(args.epochs, args.min_steps * batch / n_labels)


def finetune(model: Path, out: Path, n_labels: int | None, lr: float, pooling: str,
             args: argparse.Namespace) -> dict[str, Any]:
    """SST-2 dev accuracy of ``model`` fine-tuned on ``n_labels`` examples (None: all): mean, std, per seed."""
    if not (out / "metrics.json").is_file():
        argv = ["--task", "sst2", "--model", str(model), "--out", str(out), "--overwrite", "--seeds", args.seeds,
                "--lr", str(lr), "--pooling", pooling, "--epochs", f"{fit_epochs(n_labels, args):g}",
                "--max-length", str(args.max_length),
                "--no-progress", *_common(args)]
        if n_labels is not None:
            argv += ["--max-train-examples", str(n_labels)]
        if args.max_eval_examples:
            argv += ["--max-eval-examples", str(args.max_eval_examples)]
        if finetune_main(argv) != 0:
            raise SystemExit(f"fine-tuning {model} failed (see the error above)")
    metrics = json.loads((out / "metrics.json").read_text())
    recipe = {"lr": lr, "pooling": pooling}
    if "dev_mean" in metrics:  # several seeds
        return {**recipe, "mean": metrics["dev_mean"]["accuracy"], "std": metrics["dev_std"]["accuracy"],
                "per_seed": [r["dev"]["accuracy"] for r in metrics["runs"]]}
    return {**recipe, "mean": metrics["dev"]["accuracy"], "std": 0.0, "per_seed": [metrics["dev"]["accuracy"]]}


def best_recipe(model: Path, name: str, lrs: str, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Per label count: the run at the lr of ``lrs`` and the pooling of ``--poolings`` with the best mean dev
    accuracy. With all labels (a run costs 20 subsets' worth) only the pair that won the largest subset is run."""
    scores: dict[str, dict[str, Any]] = {}
    for label in args.labels.split(","):
        n = None if label == "all" else int(label)
        if n is None and scores:
            won = scores[max(scores, key=int)]
            grid = [(won["lr"], won["pooling"])]
        else:
            grid = [(float(lr), pooling) for lr in lrs.split(",") for pooling in args.poolings.split(",")]
        runs = [finetune(model, Path(args.out) / "finetune" / name / f"n{label}-lr{lr:g}-{pooling}", n, lr, pooling,
                         args) for lr, pooling in grid]
        scores[label] = max(runs, key=lambda r: r["mean"])
    return scores


def row(name: str, summary: dict[str, Any], sst2: dict[str, dict[str, float]],
        random: dict[str, dict[str, float]]) -> dict[str, Any]:
    ev = summary.get("eval", {})
    return {"variant": name, "note": LEVERS[name][0], "overrides": LEVERS[name][1], "steps": summary["steps"],
            "tokens": summary["tokens"], "train_time_s": summary["train_time_s"],
            "mlm_accuracy": ev.get("mlm_accuracy"), "unigram_accuracy": ev.get("unigram_accuracy"),
            "sst2": sst2, "gain_over_random": {n: s["mean"] - random[n]["mean"] for n, s in sst2.items()}}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def markdown(rows: list[dict[str, Any]], random: dict[str, dict[str, float]], args: argparse.Namespace) -> str:
    labels = args.labels.split(",")
    budget = (f"{args.minutes:g} min" if args.minutes else f"{args.tokens:,} tokens" if args.tokens
              else f"the run in {args.pretrained}")
    head = ["variant", "steps", "tokens", "MLM acc %", "unigram %",
            *[f"SST-2 {n} labels %" for n in labels], *[f"gain {n} (pts)" for n in labels]]
    lines = [f"Budget {budget} per variant, base config {args.config}; SST-2 dev accuracy, mean ± std over seeds "
             f"{args.seeds}; random init at its best lr of {args.random_lrs} and pooling of {args.poolings}: " +
             ", ".join(f"{n} labels {_pct(random[n]['mean'])} ± {_pct(random[n]['std'])} "
                       f"(lr {random[n]['lr']:g}, {random[n]['pooling']})"
                       for n in labels), "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["variant"], f"{r['steps']:,}", f"{r['tokens']:,}", _pct(r["mlm_accuracy"]),
                 _pct(r["unigram_accuracy"]),
                 *[f"{_pct(r['sst2'][n]['mean'])} ± {_pct(r['sst2'][n]['std'])}" for n in labels],
                 *[f"{100 * r['gain_over_random'][n]:+.1f}" for n in labels]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.list:
        for name, (note, overrides) in LEVERS.items():
            print(f"{name:18} {note}\n{'':18} {' '.join(overrides) or '(no overrides)'}")
        return
    out = Path(args.out)
    names = ["base"] if args.pretrained else args.variants.split(",")
    folders = {name: Path(args.pretrained) if args.pretrained else out / "pretrain" / name for name in names}
    summaries = {names[0]: json.loads((folders["base"] / "summary.json").read_text()) if args.pretrained
                 else pretrain(names[0], args)}  # the first variant's architecture and vocabulary
    like = f"random-init-like-{names[0]}"
    random = best_recipe(random_init(folders[names[0]] / "final", out / like), like, args.random_lrs, args)
    rows = []
    for name in names:
        summary = summaries.get(name) or pretrain(name, args)
        rows.append(row(name, summary, best_recipe(folders[name] / "final", name, args.lrs, args), random))
        (out / "results.json").write_text(json.dumps({"args": vars(args), "random_init": random, "rows": rows},
                                                     indent=2) + "\n")
        (out / "results.md").write_text(markdown(rows, random, args))
    print((out / "results.md").read_text())


if __name__ == "__main__":
    main()
