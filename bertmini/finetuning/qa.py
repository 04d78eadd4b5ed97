"""Extractive question answering, SQuAD v1.1 (BERT paper §4.2).

Input is ``[CLS] question [SEP] context [SEP]``; the model scores every token as the answer's start
(``S·T_i``) and end (``E·T_j``), and the best span maximizes ``S·T_i + E·T_j`` with ``j >= i``.

Contexts longer than ``max_length`` are cut into overlapping windows ("sliding window", as the
original run_squad.py and Hugging Face do). Here ``doc_stride`` follows the Hugging Face tokenizer
meaning: the number of context tokens two neighbouring windows share (the original TF code used it
as the step between window starts). A window that does not contain the whole answer is trained to
point at ``[CLS]`` (index 0). At prediction time the best valid span over all windows of a question
wins, and its text is cut from the context by character offsets.

The tokenizer must support ``stride``, ``return_overflowing_tokens`` and ``return_offsets_mapping``
and give ``sequence_ids(i)``, as :class:`bertmini.tokenizer.WordPieceTokenizer` and Hugging Face's
fast tokenizers do.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch

from bertmini.errors import InputError
from bertmini.finetuning.examples import QAExample

__all__ = ["QAFeatures", "prepare_qa_features", "answer_token_span", "best_spans", "best_answer_spans",
           "postprocess_qa", "split_squad_by_article"]

Offsets = list[tuple[int, int] | None]
MAX_QUERY_TOKENS = 64  # longer questions are cut, as in Google's run_squad.py (max_query_length)


@dataclass
class QAFeatures:
    """One feature per window: model inputs (with ``start_positions``/``end_positions``), the example it
    came from, and per token its character span in the context (None outside the context); and which
    examples' questions were cut to :data:`MAX_QUERY_TOKENS`."""
    features: list[dict[str, Any]]
    example_index: list[int]
    offsets: list[Offsets]
    questions_cut: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.features[index]


def answer_token_span(offsets: Offsets, start_char: int, end_char: int) -> tuple[int, int]:
    """Token indices ``(start, end)`` (inclusive) covering characters ``[start_char, end_char)``,
    or ``(0, 0)`` (the ``[CLS]`` token) when the window does not contain the whole answer."""
    context = [i for i, span in enumerate(offsets) if span is not None]
    if not context or offsets[context[0]][0] > start_char or offsets[context[-1]][1] < end_char:
        return 0, 0
    start = max(i for i in context if offsets[i][0] <= start_char)
    end = min(i for i in context if offsets[i][1] >= end_char)
    return start, end


def _questions(examples: Sequence[QAExample], tokenizer: Callable, max_length: int, doc_stride: int
               ) -> tuple[list[str], list[int]]:
    """The questions as the windows take them, and the indices of those cut to :data:`MAX_QUERY_TOKENS`.

    Every window holds ``[CLS] question [SEP] context [SEP]``; the context's room must exceed
    ``doc_stride`` (the tokens neighbouring windows share), else the tokenizer cannot slide, so that is
    checked here with the numbers, instead of failing inside the tokenizer.
    """
    # Some SQuAD questions start with many spaces, which would only eat into the context's room.
    questions = [e.question.lstrip() for e in examples]
    enc = tokenizer(questions, truncation=False, return_offsets_mapping=True)
    cut = [i for i, ids in enumerate(enc["input_ids"]) if len(ids) - 2 > MAX_QUERY_TOKENS]
    for i in cut:  # offsets[k] is the k-th question token's span ([CLS] is token 0)
        questions[i] = questions[i][:enc["offset_mapping"][i][MAX_QUERY_TOKENS][1]]
    longest = max(min(len(ids) - 2, MAX_QUERY_TOKENS) for ids in enc["input_ids"])
    room = max_length - longest - 3
    if room <= doc_stride:
        raise InputError(f"max_length {max_length} leaves {room} context tokens after the longest question "
                         f"({longest} token{'' if longest == 1 else 's'}; longer ones are cut to {MAX_QUERY_TOKENS}) "
                         f"and 3 special tokens; doc_stride {doc_stride} must be smaller: raise max_length or lower "
                         "doc_stride")
    return questions, cut


