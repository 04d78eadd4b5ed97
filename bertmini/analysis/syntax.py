"""Syntax heads: does a head's strongest attention from a word land on the word's gold syntactic head?
Clark et al. 2019, "What Does BERT Look At?", §4.2 and §4.1 (word-level attention).

Attention is between WordPiece tokens; trees are between words. As in Clark et al., the attention TO a
word is the sum over its pieces (it is a probability mass) and the attention FROM a word the mean over
its pieces (each piece is one query); [CLS] and [SEP] are dropped, so the argmax is over the sentence's
words. For each relation, a head's accuracy is how often the dependent's most-attended word is its gold
head; the baseline predicts the word at one fixed offset from the dependent, the best offset per
relation. Heads and offsets are chosen on one split (dev) and confirmed on another (test).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from bertmini.analysis.capture import as_maps, iter_attentions
from bertmini.analysis.conllu import Sentence
from bertmini.errors import InputError
from bertmini.tokenizer import WordPieceTokenizer

__all__ = ["relation_of", "word_attention", "attended_words", "SyntaxScores", "score_heads", "head_table",
           "OFFSETS"]

OFFSETS = [k for k in range(-10, 11) if k]  # the baseline's candidate offsets


def relation_of(deprel: str) -> str:
    """The relation without its UD subtype (``nsubj:pass`` -> ``nsubj``), except ``nmod:poss`` -> ``poss``
    (Stanford Dependencies' poss, in Clark et al.'s table)."""
    return "poss" if deprel == "nmod:poss" else deprel.split(":")[0]


def word_attention(maps: torch.Tensor, word_ids: Sequence[int | None]) -> torch.Tensor:
    """(L, heads, W, W) word-to-word attention from token maps (L, heads, T, T): columns summed over a
    word's pieces, rows averaged over them; special tokens (word id None) dropped."""
    maps = as_maps(maps)
    if len(word_ids) != maps.shape[-1]:
        raise InputError(f"word_ids: expected {maps.shape[-1]} entries (one per token), got {len(word_ids)}")
    ids = [-1 if w is None else w for w in word_ids]
    n_words = max(ids) + 1
    pieces = torch.zeros(n_words, len(ids), dtype=maps.dtype)  # pieces[w, t] = 1 if token t is part of word w
    for t, w in enumerate(ids):
        if w >= 0:
            pieces[w, t] = 1.0
    empty = (pieces.sum(1) == 0).nonzero().flatten().tolist()
    if empty:
        raise InputError(f"word_ids: words {empty} have no tokens: expected every word to have at least one")
    to_words = maps @ pieces.T  # (L, heads, T, W)
    return (pieces / pieces.sum(1, keepdim=True)) @ to_words


def attended_words(word_maps: torch.Tensor) -> torch.Tensor:
    """(L, heads, W): per head and word, the 0-based index of the word it attends to most."""
    return word_maps.argmax(-1)


@dataclass
class SyntaxScores:
    """Counts over a corpus: per relation, the dependents seen, those each head gets right (L, heads), and
    those each fixed offset gets right; plus the sentences skipped (too long, or a word with no tokens)."""
    total: Counter = field(default_factory=Counter)
    correct: dict[str, torch.Tensor] = field(default_factory=dict)
    offset_correct: dict[str, Counter] = field(default_factory=dict)
    sentences: int = 0
    skipped: int = 0

    def add(self, sentence: Sentence, predicted: torch.Tensor) -> None:
        """One sentence's trees and its predictions (L, heads, W) from :func:`attended_words`."""
        n = len(sentence.words)
        if predicted.shape[-1] != n:
            raise InputError(f"predicted: expected {n} words (the sentence's), got {predicted.shape[-1]}")
        self.sentences += 1
        for dep, (head, deprel) in enumerate(zip(sentence.heads, sentence.deprels)):
            if head == 0:
                continue
            rel = relation_of(deprel)
            self.total[rel] += 1
            hit = (predicted[..., dep] == head - 1).long()
            self.correct[rel] = self.correct.get(rel, 0) + hit
            self.offset_correct.setdefault(rel, Counter())[head - 1 - dep] += 1

    def accuracy(self, relation: str) -> torch.Tensor:
        """(L, heads): the share of ``relation``'s dependents whose most-attended word is their gold head."""
        if not self.total[relation]:
            raise InputError(f"relation: expected one seen in the data, got {relation!r}")
        return self.correct[relation].double() / self.total[relation]

    def baseline(self, relation: str, offset: int | None = None) -> tuple[int, float]:
        """``(offset, accuracy)`` of predicting the word at ``offset`` (default: the best of OFFSETS)."""
        hits = self.offset_correct[relation]
        offset = max(OFFSETS, key=lambda k: (hits[k], -abs(k))) if offset is None else offset
        return offset, hits[offset] / self.total[relation]


@torch.no_grad()
def score_heads(model: nn.Module, tokenizer: WordPieceTokenizer, sentences: Sequence[Sentence],
                batch_size: int = 16, max_length: int = 128) -> SyntaxScores:
    """:class:`SyntaxScores` of every head of ``model`` on ``sentences``; those longer than ``max_length``
    tokens, or with a word the tokenizer drops entirely, are skipped and counted."""
    scores = SyntaxScores()
    words = [s.words for s in sentences]
    for i, att in iter_attentions(model, tokenizer, words, split_into_words=True, batch_size=batch_size,
                                  max_length=max_length):
        if {w for w in att.word_ids if w is not None} != set(range(len(words[i]))):
            continue
        scores.add(sentences[i], attended_words(word_attention(att.maps, att.word_ids)))
    scores.skipped = len(sentences) - scores.sentences
    return scores


def head_table(dev: SyntaxScores, test: SyntaxScores, relations: Sequence[str]) -> list[dict]:
    """Per relation: the best head on dev, its dev and test accuracy, the best offset on dev and its dev and
    test accuracy, and the dependent counts."""
    rows = []
    for rel in relations:
        acc = dev.accuracy(rel)
        layer, head = divmod(int(acc.argmax()), acc.shape[1])
        offset, base_dev = dev.baseline(rel)
        rows.append({"relation": rel, "layer-head": f"{layer}-{head}", "dev": float(acc[layer, head]),
                     "test": float(test.accuracy(rel)[layer, head]), "offset": offset, "baseline dev": base_dev,
                     "baseline test": test.baseline(rel, offset)[1], "n dev": dev.total[rel],
                     "n test": test.total[rel]})
    return rows
