"""Chapters 9-11's inline fine-tuning pieces must stay equal to the package's.

* ch09: the pooled-[CLS] classifier, layer-wise LR, length bucketing, the loss options (label smoothing,
  class weights, focal loss, R-Drop's symmetric KL, FGM) and the random-init helper;
* ch10: BIO entity extraction and entity-level P/R/F1 (seqeval semantics), word-label alignment and
  first-sub-token decoding;
* ch11: the span head and loss, sliding windows with answer labels, n-best span search, answers
  over windows, and the official SQuAD normalization, exact match and F1.
"""
from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from bertmini import BertConfig, BertForQuestionAnswering, BertForSequenceClassification, BertModel, losses, metrics
from bertmini.finetune_tasks import class_weights
from bertmini.optim import param_groups
from bertmini.tasks import WNUT_LABELS, QAFeatures, align_labels, best_spans, bucket_batches, load_squad, \
    postprocess_qa, prepare_qa_features, word_predictions
from bertmini.tokenizer import WordPieceTokenizer
from nbutils import load_notebook_defs

CHAPTERS = Path(__file__).resolve().parents[1] / "chapters"
CH09 = load_notebook_defs(CHAPTERS / "09_text_classification.ipynb", [
    "PooledClassifier", "layerwise_lr", "bucketed", "padding_waste", "smoothed_cross_entropy", "focal",
    "inverse_frequency", "symmetric_kl", "fgm_step", "save_random_init"])
CH10 = load_notebook_defs(CHAPTERS / "10_ner.ipynb", ["get_entities", "entity_prf", "align", "first_subtoken_tags"])
CH11 = load_notebook_defs(CHAPTERS / "11_question_answering.ipynb", [
    "SpanScorer", "span_loss", "qa_windows", "answer_tokens", "top_spans", "best_answers", "exhaustive_best",
    "normalize", "exact_match", "token_f1"])

TINY = BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32,
                  max_position_embeddings=32)
NO_DROPOUT = replace(TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def tiny_batch(seed: int, B: int = 3, T: int = 10, num_labels: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, T + 1, (B,), generator=g)
    mask = (torch.arange(T) < lengths[:, None]).long()
    return {"input_ids": torch.randint(5, TINY.vocab_size, (B, T), generator=g) * mask, "attention_mask": mask,
            "token_type_ids": torch.zeros(B, T, dtype=torch.long),
            "labels": torch.randint(0, num_labels, (B,), generator=g)}


# ---------------------------------------------------------------- chapter 9

def test_pooled_classifier_equals_bert_for_sequence_classification():
    torch.manual_seed(0)
    ours = BertForSequenceClassification(replace(TINY, id2label={0: "a", 1: "b", 2: "c"})).eval()
    inline = CH09["PooledClassifier"](ours.bert, num_labels=3).eval()
    inline.classifier.load_state_dict(ours.classifier.state_dict())
    batch = tiny_batch(0, num_labels=3)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        torch.testing.assert_close(inline(**inputs), ours(**inputs).logits)


@pytest.mark.parametrize("decay", [0.5, 0.9, 1.0])
def test_layerwise_lr_equals_param_groups(decay):
    model = BertForSequenceClassification(TINY)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = param_groups(model, lr=1e-3, weight_decay=0.01, layerwise_lr_decay=decay)
    assert len({g["lr"] for g in groups}) == (1 if decay == 1.0 else TINY.num_hidden_layers + 2)
    for group in groups:
        for param in group["params"]:
            assert CH09["layerwise_lr"](names[id(param)], 1e-3, decay, TINY.num_hidden_layers) == \
                pytest.approx(group["lr"], rel=1e-12), names[id(param)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 20), min_size=1, max_size=80), st.integers(1, 9), st.integers(0, 1000))
def test_bucketed_equals_bucket_batches(lengths, batch_size, seed):
    ours = CH09["bucketed"](lengths, batch_size, seed)
    assert ours == bucket_batches(lengths, batch_size, shuffle=True, seed=seed)
    assert sorted(i for b in ours for i in b) == list(range(len(lengths)))
    waste = CH09["padding_waste"](ours, lengths)
    assert 0 <= waste < 1
    assert waste <= CH09["padding_waste"]([list(range(len(lengths)))], lengths) + 1e-12  # one batch pads the most


logits_and_labels = st.tuples(st.integers(0, 2**31 - 1), st.integers(1, 40), st.integers(2, 7))


