"""Part III, fine-tuning tasks (BERT paper §4, §5.3): data loaders, preprocessing and postprocessing.

``data`` reads SST-2, TREC, SMS spam, WNUT-17 and SQuAD v1.1 (offline copies, or ``datasets``);
``classification``, ``ner`` and ``qa`` turn examples into model inputs and predictions back into
answers; ``plots`` draws the figures. Metrics live in :mod:`bertmini.finetuning.metrics`.
"""
from bertmini.errors import DataFormatError
from bertmini.finetuning.classification import (
    Encoded,
    count_truncated,
    encode_classification,
    stratified_split,
    truncated_rows,
)
from bertmini.finetuning.examples import (
    SMS_LABELS,
    SST2_LABELS,
    TREC_LABELS,
    WNUT_LABELS,
    QAExample,
    TaskData,
    TextExample,
    TokenExample,
)
from bertmini.finetuning.hub import HUB_NAMES
from bertmini.finetuning.loaders import load_sms_spam, load_squad, load_sst2, load_trec, load_tsv, load_wnut17
from bertmini.finetuning.ner import IGNORE_INDEX, NerEncoded, align_labels, decode_ner, encode_ner, word_predictions
from bertmini.finetuning.qa import (
    QAFeatures,
    answer_token_span,
    best_answer_spans,
    best_spans,
    postprocess_qa,
    prepare_qa_features,
    split_squad_by_article,
)
from bertmini.training.batching import bucket_batches, pad_collate

__all__ = [
    "Encoded", "bucket_batches", "count_truncated", "encode_classification", "pad_collate", "truncated_rows",
    "HUB_NAMES", "SMS_LABELS", "SST2_LABELS", "TREC_LABELS", "WNUT_LABELS", "DataFormatError", "QAExample",
    "TaskData", "TextExample", "TokenExample", "load_sms_spam", "load_squad", "load_sst2", "load_trec", "load_tsv",
    "load_wnut17", "split_squad_by_article", "stratified_split",
    "IGNORE_INDEX", "NerEncoded", "align_labels", "decode_ner", "encode_ner", "word_predictions",
    "QAFeatures", "answer_token_span", "best_answer_spans", "best_spans", "postprocess_qa", "prepare_qa_features",
]
