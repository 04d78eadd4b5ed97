"""``python -m bertmini predict``: run a fine-tuned checkpoint on new text (BERT paper §4).

    python -m bertmini predict --model runs/finetune-sst2 --text "a gorgeous film" [--text ...] [--file FILE]
    python -m bertmini predict --model runs/finetune-squad --question "Who?" --context "..." [--file qa.jsonl]

The task comes from config.json's ``architectures``: a sequence classifier prints each input's label
and probability, a token classifier each word's tag and the entities, a QA model the answer span
and its score (start + end logit). ``--file``: one text per line, or a ``.jsonl`` file of objects
with ``text`` (or ``question`` and ``context``). ``--format jsonl`` prints one JSON object per input.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bertmini.errors import INPUT_ERRORS, DataFormatError, InputError, integer, parse_json, read_lines, report
from bertmini.finetuning import (
    QAExample,
    TextExample,
    TokenExample,
    best_answer_spans,
    decode_ner,
    encode_classification,
    encode_ner,
    prepare_qa_features,
)
from bertmini.finetuning.inference import check_max_length, forward_features, model_kind, resolve_model_path
from bertmini.finetuning.metrics import get_entities
from bertmini.finetuning.qa import MAX_QUERY_TOKENS
from bertmini.precision import PRECISIONS
from bertmini.tokenizer import WordPieceTokenizer
from bertmini.utils import get_device

__all__ = ["build_parser", "check_options", "read_inputs", "predict", "main"]

COUNTS = ("batch_size", "max_length", "doc_stride", "max_answer_length", "n_best")  # options that must be >= 1
ECHO_CHARS = 80  # how much of an input that was cut to --max-length the text output echoes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bertmini predict",
                                     description="Run a fine-tuned checkpoint on new text (BERT paper §4).")
    parser.add_argument("--model", required=True, help="fine-tuned checkpoint folder (e.g. finetune's --out)")
    parser.add_argument("--text", action="append", default=[], help="an input text (repeatable)")
    parser.add_argument("--file", help="inputs: one text per line, or .jsonl with text / question+context")
    parser.add_argument("--question", action="append", default=[], help="QA: a question (repeatable)")
    parser.add_argument("--context", action="append", default=[], help="QA: its context passage")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, help="tokens per input (default 128; QA 384)")
    parser.add_argument("--doc-stride", type=int, default=128, help="QA: tokens shared by context windows")
    parser.add_argument("--max-answer-length", type=int, default=30, help="QA: longest answer in tokens")
    parser.add_argument("--n-best", type=int, default=20, help="QA: start/end candidates per window")
    parser.add_argument("--format", choices=("text", "jsonl"), default="text")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto (default): bf16 where the hardware has it natively, fp16 on older GPUs, else fp32")
    parser.add_argument("--device", help="torch device (default: cuda > mps > cpu)")
    return parser


def check_options(args: argparse.Namespace) -> None:
    """The counts must be >= 1: argparse takes any int, and -5 would overflow deep in the tokenizer."""
    for name in COUNTS:
        if getattr(args, name) is not None:
            integer(1).check(getattr(args, name), "--" + name.replace("_", "-"))


def _read_file(path: str, keys: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of ``keys`` from a .jsonl file, or from a text file (one ``keys[0]`` per non-blank line)."""
    if len(keys) > 1 and not path.endswith(".jsonl"):
        raise DataFormatError(f"{path}: a QA model needs a .jsonl file of {{\"question\", \"context\"}} objects")
    rows = []
    for number, line in read_lines(path):
        if not line.strip():
            continue
        row = parse_json(line, path, number) if path.endswith(".jsonl") else {keys[0]: line}
        if not isinstance(row, dict) or any(not isinstance(row.get(k), str) for k in keys):
            got = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise DataFormatError(f"{path}: line {number}: expected an object with string key(s) {list(keys)}, "
                                  f"got {got}")
        rows.append({**{k: row[k] for k in keys}, "where": f"{path}: line {number}"})
    if not rows:
        raise DataFormatError(f"empty input: {path} holds no non-blank line")
    return rows


def read_inputs(args: argparse.Namespace, kind: str) -> list[dict[str, str]]:
    """The inputs of ``--text`` / ``--question --context`` then ``--file``; each has a "where" for errors."""
    keys = ("question", "context") if kind == "qa" else ("text",)
    if kind == "qa":
        if args.text or len(args.question) != len(args.context):
            raise ValueError(f"a QA model takes --question/--context pairs (got {len(args.question)} question(s), "
                             f"{len(args.context)} context(s), {len(args.text)} --text)")
        rows = [{"question": q, "context": c, "where": f"--question/--context #{i + 1}"}
                for i, (q, c) in enumerate(zip(args.question, args.context))]
    else:
        if args.question or args.context:
            raise ValueError("--question/--context are for QA models; this model takes --text")
        rows = [{"text": t, "where": f"--text #{i + 1}"} for i, t in enumerate(args.text)]
    if args.file:
        rows += _read_file(args.file, keys)
    if not rows:
        raise ValueError(f"empty input: give {'--question and --context' if kind == 'qa' else '--text'} or --file")
    for row in rows:
        empty = [k for k in keys if not row[k].strip()]
        if empty:
            raise ValueError(f"empty input: {row['where']}: {empty[0]} is empty")
    return rows