@settings(max_examples=60, deadline=None)
@given(logits_and_labels, st.sampled_from([0.0, 0.05, 0.1, 0.3, 1.0]), st.booleans())
def test_smoothed_cross_entropy_equals_torch_and_bertmini(sizes, eps, weighted):
    seed, n, c = sizes
    g = torch.Generator().manual_seed(seed)
    z, y = 4 * torch.randn(n, c, generator=g), torch.randint(0, c, (n,), generator=g)
    w = torch.rand(c, generator=g) + 0.1 if weighted else None
    ours = CH09["smoothed_cross_entropy"](z, y, w, eps)
    torch.testing.assert_close(ours, F.cross_entropy(z, y, weight=w, label_smoothing=eps))
    torch.testing.assert_close(ours, losses.cross_entropy(z, y, weight=w, label_smoothing=eps))


@settings(max_examples=60, deadline=None)
@given(logits_and_labels, st.sampled_from([0.0, 0.5, 2.0, 5.0]), st.booleans())
def test_focal_equals_bertmini(sizes, gamma, weighted):
    seed, n, c = sizes
    g = torch.Generator().manual_seed(seed)
    z, y = 4 * torch.randn(n, c, generator=g), torch.randint(0, c, (n,), generator=g)
    alpha = torch.rand(c, generator=g) + 0.1 if weighted else None
    torch.testing.assert_close(CH09["focal"](z, y, gamma, alpha), losses.focal_loss(z, y, gamma=gamma, alpha=alpha))
    if gamma == 0.0 and alpha is None:
        torch.testing.assert_close(CH09["focal"](z, y, 0.0), F.cross_entropy(z, y))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=60))
def test_inverse_frequency_equals_auto_class_weights(labels):
    ours = CH09["inverse_frequency"](torch.tensor(labels), 5)
    torch.testing.assert_close(ours, class_weights("auto", [{"labels": l} for l in labels], 5))
    present = sorted(set(labels))
    totals = ours[present] * torch.bincount(torch.tensor(labels), minlength=5)[present]
    torch.testing.assert_close(totals, torch.full_like(totals, len(labels) / 5))  # equal weight per present class


@settings(max_examples=60, deadline=None)
@given(logits_and_labels)
def test_symmetric_kl_equals_bertmini(sizes):
    seed, n, c = sizes
    g = torch.Generator().manual_seed(seed)
    p, q = 3 * torch.randn(n, c, generator=g), 3 * torch.randn(n, c, generator=g)
    ours = CH09["symmetric_kl"](p, q)
    torch.testing.assert_close(ours, losses.symmetric_kl(p, q))
    torch.testing.assert_close(ours, CH09["symmetric_kl"](q, p))
    assert CH09["symmetric_kl"](p, p).abs() < 1e-6


@pytest.mark.parametrize("epsilon", [0.1, 1.0, 5.0])
def test_fgm_step_equals_bertmini_fgm(epsilon):
    torch.manual_seed(0)
    a = BertForSequenceClassification(NO_DROPOUT).train()
    b = BertForSequenceClassification(NO_DROPOUT).train()
    b.load_state_dict(a.state_dict())
    before = a.bert.embeddings.word_embeddings.weight.detach().clone()
    batch = tiny_batch(1)
    CH09["fgm_step"](a, batch, epsilon)
    losses.FGM(losses.model_loss, epsilon=epsilon)(b, batch, backward=lambda loss: loss.backward())
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, msg=name)
    assert torch.equal(a.bert.embeddings.word_embeddings.weight, before)
    c = BertForSequenceClassification(NO_DROPOUT).train()  # the clean gradient alone differs
    c.load_state_dict(b.state_dict())
    c(**batch).loss.backward()
    assert not torch.allclose(c.classifier.weight.grad, b.classifier.weight.grad)


def test_save_random_init_keeps_architecture_and_tokenizer(tmp_path, minilm_dir):
    source = tmp_path / "pretrained"
    BertModel(TINY).save_pretrained(source)
    WordPieceTokenizer.from_file(minilm_dir).save(source)
    out = CH09["save_random_init"](source, tmp_path / "random", seed=3)
    again = CH09["save_random_init"](source, tmp_path / "again", seed=3)
    model = BertForSequenceClassification.from_pretrained(out)
    assert model.load_report.missing_keys == [] and model.config.hidden_size == TINY.hidden_size
    assert (out / "vocab.txt").read_bytes() == (minilm_dir / "vocab.txt").read_bytes()
    assert (out / "model.safetensors").read_bytes() == (again / "model.safetensors").read_bytes()  # seeded
    pretrained = BertModel.from_pretrained(source)
    assert not torch.equal(model.bert.encoder.layer[0].output.dense.weight,
                           pretrained.encoder.layer[0].output.dense.weight)