def prepare_qa_features(examples: Sequence[QAExample], tokenizer: Callable, max_length: int = 384,
                        doc_stride: int = 128) -> QAFeatures:
    """Windows over each context with training targets from the first reference answer."""
    if not examples:
        raise ValueError("no examples to encode")
    questions, cut = _questions(examples, tokenizer, max_length, doc_stride)
    enc = tokenizer(questions, text_pair=[e.context for e in examples],
                    truncation="only_second", max_length=max_length, stride=doc_stride,
                    return_overflowing_tokens=True, return_offsets_mapping=True)
    if not hasattr(enc, "sequence_ids"):
        raise TypeError(f"{type(tokenizer).__name__} output has no sequence_ids(); QA needs it to tell "
                        "question from context tokens (e.g. transformers.BertTokenizerFast)")
    keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in enc]
    out = QAFeatures([], [], [], cut)
    for i, example_index in enumerate(enc["overflow_to_sample_mapping"]):
        example = examples[example_index]
        offsets = [tuple(span) if seq == 1 else None for span, seq in zip(enc["offset_mapping"][i],
                                                                          enc.sequence_ids(i))]
        start_char = example.answer_starts[0]
        start, end = answer_token_span(offsets, start_char, start_char + len(example.answer_texts[0]))
        out.features.append({**{k: list(enc[k][i]) for k in keys}, "start_positions": start, "end_positions": end})
        out.example_index.append(example_index)
        out.offsets.append(offsets)
    return out


def _as_list(values: torch.Tensor | Sequence[float]) -> list[float]:
    return values.tolist() if hasattr(values, "tolist") else list(values)


def best_spans(start_logits: Sequence[float], end_logits: Sequence[float], offsets: Offsets,
               n_best: int = 20, max_answer_length: int = 30) -> list[tuple[float, int, int]]:
    """Valid spans of one window as ``(score, start_char, end_char)``, best first.

    Only the ``n_best`` highest start and end logits are paired (not all T² spans); a span is valid
    when both ends lie in the context, ``end >= start``, and it has at most ``max_answer_length`` tokens.
    """
    n = len(offsets)  # logits may be padded to the batch's width
    start_logits, end_logits = _as_list(start_logits)[:n], _as_list(end_logits)[:n]
    top_starts = sorted(range(n), key=lambda i: -start_logits[i])[:n_best]
    top_ends = sorted(range(n), key=lambda i: -end_logits[i])[:n_best]
    spans = [(start_logits[s] + end_logits[e], offsets[s][0], offsets[e][1])
             for s in top_starts for e in top_ends
             if offsets[s] is not None and offsets[e] is not None and s <= e < s + max_answer_length]
    return sorted(spans, key=lambda span: -span[0])


def best_answer_spans(features: QAFeatures, start_logits: torch.Tensor | Sequence[Sequence[float]],
                      end_logits: torch.Tensor | Sequence[Sequence[float]], n_best: int = 20,
                      max_answer_length: int = 30) -> dict[int, tuple[float, int, int]]:
    """``{example index: (score, start_char, end_char)}``: the best valid span over all windows of each
    example (examples with no valid span in any window are left out)."""
    if not len(start_logits) == len(end_logits) == len(features):
        raise ValueError(f"got {len(start_logits)} start and {len(end_logits)} end logit rows "
                         f"for {len(features)} features")
    best: dict[int, tuple[float, int, int]] = {}
    for f, example_index in enumerate(features.example_index):
        spans = best_spans(start_logits[f], end_logits[f], features.offsets[f], n_best, max_answer_length)
        if spans and (example_index not in best or spans[0][0] > best[example_index][0]):
            best[example_index] = spans[0]
    return best


def postprocess_qa(examples: Sequence[QAExample], features: QAFeatures,
                   start_logits: torch.Tensor | Sequence[Sequence[float]],
                   end_logits: torch.Tensor | Sequence[Sequence[float]],
                   n_best: int = 20, max_answer_length: int = 30) -> dict[str, str]:
    """``{question id: answer text}``: the best valid span over all windows of each question
    ("" if no window has one)."""
    if features.example_index and max(features.example_index) >= len(examples):
        raise ValueError(f"features refer to example {max(features.example_index)} but only {len(examples)} "
                         "examples were given (pass the examples the features were made from)")
    best = best_answer_spans(features, start_logits, end_logits, n_best, max_answer_length)
    predictions = {}
    for i, example in enumerate(examples):
        _, start_char, end_char = best.get(i, (0.0, 0, 0))
        predictions[example.id] = example.context[start_char:end_char]
    return predictions


def split_squad_by_article(examples: Iterable[QAExample], eval_fraction: float, seed: int
                           ) -> tuple[list[QAExample], list[QAExample]]:
    """Split SQuAD by article title, so no passage of the eval set was seen in training
    (our copy has only the dev set, so both splits come from it)."""
    examples = list(examples)
    titles = sorted({e.title for e in examples})
    if len(titles) < 2:
        raise ValueError(f"need at least 2 articles to split by article, got {len(titles)}")
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    random.Random(seed).shuffle(titles)
    eval_titles = set(titles[:min(max(1, round(len(titles) * eval_fraction)), len(titles) - 1)])
    return [e for e in examples if e.title not in eval_titles], [e for e in examples if e.title in eval_titles]
