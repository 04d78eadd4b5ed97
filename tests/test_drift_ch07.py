"""Chapter 7's inline NSP pairs and MLM masking must stay equal to ``bertmini.pretraining``.

The notebook's ``create_pairs`` and ``mask_tokens`` draw the same random numbers in the same order
as the package, so they are tested for exact equality; the rules (§3.1, Appendix A.1/A.2) are
tested on the notebook's versions as well, so that a drift in both at once is still caught.
Each equality check is a function that also runs on mutated copies of the notebook (NotNext pairs
labelled IsNext, [CLS] maskable, 80/10/10 turned into 100/0/0, ...) and must fail there.
"""
from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bertmini.pretraining import IGNORE_INDEX, create_nsp_examples, mask_tokens, nsp_tensors, read_wikitext
from bertmini.utils import data_dir

from nbutils import fails, load_notebook_defs, mutate

NOTEBOOK = Path(__file__).resolve().parents[1] / "chapters" / "07_pretraining_data.ipynb"
NAMES = ["create_pairs", "to_bert_input", "mask_tokens"]
DEFS = load_notebook_defs(NOTEBOOK, NAMES)
create_pairs, to_bert_input, nb_mask_tokens = DEFS["create_pairs"], DEFS["to_bert_input"], DEFS["mask_tokens"]

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIAL = [PAD, UNK, CLS, SEP, MASK]
V = 1000


@st.composite
def documents(draw) -> list[list[list[int]]]:
    """2-6 documents of 1-8 sentences; token ids are global positions, so every id says where it came from."""
    lengths = draw(st.lists(st.lists(st.integers(1, 30), min_size=1, max_size=8), min_size=2, max_size=6))
    docs, next_id = [], 0
    for doc in lengths:
        docs.append([])
        for n in doc:
            docs[-1].append(list(range(next_id, next_id + n)))
            next_id += n
    return docs


def check_pairs(create_pairs, docs, max_seq_length, short_seq_prob, seed) -> None:
    """The notebook's pairs are the package's, in the same order."""
    ours = create_pairs(docs, max_seq_length, short_seq_prob, seed)
    theirs = create_nsp_examples(docs, max_seq_length, short_seq_prob, dupe_factor=1, seed=seed)
    assert ours == [tuple(ex) for ex in theirs]


@settings(max_examples=150, deadline=None)
@given(documents(), st.integers(5, 80), st.sampled_from([0.0, 0.1, 0.5, 1.0]), st.integers(0, 2**32))
def test_create_pairs_equals_package(docs, max_seq_length, short_seq_prob, seed):
    check_pairs(create_pairs, docs, max_seq_length, short_seq_prob, seed)


@settings(max_examples=150, deadline=None)
@given(documents(), st.integers(5, 80), st.sampled_from([0.0, 0.1, 0.5]), st.integers(0, 2**32))
def test_pairs_obey_nsp_rules(docs, max_seq_length, short_seq_prob, seed):
    check_pair_rules(create_pairs, docs, max_seq_length, short_seq_prob, seed)


def check_pair_rules(create_pairs, docs, max_seq_length, short_seq_prob, seed) -> None:
    """§3.1: contiguous A and B that fit with 3 specials; IsNext B follows A, NotNext B is another document's."""
    owner = {t: d for d, doc in enumerate(docs) for s in doc for t in s}
    pairs = create_pairs(docs, max_seq_length, short_seq_prob, seed)
    assert {p[3] for p in pairs} == set(range(len(docs))), "a document produced no pair"
    for tokens_a, tokens_b, is_random_next, doc_a, doc_b in pairs:
        assert tokens_a and tokens_b, "empty segment"
        assert len(tokens_a) + len(tokens_b) <= max_seq_length - 3, "no room for [CLS] A [SEP] B [SEP]"
        for seg in (tokens_a, tokens_b):  # each segment is one contiguous span of text
            assert seg == list(range(seg[0], seg[0] + len(seg)))
        assert {owner[t] for t in tokens_a} == {doc_a}
        assert {owner[t] for t in tokens_b} == {doc_b}
        if is_random_next:  # NotNext: B from another document
            assert doc_b != doc_a
        else:  # IsNext: B is what follows A in the same document
            assert doc_b == doc_a and tokens_a[-1] < tokens_b[0]