# ---------------------------------------------------------------- chapter 10

bio_tags = st.lists(st.sampled_from([*WNUT_LABELS, "I-person", "B-person", "O"]), min_size=0, max_size=15)


@settings(max_examples=300, deadline=None)
@given(bio_tags)
def test_get_entities_equals_bertmini(tags):
    assert CH10["get_entities"](tags) == metrics.get_entities(tags)


def test_get_entities_conlleval_rules():
    tags = ["I-person", "I-person", "B-person", "I-location", "O", "I-group", "B-group"]
    assert CH10["get_entities"](tags) == [("person", 0, 1), ("person", 2, 2), ("location", 3, 3), ("group", 5, 5),
                                          ("group", 6, 6)]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(bio_tags, st.randoms(use_true_random=False)), min_size=1, max_size=6))
def test_entity_prf_equals_entity_scores(sentences):
    gold = [tags for tags, _ in sentences]
    pred = [[rng.choice(WNUT_LABELS) if rng.random() < 0.3 else t for t in tags] for tags, rng in sentences]
    micro = metrics.entity_scores(gold, pred)["micro"]
    assert CH10["entity_prf"](gold, pred) == pytest.approx((micro["precision"], micro["recall"], micro["f1"]),
                                                           abs=1e-12)


word_id_lists = st.integers(1, 8).flatmap(lambda n: st.tuples(
    st.just(n), st.lists(st.integers(0, n - 1), min_size=0, max_size=20).map(sorted)))


@settings(max_examples=200, deadline=None)
@given(word_id_lists, st.randoms(use_true_random=False))
def test_align_and_first_subtoken_equal_bertmini(words, rng):
    n_words, inner = words
    word_ids = [None, *inner, None]  # [CLS] ... [SEP], sub-tokens of a word are adjacent
    word_labels = [rng.randrange(len(WNUT_LABELS)) for _ in range(n_words)]
    labels = CH10["align"](word_ids, word_labels)
    assert labels == align_labels(word_ids, word_labels)
    assert sum(l != -100 for l in labels) == len(set(inner))
    token_preds = [rng.randrange(len(WNUT_LABELS)) for _ in word_ids]
    assert CH10["first_subtoken_tags"](token_preds, word_ids, n_words) == word_predictions(token_preds, word_ids,
                                                                                           n_words)


