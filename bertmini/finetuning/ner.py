"""Named-entity recognition as token classification (BERT paper §5.3, feature-based vs fine-tuning).

Labels belong to words, but BERT sees WordPiece sub-tokens. As in the paper, "we use the
representation of the first sub-token as the input to the token-level classifier": the first
sub-token of each word gets the word's tag, the other sub-tokens and ``[CLS]``/``[SEP]`` get -100
(ignored by the loss), and predictions are read back from the first sub-tokens only.

The tokenizer must accept pre-split words (``is_split_into_words=True``) and give ``word_ids(i)``,
as :class:`bertmini.tokenizer.WordPieceTokenizer` and Hugging Face's fast tokenizers do.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from bertmini.finetuning.classification import Encoded, truncated_rows
from bertmini.finetuning.examples import TokenExample
from bertmini.heads import IGNORE_INDEX

__all__ = ["IGNORE_INDEX", "NerEncoded", "align_labels", "encode_ner", "word_predictions", "decode_ner"]


WordIds = list[int | None]


@dataclass
class NerEncoded(Encoded):
    """Features plus, per sentence, each token's word index (None for specials) and the word count."""
    word_ids: list[WordIds] = field(default_factory=list)
    n_words: list[int] = field(default_factory=list)


def align_labels(word_ids: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    """Word tags -> token labels: the first sub-token of a word gets its tag, the rest and specials -100."""
    labels, previous = [], None
    for word in word_ids:
        if word is not None and not 0 <= word < len(word_labels):
            raise IndexError(f"word id {word} but the sentence has {len(word_labels)} word labels")
        labels.append(IGNORE_INDEX if word is None or word == previous else word_labels[word])
        previous = word
    return labels


def encode_ner(examples: Sequence[TokenExample], tokenizer: Callable, max_length: int = 128) -> NerEncoded:
    """Tokenize pre-split sentences, align tags to sub-tokens, count the sentences ``max_length`` cut."""
    if not examples:
        raise ValueError("no examples to encode")
    words = [list(e.tokens) for e in examples]
    enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length)
    if not hasattr(enc, "word_ids"):
        raise TypeError(f"{type(tokenizer).__name__} output has no word_ids(); NER needs a tokenizer that maps "
                        "tokens to words (e.g. transformers.BertTokenizerFast)")
    word_ids = [enc.word_ids(i) for i in range(len(examples))]
    keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in enc]
    features = [{**{k: list(enc[k][i]) for k in keys}, "labels": align_labels(word_ids[i], e.tags)}
                for i, e in enumerate(examples)]
    truncated = truncated_rows(enc["input_ids"], max_length, lambda rows: tokenizer(
        [words[i] for i in rows], is_split_into_words=True, truncation=False))
    return NerEncoded(features, len(truncated), truncated, word_ids=word_ids, n_words=[len(w) for w in words])


def word_predictions(token_preds: Sequence[int], word_ids: Sequence[int | None], n_words: int,
                     fill: int = 0) -> list[int]:
    """Token predictions -> one per word, read at each word's first sub-token.

    Words with no sub-token (cut by ``max_length``, or made only of characters the tokenizer drops)
    get ``fill`` (the id of "O" by default), so the sentence keeps its length for scoring.
    """
    words = [fill] * n_words
    seen: set[int] = set()
    for position, word in enumerate(word_ids):
        if word is not None and word not in seen:
            seen.add(word)
            words[word] = int(token_preds[position])
    return words


def decode_ner(token_preds: torch.Tensor | Sequence[Sequence[int]], encoded: NerEncoded,
               label_names: Sequence[str], fill: int = 0) -> list[list[str]]:
    """Per-sentence word tags (strings) from token predictions, e.g. ``logits.argmax(-1)``.

    ``token_preds`` rows may be padded beyond each sentence's length; the padding is ignored.
    """
    if len(token_preds) != len(encoded.word_ids):
        raise ValueError(f"{len(token_preds)} prediction rows for {len(encoded.word_ids)} encoded sentences")
    out = []
    for preds, wids, n in zip(token_preds, encoded.word_ids, encoded.n_words):
        preds = preds.tolist() if isinstance(preds, torch.Tensor) else preds
        if len(preds) < len(wids):
            raise ValueError(f"a prediction row has {len(preds)} tokens but its sentence has {len(wids)}")
        out.append([label_names[i] for i in word_predictions(preds, wids, n, fill)])
    return out
