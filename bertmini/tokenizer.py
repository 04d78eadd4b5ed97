"""WordPiece tokenization as in BERT (Devlin et al. 2019, §3 "Input/Output Representations").

BERT splits text into WordPiece sub-words (Wu et al. 2016) from a 30k vocabulary, starts every
sequence with ``[CLS]``, ends each segment with ``[SEP]`` and marks segment A/B with token type ids.
:class:`WordPieceTokenizer` wraps the Rust ``tokenizers`` library with the same pipeline as Hugging
Face's ``BertTokenizerFast`` (so ids match exactly); :func:`greedy_wordpiece` is the readable
pure-Python version of the core algorithm, used for teaching.
"""
from __future__ import annotations

import json
import os
from collections.abc import Container, Iterable, Mapping, Sequence
from pathlib import Path

import torch
from tokenizers import Encoding, Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
from tokenizers.models import WordPiece

from bertmini.batch_encoding import TRUNCATION, BatchEncoding, as_inputs, build_batch
from bertmini.errors import DataFormatError, read_json, read_lines, read_text

__all__ = ["WordPieceTokenizer", "greedy_wordpiece", "SPECIAL_TOKENS"]

# BERT's vocab.txt puts [PAD] at id 0 so that zero-initialised id tensors are padding.
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PREFIX = "##"  # marks a piece that continues a word (not at a word start)
MAX_CHARS = 100  # longer "words" become [UNK], as in BERT's tokenization.py
MODEL_MAX_LENGTH = 512  # BERT pre-trains on sequences of at most 512 tokens (Appendix A.2)


def greedy_wordpiece(word: str, vocab: Container[str], unk: str = "[UNK]", max_chars: int = MAX_CHARS) -> list[str]:
    """Split one (normalized, pre-tokenized) word into WordPieces, longest match first.

    The algorithm of Wu et al. 2016 as used by BERT (§3; ``WordpieceTokenizer`` in Google's
    tokenization.py): from the current position take the longest vocabulary entry that matches
    (``##``-prefixed unless at the word start); if nothing matches, the whole word is ``unk``.
    """
    if len(word) > max_chars:
        return [unk]
    pieces, start = [], 0
    while start < len(word):
        end = len(word)
        while end > start:
            piece = word[start:end] if start == 0 else PREFIX + word[start:end]
            if piece in vocab:
                break
            end -= 1
        else:  # no prefix of the rest is in the vocabulary
            return [unk]
        pieces.append(piece)
        start = end
    return pieces


def _new_backend(lowercase: bool, vocab: Mapping[str, int] | None = None) -> Tokenizer:
    """WordPiece model + BertTokenizerFast's normalizer and pre-tokenizer (untrained if no vocab)."""
    model = WordPiece(None if vocab is None else dict(vocab), unk_token="[UNK]",
                      continuing_subword_prefix=PREFIX, max_input_chars_per_word=MAX_CHARS)
    backend = Tokenizer(model)
    # strip_accents=None: accents are stripped exactly when lowercasing (uncased BERT).
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return backend


def _add_bert_specials(backend: Tokenizer) -> Tokenizer:
    """Attach the [CLS] A [SEP] B [SEP] template and the WordPiece decoder."""
    _check_specials(backend.get_vocab(), "the vocabulary")
    backend.decoder = decoders.WordPiece(prefix=PREFIX)
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",  # segment B gets token type 1 (§3)
        special_tokens=[(t, backend.token_to_id(t)) for t in ("[CLS]", "[SEP]")],
    )
    # Registering the specials keeps "[MASK]" in raw text as one token and lets decode skip them.
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    return backend


def _continuation_chars(backend: Tokenizer, texts: Iterable[str]) -> set[str]:
    """Characters seen inside a word (not first): exactly those the trainer turns into "##c"."""
    chunks = {chunk for text in texts for chunk in text.split()}  # normalizing distinct chunks is cheaper
    normalize, split = backend.normalizer.normalize_str, backend.pre_tokenizer.pre_tokenize_str
    return {c for chunk in chunks for word, _ in split(normalize(chunk)) for c in word[1:]}


def _check_specials(vocab: Mapping[str, int], where: str) -> None:
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise ValueError(f"{where} lacks required special token(s) {', '.join(missing)}")