def check_to_bert_input(to_bert_input) -> None:
    """[CLS] A [SEP] B [SEP] with segments 0...0 1...1, as in the package's padded NSP tensors."""
    docs = [[[10, 11, 12], [13, 14]], [[20], [21, 22, 23]], [[30, 31]]]
    examples = create_nsp_examples(docs, max_seq_length=12, short_seq_prob=0.0, seed=3)
    tensors = nsp_tensors(examples, 12, cls_id=CLS, sep_id=SEP, pad_id=PAD)
    for row, ex in enumerate(examples):
        ids, types = to_bert_input(ex.tokens_a, ex.tokens_b, CLS, SEP)
        assert ids[0] == CLS and ids.count(SEP) == 2 and ids[-1] == SEP
        assert types == [0] * (len(ex.tokens_a) + 2) + [1] * (len(ex.tokens_b) + 1)
        assert tensors["input_ids"][row, :len(ids)].tolist() == ids
        assert tensors["token_type_ids"][row, :len(ids)].tolist() == types
        assert tensors["next_sentence_label"][row] == int(ex.is_random_next)


def test_to_bert_input_equals_nsp_tensors():
    check_to_bert_input(to_bert_input)


def make_batch(seed: int, n_rows: int, length: int, empty_last_row: bool) -> torch.Tensor:
    """[CLS] a [SEP] b [SEP] [PAD]... rows of random ids; optionally a last row that is all padding."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (n_rows, length), generator=g)
    for r in range(n_rows):
        n = int(torch.randint(3, length + 1, (1,), generator=g))
        cut = int(torch.randint(1, n - 1, (1,), generator=g))
        ids[r, 0], ids[r, cut], ids[r, n - 1] = CLS, SEP, SEP
        ids[r, n:] = PAD
    if empty_last_row:
        ids[-1] = PAD
    return ids


@st.composite
def batches(draw) -> torch.Tensor:
    seed, n_rows, length = draw(st.integers(0, 2**31 - 1)), draw(st.integers(1, 6)), draw(st.integers(5, 48))
    return make_batch(seed, n_rows, length, draw(st.booleans()))


def expected_budget(n: int, p: float) -> int:
    """BERT's count: max(1, round(p * n)) rounded half up, and 0 without maskable tokens."""
    return max(1, math.floor(n * p + 0.5)) if n else 0


def check_masks(mask_fn, ids, p, seed) -> None:
    """The notebook's masked ids and labels are the package's, drawing from generators with the same seed."""
    ours = mask_fn(ids, SPECIAL, V, MASK, p, generator=torch.Generator().manual_seed(seed))
    theirs = mask_tokens(ids, SPECIAL, V, MASK, p, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])


@settings(max_examples=100, deadline=None)
@given(batches(), st.sampled_from([0.15, 0.3, 0.5]), st.integers(0, 2**32))
def test_mask_tokens_equals_package_with_same_generator(ids, p, seed):
    check_masks(nb_mask_tokens, ids, p, seed)


@settings(max_examples=100, deadline=None)
@given(batches(), st.sampled_from([0.15, 0.3]), st.integers(0, 2**32))
def test_mask_tokens_obeys_mlm_rules(ids, p, seed):
    check_mask_rules(nb_mask_tokens, ids, p, seed)


def check_mask_rules(mask_fn, ids, p, seed) -> None:
    """Appendix A.1: a rounded p of the non-special tokens is chosen, labels hold the originals, nothing else moves."""
    before = ids.clone()
    masked, labels = mask_fn(ids, SPECIAL, V, MASK, p, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(ids, before), "input_ids modified in place"
    eligible = ~torch.isin(ids, torch.tensor(SPECIAL))
    chosen = labels != IGNORE_INDEX
    assert not (chosen & ~eligible).any(), "a special token or padding was chosen"
    assert torch.equal(labels[chosen], ids[chosen]), "labels must hold the original ids"
    assert torch.equal(masked[~chosen], ids[~chosen]), "a position without a label was changed"
    for r in range(len(ids)):
        assert chosen[r].sum() == expected_budget(int(eligible[r].sum()), p)
    new = masked[chosen]
    assert ((new == MASK) | ~torch.isin(new, torch.tensor(SPECIAL))).all(), "a random replacement was special"


def test_mask_tokens_80_10_10():
    check_80_10_10(nb_mask_tokens)


def check_80_10_10(mask_fn) -> None:
    """Of the chosen tokens 80% become [MASK], 10% a random token, 10% stay (±2%, 4,928 draws)."""
    ids = torch.randint(5, V, (64, 512), generator=torch.Generator().manual_seed(0))
    masked, labels = mask_fn(ids, SPECIAL, V, MASK, generator=torch.Generator().manual_seed(1))
    chosen = labels != IGNORE_INDEX
    new, old = masked[chosen], ids[chosen]
    n = chosen.sum().item()
    assert n == 64 * round(0.15 * 512)
    assert abs((new == MASK).sum().item() / n - 0.8) < 0.02
    assert abs((new == old).sum().item() / n - 0.1) < 0.02  # unchanged (a random draw equal to old: ~1/1000)
    assert abs(((new != MASK) & (new != old)).sum().item() / n - 0.1) < 0.02


def test_real_corpus_pairs_and_masks_match_package(minilm_dir):
    from bertmini.tokenizer import WordPieceTokenizer

    tok = WordPieceTokenizer.from_file(minilm_dir)
    wiki = data_dir() / "wikitext-2-raw" / "wiki.valid.raw"
    docs = [[ids for ids in tok.encode_plain(doc) if ids]
            for _, doc in zip(range(8), read_wikitext(wiki, detokenize=True))]
    examples = create_nsp_examples(docs, 64, 0.1, seed=7)
    assert create_pairs(docs, 64, 0.1, seed=7) == [tuple(ex) for ex in examples]
    ids = nsp_tensors(examples, 64, tok.cls_token_id, tok.sep_token_id, tok.pad_token_id)["input_ids"].long()
    ours = nb_mask_tokens(ids, tok.all_special_ids, tok.vocab_size, tok.mask_token_id,
                          generator=torch.Generator().manual_seed(0))
    theirs = mask_tokens(ids, tok.all_special_ids, tok.vocab_size, tok.mask_token_id,
                         generator=torch.Generator().manual_seed(0))
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])


