"""bertmini: BERT from scratch, exact against Hugging Face transformers.

The package follows the book: tokenizer (ch. 1), attention (2-3), embeddings (4), encoder (5),
model, heads and checkpoints (6), pretraining data and training (7-8), fine-tuning tasks (9-11).
"""
from bertmini.config import BertConfig
from bertmini.heads import (
    BertForMaskedLM,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
)
from bertmini.model import BertModel

__version__ = "0.1.0"
__all__ = [
    "BertConfig", "BertModel", "BertForPreTraining", "BertForMaskedLM", "BertForSequenceClassification",
    "BertForTokenClassification", "BertForQuestionAnswering",
]
