"""WordPieceTokenizer against transformers' BertTokenizerFast, greedy_wordpiece against the backend."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bertmini.tokenizer import SPECIAL_TOKENS, WordPieceTokenizer, greedy_wordpiece
from bertmini.utils import data_dir

from nbutils import load_notebook_defs

transformers = pytest.importorskip("transformers")
ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "chapters" / "01_tokenization.ipynb"

TEXTS = [
    "Hello, World! The quick brown fox jumps over the lazy dog.",
    "Café, naïve façade and Ångström units; CAFÉ vs café.",
    "日本語の文章 and 中文 mixed with English.",
    "Emoji 😀🎉 and symbols ★ → ½ ﬁ © ™",
    "Punctuation!!! (brackets) [square] {curly} \"quotes\" 'single' — dashes – ... ?!",
    "x" * 120 + " supercalifragilisticexpialidocious antidisestablishmentarianism",
    "  leading and trailing spaces \t tabs \n newlines  ",
    "Numbers 3.14159 1,000,000 $42 100% 2019-05-24",
    "The [MASK] sat on the [UNK] mat.",
    "",
]
PAIRS = ["a second segment", "b", "c " * 40, "über ğ ş ı", "日本", "z", "?", "pair " * 10, "end.", "x"]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    """A few KB of real text (WikiText-2) plus the odd characters of TEXTS."""
    try:
        raw = (data_dir() / "wikitext-2-raw" / "wiki.valid.raw").read_text(encoding="utf-8")[:12000]
    except FileNotFoundError:
        pytest.skip("offline data not found (set BERTMINI_DATA_DIR)")
    return [line for line in raw.splitlines() if line.strip()] + TEXTS


@pytest.fixture(scope="module", params=[True, False], ids=["uncased", "cased"])
def trained(request, corpus) -> WordPieceTokenizer:
    return WordPieceTokenizer.train(texts=corpus, vocab_size=600, lowercase=request.param, min_frequency=1)


@pytest.fixture(scope="module")
def real(minilm_dir) -> WordPieceTokenizer:
    return WordPieceTokenizer.from_file(minilm_dir / "vocab.txt")


def assert_same_as_hf(ours: WordPieceTokenizer, hf) -> None:
    """Ids, segments, masks and offsets equal on singles, pairs, truncation and both paddings."""
    cases = [{}, {"text_pair": PAIRS}, {"text_pair": PAIRS, "max_length": 12, "padding": True},
             {"max_length": 20, "padding": "max_length"}, {"text_pair": PAIRS, "max_length": 7}]
    for kwargs in cases:
        a = ours(TEXTS, return_offsets_mapping=True, **kwargs)
        b = hf(TEXTS, truncation=True, return_offsets_mapping=True, **kwargs)
        for key in ("input_ids", "token_type_ids", "attention_mask"):
            assert a[key] == b[key], (key, kwargs)
        assert a["offset_mapping"] == [[tuple(o) for o in seq] for seq in b["offset_mapping"]], kwargs
    for text in TEXTS:
        assert ours.tokenize(text) == hf.tokenize(text), text
        ids = ours(text)["input_ids"]
        assert ours.decode(ids) == hf.decode(ids, skip_special_tokens=True), text
        assert ours.decode(ids, skip_special_tokens=False) == hf.decode(ids), text


@pytest.mark.parametrize("name", ["vocab.txt", "tokenizer.json", "."])
def test_minilm_matches_transformers(minilm_dir, name):
    ours = WordPieceTokenizer.from_file(minilm_dir / name)
    assert ours.vocab_size == 30522 and ours.lowercase
    assert_same_as_hf(ours, transformers.BertTokenizerFast.from_pretrained(minilm_dir))


def test_trained_matches_transformers_after_save(trained, tmp_path):
    files = {p.name for p in trained.save(tmp_path).iterdir()}
    assert files == {"vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}
    assert_same_as_hf(trained, transformers.BertTokenizerFast.from_pretrained(tmp_path))
    reloaded = WordPieceTokenizer.from_file(tmp_path)
    assert reloaded.lowercase == trained.lowercase
    assert reloaded(TEXTS, PAIRS) == trained(TEXTS, PAIRS)


def test_vocab_txt_alone_loads_in_transformers(trained, tmp_path):
    """A bare vocab.txt (BERT's original release format) means uncased in both libraries."""
    trained.save(tmp_path / "full")
    (tmp_path / "bare").mkdir()
    shutil.copy(tmp_path / "full" / "vocab.txt", tmp_path / "bare" / "vocab.txt")
    ours = WordPieceTokenizer.from_file(tmp_path / "bare")
    assert ours.lowercase
    assert_same_as_hf(ours, transformers.BertTokenizerFast.from_pretrained(tmp_path / "bare"))


def test_train_sources_agree(corpus, tmp_path):
    (tmp_path / "a.txt").write_text("\n".join(corpus[:40]) + "\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("\n".join(corpus[40:]) + "\n", encoding="utf-8")
    from_files = WordPieceTokenizer.train([tmp_path / "a.txt", str(tmp_path / "b.txt")], vocab_size=300)
    from_texts = WordPieceTokenizer.train(texts=corpus, vocab_size=300)
    from_iter = WordPieceTokenizer.train(iter(corpus), vocab_size=300)
    again = WordPieceTokenizer.train(texts=corpus, vocab_size=300)  # deterministic: tokenizers #1794
    assert from_files.get_vocab() == from_texts.get_vocab() == from_iter.get_vocab() == again.get_vocab()
    assert from_texts.vocab_size == 300


def test_special_tokens_and_pair_layout(trained):
    assert [trained.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert (trained.pad_token_id, trained.unk_token_id, trained.cls_token_id) == (0, 1, 2)
    assert (trained.sep_token_id, trained.mask_token_id, trained.all_special_ids) == (3, 4, [0, 1, 2, 3, 4])
    assert trained.tokenize("a [MASK] b") == ["a", "[MASK]", "b"]  # specials in raw text stay whole
    enc = trained("the cat", "a dog")
    tokens = trained.convert_ids_to_tokens(enc["input_ids"])
    n_a = len(trained.tokenize("the cat"))
    assert tokens[0] == "[CLS]" and tokens[n_a + 1] == "[SEP]" and tokens[-1] == "[SEP]"
    assert enc["token_type_ids"] == [0] * (n_a + 2) + [1] * (len(tokens) - n_a - 2)
    assert trained.encode_plain(["the cat"]) == [enc["input_ids"][1:n_a + 1]]


def test_truncation_padding_tensors(trained):
    long = "word " * 300
    assert len(trained(long)["input_ids"]) == 512  # model_max_length, like BERT
    assert len(trained(long, truncation=False)["input_ids"]) > 512
    enc = trained([long, "short"], text_pair=["tiny", long], max_length=16, padding=True, return_tensors="pt")
    assert enc["input_ids"].shape == (2, 16) and enc["input_ids"].dtype == torch.long
    n_b = len(trained.tokenize("tiny")) + 1  # segment B and its [SEP]
    assert enc["token_type_ids"][0].tolist() == [0] * (16 - n_b) + [1] * n_b  # longest first: only A is cut
    single = trained("short", return_tensors="pt", padding="max_length", max_length=8)
    n = len(trained.tokenize("short")) + 2
    assert single["attention_mask"].tolist() == [[1] * n + [0] * (8 - n)]
    assert single["input_ids"][0, n:].eq(trained.pad_token_id).all()
    assert trained.decode(single["input_ids"][0]) == "short"
    assert trained.batch_decode(enc["input_ids"])[1].startswith("short")
    n_first = len(trained.tokenize("tokenizer"))
    words = trained.encode_batch_full("tokenizer x")[0].word_ids
    assert words == [None] + [0] * n_first + [1, None]


def test_errors(trained, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        WordPieceTokenizer.from_file(tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError, match="neither tokenizer.json nor vocab.txt"):
        WordPieceTokenizer.from_file(tmp_path)
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"vocab.txt lacks required special token\(s\) \[MASK\]"):
        WordPieceTokenizer.from_file(tmp_path / "vocab.txt")
    (tmp_path / "vocab.txt").write_text("\n".join([*SPECIAL_TOKENS, "a", "b", "a"]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"vocab.txt: line 8: duplicate token 'a' \(first on line 6\)"):
        WordPieceTokenizer.from_file(tmp_path / "vocab.txt")
    with pytest.raises(ValueError, match="empty input: text is an empty list"):
        trained([])
    with pytest.raises(ValueError, match="text_pair has 2 items but text has 3: expected 3"):
        trained(["a", "b", "c"], text_pair=["x", "y"])
    with pytest.raises(TypeError, match=r"text\[1\] is int, expected str"):
        trained(["a", 5])
    with pytest.raises(ValueError, match=r"lengths \[3, 4\]: pass padding=True"):
        trained(["a", "a a"], return_tensors="pt")
    with pytest.raises(ValueError, match="padding='left'"):
        trained("a", padding="left")
    with pytest.raises(FileNotFoundError, match="training file not found: .*missing.txt"):
        WordPieceTokenizer.train([tmp_path / "missing.txt"])
    with pytest.raises(ValueError, match="no vocabulary beyond the special tokens"):
        WordPieceTokenizer.train(texts=[])
    with pytest.raises(KeyError, match="no top-level def or class named nonexistent"):
        load_notebook_defs(NOTEBOOK, ["greedy_wordpiece", "nonexistent"])


WORDS = st.text(alphabet="abcdeilnorstuyz#é日😀", min_size=1, max_size=24) | st.sampled_from(
    ["tokenization", "unaffable", "the", "##", "x" * 100, "x" * 101, "a" * 150, "naive", "z"]
)


@pytest.fixture(scope="module")
def vocabs(real, corpus) -> list[tuple[WordPieceTokenizer, dict[str, int]]]:
    small = WordPieceTokenizer.train(texts=corpus, vocab_size=400, min_frequency=1)
    return [(tok, tok.get_vocab()) for tok in (real, small)]


@settings(max_examples=300, deadline=None)
@given(word=WORDS)
def test_greedy_wordpiece_equals_backend(vocabs, word):
    for tok, vocab in vocabs:
        backend = [t.value for t in tok.backend.model.tokenize(word)]
        assert greedy_wordpiece(word, vocab) == backend


def test_greedy_wordpiece_on_corpus_words(real, trained, corpus):
    """Every word of real text, through the full pipeline: normalize, pre-tokenize, greedy."""
    for tok in (real, trained):
        vocab = tok.get_vocab()
        for line in (line for line in corpus if "[MASK]" not in line and "[UNK]" not in line):
            pieces = [p for w in tok.pre_tokenize(line) for p in greedy_wordpiece(w, vocab)]
            assert pieces == tok.tokenize(line), line


def test_notebook_greedy_wordpiece_matches_package(real, trained, corpus):
    """Drift rule: chapter 1's inline greedy_wordpiece must equal bertmini's."""
    inline = load_notebook_defs(NOTEBOOK, ["greedy_wordpiece"])["greedy_wordpiece"]
    assert inline is not greedy_wordpiece
    words = {w for line in corpus for w in real.pre_tokenize(line)} | {"x" * 101, "日本", "robot😀", "##a"}
    for tok in (real, trained):
        vocab = tok.get_vocab()
        for word in words:
            assert inline(word, vocab) == greedy_wordpiece(word, vocab), word
        assert inline("abc", vocab, unk="<?>", max_chars=2) == ["<?>"]


def test_saved_config_is_bert(trained, tmp_path):
    config = json.loads((trained.save(tmp_path) / "tokenizer_config.json").read_text())
    assert config["do_lower_case"] is trained.lowercase and config["model_max_length"] == 512
    assert (tmp_path / "vocab.txt").read_text(encoding="utf-8").splitlines()[:5] == list(SPECIAL_TOKENS)


# ---------------------------------------------------------------- word ids (NER) and overflow windows (SQuAD)

WORD_LISTS = [["Hello", ",", "World", "!"], ["naïve", "Ångström", "x" * 120, "日本語"], ["@user", "#tag", "😀", "don't"],
              ["one"], ["[MASK]", "tokenization", "unaffable"]]
QUESTIONS = ["Who wrote it?", "  What is the [MASK] here?", "When?"]
CONTEXTS = ["The quick brown fox jumps over the lazy dog. " * 6, "Café naïve façade " * 9, "short context"]


def hf_rows(enc, key: str) -> list:
    return [[tuple(o) for o in row] for row in enc[key]] if key == "offset_mapping" else enc[key]


def assert_same_rows(a, b) -> None:
    """Same keys and values, and the same word/segment map for every row."""
    assert set(a) == set(b)
    for key in a:
        assert a[key] == hf_rows(b, key), key
    for i in range(len(a["input_ids"])):
        assert a.word_ids(i) == b.word_ids(i) and a.sequence_ids(i) == b.sequence_ids(i), i


@pytest.mark.parametrize("kwargs", [{}, {"max_length": 6}, {"max_length": 9, "padding": True},
                                    {"text_pair": WORD_LISTS[::-1], "max_length": 10, "return_offsets_mapping": True}])
def test_split_into_words_matches_transformers(real, trained, minilm_dir, tmp_path, kwargs):
    for ours, theirs in ((real, transformers.BertTokenizerFast.from_pretrained(minilm_dir)),
                         (trained, transformers.BertTokenizerFast.from_pretrained(trained.save(tmp_path)))):
        a = ours(WORD_LISTS, is_split_into_words=True, **kwargs)
        b = theirs(WORD_LISTS, is_split_into_words=True, truncation=True, **kwargs)
        assert_same_rows(a, b)
    single = real(WORD_LISTS[1], is_split_into_words=True)
    assert single.word_ids() == [None, 0, *[1] * len(real.tokenize("Ångström")), 2, 3, 3, 3, None]
    assert isinstance(single, dict) and single["input_ids"][0] == real.cls_token_id  # one input: flat lists


@pytest.mark.parametrize("max_length, stride, padding", [(16, 4, False), (24, 8, True), (12, 0, False)])
def test_overflow_windows_match_transformers(real, minilm_dir, max_length, stride, padding):
    hf = transformers.BertTokenizerFast.from_pretrained(minilm_dir)
    kwargs = dict(text_pair=CONTEXTS, truncation="only_second", max_length=max_length, stride=stride,
                  return_overflowing_tokens=True, return_offsets_mapping=True, padding=padding)
    a, b = real(QUESTIONS, **kwargs), hf(QUESTIONS, **kwargs)
    assert_same_rows(a, b)
    mapping = a["overflow_to_sample_mapping"]
    assert mapping == sorted(mapping) and mapping.count(2) == 1 and mapping.count(0) > 2  # input by input
    for i, row in enumerate(a["input_ids"]):  # the question is never cut, only the context
        question = [t for t, s in zip(row, a.sequence_ids(i)) if s == 0]
        assert question == real.encode_plain([QUESTIONS[mapping[i]]])[0]
    windows = [[t for t, s in zip(row, a.sequence_ids(i)) if s == 1] for i, row in enumerate(a["input_ids"])
               if mapping[i] == 0]
    for before, after in zip(windows, windows[1:]):  # neighbouring windows share `stride` tokens
        assert stride == 0 or before[-stride:] == after[:stride]
    tensors = real(QUESTIONS, **{**kwargs, "padding": True}, return_tensors="pt")
    assert tensors["overflow_to_sample_mapping"].tolist() == mapping
    assert tensors["input_ids"].shape[0] == len(mapping)
    one = real(QUESTIONS[0], text_pair=CONTEXTS[0], **{k: v for k, v in kwargs.items() if k != "text_pair"})
    assert one["overflow_to_sample_mapping"] == [0] * mapping.count(0)  # overflow keeps the batch level
    assert_same_rows(one, hf(QUESTIONS[0], text_pair=CONTEXTS[0], **{k: v for k, v in kwargs.items()
                                                                       if k != "text_pair"}))


def test_ner_and_qa_features_equal_transformers(real, minilm_dir):
    from bertmini.finetuning import encode_ner, load_squad, load_wnut17, prepare_qa_features

    hf = transformers.BertTokenizerFast.from_pretrained(minilm_dir)
    sentences = load_wnut17("validation").examples[:150]
    a, b = encode_ner(sentences, real, max_length=24), encode_ner(sentences, hf, max_length=24)
    assert (a.features, a.word_ids, a.n_words, a.n_truncated) == (b.features, b.word_ids, b.n_words, b.n_truncated)
    assert a.n_truncated > 0
    questions = load_squad("validation-2articles").examples[::15]
    a, b = prepare_qa_features(questions, real, 128, 32), prepare_qa_features(questions, hf, 128, 32)
    assert (a.features, a.offsets, a.example_index) == (b.features, b.offsets, b.example_index)
    assert len(a) > len(questions)


def test_feature_argument_errors(real):
    with pytest.raises(TypeError, match="is_split_into_words=True expects a list of words"):
        real("a sentence", is_split_into_words=True)
    with pytest.raises(TypeError, match=r"text\[1\]\[0\] is int, expected str"):
        real([["a"], [3]], is_split_into_words=True)
    with pytest.raises(ValueError, match="truncation='only_third'"):
        real("a", truncation="only_third")
    with pytest.raises(TypeError, match="both be single inputs or both be batches"):
        real("a", text_pair=["b"])