def _read_vocab_txt(path: Path) -> dict[str, int]:
    """One token per line, id = line number (BERT's vocab.txt format)."""
    vocab: dict[str, int] = {}
    for number, token in read_lines(path):
        if token in vocab:
            raise DataFormatError(f"{path}: line {number}: duplicate token {token!r} (first on line "
                                  f"{vocab[token] + 1})")
        vocab[token] = number - 1
    _check_specials(vocab, path.name)
    return vocab


class WordPieceTokenizer:
    """BERT's WordPiece tokenizer; ids identical to ``transformers.BertTokenizerFast`` on the same vocab."""

    def __init__(self, backend: Tokenizer, lowercase: bool = True, model_max_length: int = MODEL_MAX_LENGTH):
        backend.no_truncation()  # truncation/padding are set per call, never left in the backend
        backend.no_padding()
        self.backend = backend
        self.lowercase = lowercase
        self.model_max_length = model_max_length

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_vocab(cls, vocab: Mapping[str, int], lowercase: bool = True) -> WordPieceTokenizer:
        """Build from a token→id mapping (must contain [PAD] [UNK] [CLS] [SEP] [MASK])."""
        return cls(_add_bert_specials(_new_backend(lowercase, vocab)), lowercase)

    @classmethod
    def train(cls, files: str | os.PathLike | Sequence[str | os.PathLike] | Iterable[str] | None = None, *,
              texts: Iterable[str] | None = None, vocab_size: int = 8000, lowercase: bool = True,
              min_frequency: int = 2, limit_alphabet: int = 1000) -> WordPieceTokenizer:
        """Learn a WordPiece vocabulary of ``vocab_size`` entries (specials + alphabet + pieces).

        ``files`` is a path or a list/tuple of paths; a generator or other iterator of strings (or
        ``texts=``, e.g. a list of sentences) trains from memory. The ``tokenizers`` trainer grows
        pieces by pair frequency (as BPE does) rather than Wu et al.'s likelihood criterion.
        """
        if (files is None) == (texts is None):
            raise ValueError("pass exactly one of files (path or list of paths) or texts (iterable of str)")
        if files is not None and not isinstance(files, (str, os.PathLike, list, tuple)):
            files, texts = None, files  # a generator/iterator of strings
        if files is not None:
            paths = [Path(files)] if isinstance(files, (str, os.PathLike)) else [Path(p) for p in files]
            if not paths:
                raise ValueError("empty input: files is an empty list")
            for p in paths:
                if not p.is_file():
                    raise FileNotFoundError(f"training file not found: {p}")
            texts = [line for p in paths for line in read_text(p).splitlines()]
        texts = list(texts)
        backend = _new_backend(lowercase)
        # The trainer numbers "##c" pieces in hash-map order and breaks ties between equally frequent
        # merges by those numbers, so runs differ (tokenizers issue #1794). Declaring every "##c"
        # up front, sorted, fixes their ids and makes training deterministic.
        specials = [*SPECIAL_TOKENS, *sorted(PREFIX + c for c in _continuation_chars(backend, texts))]
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
            limit_alphabet=limit_alphabet, continuing_subword_prefix=PREFIX, show_progress=False,
        )
        backend.train_from_iterator(texts, trainer)
        if backend.get_vocab_size() <= len(specials):
            raise ValueError("training produced no vocabulary beyond the special tokens: is the text empty?")
        # Rebuild from the vocabulary alone: the trainer also registered every "##c" as a special token.
        return cls.from_vocab(backend.get_vocab(), lowercase)

    @classmethod
    def from_file(cls, path: str | os.PathLike, lowercase: bool | None = None) -> WordPieceTokenizer:
        """Load ``vocab.txt``, ``tokenizer.json``, or a folder holding either (tokenizer.json wins).

        ``lowercase`` defaults to the folder's tokenizer_config.json ``do_lower_case``, else to the
        tokenizer.json normalizer, else True (uncased BERT), as transformers' BertTokenizer does.
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"tokenizer file not found: {path}")
        config: dict = {}
        if path.is_dir():
            if (path / "tokenizer_config.json").is_file():
                config = read_json(path / "tokenizer_config.json", dict)
            found = [path / n for n in ("tokenizer.json", "vocab.txt") if (path / n).is_file()]
            if not found:
                raise FileNotFoundError(f"folder {path} holds neither tokenizer.json nor vocab.txt")
            path = found[0]
        if lowercase is None:
            lowercase = config.get("do_lower_case")
        if path.suffix == ".json":  # only the vocabulary and lowercasing are read; the pipeline is BERT's
            spec = read_json(path, dict)
            model = spec.get("model") if isinstance(spec.get("model"), dict) else {}
            if model.get("type") != "WordPiece" or not isinstance(model.get("vocab"), dict):
                raise DataFormatError(f"{path}: expected a WordPiece model with a vocab, got model type "
                                      f"{model.get('type')!r}")
            vocab = model["vocab"]
            _check_specials(vocab, path.name)
            if lowercase is None:
                lowercase = (spec.get("normalizer") or {}).get("lowercase")
        else:
            vocab = _read_vocab_txt(path)
        tok = cls.from_vocab(vocab, lowercase=True if lowercase is None else lowercase)
        # Configs say 1e30 for "unbounded"; BERT's position embeddings stop at 512 anyway.
        tok.model_max_length = min(int(config.get("model_max_length", MODEL_MAX_LENGTH)), MODEL_MAX_LENGTH)
        return tok

    def save(self, folder: str | os.PathLike) -> Path:
        """Write vocab.txt, tokenizer.json, tokenizer_config.json and special_tokens_map.json.

        ``transformers.BertTokenizerFast.from_pretrained(folder)`` loads the result with identical ids.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        by_id = sorted(self.get_vocab().items(), key=lambda kv: kv[1])
        if [i for _, i in by_id] != list(range(len(by_id))):
            raise ValueError("vocabulary ids are not contiguous 0..n-1: cannot write vocab.txt")
        (folder / "vocab.txt").write_text("".join(t + "\n" for t, _ in by_id), encoding="utf-8")
        self.backend.save(str(folder / "tokenizer.json"))
        specials = dict(zip(("pad_token", "unk_token", "cls_token", "sep_token", "mask_token"), SPECIAL_TOKENS))
        config = {"tokenizer_class": "BertTokenizer", "do_lower_case": self.lowercase, "strip_accents": None,
                  "tokenize_chinese_chars": True, "model_max_length": self.model_max_length, **specials}
        (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n", encoding="utf-8")
        return folder

    # ---- encoding -----------------------------------------------------------------------------
    def __call__(self, text: str | Sequence, text_pair: str | Sequence | None = None,
                 max_length: int | None = None, truncation: bool | str = True, padding: bool | str = False,
                 return_tensors: str | None = None, return_offsets_mapping: bool = False, *,
                 is_split_into_words: bool = False, stride: int = 0,
                 return_overflowing_tokens: bool = False) -> BatchEncoding:
        """Encode one text (flat lists) or a batch (lists of lists), optionally as sentence pairs.

        Returns a dict (a :class:`BatchEncoding`, with ``word_ids(i)``/``sequence_ids(i)``) holding
        ``input_ids``, ``token_type_ids`` (0 for segment A, 1 for B) and ``attention_mask`` (1 = real
        token, 0 = padding); plus ``offset_mapping`` (char spans) if asked. ``is_split_into_words``:
        inputs are lists of words (NER). ``truncation``: True/"longest_first", "only_first",
        "only_second" or False; with ``return_overflowing_tokens`` the cut-off part becomes more rows,
        windows sharing ``stride`` tokens, and ``overflow_to_sample_mapping`` names each row's input
        (SQuAD). ``return_tensors="pt"`` gives (rows, length) LongTensors, also for a single text.
        """
        single = as_inputs(text, "text", is_split_into_words)[1]
        encodings = self.encode_batch_full(text, text_pair, max_length=max_length, truncation=truncation,
                                           padding=padding, is_split_into_words=is_split_into_words, stride=stride)
        return build_batch(encodings, single, return_offsets_mapping, return_overflowing_tokens, return_tensors)

    def encode_batch_full(self, text: str | Sequence, text_pair: str | Sequence | None = None,
                          max_length: int | None = None, truncation: bool | str = True,
                          padding: bool | str = False, is_split_into_words: bool = False,
                          stride: int = 0) -> list[Encoding]:
        """Like ``__call__`` but returns ``tokenizers.Encoding`` objects (tokens, word_ids, offsets,
        ``overflowing`` windows...), one per input."""
        texts, single = as_inputs(text, "text", is_split_into_words)
        inputs: list = texts
        if text_pair is not None:
            pairs, pair_single = as_inputs(text_pair, "text_pair", is_split_into_words)
            if pair_single != single:
                raise TypeError("text and text_pair must both be single inputs or both be batches")
            if len(pairs) != len(texts):
                raise ValueError(f"text_pair has {len(pairs)} items but text has {len(texts)}: expected {len(texts)}")
            inputs = list(zip(texts, pairs))
        if padding not in (False, True, "longest", "max_length", "do_not_pad"):
            raise ValueError(f"padding={padding!r}: expected False, True, 'longest' or 'max_length'")
        if truncation not in TRUNCATION:
            raise ValueError(f"truncation={truncation!r}: expected one of {list(TRUNCATION)}")
        length = max_length if max_length is not None else self.model_max_length
        try:
            if TRUNCATION[truncation]:
                self.backend.enable_truncation(length, stride=stride, strategy=TRUNCATION[truncation])
            if padding not in (False, "do_not_pad"):
                self.backend.enable_padding(
                    pad_id=self.pad_token_id, pad_type_id=0, pad_token="[PAD]",
                    length=length if padding == "max_length" else None,
                )
            return self.backend.encode_batch(inputs, is_pretokenized=is_split_into_words)
        finally:
            self.backend.no_truncation()
            self.backend.no_padding()

    def encode_plain(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids without [CLS]/[SEP], truncation or padding (e.g. to pack pre-training examples)."""
        batch = as_inputs(texts, "texts", split_into_words=False)[0]
        return [e.ids for e in self.backend.encode_batch(batch, add_special_tokens=False)]

    def tokenize(self, text: str) -> list[str]:
        """WordPiece tokens of ``text`` without special tokens."""
        return self.backend.encode(text, add_special_tokens=False).tokens

    def pre_tokenize(self, text: str) -> list[str]:
        """The words WordPiece sees: normalized text split on whitespace and punctuation."""
        normalized = self.backend.normalizer.normalize_str(text)
        return [w for w, _ in self.backend.pre_tokenizer.pre_tokenize_str(normalized)]

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = True) -> str:
        """Ids back to text: ``##`` pieces are glued to their word, spaces before punctuation removed."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def batch_decode(self, batch: Sequence[Sequence[int]] | torch.Tensor, skip_special_tokens: bool = True
                     ) -> list[str]:
        """``decode`` for each row of a batch."""
        return [self.decode(ids, skip_special_tokens) for ids in batch]

    # ---- vocabulary ---------------------------------------------------------------------------
    def get_vocab(self) -> dict[str, int]:
        return self.backend.get_vocab(with_added_tokens=True)

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        """Vocabulary ids; unknown tokens map to [UNK]."""
        if isinstance(tokens, str):
            token_id = self.backend.token_to_id(tokens)
            return self.unk_token_id if token_id is None else token_id
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> str | list[str]:
        if isinstance(ids, int):
            return self.backend.id_to_token(ids)
        return [self.backend.id_to_token(int(i)) for i in ids]

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    pad_token_id = property(lambda self: self.backend.token_to_id("[PAD]"), doc="id of [PAD] (0 in BERT vocabs)")
    unk_token_id = property(lambda self: self.backend.token_to_id("[UNK]"), doc="id of [UNK]")
    cls_token_id = property(lambda self: self.backend.token_to_id("[CLS]"), doc="id of [CLS]")
    sep_token_id = property(lambda self: self.backend.token_to_id("[SEP]"), doc="id of [SEP]")
    mask_token_id = property(lambda self: self.backend.token_to_id("[MASK]"), doc="id of [MASK]")

    @property
    def all_special_ids(self) -> list[int]:
        return [self.backend.token_to_id(t) for t in SPECIAL_TOKENS]

    def __repr__(self) -> str:
        return f"WordPieceTokenizer(vocab_size={self.vocab_size}, lowercase={self.lowercase})"
