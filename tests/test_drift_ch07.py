"""Chapter 7's inline NSP pairs and MLM masking must stay equal to ``bertmini.data``.

The notebook's ``create_pairs`` and ``mask_tokens`` draw the same random numbers in the same order
as the package, so they are tested for exact equality; the rules (§3.1, Appendix A.1/A.2) are
tested on the notebook's versions as well, so that a drift in both at once is still caught.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bertmini.data import IGNORE_INDEX, create_nsp_examples, mask_tokens, nsp_tensors, read_wikitext
from bertmini.utils import data_dir
from nbutils import load_notebook_defs

NOTEBOOK = Path(__file__).resolve().parents[1] / "chapters" / "07_pretraining_data.ipynb"
DEFS = load_notebook_defs(NOTEBOOK, ["create_pairs", "to_bert_input", "mask_tokens"])
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


@settings(max_examples=150, deadline=None)
@given(documents(), st.integers(5, 80), st.sampled_from([0.0, 0.1, 0.5, 1.0]), st.integers(0, 2**32))
def test_create_pairs_equals_package(docs, max_seq_length, short_seq_prob, seed):
    ours = create_pairs(docs, max_seq_length, short_seq_prob, seed)
    theirs = create_nsp_examples(docs, max_seq_length, short_seq_prob, dupe_factor=1, seed=seed)
    assert ours == [tuple(ex) for ex in theirs]


@settings(max_examples=150, deadline=None)
@given(documents(), st.integers(5, 80), st.sampled_from([0.0, 0.1, 0.5]), st.integers(0, 2**32))
def test_pairs_obey_nsp_rules(docs, max_seq_length, short_seq_prob, seed):
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


def test_to_bert_input_equals_nsp_tensors():
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


@st.composite
def batches(draw) -> torch.Tensor:
    """[CLS] a [SEP] b [SEP] [PAD]... rows of random ids; sometimes a row that is all padding."""
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    n_rows, length = draw(st.integers(1, 6)), draw(st.integers(5, 48))
    ids = torch.randint(5, V, (n_rows, length), generator=g)
    for r in range(n_rows):
        n = int(torch.randint(3, length + 1, (1,), generator=g))
        cut = int(torch.randint(1, n - 1, (1,), generator=g))
        ids[r, 0], ids[r, cut], ids[r, n - 1] = CLS, SEP, SEP
        ids[r, n:] = PAD
    if draw(st.booleans()):
        ids[-1] = PAD
    return ids


def expected_budget(n: int, p: float) -> int:
    """BERT's count: max(1, round(p * n)) rounded half up, and 0 without maskable tokens."""
    return max(1, math.floor(n * p + 0.5)) if n else 0


@settings(max_examples=100, deadline=None)
@given(batches(), st.sampled_from([0.15, 0.3, 0.5]), st.integers(0, 2**32))
def test_mask_tokens_equals_package_with_same_generator(ids, p, seed):
    ours = nb_mask_tokens(ids, SPECIAL, V, MASK, p, generator=torch.Generator().manual_seed(seed))
    theirs = mask_tokens(ids, SPECIAL, V, MASK, p, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])


@settings(max_examples=100, deadline=None)
@given(batches(), st.sampled_from([0.15, 0.3]), st.integers(0, 2**32))
def test_mask_tokens_obeys_mlm_rules(ids, p, seed):
    before = ids.clone()
    masked, labels = nb_mask_tokens(ids, SPECIAL, V, MASK, p, generator=torch.Generator().manual_seed(seed))
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
    ids = torch.randint(5, V, (64, 512), generator=torch.Generator().manual_seed(0))
    masked, labels = nb_mask_tokens(ids, SPECIAL, V, MASK, generator=torch.Generator().manual_seed(1))
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
