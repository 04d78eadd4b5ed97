"""Pre-training examples: NSP pairs, truncation, packed blocks, tensors and the on-disk cache."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bertmini.errors import DataFormatError
from bertmini.pretraining.build import build_or_load
from bertmini.pretraining.corpus import read_gutenberg, read_wikitext
from bertmini.pretraining.examples import (
    PretrainingDataset,
    build_pretraining_dataset,
    create_nsp_examples,
    nsp_tensors,
    packed_tensors,
    source_label,
    tokenize_documents,
    truncate_seq_pair,
)
from bertmini.tokenizer import WordPieceTokenizer
from bertmini.utils import data_dir

CLS, SEP, PAD = 101, 102, 0


@pytest.fixture(scope="module")
def tok(minilm_dir) -> WordPieceTokenizer:
    """The uncased BERT vocabulary of all-MiniLM-L6-v2 (conftest's offline copy)."""
    return WordPieceTokenizer.from_file(minilm_dir)


@pytest.fixture
def corpus(tmp_path) -> list[Path]:
    """The first kilobytes of WikiText-2 valid (5 articles) and of Emma (4 chapters)."""
    try:
        root = data_dir()
    except FileNotFoundError as err:
        pytest.skip(f"offline data not available: {err}")
    out = []
    for src, n_bytes in ((root / "wikitext-2-raw" / "wiki.valid.raw", 60_000),
                         (root / "gutenberg-nltk" / "austen-emma.txt", 40_000)):
        text = src.read_text(encoding="utf-8")[:n_bytes]
        out.append(tmp_path / src.name)
        out[-1].write_text(text[: text.rindex("\n") + 1], encoding="utf-8")
    return out


def synthetic_docs(n_docs: int = 12, seed: int = 0) -> list[list[list[int]]]:
    """Documents whose token ids say where they come from: doc d, running token k → (d + 1) * 10_000 + k."""
    rng, docs = random.Random(seed), []
    for d in range(n_docs):
        k, doc = 0, []
        for _ in range(rng.randint(1, 30)):
            n = rng.randint(1, 25)
            doc.append([(d + 1) * 10_000 + k + j for j in range(n)])
            k += n
        docs.append(doc)
    return docs


# ---- truncation ----------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.integers(0, 40), st.integers(0, 40), st.integers(2, 50), st.integers(0, 10**6))
def test_truncate_seq_pair_trims_longest_first_keeping_contiguous_slices(len_a, len_b, max_tokens, seed):
    a, b = list(range(len_a)), list(range(100, 100 + len_b))
    truncate_seq_pair(a, b, max_tokens, random.Random(seed))
    assert len(a) + len(b) == min(len_a + len_b, max_tokens)
    for got, start, n in ((a, 0, len_a), (b, 100, len_b)):  # a non-empty, contiguous piece of the original
        assert bool(got) == bool(n) and all(start <= t < start + n for t in got)
        assert got == list(range(got[0], got[0] + len(got))) if got else True
    # Longest first: either the shorter side is untouched or both ended within one token.
    assert min(len(a), len(b)) == min(len_a, len_b) or abs(len(a) - len(b)) <= 1


def test_truncate_seq_pair_trims_both_ends_at_random():
    kept = []
    for seed in range(50):
        a = list(range(10))
        truncate_seq_pair(a, [], 4, random.Random(seed))
        kept.append(a[0])
    assert 0 in kept and 6 in kept and len(set(kept)) >= 5  # fronts and backs both get cut


# ---- NSP examples --------------------------------------------------------------------------------
def test_nsp_examples_a_and_b_come_from_the_right_documents():
    docs = synthetic_docs()
    examples = create_nsp_examples(docs, max_seq_length=40, dupe_factor=3, seed=1)
    for ex in examples:
        assert ex.tokens_a and ex.tokens_b and len(ex.tokens_a) + len(ex.tokens_b) <= 37
        for toks in (ex.tokens_a, ex.tokens_b):  # contiguous runs (truncation only trims the ends)
            assert toks == list(range(toks[0], toks[0] + len(toks)))
        assert {t // 10_000 - 1 for t in ex.tokens_a} == {ex.doc_a}
        assert {t // 10_000 - 1 for t in ex.tokens_b} == {ex.doc_b}
        if ex.is_random_next:
            assert ex.doc_b != ex.doc_a
        else:  # IsNext: B is the text after A, in the same document
            assert ex.doc_b == ex.doc_a and ex.tokens_b[0] > ex.tokens_a[-1]
    assert [ex.doc_a for ex in examples] != sorted(ex.doc_a for ex in examples), "examples are not shuffled"
    labels = [ex.is_random_next for ex in examples]
    assert 0.45 < sum(labels) / len(labels) < 0.6, sum(labels) / len(labels)
    # Every sentence is used: with NotNext the unused sentences go back into the document.
    covered = {t for ex in create_nsp_examples(docs, max_seq_length=512, seed=1) for t in ex.tokens_a + ex.tokens_b}
    assert covered >= {t for doc in docs if len(doc) > 1 for s in doc for t in s}


def test_nsp_examples_are_deterministic_given_the_seed():
    docs = synthetic_docs()
    assert create_nsp_examples(docs, 32, seed=7) == create_nsp_examples(docs, 32, seed=7)
    assert create_nsp_examples(docs, 32, seed=7) != create_nsp_examples(docs, 32, seed=8)


def test_short_seq_prob_gives_shorter_examples():
    docs = synthetic_docs(40)

    def mean_len(p: float) -> float:
        examples = create_nsp_examples(docs, 64, short_seq_prob=p, seed=3)
        return sum(len(e.tokens_a) + len(e.tokens_b) for e in examples) / len(examples)

    assert mean_len(0.0) > 50 > 40 > mean_len(1.0)  # full ~61 tokens vs uniform targets in [2, 61]


def test_nsp_errors():
    with pytest.raises(ValueError, match="at least 2 non-empty documents for NotNext pairs, got 1"):
        create_nsp_examples(synthetic_docs(1), 32)
    with pytest.raises(ValueError, match="max_seq_length=4: need at least 5"):
        create_nsp_examples(synthetic_docs(), 4)


@pytest.mark.parametrize("mode", ["nsp", "packed"])
def test_text_that_tokenizes_to_nothing_is_an_error_naming_reader_and_path(tok, mode):
    """Sentences with characters but no tokens (a zero-width space, a lone accent, NUL, a soft hyphen: BERT's
    normalizer drops them all) give no examples."""
    source = source_label("text", ["data/a.txt", "data/b.txt"])
    with pytest.raises(DataFormatError, match=r"^reader 'text' on data/a\.txt, data/b\.txt: no text: the corpus "
                                              r"yields no document with tokens"):
        build_pretraining_dataset([["\u200b \u0301", "\x00"], ["\u00ad"]], tok, mode=mode, source=source)


def test_nsp_tensors_layout():
    examples = create_nsp_examples(synthetic_docs(), 24, seed=0)[:50]
    t = nsp_tensors(examples, 24, CLS, SEP, PAD)
    for row, ex in enumerate(examples):
        n_a, n_b = len(ex.tokens_a), len(ex.tokens_b)
        n = n_a + n_b + 3
        assert t["input_ids"][row].tolist() == [CLS, *ex.tokens_a, SEP, *ex.tokens_b, SEP] + [PAD] * (24 - n)
        assert t["token_type_ids"][row].tolist() == [0] * (n_a + 2) + [1] * (n_b + 1) + [0] * (24 - n)
        assert t["attention_mask"][row].tolist() == [1] * n + [0] * (24 - n)
        assert t["next_sentence_label"][row] == int(ex.is_random_next)
    with pytest.raises(ValueError, match="example 0 has 2[0-9] tokens, expected at most 8"):
        nsp_tensors(examples, 8, CLS, SEP, PAD)


# ---- packed (MLM only) blocks --------------------------------------------------------------------
def test_packed_blocks_cover_every_token_once_per_dupe():
    docs = synthetic_docs(5)
    t = packed_tensors(docs, 16, CLS, SEP, PAD, dupe_factor=2, seed=0)
    ids, mask = t["input_ids"], t["attention_mask"]
    assert set(t) == {"input_ids", "token_type_ids", "attention_mask"} and not t["token_type_ids"].any()
    lengths = mask.sum(1)
    assert (ids[:, 0] == CLS).all() and (ids[torch.arange(len(ids)), lengths - 1] == SEP).all()
    assert ((ids == PAD) == (mask == 0)).all()
    n_tokens = sum(len(s) for d in docs for s in d)
    content = torch.cat([row[1:n - 1] for row, n in zip(ids, lengths)])
    assert len(content) == 2 * (n_tokens + len(docs) - 1)  # + [SEP] between documents
    real = content[content != SEP]
    assert sorted(real.tolist()) == sorted(2 * [t for d in docs for s in d for t in s])
    assert (lengths < 16).sum() <= 2  # only the last block of each pass is short
    assert len({tuple(r.tolist()) for r in ids}) == len(ids)  # the two passes cut differently
    with pytest.raises(ValueError, match="max_seq_length=2: need at least 3"):
        packed_tensors(docs, 2, CLS, SEP, PAD)


# ---- real text -----------------------------------------------------------------------------------
def test_nsp_dataset_on_wikitext_and_gutenberg(tok, corpus):
    docs = list(read_wikitext(corpus[0])) + list(read_gutenberg(corpus[1]))
    assert len(docs) == 5 + 4
    ds = build_pretraining_dataset(docs, tok, mode="nsp", max_seq_length=64, seed=0)
    t = ds.tensors
    assert ds.mode == "nsp" and len(ds) > 300 and t["input_ids"].shape[1] == 64
    assert 0.4 < t["next_sentence_label"].float().mean() < 0.6
    ids, types, mask = t["input_ids"].long(), t["token_type_ids"].long(), t["attention_mask"].long()
    n = mask.sum(1)
    is_sep = (ids == SEP) & (mask == 1)
    assert (ids[:, 0] == CLS).all() and (is_sep.sum(1) == 2).all()
    assert (ids[torch.arange(len(ids)), n - 1] == SEP).all() and ((ids == PAD) == (mask == 0)).all()
    first_sep = is_sep.int().argmax(1)
    pos = torch.arange(64)
    assert (types == ((pos > first_sep[:, None]) & (pos < n[:, None])).long()).all()  # 0..0 1..1 0(pad)
    item = ds[0]
    assert set(item) == {"input_ids", "token_type_ids", "attention_mask", "next_sentence_label"}
    assert all(v.dtype == torch.long for v in item.values())
    assert tok.decode(item["input_ids"]).strip()


def test_tokenize_documents_drops_empty_sentences_and_documents(tok):
    docs = tokenize_documents([["Hello world.", "  "], [], ["\u200b"], ["Playing."]], tok)
    assert docs == [[tok.encode_plain(["Hello world."])[0]], [tok.encode_plain(["Playing."])[0]]]


# ---- cache ---------------------------------------------------------------------------------------
def test_build_or_load_caches_and_rebuilds_when_inputs_change(tok, corpus, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = build_or_load(corpus[0], tok, reader="wikitext", max_seq_length=48, cache_dir=cache)
    assert not first.from_cache and first.cache_path.parent == cache
    assert [p.name for p in cache.iterdir()] == [first.cache_path.name]  # no temporary file left

    def no_tokenizing(texts):
        raise AssertionError("tokenized again although the cache should hit")

    monkeypatch.setattr(tok, "encode_plain", no_tokenizing)
    second = build_or_load(corpus[0], tok, reader="wikitext", max_seq_length=48, cache_dir=cache)
    assert second.from_cache and second.cache_path == first.cache_path
    assert all(torch.equal(first.tensors[k], second.tensors[k]) for k in first.tensors)
    assert second.meta["num_documents"] == 5
    with pytest.raises(AssertionError, match="tokenized again"):  # another seed is another dataset
        build_or_load(corpus[0], tok, reader="wikitext", max_seq_length=48, seed=1, cache_dir=cache)
    with corpus[0].open("a", encoding="utf-8") as f:  # so is an edited file
        f.write(" More text . Yes .\n")
    with pytest.raises(AssertionError, match="tokenized again"):
        build_or_load(corpus[0], tok, reader="wikitext", max_seq_length=48, cache_dir=cache)


def test_build_or_load_packed_mode_with_a_custom_reader(tok, corpus, tmp_path):
    def first_lines(files):
        for path in files:
            yield path.read_text(encoding="utf-8").split("\n")[:40]

    ds = build_or_load(corpus, tok, reader=first_lines, mode="packed", max_seq_length=32,
                       max_documents=1, cache_dir=tmp_path)
    assert ds.mode == "packed" and ds.meta["num_documents"] == 1 and "next_sentence_label" not in ds[0]
    assert PretrainingDataset.load(ds.cache_path).meta == ds.meta
    with pytest.raises(ValueError, match="mode='mlm': expected one of \\('nsp', 'packed'\\)"):
        build_or_load(corpus, tok, mode="mlm", cache_dir=tmp_path)