# ---------------------------------------------------------------- chapter 11

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_span_scorer_and_loss_equal_bert_for_question_answering(seed):
    torch.manual_seed(seed)
    ours = BertForQuestionAnswering(TINY).eval()
    inline = CH11["SpanScorer"](BertModel(TINY)).eval()
    inline.bert.load_state_dict(ours.bert.state_dict(), strict=False)  # ours has no pooler
    inline.qa_outputs.load_state_dict(ours.qa_outputs.state_dict())
    batch = tiny_batch(seed)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    positions = torch.randint(0, 10, (2, 3), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        start, end = inline(**inputs)
        out = ours(**inputs, start_positions=positions[0], end_positions=positions[1])
    torch.testing.assert_close((start, end), (out.start_logits, out.end_logits))
    torch.testing.assert_close(CH11["span_loss"](start, end, positions[0], positions[1]), out.loss)


@pytest.fixture(scope="module")
def squad_tok(minilm_dir):
    return WordPieceTokenizer.from_file(minilm_dir), load_squad("validation-2articles").examples


def inline_windows(tok, example, max_length, doc_stride):
    """The notebook's inline_features: windows of one question with the labels of its first answer."""
    question_ids = tok.encode_plain([example.question.lstrip()])[0]
    context = tok.backend.encode(example.context, add_special_tokens=False)
    windows = CH11["qa_windows"](question_ids, context.ids, context.offsets, max_length, doc_stride,
                                 tok.cls_token_id, tok.sep_token_id)
    start_char = example.answer_starts[0]
    for w in windows:
        w["start_positions"], w["end_positions"] = CH11["answer_tokens"](w["offsets"], start_char,
                                                                         start_char + len(example.answer_texts[0]))
    return windows


@pytest.mark.parametrize("max_length, doc_stride", [(384, 128), (128, 32), (64, 16), (48, 8)])
def test_qa_windows_equal_prepare_qa_features(squad_tok, max_length, doc_stride):
    tok, examples = squad_tok
    examples = random.Random(max_length).sample(examples, 60)
    package = prepare_qa_features(examples, tok, max_length, doc_stride)
    ours = [w for e in examples for w in inline_windows(tok, e, max_length, doc_stride)]
    assert len(ours) == len(package)
    if max_length < 100:
        assert len(package) > len(examples)  # long contexts were cut into several windows
    for w, feature, offsets in zip(ours, package.features, package.offsets):
        assert w["offsets"] == offsets
        for key in ("input_ids", "token_type_ids", "start_positions", "end_positions"):
            assert w[key] == feature[key], key
    assert any(w["start_positions"] > 0 for w in ours)


def test_qa_windows_rejects_a_stride_that_leaves_no_room():
    with pytest.raises(ValueError, match="not more than doc_stride"):
        CH11["qa_windows"]([5] * 10, list(range(100)), [(i, i + 1) for i in range(100)], 30, 20, 1, 2)


@st.composite
def windows_with_logits(draw):
    n = draw(st.integers(3, 40))
    n_question = draw(st.integers(1, n - 2))
    offsets = [None] * n_question + [(3 * i, 3 * i + 2) for i in range(n - n_question - 1)] + [None]
    scores = st.lists(st.floats(-20, 20, allow_nan=False, width=32), min_size=n, max_size=n, unique=True)
    return draw(scores), draw(scores), offsets


@settings(max_examples=150, deadline=None)
@given(windows_with_logits(), st.integers(1, 25), st.integers(1, 12))
def test_top_spans_equal_best_spans(window, n_best, max_answer_length):
    start, end, offsets = window
    ours = CH11["top_spans"](start, end, offsets, n_best, max_answer_length)
    assert ours == best_spans(start, end, offsets, n_best, max_answer_length)
    full = CH11["top_spans"](start, end, offsets, len(offsets), max_answer_length)
    exhaustive = CH11["exhaustive_best"](start, end, offsets, max_answer_length)
    assert full[0][0] == exhaustive[0] and exhaustive in full  # equal scores may tie in another order


def test_best_answers_equal_postprocess_qa(squad_tok):
    tok, examples = squad_tok
    examples = examples[:40]
    features = prepare_qa_features(examples, tok, 64, 16)
    g = torch.Generator().manual_seed(0)
    start, end = torch.randn(len(features), 64, generator=g), torch.randn(len(features), 64, generator=g)
    ours = CH11["best_answers"](examples, features.example_index, start.tolist(), end.tolist(), features.offsets)
    assert ours == postprocess_qa(examples, features, start, end)
    assert len(set(features.example_index)) < len(features)  # several windows per question were compared
    no_context = QAFeatures(features.features[:1], [0], [[None] * len(features.offsets[0])])
    assert CH11["best_answers"](examples[:1], [0], start[:1].tolist(), end[:1].tolist(), no_context.offsets) == \
        postprocess_qa(examples[:1], no_context, start[:1], end[:1]) == {examples[0].id: ""}


answer_text = st.text(alphabet=st.sampled_from(list("abcThe AN.,;-'\"()!?x1 \t")), max_size=30)


@settings(max_examples=300, deadline=None)
@given(answer_text, st.lists(answer_text, min_size=1, max_size=3))
def test_squad_normalization_em_and_f1_equal_bertmini(prediction, answers):
    assert CH11["normalize"](prediction) == metrics.normalize_answer(prediction)
    assert CH11["exact_match"](prediction, answers) == metrics.squad_exact_match(prediction, answers)
    assert CH11["token_f1"](prediction, answers) == pytest.approx(metrics.squad_f1(prediction, answers), abs=1e-12)


def test_squad_normalization_official_cases():
    normalize = CH11["normalize"]
    assert normalize("The  Broncos.") == "broncos"
    assert normalize("the-end") == "theend"  # punctuation goes first: the article survives
    assert CH11["token_f1"]("in 1754", ["1754"]) == pytest.approx(2 / 3)
    assert CH11["exact_match"]("", ["x"]) == 0.0 and CH11["token_f1"]("", ["x"]) == 0.0
