"""``python -m bertmini search index | query``: a dense passage index on disk, and questions against it.

    python -m bertmini search index --model MODEL_DIR --corpus docs/ --out my-index
    python -m bertmini search query --index my-index "who wrote the letters?" [-k 5] [--json]

``index`` encodes every passage (a folder's .txt paragraphs, or a JSONL's ``text`` lines) with the model's
mean-pooled, normalized vectors (Reimers & Gurevych 2019) and says how many were cut to the window. A
folder that already holds an index is refused unless ``--overwrite``, which replaces it; a folder holding
anything else is refused always. ``query`` loads the index's own model unless ``--model`` names one, and
refuses a model whose fingerprint differs from the one recorded.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bertmini.errors import INPUT_ERRORS, InputError, report
from bertmini.retrieval.passages import read_passages
from bertmini.retrieval.pooling import SentenceEncoder
from bertmini.retrieval.search_index import FILES, build_index, load_index, snippet
from bertmini.runfolder import LOCK_NAME, delete, lock_folder, refuse_overlap

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bertmini search", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    index = commands.add_parser("index", help="encode a corpus into an index folder")
    index.add_argument("--model", required=True, help="HF-format folder of the encoder (e.g. all-MiniLM-L6-v2)")
    index.add_argument("--corpus", required=True, help="a folder of .txt files or a .jsonl file")
    index.add_argument("--out", required=True, help="the index folder (new or empty, or an index with --overwrite)")
    index.add_argument("--overwrite", action="store_true", help="replace the index already in --out")
    index.add_argument("--max-length", type=int, default=None, help="tokens per passage (default: the model's)")
    index.add_argument("--batch-size", type=int, default=64)
    index.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    query = commands.add_parser("query", help="the best passages for each query")
    query.add_argument("queries", nargs="+", help="one or more queries (quote each)")
    query.add_argument("--index", required=True, help="a folder written by `search index`")
    query.add_argument("--model", default=None, help="the encoder (default: the one the index records)")
    query.add_argument("-k", type=int, default=5, help="passages per query")
    query.add_argument("--json", action="store_true", help="one JSON object per query instead of text")
    return parser


def _refuse_existing(out: Path, overwrite: bool) -> None:
    """FileExistsError when ``out`` holds an index (unless ``overwrite``) or anything else (always)."""
    names = sorted(p.name for p in out.iterdir() if p.name != LOCK_NAME) if out.is_dir() else []
    other = [n for n in names if n not in FILES]
    if other:
        raise FileExistsError(f"{out} holds files that are not a search index ({', '.join(other[:5])}): "
                              "choose a new or empty --out")
    if names and not overwrite:
        raise FileExistsError(f"{out} already holds an index ({', '.join(names)}): pass --overwrite to replace "
                              "it, or choose another --out")


def run_index(args: argparse.Namespace) -> None:
    out = Path(args.out)
    refuse_overlap(args.corpus, out, "--corpus", "--out")
    _refuse_existing(out, args.overwrite)  # before loading anything, and before the lock creates the folder
    passages = read_passages(args.corpus)
    encoder = SentenceEncoder.from_pretrained(args.model, args.max_length, args.precision)
    index, note = build_index(encoder, passages, args.batch_size)
    with lock_folder(out, "choose another --out"):
        _refuse_existing(out, args.overwrite)  # another run may have written meanwhile
        for name in FILES:
            delete(out / name)
        index.save(out)
    print(f"indexed {len(passages):,} passages into {out} ({note})")


def run_query(args: argparse.Namespace) -> None:
    if args.k < 1:
        raise InputError(f"-k: expected a number of passages >= 1, got {args.k}")
    index = load_index(args.index)
    model = args.model or index.manifest.get("model")
    if not model:
        raise InputError(f"{args.index}: the index records no model path; pass --model")
    encoder = SentenceEncoder.from_pretrained(model, index.manifest.get("max_length"))
    for query, hits in zip(args.queries, index.search(encoder, args.queries, args.k)):
        if args.json:
            print(json.dumps({"query": query, "hits": [{"score": round(s, 4), "id": p.id, "text": p.text}
                                                       for s, p in hits]}, ensure_ascii=False))
            continue
        print(f"query: {query}")
        for rank, (score, passage) in enumerate(hits, 1):
            print(f"  {rank}. {score:.3f}  {passage.id}  {snippet(passage.text, query)}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        run_index(args) if args.command == "index" else run_query(args)
    except INPUT_ERRORS as err:  # bad options, corpus, index or model: one line; a bug keeps its traceback
        return report(err)
    return 0
