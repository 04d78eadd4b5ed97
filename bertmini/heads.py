"""Task heads on top of `BertModel`, named as in HF so checkpoints load without renaming.

Pre-training (BERT §3.1): a masked-LM head whose decoder shares the word-embedding matrix, and a
next-sentence head on the pooled [CLS]. Fine-tuning (§4): a linear layer on the pooled output
(classification), on every token (tagging), or two logits per token (answer start and end). The sentence
classifier reads only [CLS], so its last layer computes that row alone and the layers before it skip the
padding (chapter 13); asking for hidden states or attentions computes every position, as HF does. With
``config.classifier_pooling = "mean"`` it reads the mean of every real token's last state instead
(:func:`mean_pool`; chapter 9), which transformers' BertForSequenceClassification has no way to do.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bertmini.config import BertConfig
from bertmini.encoder import ACT2FN
from bertmini.model import BertModel, BertPreTrainedModel
from bertmini.ops import Dropout, linear_cross_entropy

__all__ = [
    "PreTrainingOutput", "MaskedLMOutput", "TaskOutput", "QAOutput", "BertForPreTraining", "BertForMaskedLM",
    "BertForSequenceClassification", "BertForTokenClassification", "BertForQuestionAnswering", "IGNORE_INDEX",
    "mean_pool",
]

IGNORE_INDEX = -100  # label of positions the losses skip (torch's cross-entropy default)


@dataclass
class PreTrainingOutput:
    loss: torch.Tensor | None = None  # mlm_loss + nsp_loss
    mlm_loss: torch.Tensor | None = None
    nsp_loss: torch.Tensor | None = None
    prediction_logits: torch.Tensor | None = None  # (B, T, V); (n_masked, V) with labels; None when training
    seq_relationship_logits: torch.Tensor | None = None  # (B, 2)
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class MaskedLMOutput:
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # (B, T, V); (n_masked, V) with labels; None when training
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class TaskOutput:
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # (B, num_labels) or (B, T, num_labels)
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class QAOutput:
    loss: torch.Tensor | None = None
    start_logits: torch.Tensor | None = None  # (B, T)
    end_logits: torch.Tensor | None = None  # (B, T)
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = ACT2FN[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.act(self.dense(hidden)))


class BertLMPredictionHead(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.decoder.bias = self.bias  # one tensor, two HF keys (predictions.bias, decoder.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(hidden))


class BertOnlyMLMHead(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.predictions = BertLMPredictionHead(config)


class BertPreTrainingHeads(BertOnlyMLMHead):
    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)


def mlm_rows(labels: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(select, masked): the rows BertModel must compute — masked tokens plus [CLS] — and, among
    those selected rows, which ones are masked."""
    if labels is None:
        return None, None
    masked = labels != IGNORE_INDEX
    select = masked.clone()
    select[:, 0] = True
    return select, masked[select]


