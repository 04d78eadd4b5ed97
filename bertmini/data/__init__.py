"""BERT's pre-training data pipeline (Devlin et al. 2019, §3.1, Appendix A.1/A.2).

``corpus``: text files / WikiText / Gutenberg / TSV columns / HF datasets → documents (lists of sentences);
``pretraining``: documents → fixed ``[CLS] A [SEP] B [SEP]`` tensors (NSP) or packed MLM blocks, cached;
``masking``: dynamic 80/10/10 masking of 15% of the tokens, per batch.
"""
from bertmini.data.corpus import (
    READERS, Document, list_text_files, load_hf_corpus, parse_wikitext_lines, read_gutenberg,
    read_text_documents, read_tsv_column, read_wikitext, split_paragraphs, split_sentences,
)
from bertmini.data.masking import IGNORE_INDEX, MLMCollator, mask_tokens, word_continuation_ids
from bertmini.data.pretraining import (
    NSPExample, PretrainingDataset, build_or_load, build_pretraining_dataset, create_nsp_examples,
    nsp_tensors, packed_tensors, tokenize_documents, tokenizer_fingerprint, truncate_seq_pair,
)

__all__ = [
    "READERS", "Document", "list_text_files", "load_hf_corpus", "parse_wikitext_lines", "read_gutenberg",
    "read_text_documents", "read_tsv_column", "read_wikitext", "split_paragraphs", "split_sentences",
    "IGNORE_INDEX", "MLMCollator", "mask_tokens", "word_continuation_ids",
    "NSPExample", "PretrainingDataset", "build_or_load", "build_pretraining_dataset", "create_nsp_examples",
    "nsp_tensors", "packed_tensors", "tokenize_documents", "tokenizer_fingerprint", "truncate_seq_pair",
]
