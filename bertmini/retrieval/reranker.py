"""A cross-encoder re-ranker: BERT reads the question and the passage together (Nogueira & Cho 2019, §2).

The pair goes in as ``[CLS] question [SEP] passage [SEP]`` and a sequence classifier on [CLS] says
relevant or not; the score is the log-odds ``logit(relevant) - logit(irrelevant)``. Every layer attends
across both texts, which ranks better than comparing two separately made vectors, but nothing can be
computed ahead of time: one forward pass per (query, passage) pair. So it only re-orders a first
stage's short list. Training pairs: each question's gold passage (label 1) and hard negatives, BM25's
best-scoring wrong passages (label 0), which look relevant on the surface (Karpukhin et al. 2020, §5.2).
"""
from __future__ import annotations

import os
import random
from typing import Sequence

import torch

from bertmini.errors import InputError
from bertmini.finetuning.classification import encode_classification
from bertmini.finetuning.examples import TextExample
from bertmini.finetuning.inference import forward_features
from bertmini.heads import BertForSequenceClassification
from bertmini.retrieval.squad_retrieval import RetrievalSet
from bertmini.tokenizer import WordPieceTokenizer
from bertmini.training.batching import BatchLoader
from bertmini.training.train_config import TrainConfig
from bertmini.training.trainer import Trainer

__all__ = ["LABELS", "hard_negative_pairs", "train_cross_encoder", "cross_encoder_scores", "rerank"]

LABELS = {0: "irrelevant", 1: "relevant"}


def hard_negative_pairs(data: RetrievalSet, bm25_rankings: Sequence[Sequence[int]], n_questions: int,
                        negatives: int = 3, random_negatives: int = 0, seed: int = 0) -> list[TextExample]:
    """For ``n_questions`` random questions: (question, gold passage, 1) and (question, p, 0) for the
    ``negatives`` best BM25 passages p that are not the gold one, then for ``random_negatives`` passages
    drawn at random among the others (easy negatives keep "shares words with the question" a useful
    signal; hard negatives alone all share words too)."""
    if len(bm25_rankings) != len(data.queries):
        raise InputError(f"{len(bm25_rankings)} BM25 rankings for {len(data.queries)} questions: expected one each")
    rng = random.Random(seed)
    rows = sorted(rng.sample(range(len(data.queries)), min(n_questions, len(data.queries))))
    pairs = []
    for q in rows:
        question, gold = data.queries[q], data.gold[q]
        pairs.append(TextExample(question, 1, data.passages[gold], f"q{q}-gold"))
        wrong = [p for p in bm25_rankings[q] if p != gold][:negatives]
        others = [p for p in range(len(data.passages)) if p != gold and p not in wrong]
        wrong += rng.sample(others, min(random_negatives, len(others)))
        pairs += [TextExample(question, 0, data.passages[p], f"q{q}-neg{p}") for p in wrong]
    return pairs


def train_cross_encoder(model_path: str | os.PathLike, pairs: Sequence[TextExample], max_length: int = 256,
                        batch_size: int = 16, lr: float = 1e-4, epochs: float = 1.0, precision: str = "auto",
                        seed: int = 0, progress: bool = False) -> tuple[BertForSequenceClassification, dict]:
    """Fine-tune a new 2-way classifier on ``model_path``'s encoder with the project's Trainer (one epoch, lr
    1e-4 as in the shipped MiniLM configs, linear decay after 10% warm-up, length-bucketed batches); returns
    the model and the Trainer's summary."""
    tokenizer = WordPieceTokenizer.from_file(model_path)
    encoded = encode_classification(list(pairs), tokenizer, max_length)
    model = BertForSequenceClassification.from_pretrained(model_path, id2label=LABELS)
    loader = BatchLoader(encoded.features, batch_size, tokenizer.convert_tokens_to_ids("[PAD]"), seed=seed)
    config = TrainConfig(lr=lr, epochs=epochs, warmup_ratio=0.1, precision=precision, seed=seed,
                         progress=progress, log_every=max(1, len(loader) // 5))
    summary = Trainer(model, loader, config).train()
    summary["n_pairs"], summary["n_truncated"] = len(pairs), encoded.n_truncated
    return model.eval(), summary


@torch.inference_mode()
def cross_encoder_scores(model: BertForSequenceClassification, tokenizer: WordPieceTokenizer,
                         queries: Sequence[str], passages: Sequence[str], max_length: int = 256,
                         batch_size: int = 64, precision: str = "auto") -> torch.Tensor:
    """(P,) relevance log-odds of each (query, passage) pair, batched by length."""
    pairs = [TextExample(q, 0, p) for q, p in zip(queries, passages, strict=True)]
    features = encode_classification(pairs, tokenizer, max_length).features
    logits = forward_features(model, features, batch_size, tokenizer.convert_tokens_to_ids("[PAD]"), precision)
    return torch.stack([row[1] - row[0] for row in logits])


def rerank(model: BertForSequenceClassification, tokenizer: WordPieceTokenizer, queries: Sequence[str],
           candidates: Sequence[Sequence[int]], passages: Sequence[str], **score_options) -> list[list[int]]:
    """Each query's candidate ids re-ordered by cross-encoder score, best first (ties keep their order)."""
    flat = [(q, int(p)) for q, ids in enumerate(candidates) for p in ids]
    if not flat:
        raise InputError("no candidates to re-rank")
    scores = cross_encoder_scores(model, tokenizer, [queries[q] for q, _ in flat], [passages[p] for _, p in flat],
                                  **score_options).tolist()
    out: list[list[tuple[float, int]]] = [[] for _ in candidates]
    for (q, p), s in zip(flat, scores):
        out[q].append((s, p))
    return [[p for _, p in sorted(row, key=lambda sp: -sp[0])] for row in out]
