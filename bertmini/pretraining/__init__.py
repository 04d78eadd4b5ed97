"""Part II, pre-training (Devlin et al. 2019, §3.1, Appendix A.1/A.2): chapters 7 and 8.

``corpus``: text files / WikiText / Gutenberg / TSV columns / HF datasets → documents (lists of sentences);
``examples``: documents → fixed ``[CLS] A [SEP] B [SEP]`` tensors (NSP) or packed MLM blocks;
``masking``: dynamic 80/10/10 masking of 15% of the tokens, per batch;
``seq_warmup``: the first steps on short pieces of each block, which takes a small model off the unigram plateau;
``settings`` and ``build``: a YAML config, validated, and the tokenizer and cached datasets it builds;
``evaluation``: held-out MLM/NSP metrics; ``cli``: ``python -m bertmini pretrain``.
"""
from bertmini.pretraining.build import build_or_load, tokenizer_fingerprint
from bertmini.pretraining.corpus import (
    READERS,
    Document,
    list_text_files,
    load_hf_corpus,
    parse_wikitext_lines,
    read_gutenberg,
    read_text_documents,
    read_tsv_column,
    read_wikitext,
    split_paragraphs,
    split_sentences,
)
from bertmini.pretraining.examples import (
    NSPExample,
    PretrainingDataset,
    build_pretraining_dataset,
    create_nsp_examples,
    nsp_tensors,
    packed_tensors,
    tokenize_documents,
    truncate_seq_pair,
)
from bertmini.pretraining.masking import IGNORE_INDEX, MLMCollator, mask_tokens, word_continuation_ids

__all__ = [
    "READERS", "Document", "list_text_files", "load_hf_corpus", "parse_wikitext_lines", "read_gutenberg",
    "read_text_documents", "read_tsv_column", "read_wikitext", "split_paragraphs", "split_sentences",
    "IGNORE_INDEX", "MLMCollator", "mask_tokens", "word_continuation_ids",
    "NSPExample", "PretrainingDataset", "build_or_load", "build_pretraining_dataset", "create_nsp_examples",
    "nsp_tensors", "packed_tensors", "tokenize_documents", "tokenizer_fingerprint", "truncate_seq_pair",
]