# ---------------------------------------------------------------- the checks above must catch planted bugs

def fixed_documents(seed: int) -> list[list[list[int]]]:
    """Like the `documents` strategy (2-6 documents, 1-8 sentences of 1-30 tokens), drawn from random.Random(seed)."""
    rng, docs, next_id = random.Random(seed), [], 0
    for _ in range(rng.randint(2, 6)):
        docs.append([])
        for _ in range(rng.randint(1, 8)):
            n = rng.randint(1, 30)
            docs[-1].append(list(range(next_id, next_id + n)))
            next_id += n
    return docs


def ch07_fails(defs: dict, definition: str, rules: bool = False) -> bool:
    """Whether the drift check of `definition` (or, with `rules`, its package-free rule checks) rejects `defs`
    on a few fixed inputs."""
    if definition == "create_pairs":
        check = check_pair_rules if rules else check_pairs
        return any(fails(check, defs["create_pairs"], fixed_documents(seed), max_seq_length, 0.1, seed)
                   for seed in range(6) for max_seq_length in (16, 64))
    if definition == "to_bert_input":
        return fails(check_to_bert_input, defs["to_bert_input"])
    if rules and fails(check_80_10_10, defs["mask_tokens"]):
        return True
    check = check_mask_rules if rules else check_masks
    return any(fails(check, defs["mask_tokens"], make_batch(seed, 6, 48, empty_last_row=True), 0.15, seed)
               for seed in range(3))


@pytest.mark.parametrize("definition, old, new, breaks_rules", [
    pytest.param("create_pairs", "pair = (tokens_a, tokens_b, True, d, other)",
                 "pair = (tokens_a, tokens_b, False, d, other)", True, id="NotNext-labelled-IsNext"),
    pytest.param("create_pairs", "                if other >= d:\n                    other += 1\n", "", True,
                 id="random-B-may-come-from-the-same-document"),
    pytest.param("create_pairs", "i -= len(chunk) - n_a", "pass", False, id="unused-sentences-dropped"),
    pytest.param("create_pairs", "max_seq_length - 3", "max_seq_length - 2", True, id="room-for-only-two-specials"),
    pytest.param("to_bert_input", "[0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)",
                 "[0] * (len(tokens_a) + 1) + [1] * (len(tokens_b) + 2)", True, id="first-SEP-in-segment-B"),
    pytest.param("to_bert_input", "*tokens_b, sep_id]", "*tokens_b]", True, id="final-SEP-missing"),
    pytest.param("mask_tokens", "masked[swap] = random_ids[swap]", "masked[chosen] = mask_token_id", True,
                 id="100/0/0-not-80/10/10"),
    pytest.param("mask_tokens", "eligible = ~torch.isin(input_ids, special)", "eligible = input_ids != special[0]",
                 True, id="CLS-and-SEP-maskable"),
    pytest.param("mask_tokens", "torch.where(chosen, input_ids, IGNORE_INDEX)",
                 "torch.where(chosen, masked, IGNORE_INDEX)", True, id="labels-are-the-corrupted-ids"),
    pytest.param("mask_tokens", "mlm_probability + 0.5).floor()", "mlm_probability).floor()", True,
                 id="budget-rounded-down"),
])
def test_ch07_drift_test_catches_mutants(definition: str, old: str, new: str, breaks_rules: bool,
                                         tmp_path: Path) -> None:
    """The package comparison rejects every mutant; the package-free rule checks (which catch a drift of
    notebook and package together) reject those that break a rule of the paper."""
    defs = load_notebook_defs(mutate(NOTEBOOK, f"def {definition}(", old, new, tmp_path), NAMES)
    assert ch07_fails(defs, definition)
    if breaks_rules:
        assert ch07_fails(defs, definition, rules=True)