def masked_lm(head: BertLMPredictionHead, hidden: torch.Tensor, targets: torch.Tensor | None,
              fused: bool = False) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Vocabulary logits and MLM loss.

    With targets, `hidden` holds only the masked positions (~15%, see `mlm_rows`): the loss equals
    the dense cross-entropy with ignore_index=-100, at a fraction of the (T x V) projection's cost.
    With `fused` (training), the projection and the loss run chunk by chunk and no logits are kept.
    """
    if targets is None:
        return head(hidden), None
    if hidden.size(0) == 0:  # nothing masked: a zero loss that keeps the graph, not 0/0
        return None, hidden.sum() * 0.0
    if fused:
        return None, linear_cross_entropy(head.transform(hidden), head.decoder.weight, head.bias, targets)
    logits = head(hidden)  # (n_masked, V)
    return logits, F.cross_entropy(logits.float(), targets)


class _TiedMLM(BertPreTrainedModel):
    """Shared by the models with an MLM head: the decoder reuses the word-embedding matrix (§A.2)."""

    cls: BertOnlyMLMHead
    bert: BertModel

    def tie_weights(self) -> None:
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight

    def _mlm(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, token_type_ids: torch.Tensor | None,
             labels: torch.Tensor | None, output_attentions: bool, output_hidden_states: bool):
        """Encode (last layer only at masked rows when labels are given), then logits and MLM loss."""
        select, masked = mlm_rows(labels)
        out = self.bert(input_ids, attention_mask, token_type_ids, output_attentions=output_attentions,
                        output_hidden_states=output_hidden_states, select=select)
        hidden = out.last_hidden_state if masked is None else out.last_hidden_state[masked]
        targets = None if labels is None else labels[labels != IGNORE_INDEX]
        return (out, *masked_lm(self.cls.predictions, hidden, targets, self.training))


class BertForPreTraining(_TiedMLM):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.cls = BertPreTrainingHeads(config)
        self.post_init()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                next_sentence_label: torch.Tensor | None = None, output_attentions: bool = False,
                output_hidden_states: bool = False) -> PreTrainingOutput:
        out, logits, mlm_loss = self._mlm(input_ids, attention_mask, token_type_ids, labels,
                                          output_attentions, output_hidden_states)
        nsp_logits = self.cls.seq_relationship(out.pooler_output)
        nsp_loss = None if next_sentence_label is None else F.cross_entropy(nsp_logits.float(), next_sentence_label.view(-1))
        losses = [x for x in (mlm_loss, nsp_loss) if x is not None]
        return PreTrainingOutput(sum(losses) if losses else None, mlm_loss, nsp_loss, logits, nsp_logits,
                                 out.hidden_states, out.attentions)


class BertForMaskedLM(_TiedMLM):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(config)
        self.post_init()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_attentions: bool = False, output_hidden_states: bool = False) -> MaskedLMOutput:
        out, logits, loss = self._mlm(input_ids, attention_mask, token_type_ids, labels,
                                      output_attentions, output_hidden_states)
        return MaskedLMOutput(loss, logits, out.hidden_states, out.attentions)


def cls_only(input_ids: torch.Tensor) -> torch.Tensor | None:
    """(B, T) bool, True at position 0: a sentence head reads only the pooled [CLS], so BertModel's last
    layer computes that one row (keys and values still come from every token). None for a malformed
    `input_ids`, which BertModel then reports."""
    if input_ids.dim() != 2:
        return None
    select = torch.zeros_like(input_ids, dtype=torch.bool)
    select[:, 0] = True
    return select


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T, H) token states, (B, T) mask (1 = real token) -> (B, H): the mean of the real tokens' states."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # clamp: an all-padding row stays finite


class _LinearHead(BertPreTrainedModel):
    """BERT, dropout and one linear layer to `num_labels`; subclasses pick the features and the loss."""

    pooled: bool  # one vector per sentence (config.classifier_pooling says which) or every token's state (tagging)

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.reads = config.classifier_pooling if self.pooled else "tokens"  # "cls" | "mean" | "tokens"
        self.bert = BertModel(config, add_pooling_layer=self.reads == "cls")
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_attentions: bool = False, output_hidden_states: bool = False) -> TaskOutput:
        partial = self.reads == "cls" and not (output_attentions or output_hidden_states)
        out = self.bert(input_ids, attention_mask, token_type_ids, output_attentions=output_attentions,
                        output_hidden_states=output_hidden_states, select=cls_only(input_ids) if partial else None)
        features = out.pooler_output if self.reads == "cls" else out.last_hidden_state
        if self.reads == "mean":
            features = mean_pool(features, torch.ones_like(input_ids) if attention_mask is None else attention_mask)
        logits = self.classifier(self.dropout(features))  # (B, num_labels) or (B, T, num_labels)
        loss = None if labels is None else self.loss(logits, labels)
        return TaskOutput(loss, logits, out.hidden_states, out.attentions)


class BertForSequenceClassification(_LinearHead):
    """Linear layer on the pooled [CLS] (§4.1). One label means regression (MSE), as in HF."""

    pooled = True

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.config.num_labels == 1:
            return F.mse_loss(logits.float().squeeze(-1), labels.float())
        return F.cross_entropy(logits.float(), labels)


class BertForTokenClassification(_LinearHead):
    """Linear layer on every token's final hidden state (§4.3, NER); -100 labels are ignored."""

    pooled = False

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)


class BertForQuestionAnswering(BertPreTrainedModel):
    """Start and end logits per token (§4.2, SQuAD); the loss averages the two cross-entropies."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, start_positions: torch.Tensor | None = None,
                end_positions: torch.Tensor | None = None, output_attentions: bool = False,
                output_hidden_states: bool = False) -> QAOutput:
        out = self.bert(input_ids, attention_mask, token_type_ids,
                        output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        start_logits, end_logits = self.qa_outputs(out.last_hidden_state).unbind(-1)  # (B, T) each
        loss = None
        if start_positions is not None and end_positions is not None:
            seq_len = start_logits.size(1)  # positions outside the window are ignored, as in HF
            start = start_positions.clamp(0, seq_len)
            end = end_positions.clamp(0, seq_len)
            loss = (F.cross_entropy(start_logits.float(), start, ignore_index=seq_len)
                    + F.cross_entropy(end_logits.float(), end, ignore_index=seq_len)) / 2
        return QAOutput(loss, start_logits.contiguous(), end_logits.contiguous(), out.hidden_states, out.attentions)
