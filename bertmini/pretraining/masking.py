"""Masked-LM inputs: choose 15% of the tokens, corrupt them 80/10/10 (Devlin et al. 2019, §3.1, App. A.1).

§3.1 "Task #1: Masked LM": BERT predicts 15% of the WordPiece tokens of each sequence. A chosen
token is replaced by ``[MASK]`` 80% of the time, by a random token 10%, and left unchanged 10%,
so that the model cannot rely on ``[MASK]`` (never seen at fine-tuning time) to know where to look.

How many tokens: we follow BERT's ``create_pretraining_data.py``, not Hugging Face's
``DataCollatorForLanguageModeling``: every sequence with ``n`` maskable tokens gets exactly
``max(1, round(0.15 * n))`` predictions (rounded half up) (capped by ``max_predictions``), placed uniformly at random.
HF instead flips a 15% coin per token, so the count is Binomial(n, 0.15): a short sequence may get
none. The fixed count is the paper's "15% of the tokens in each sequence", has no per-sequence
variance, and is exactly testable. (Google counts [CLS]/[SEP] in ``n``; we count only maskable
tokens: special tokens and padding are never chosen.)

Unlike Google's static masks (written to disk ``dupe_factor`` times), :class:`MLMCollator` masks
afresh every time a batch is drawn: "dynamic masking" (Liu et al. 2019, RoBERTa §4.1).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch.utils.data import get_worker_info

from bertmini.errors import is_number
from bertmini.heads import IGNORE_INDEX
from bertmini.pretraining.seq_warmup import cut_rows

__all__ = ["word_continuation_ids", "mask_tokens", "MLMCollator", "IGNORE_INDEX"]



def word_continuation_ids(tokenizer: Any) -> set[int]:
    """Ids of WordPiece pieces that continue a word (``##ing``): they never start a word."""
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else tokenizer.backend.get_vocab()
    return {i for token, i in vocab.items() if token.startswith("##")}


def _whole_word_selection(eligible: torch.Tensor, word_starts: torch.Tensor, budget: torch.Tensor,
                          generator: torch.Generator | None) -> torch.Tensor:
    """Pick whole words (a start piece + its ``##`` pieces) in random order until ``budget`` tokens.

    As in Google's whole-word masking: a word that would overshoot the budget is skipped and the
    next one tried, so a row gets at most ``budget`` tokens and every word is all-or-none.
    """
    selected = torch.zeros_like(eligible)
    for row, (ok, starts, k) in enumerate(zip(eligible.tolist(), word_starts.tolist(), budget.tolist())):
        words: list[list[int]] = []
        for t, (is_ok, is_start) in enumerate(zip(ok, starts)):
            if not is_ok:
                continue
            if is_start or not words or words[-1][-1] != t - 1:  # after a special token: new word
                words.append([t])
            else:
                words[-1].append(t)
        chosen = 0
        for w in torch.randperm(len(words), generator=generator).tolist():
            if chosen >= k:
                break
            if chosen + len(words[w]) <= k:
                selected[row, words[w]] = True
                chosen += len(words[w])
    return selected


def mask_tokens(
    input_ids: torch.Tensor,
    special_ids: Iterable[int],
    vocab_size: int,
    mask_token_id: int,
    mlm_probability: float = 0.15,
    generator: torch.Generator | None = None,
    whole_word: bool = False,
    word_starts: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    max_predictions: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(masked_input_ids, labels)`` for a (batch, length) id tensor; ``input_ids`` is not modified.

    ``labels`` holds the original id where a prediction is made and ``IGNORE_INDEX`` (-100) elsewhere.
    Ids in ``special_ids`` (include the pad id) and positions with ``attention_mask == 0`` are never
    chosen. Random replacements are drawn uniformly from the non-special ids. With ``whole_word``,
    ``word_starts`` (bool, same shape) is True where a token begins a word; the following False
    positions are its pieces and are masked together with it. All randomness comes from
    ``generator`` (on the CPU), so a seeded generator makes the masks reproducible.
    """
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
    if whole_word and (word_starts is None or word_starts.shape != input_ids.shape):
        got = None if word_starts is None else tuple(word_starts.shape)
        raise ValueError(f"whole_word=True needs word_starts of shape {tuple(input_ids.shape)}, got {got}")
    ids = input_ids.cpu()
    special = torch.tensor(sorted(set(special_ids)), dtype=ids.dtype)
    eligible = ~torch.isin(ids, special)
    if attention_mask is not None:
        eligible &= attention_mask.cpu().bool()
    n = eligible.sum(dim=1)
    # floor(x + 0.5) in float64: round half up, the same on every platform (torch.round is half-to-even).
    budget = torch.where(n > 0, torch.floor(n.double() * mlm_probability + 0.5).long().clamp(min=1), 0)
    if max_predictions is not None:
        budget = budget.clamp(max=max_predictions)

    if whole_word:
        selected = _whole_word_selection(eligible, word_starts.cpu().bool(), budget, generator)
    else:
        # Rank eligible positions by a random key: the ``budget`` lowest keys are a uniform sample.
        keys = torch.rand(ids.shape, generator=generator).masked_fill(~eligible, 2.0)
        ranks = keys.argsort(dim=1).argsort(dim=1)
        selected = ranks < budget[:, None]

    allowed = torch.ones(vocab_size, dtype=torch.bool)
    allowed[special[special < vocab_size]] = False
    allowed_ids = allowed.nonzero().squeeze(1).to(ids.dtype)
    u = torch.rand(ids.shape, generator=generator)
    random_ids = allowed_ids[torch.randint(len(allowed_ids), ids.shape, generator=generator)]
    masked = ids.clone()
    masked[selected & (u < 0.8)] = mask_token_id  # 80%: [MASK]
    to_random = selected & (u >= 0.8) & (u < 0.9)  # 10%: a random token; the last 10%: unchanged
    masked[to_random] = random_ids[to_random]
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE_INDEX))
    return masked.to(input_ids.device), labels.to(input_ids.device)


class MLMCollator:
    """DataLoader ``collate_fn``: stack items, then mask them anew on every call (dynamic masking).

    Settings come from ``tokenizer`` (``vocab_size``, ``mask_token_id``, ``all_special_ids`` and,
    for ``whole_word``, the ``##`` pieces of its vocabulary) unless passed explicitly. Its own
    seeded ``torch.Generator`` makes runs reproducible; ``state_dict()``/``load_state_dict()`` save
    and restore it so that a resumed run draws the same masks as an uninterrupted one. Use it with
    ``num_workers=0``: worker processes would each copy the generator (repeating masks) and the
    saved state would not advance.
    """

    def __init__(self, tokenizer: Any = None, *, mlm_probability: float = 0.15, whole_word: bool = False,
                 seed: int = 0, max_predictions: int | None = None, vocab_size: int | None = None,
                 mask_token_id: int | None = None, special_ids: Sequence[int] | None = None,
                 continuation_ids: Iterable[int] | None = None, short_length: int | None = None,
                 short_batches: int = 0):
        def pick(value: Any, attr: str) -> Any:
            if value is None:
                if tokenizer is None:
                    raise ValueError(f"MLMCollator needs a tokenizer or an explicit {attr}")
                value = getattr(tokenizer, attr)
            return value

        self.vocab_size = pick(vocab_size, "vocab_size")
        self.mask_token_id = pick(mask_token_id, "mask_token_id")
        self.special_ids = list(pick(special_ids, "all_special_ids"))
        # 0 would still mask one token per row (the count is at least 1); 1 (mask everything) is allowed
        # here for tests, while configs ask for (0, 1): a model needs unmasked context to predict from.
        if not (is_number(mlm_probability) and 0 < mlm_probability <= 1):
            raise ValueError(f"mlm_probability: expected a number in (0, 1], the share of tokens to predict, "
                             f"got {mlm_probability!r}")
        self.mlm_probability = mlm_probability
        self.max_predictions = max_predictions
        self.whole_word = whole_word
        self.continuation: torch.Tensor | None = None
        if whole_word:
            if continuation_ids is None:
                if tokenizer is None:
                    raise ValueError("whole_word=True needs a tokenizer or continuation_ids")
                continuation_ids = word_continuation_ids(tokenizer)
            self.continuation = torch.tensor(sorted(continuation_ids), dtype=torch.long)
        self.generator = torch.Generator().manual_seed(seed)
        # Sequence-length warmup (bertmini.pretraining.seq_warmup): the first `short_batches` batches are cut
        # into `short_length`-token pieces; `calls` counts batches and is checkpointed with the generator.
        self.short_length, self.short_batches, self.calls = short_length, short_batches if short_length else 0, 0

    def __call__(self, examples: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        if get_worker_info() is not None:
            raise RuntimeError("MLMCollator runs in a DataLoader worker: use num_workers=0 "
                               "(each worker would repeat the same masks and the state could not be saved)")
        batch = {k: torch.stack([torch.as_tensor(ex[k]) for ex in examples]) for k in examples[0]}
        ids = batch["input_ids"]
        starts = ~torch.isin(ids, self.continuation.to(ids.dtype)) if self.whole_word else None
        batch["input_ids"], batch["labels"] = mask_tokens(
            ids, self.special_ids, self.vocab_size, self.mask_token_id, self.mlm_probability,
            generator=self.generator, whole_word=self.whole_word, word_starts=starts,
            attention_mask=batch.get("attention_mask"), max_predictions=self.max_predictions,
        )
        self.calls += 1
        if self.calls <= self.short_batches:
            batch = cut_rows(batch, self.short_length)
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.calls = int(state.get("calls", 0))  # checkpoints from before the warmup existed: 0

