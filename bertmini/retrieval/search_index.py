"""A saved dense index: passage vectors, the passages, and the model that made them (chapter 14).

Vectors from one model mean nothing to another (each has its own embedding space), so the manifest
records the model's fingerprint: a hash of its config, a checksum of its weights, a hash of its tokenizer
(vocabulary and casing), the window and the pooling. A query encoded by any other model is refused.
Search is exact: one matrix product over the (N, H) unit vectors (Reimers & Gurevych 2019, §3).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from bertmini.errors import InputError, read_json
from bertmini.retrieval.passages import Passage
from bertmini.retrieval.pooling import SentenceEncoder
from bertmini.retrieval.ranking import exact_search

__all__ = ["FILES", "model_fingerprint", "SearchIndex", "build_index", "load_index", "check_model", "snippet"]

FILES = ("manifest.json", "vectors.safetensors", "passages.jsonl")
_IDENTITY = ("config_sha256", "weights_sha256", "tokenizer_sha256", "max_length", "pooling")


def _sha256(chunks) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def model_fingerprint(encoder: SentenceEncoder) -> dict:
    """What makes two encoders give the same vectors: config, weights, tokenizer, window and pooling."""
    model, tokenizer = encoder.model, encoder.tokenizer
    state = model.state_dict()
    weights = (part for name in sorted(state) for part in
               (name.encode(), state[name].detach().to("cpu", torch.float32).contiguous().numpy().tobytes()))
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    return {"model": str(encoder.source) if encoder.source else None,
            "config_sha256": _sha256([json.dumps(model.config.to_dict(), sort_keys=True).encode()]),
            "weights_sha256": _sha256(weights),
            "tokenizer_sha256": _sha256([json.dumps([vocab, tokenizer.lowercase]).encode()]),
            "max_length": encoder.max_length, "pooling": "mean over real tokens, L2-normalized"}


@dataclass
class SearchIndex:
    vectors: torch.Tensor  # (N, H) unit vectors, float32
    passages: list[Passage]
    manifest: dict

    def save(self, folder: str | os.PathLike) -> None:
        """Write the three files into ``folder`` (which the caller has checked and locked)."""
        folder = Path(folder)
        save_file({"vectors": self.vectors.contiguous()}, str(folder / "vectors.safetensors"))
        lines = (json.dumps(asdict(p), ensure_ascii=False) + "\n" for p in self.passages)
        (folder / "passages.jsonl").write_text("".join(lines), encoding="utf-8")
        (folder / "manifest.json").write_text(json.dumps(self.manifest, indent=2) + "\n", encoding="utf-8")

    def search(self, encoder: SentenceEncoder, queries: list[str], k: int = 5) -> list[list[tuple[float, Passage]]]:
        """Per query, the ``k`` best passages as ``(cosine similarity, passage)``, best first."""
        check_model(self, encoder)
        blank = [i for i, q in enumerate(queries) if not q.strip()]
        if not queries or blank:
            raise InputError(f"query {blank[0] + 1} is empty: expected some words to search for" if blank
                             else "no query given: expected at least one")
        scores, ids = exact_search(encoder.encode(queries, what="query").vectors, self.vectors, k)
        return [[(float(s), self.passages[int(i)]) for s, i in zip(row_s, row_i)] for row_s, row_i in zip(scores, ids)]


def build_index(encoder: SentenceEncoder, passages: list[Passage], batch_size: int = 64) -> tuple[SearchIndex, str]:
    """Encode ``passages``; returns the index and the truncation note ("12 of 2,067 passages were ...")."""
    encoded = encoder.encode([p.text for p in passages], batch_size, "passage")
    manifest = {**model_fingerprint(encoder), "n_passages": len(passages), "dim": encoded.vectors.shape[1],
                "truncated": len(encoded.truncated), "note": encoded.note()}
    return SearchIndex(encoded.vectors, passages, manifest), encoded.note()


def load_index(folder: str | os.PathLike) -> SearchIndex:
    folder = Path(folder)
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise InputError(f"{folder} is not a search index (missing {', '.join(missing)}); build one with "
                         "`python -m bertmini search index --corpus ... --out ...`")
    manifest = read_json(folder / "manifest.json", dict)
    vectors = load_file(str(folder / "vectors.safetensors"))["vectors"]
    rows = (folder / "passages.jsonl").read_text(encoding="utf-8").splitlines()
    passages = [Passage(**json.loads(row)) for row in rows]
    if len(passages) != len(vectors) or manifest.get("n_passages") != len(passages):
        raise InputError(f"{folder}: {len(passages)} passages, {len(vectors)} vectors and n_passages "
                         f"{manifest.get('n_passages')} in the manifest disagree: rebuild the index")
    return SearchIndex(vectors, passages, manifest)


def check_model(index: SearchIndex, encoder: SentenceEncoder) -> None:
    """InputError unless ``encoder`` is the model the index was built with (same fingerprint)."""
    mine = model_fingerprint(encoder)
    differ = [key for key in _IDENTITY if index.manifest.get(key) != mine[key]]
    if differ:
        raise InputError(f"the index was built with model {index.manifest.get('model')} but the query model "
                         f"{mine['model']} differs in {', '.join(differ)}: its vectors would not be comparable; "
                         "query with the index's model (omit --model) or rebuild the index with this one")


def snippet(text: str, query: str, width: int = 160) -> str:
    """About ``width`` characters of ``text`` around the first query word it contains (else its start)."""
    lower = text.lower()
    hits = [lower.find(w) for w in query.lower().split() if len(w) > 2 and w in lower]
    start = max(0, min(hits) - width // 4) if hits else 0
    piece = " ".join(text[start:start + width].split())
    return ("..." if start else "") + piece + ("..." if start + width < len(text) else "")