def _note_truncated(n: int, max_length: int) -> None:
    if n:
        print(f"note: {n} input(s) longer than --max-length {max_length} tokens were cut", file=sys.stderr)


def _mark_truncated(results: list[dict[str, Any]], indices: list[int], tokens: int) -> list[dict[str, Any]]:
    """``truncated_to`` on the results whose input was cut to ``tokens`` (the text output says so)."""
    for i in indices:
        results[i]["truncated_to"] = tokens
    return results


def _check_bio_labels(names: list[str]) -> None:
    """Entities are read from BIO tags: a token classifier with other labels cannot give them."""
    for name in names:
        try:
            get_entities([name])
        except ValueError:
            raise InputError(f"the model's labels (config.json id2label) must be BIO tags 'O', 'B-<type>' or "
                             f"'I-<type>' to find entities, got {name!r}") from None


def _echo(text: str, result: dict[str, Any]) -> str:
    """The input as the text output repeats it: one that was cut is shortened, and says to what."""
    if "truncated_to" not in result:
        return text
    short = text if len(text) <= ECHO_CHARS else text[:ECHO_CHARS].rstrip() + "…"
    return f"{short} (truncated to {result['truncated_to']} tokens)"


def predict(model: Any, tokenizer: WordPieceTokenizer, kind: str, rows: list[dict[str, str]],
            args: argparse.Namespace) -> list[dict[str, Any]]:
    """One result dict per input row."""
    run = dict(batch_size=args.batch_size, pad_token_id=tokenizer.pad_token_id, precision=args.precision)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if kind == "classification":
        encoded = encode_classification([TextExample(r["text"], 0) for r in rows], tokenizer, args.max_length)
        _note_truncated(encoded.n_truncated, args.max_length)
        results = []
        for row, logits in zip(rows, forward_features(model, encoded.features, **run)):
            probs = logits.softmax(-1).tolist()
            best = max(range(len(probs)), key=probs.__getitem__)
            results.append({"text": row["text"], "label": names[best], "probability": round(probs[best], 4),
                            "probabilities": {n: round(p, 4) for n, p in zip(names, probs)}})
        return _mark_truncated(results, encoded.truncated, args.max_length)
    if kind == "ner":  # words as BERT's pre-tokenizer splits them (whitespace, punctuation), original case
        _check_bio_labels(names)
        words = [tokenizer.backend.pre_tokenizer.pre_tokenize_str(r["text"]) for r in rows]
        encoded = encode_ner([TokenExample([w for w, _ in ws], [0] * len(ws)) for ws in words], tokenizer,
                             args.max_length)
        _note_truncated(encoded.n_truncated, args.max_length)
        outputs = forward_features(model, encoded.features, **run)
        tags = decode_ner([o.argmax(-1).tolist() for o in outputs], encoded, names)
        results = []
        for row, ws, ts in zip(rows, words, tags):
            entities = [{"type": t, "text": row["text"][ws[a][1][0]:ws[b][1][1]], "start": ws[a][1][0],
                         "end": ws[b][1][1]} for t, a, b in get_entities(ts)]
            results.append({"text": row["text"], "words": [w for w, _ in ws], "tags": ts, "entities": entities})
        return _mark_truncated(results, encoded.truncated, args.max_length)
    examples = [QAExample(str(i), "", r["context"], r["question"], [""], [0]) for i, r in enumerate(rows)]
    features = prepare_qa_features(examples, tokenizer, args.max_length, args.doc_stride)
    if features.questions_cut:
        print(f"note: {len(features.questions_cut)} question(s) longer than {MAX_QUERY_TOKENS} tokens were cut",
              file=sys.stderr)
    outputs = forward_features(model, features.features, **run)
    best = best_answer_spans(features, [o[:, 0] for o in outputs], [o[:, 1] for o in outputs], args.n_best,
                             args.max_answer_length)
    results = []
    for i, row in enumerate(rows):
        score, start, end = best.get(i, (float("-inf"), 0, 0))
        results.append({"question": row["question"], "answer": row["context"][start:end],
                        "score": round(score, 4), "start": start, "end": end})
    return _mark_truncated(results, features.questions_cut, MAX_QUERY_TOKENS)


def _format(kind: str, result: dict[str, Any]) -> str:
    if kind == "classification":
        return f"{result['label']}\t{result['probability']:.4f}\t{_echo(result['text'], result)}"
    if kind == "ner":
        tagged = " ".join(f"{w}/{t}" for w, t in zip(result["words"], result["tags"]))
        entities = "; ".join(f"{e['type']}: {e['text']}" for e in result["entities"]) or "none"
        return f"{_echo(tagged, result)}\n  entities: {entities}"
    return f"{result['answer']}\t{result['score']:.3f}\t{_echo(result['question'], result)}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        check_options(args)
        device = get_device(args.device)
        folder = resolve_model_path(args.model)
        kind, cls = model_kind(folder)
        rows = read_inputs(args, kind)
        if args.max_length is None:
            args.max_length = 384 if kind == "qa" else 128
        check_max_length(args.max_length, folder)
        tokenizer = WordPieceTokenizer.from_file(folder)
        model = cls.from_pretrained(folder).to(device)
        results = predict(model, tokenizer, kind, rows, args)
    except INPUT_ERRORS as err:  # bad options, inputs, model folder: one line; a bug keeps its traceback
        return report(err)
    for result in results:
        print(json.dumps(result, ensure_ascii=False) if args.format == "jsonl" else _format(kind, result))
    return 0
