"""Masked-LM masking: 15% of the maskable tokens, 80/10/10, whole words, dynamic and reproducible."""
from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import bertmini.pretraining.masking as masking
from bertmini.pretraining.masking import IGNORE_INDEX, MLMCollator, mask_tokens, word_continuation_ids
from bertmini.pretraining.seq_warmup import cut_rows
from bertmini.tokenizer import WordPieceTokenizer

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIAL = [PAD, UNK, CLS, SEP, MASK]
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
V = 1000


def expected_budget(n: int, p: float = 0.15, cap: int | None = None) -> int:
    """BERT's count: max(1, round(p * n)), rounded half up, capped at max_predictions."""
    k = max(1, math.floor(n * p + 0.5)) if n else 0
    return k if cap is None else min(k, cap)


@st.composite
def batches(draw) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[CLS] a [SEP] b [SEP] [PAD]... rows with random ids; also random word starts (~70% start)."""
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    n_rows, length = draw(st.integers(1, 6)), draw(st.integers(5, 48))
    ids = torch.randint(5, V, (n_rows, length), generator=g)
    mask = torch.zeros(n_rows, length, dtype=torch.long)
    for r in range(n_rows):
        n = int(torch.randint(3, length + 1, (1,), generator=g))
        cut = int(torch.randint(1, n - 1, (1,), generator=g))
        ids[r, 0], ids[r, cut], ids[r, n - 1] = CLS, SEP, SEP
        ids[r, n:] = PAD
        mask[r, :n] = 1
    starts = torch.rand(n_rows, length, generator=g) < 0.7
    return ids, mask, starts


def groups(ok: list[bool], starts: list[bool]) -> list[list[int]]:
    """Words as masking.py defines them: a start (or first maskable after a special) + its pieces."""
    words: list[list[int]] = []
    for t, (o, s) in enumerate(zip(ok, starts)):
        if o and (s or not words or words[-1][-1] != t - 1):
            words.append([t])
        elif o:
            words[-1].append(t)
    return words


@settings(max_examples=80, deadline=None)
@given(batches(), st.sampled_from([0.15, 0.3]), st.sampled_from([None, 3]), st.integers(0, 10**6))
def test_mask_tokens_invariants(batch, p, cap, seed):
    ids, attn, _ = batch
    before = ids.clone()
    masked, labels = mask_tokens(ids, SPECIAL, V, MASK, p, torch.Generator().manual_seed(seed),
                                 attention_mask=attn, max_predictions=cap)
    assert torch.equal(ids, before), "input_ids modified in place"
    eligible = ~torch.isin(ids, torch.tensor(SPECIAL)) & attn.bool()
    chosen = labels != IGNORE_INDEX
    assert not (chosen & ~eligible).any(), "a special token or padding was chosen"
    assert torch.equal(labels[chosen], ids[chosen]) and (labels[~chosen] == IGNORE_INDEX).all()
    assert torch.equal(masked[~chosen], ids[~chosen])
    for r in range(len(ids)):  # exactly BERT's count per row: |count - p * n| <= 1/2 (or the floor of 1)
        assert chosen[r].sum() == expected_budget(int(eligible[r].sum()), p, cap)
    new = masked[chosen]
    assert ((new == MASK) | ~torch.isin(new, torch.tensor(SPECIAL))).all(), "a random token was special"


@settings(max_examples=60, deadline=None)
@given(batches(), st.integers(0, 10**6))
def test_whole_word_masking_is_all_or_none(batch, seed):
    ids, attn, starts = batch
    masked, labels = mask_tokens(ids, SPECIAL, V, MASK, 0.2, torch.Generator().manual_seed(seed),
                                 whole_word=True, word_starts=starts, attention_mask=attn)
    eligible = ~torch.isin(ids, torch.tensor(SPECIAL)) & attn.bool()
    chosen = labels != IGNORE_INDEX
    assert not (chosen & ~eligible).any() and torch.equal(labels[chosen], ids[chosen])
    for r in range(len(ids)):
        for word in groups(eligible[r].tolist(), starts[r].tolist()):
            assert chosen[r, word].all() or not chosen[r, word].any(), f"word {word} partly masked"
        assert chosen[r].sum() <= expected_budget(int(eligible[r].sum()), 0.2)


@settings(max_examples=30, deadline=None)
@given(batches(), st.integers(0, 10**6), st.booleans())
def test_same_generator_seed_same_masks(batch, seed, whole_word):
    ids, attn, starts = batch
    runs = [mask_tokens(ids, SPECIAL, V, MASK, generator=torch.Generator().manual_seed(seed), whole_word=whole_word,
                        word_starts=starts, attention_mask=attn) for _ in range(2)]
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


def test_mask_rate_and_80_10_10_split_over_a_large_batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, V, (512, 128), generator=g)
    ids[:, 0], ids[:, 60], ids[:, 100] = CLS, SEP, SEP
    ids[256:, 101:] = PAD  # half the rows are padded
    masked, labels = mask_tokens(ids, SPECIAL, V, MASK, generator=g)
    chosen = labels != IGNORE_INDEX
    n_eligible = int((~torch.isin(ids, torch.tensor(SPECIAL))).sum())
    # Per-row rounding moves the rate by at most 0.5 / 98 (the shortest rows have 98 maskable tokens).
    assert abs(chosen.sum().item() / n_eligible - 0.15) <= 0.5 / 98
    new, old = masked[chosen], ids[chosen]
    m = len(new)  # about 8,600 predictions: 5 standard deviations are 0.022 (80%) and 0.016 (10%)
    frac_mask = (new == MASK).float().mean().item()
    frac_same = (new == old).float().mean().item()  # 10% kept + 10% * 1/995 random draws of the same id
    frac_random = 1 - frac_mask - frac_same
    assert abs(frac_mask - 0.8) < 0.022 and abs(frac_same - 0.1) < 0.016 and abs(frac_random - 0.1) < 0.016, m
    assert torch.isin(new[(new != MASK) & (new != old)], torch.arange(5, V)).all()
    assert len(new[(new != MASK) & (new != old)].unique()) > 500  # drawn from the whole vocabulary


def test_whole_word_rate_stays_close_to_the_budget():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, V, (256, 128), generator=g)
    starts = torch.rand(256, 128, generator=g) < 0.6  # words of 1.7 pieces on average
    _, labels = mask_tokens(ids, SPECIAL, V, MASK, generator=g, whole_word=True, word_starts=starts)
    rate = (labels != IGNORE_INDEX).float().mean().item()
    assert 0.145 < rate <= expected_budget(128) / 128  # skipping words that overshoot loses little


def test_attention_mask_excludes_positions_whatever_their_id():
    ids = torch.randint(5, V, (64, 20))
    attn = (torch.arange(20) < 8).long().expand(64, 20)
    _, labels = mask_tokens(ids, SPECIAL, V, MASK, generator=torch.Generator().manual_seed(0), attention_mask=attn)
    chosen = labels != IGNORE_INDEX
    assert not chosen[:, 8:].any() and (chosen.sum(1) == expected_budget(8)).all()


def test_mask_tokens_errors():
    ids = torch.tensor([[CLS, 7, 8, SEP]])
    with pytest.raises(ValueError, match=r"input_ids must be \(batch, length\), got shape \(4,\)"):
        mask_tokens(ids[0], SPECIAL, V, MASK)
    with pytest.raises(ValueError, match=r"whole_word=True needs word_starts of shape \(1, 4\), got None"):
        mask_tokens(ids, SPECIAL, V, MASK, whole_word=True)


# ---- the collator --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tok() -> WordPieceTokenizer:
    words = ["the", "cat", "play", "##ing", "##ed", "un", "##believ", "##able", "dog", "."]
    return WordPieceTokenizer.from_vocab({t: i for i, t in enumerate(SPECIAL_TOKENS + words)})


def items(tok: WordPieceTokenizer, n: int = 64) -> list[dict[str, torch.Tensor]]:
    enc = tok(["the cat playing unbelievable", "dog played ."] * (n // 2), padding="max_length",
              max_length=12, return_tensors="pt")
    return [{k: v[i] for k, v in enc.items()} for i in range(n)]


def test_collator_is_dynamic_reproducible_and_resumable(tok):
    examples = items(tok)
    a, b = MLMCollator(tok, seed=5), MLMCollator(tok, seed=5)
    first, again = a(examples), b(examples)
    assert set(first) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    assert torch.equal(first["input_ids"], again["input_ids"]) and torch.equal(first["labels"], again["labels"])
    state = a.state_dict()
    second = a(examples)
    assert not torch.equal(first["labels"], second["labels"]), "the next epoch must mask differently"
    c = MLMCollator(tok, seed=123)
    c.load_state_dict(state)
    resumed = c(examples)
    assert torch.equal(resumed["input_ids"], second["input_ids"]) and torch.equal(resumed["labels"], second["labels"])
    assert torch.equal(examples[0]["input_ids"], items(tok, 2)[0]["input_ids"]), "dataset items were modified"


def test_collator_sequence_length_warmup_cuts_the_first_batches_and_resumes(tok):
    examples = items(tok, 8)  # 8 rows of 12 tokens
    plain, warm = MLMCollator(tok, seed=5), MLMCollator(tok, seed=5, short_length=4, short_batches=2)
    first = warm(examples)
    assert first["input_ids"].shape[1] == 4  # 12-token rows cut in three (all-padding pieces dropped)
    reference = plain(examples)  # the same masks, before the cut
    assert torch.equal(first["labels"], cut_rows(reference, 4)["labels"])
    state = warm.state_dict()
    assert warm(examples)["input_ids"].shape[1] == 4 and warm(examples)["input_ids"].shape == (8, 12)
    resumed = MLMCollator(tok, seed=0, short_length=4, short_batches=2)
    resumed.load_state_dict(state)  # after one batch: one more is cut, then full rows
    assert resumed(examples)["input_ids"].shape[1] == 4 and resumed(examples)["input_ids"].shape == (8, 12)
    assert MLMCollator(tok, short_length=None, short_batches=5)(examples)["input_ids"].shape == (8, 12)


def test_collator_whole_word_masks_all_pieces_of_a_word(tok):
    assert word_continuation_ids(tok) == {tok.convert_tokens_to_ids(t) for t in ("##ing", "##ed", "##believ", "##able")}
    batch = MLMCollator(tok, whole_word=True, mlm_probability=0.5, seed=0)(items(tok, 200))
    chosen = batch["labels"] != IGNORE_INDEX
    # "the cat playing unbelievable": play ##ing at 3-4, un ##believ ##able at 5-7
    rows = chosen[::2]
    assert (rows[:, 3] == rows[:, 4]).all() and (rows[:, 5] == rows[:, 6]).all() and (rows[:, 6] == rows[:, 7]).all()
    assert rows[:, 3].any() and rows[:, 5].any() and not rows[:, [0, 8, 9, 10, 11]].any()


def test_collator_settings_and_worker_guard(tok, monkeypatch):
    examples = items(tok, 4)
    explicit = MLMCollator(vocab_size=tok.vocab_size, mask_token_id=MASK, special_ids=SPECIAL, seed=5)
    assert torch.equal(explicit(examples)["labels"], MLMCollator(tok, seed=5)(examples)["labels"])
    capped = MLMCollator(tok, mlm_probability=1.0, max_predictions=2)(examples)
    assert ((capped["labels"] != IGNORE_INDEX).sum(1) == 2).all()
    with pytest.raises(ValueError, match="needs a tokenizer or an explicit vocab_size"):
        MLMCollator(mask_token_id=MASK)
    with pytest.raises(ValueError, match="whole_word=True needs a tokenizer or continuation_ids"):
        MLMCollator(vocab_size=V, mask_token_id=MASK, special_ids=SPECIAL, whole_word=True)
    monkeypatch.setattr(masking, "get_worker_info", lambda: object())
    with pytest.raises(RuntimeError, match="use num_workers=0"):
        MLMCollator(tok)(examples)


@pytest.mark.parametrize("rate", [0, 0.0, -0.15, 1.5, float("nan"), "0.15", True, None])
def test_collator_refuses_a_masking_rate_outside_0_1(rate):
    with pytest.raises(ValueError, match=r"mlm_probability: expected a number in \(0, 1\], the share of tokens to "
                                         rf"predict, got {re.escape(repr(rate))}"):
        MLMCollator(vocab_size=V, mask_token_id=MASK, special_ids=SPECIAL, mlm_probability=rate)
