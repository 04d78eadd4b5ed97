"""Chapters 9-11's inline fine-tuning pieces must stay equal to the package's.

* ch09: the pooled-[CLS] and the mean-pooling classifiers, layer-wise LR, length bucketing, the loss options
  (label smoothing, class weights, focal loss, R-Drop's symmetric KL, FGM) and the random-init helper;
* ch10: BIO entity extraction and entity-level P/R/F1 (seqeval semantics), word-label alignment and
  first-sub-token decoding;
* ch11: the span head and loss, sliding windows with answer labels, n-best span search, answers
  over windows, and the official SQuAD normalization, exact match and F1.

Each comparison is a function (``*_excess`` returns the difference in units of assert_close's tolerance,
``check_*`` raises AssertionError) that also runs on mutated copies of the notebooks (class weights
inverted, the last sub-token read instead of the first, a span ending before it starts, ...) and must
fail there: a comparison that cannot fail guards nothing.
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

from bertmini import BertConfig, BertForQuestionAnswering, BertForSequenceClassification, BertModel
from bertmini.finetuning import (
    WNUT_LABELS,
    QAFeatures,
    align_labels,
    best_spans,
    bucket_batches,
    load_squad,
    losses,
    metrics,
    postprocess_qa,
    prepare_qa_features,
    word_predictions,
)
from bertmini.finetuning.losses import class_weights
from bertmini.tokenizer import WordPieceTokenizer
from bertmini.training.optim import param_groups

from nbutils import excess, fails, load_notebook_defs, mutate

CHAPTERS = Path(__file__).resolve().parents[1] / "chapters"
NB09, NB10, NB11 = (CHAPTERS / f"{name}.ipynb" for name in
                    ("09_text_classification", "10_ner", "11_question_answering"))
CH09_NAMES = ["PooledClassifier", "MeanPooledClassifier", "layerwise_lr", "bucketed", "padding_waste",
              "smoothed_cross_entropy", "focal", "inverse_frequency", "symmetric_kl", "fgm_step", "save_random_init"]
CH10_NAMES = ["get_entities", "entity_prf", "align", "first_subtoken_tags"]
CH11_NAMES = ["SpanScorer", "span_loss", "qa_windows", "answer_tokens", "top_spans", "best_answers",
              "exhaustive_best", "normalize", "exact_match", "token_f1"]
CH09, CH10, CH11 = (load_notebook_defs(nb, names) for nb, names in
                    ((NB09, CH09_NAMES), (NB10, CH10_NAMES), (NB11, CH11_NAMES)))
BUG = 10  # a mutant must miss a numeric comparison's tolerance (see nbutils.excess) at least tenfold


def mutated(nb_path: Path, names: list[str], definition: str, old: str, new: str, tmp_path: Path) -> dict:
    """The notebook's definitions `names`, loaded from a copy with one change in the cell defining `definition`."""
    keyword = "class" if definition[0].isupper() else "def"
    return load_notebook_defs(mutate(nb_path, f"{keyword} {definition}(", old, new, tmp_path), names)


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

def pooled_excess(PooledClassifier) -> float:
    """Notebook classifier vs BertForSequenceClassification (same BERT and head, padded batch)."""
    torch.manual_seed(0)
    ours = BertForSequenceClassification(replace(TINY, id2label={0: "a", 1: "b", 2: "c"})).eval()
    with torch.no_grad():  # a head of std 1, not 0.02: logits as sensitive as the pooled vector they read
        ours.classifier.weight.normal_()
    inline = PooledClassifier(ours.bert, num_labels=3).eval()
    inline.classifier.load_state_dict(ours.classifier.state_dict())
    batch = tiny_batch(0, num_labels=3)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        return excess(inline(**inputs), ours(**inputs).logits)


def test_pooled_classifier_equals_bert_for_sequence_classification():
    assert pooled_excess(CH09["PooledClassifier"]) <= 1


def mean_pooled_excess(MeanPooledClassifier) -> float:
    """Notebook mean-pooling classifier vs BertForSequenceClassification with classifier_pooling='mean'."""
    torch.manual_seed(0)
    ours = BertForSequenceClassification(replace(TINY, id2label={0: "a", 1: "b", 2: "c"},
                                                 classifier_pooling="mean")).eval()
    with torch.no_grad():
        ours.classifier.weight.normal_()
    inline = MeanPooledClassifier(ours.bert, num_labels=3).eval()
    inline.classifier.load_state_dict(ours.classifier.state_dict())
    inputs = {k: v for k, v in tiny_batch(0, num_labels=3).items() if k != "labels"}  # rows of padding
    with torch.no_grad():
        return excess(inline(**inputs), ours(**inputs).logits)


def test_mean_pooled_classifier_equals_classifier_pooling_mean():
    assert mean_pooled_excess(CH09["MeanPooledClassifier"]) <= 1


def check_layerwise_lr(layerwise_lr, decay: float) -> None:
    """Every parameter's notebook LR is the one of its group in bertmini.training.optim.param_groups."""
    model = BertForSequenceClassification(TINY)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = param_groups(model, lr=1e-3, weight_decay=0.01, layerwise_lr_decay=decay)
    assert len({g["lr"] for g in groups}) == (1 if decay == 1.0 else TINY.num_hidden_layers + 2)
    for group in groups:
        for param in group["params"]:
            assert layerwise_lr(names[id(param)], 1e-3, decay, TINY.num_hidden_layers) == \
                pytest.approx(group["lr"], rel=1e-12), names[id(param)]


@pytest.mark.parametrize("decay", [0.5, 0.9, 1.0])
def test_layerwise_lr_equals_param_groups(decay):
    check_layerwise_lr(CH09["layerwise_lr"], decay)


def counted_waste(batches: list[list[int]], lengths: list[int]) -> float:
    """Padding share counted on the padded rectangles themselves (1 = a real token, 0 = [PAD])."""
    cells = [1 if j < lengths[i] else 0 for b in batches for i in b for j in range(max(lengths[k] for k in b))]
    return cells.count(0) / len(cells)


def check_bucketed(defs: dict, lengths: list[int], batch_size: int, seed: int) -> None:
    """Notebook batches are bucket_batches'; notebook padding waste is the share of [PAD] slots."""
    ours = defs["bucketed"](lengths, batch_size, seed)
    assert ours == bucket_batches(lengths, batch_size, shuffle=True, seed=seed)
    assert sorted(i for b in ours for i in b) == list(range(len(lengths)))
    waste = defs["padding_waste"](ours, lengths)
    assert waste == pytest.approx(counted_waste(ours, lengths), abs=1e-12)
    assert 0 <= waste < 1
    assert waste <= defs["padding_waste"]([list(range(len(lengths)))], lengths) + 1e-12  # one batch pads the most


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 20), min_size=1, max_size=80), st.integers(1, 9), st.integers(0, 1000))
def test_bucketed_equals_bucket_batches(lengths, batch_size, seed):
    check_bucketed(CH09, lengths, batch_size, seed)


logits_and_labels = st.tuples(st.integers(0, 2**31 - 1), st.integers(1, 40), st.integers(2, 7))


def smoothed_excess(smoothed_cross_entropy, seed: int = 0, n: int = 24, c: int = 5, eps: float = 0.1,
                    weighted: bool = True) -> float:
    """Notebook label-smoothed (weighted) CE vs torch's and bertmini's."""
    g = torch.Generator().manual_seed(seed)
    z, y = 4 * torch.randn(n, c, generator=g), torch.randint(0, c, (n,), generator=g)
    w = torch.rand(c, generator=g) + 0.1 if weighted else None
    ours = smoothed_cross_entropy(z, y, w, eps)
    return max(excess(ours, F.cross_entropy(z, y, weight=w, label_smoothing=eps)),
               excess(ours, losses.cross_entropy(z, y, weight=w, label_smoothing=eps)))


@settings(max_examples=60, deadline=None)
@given(logits_and_labels, st.sampled_from([0.0, 0.05, 0.1, 0.3, 1.0]), st.booleans())
def test_smoothed_cross_entropy_equals_torch_and_bertmini(sizes, eps, weighted):
    assert smoothed_excess(CH09["smoothed_cross_entropy"], *sizes, eps, weighted) <= 1


def focal_excess(focal, seed: int = 0, n: int = 24, c: int = 5, gamma: float = 2.0, weighted: bool = True) -> float:
    """Notebook focal loss vs bertmini's (and, with γ = 0 and no α, vs plain cross-entropy)."""
    g = torch.Generator().manual_seed(seed)
    z, y = 4 * torch.randn(n, c, generator=g), torch.randint(0, c, (n,), generator=g)
    alpha = torch.rand(c, generator=g) + 0.1 if weighted else None
    error = excess(focal(z, y, gamma, alpha), losses.focal_loss(z, y, gamma=gamma, alpha=alpha))
    if gamma == 0.0 and alpha is None:
        error = max(error, excess(focal(z, y, 0.0), F.cross_entropy(z, y)))
    return error


@settings(max_examples=60, deadline=None)
@given(logits_and_labels, st.sampled_from([0.0, 0.5, 2.0, 5.0]), st.booleans())
def test_focal_equals_bertmini(sizes, gamma, weighted):
    assert focal_excess(CH09["focal"], *sizes, gamma, weighted) <= 1


def check_inverse_frequency(inverse_frequency, labels: list[int]) -> None:
    """Notebook weights are bertmini's "auto" class weights; every present class carries the same total."""
    ours = inverse_frequency(torch.tensor(labels), 5)
    torch.testing.assert_close(ours, class_weights("auto", [{"labels": l} for l in labels], 5))
    present = sorted(set(labels))
    totals = ours[present] * torch.bincount(torch.tensor(labels), minlength=5)[present]
    torch.testing.assert_close(totals, torch.full_like(totals, len(labels) / 5))  # equal weight per present class


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=60))
def test_inverse_frequency_equals_auto_class_weights(labels):
    check_inverse_frequency(CH09["inverse_frequency"], labels)


def symmetric_kl_excess(symmetric_kl, seed: int = 0, n: int = 24, c: int = 5) -> float:
    """Notebook symmetric KL vs bertmini's; it must also be symmetric and 0 between equal distributions."""
    g = torch.Generator().manual_seed(seed)
    p, q = 3 * torch.randn(n, c, generator=g), 3 * torch.randn(n, c, generator=g)
    ours = symmetric_kl(p, q)
    return max(excess(ours, losses.symmetric_kl(p, q)), excess(ours, symmetric_kl(q, p)),
               excess(symmetric_kl(p, p), 0.0, rtol=0, atol=1e-6))


@settings(max_examples=60, deadline=None)
@given(logits_and_labels)
def test_symmetric_kl_equals_bertmini(sizes):
    assert symmetric_kl_excess(CH09["symmetric_kl"], *sizes) <= 1


def fgm_excess(fgm_step, epsilon: float = 1.0) -> float:
    """Notebook FGM step vs losses.FGM on twin models: every gradient, and the embeddings restored bit for bit."""
    torch.manual_seed(0)
    a = BertForSequenceClassification(NO_DROPOUT).train()
    b = BertForSequenceClassification(NO_DROPOUT).train()
    b.load_state_dict(a.state_dict())
    before = a.bert.embeddings.word_embeddings.weight.detach().clone()
    batch = tiny_batch(1)
    fgm_step(a, batch, epsilon)
    losses.FGM(losses.model_loss, epsilon=epsilon)(b, batch, backward=lambda loss: loss.backward())
    restored = torch.equal(a.bert.embeddings.word_embeddings.weight, before)
    return max([excess(pa.grad, pb.grad) for pa, pb in zip(a.parameters(), b.parameters(), strict=True)]
               + [0.0 if restored else float("inf")])


@pytest.mark.slow
@pytest.mark.parametrize("epsilon", [0.1, 1.0, 5.0])
def test_fgm_step_equals_bertmini_fgm(epsilon):
    assert fgm_excess(CH09["fgm_step"], epsilon) <= 1
    torch.manual_seed(0)
    b = BertForSequenceClassification(NO_DROPOUT).train()
    batch = tiny_batch(1)
    losses.FGM(losses.model_loss, epsilon=epsilon)(b, batch, backward=lambda loss: loss.backward())
    c = BertForSequenceClassification(NO_DROPOUT).train()  # the clean gradient alone differs
    c.load_state_dict(b.state_dict())
    c(**batch).loss.backward()
    assert not torch.allclose(c.classifier.weight.grad, b.classifier.weight.grad)


def check_save_random_init(save_random_init, tmp_path: Path, minilm_dir: Path) -> None:
    """Same architecture and vocabulary as the source, seeded, and not the source's weights."""
    source = tmp_path / "pretrained"
    BertModel(TINY).save_pretrained(source)
    WordPieceTokenizer.from_file(minilm_dir).save(source)
    out = save_random_init(source, tmp_path / "random", seed=3)
    again = save_random_init(source, tmp_path / "again", seed=3)
    model = BertForSequenceClassification.from_pretrained(out)
    assert model.load_report.missing_keys == [] and model.config.hidden_size == TINY.hidden_size
    assert (out / "vocab.txt").read_bytes() == (minilm_dir / "vocab.txt").read_bytes()
    assert (out / "model.safetensors").read_bytes() == (again / "model.safetensors").read_bytes()  # seeded
    pretrained = BertModel.from_pretrained(source)
    assert not torch.equal(model.bert.encoder.layer[0].output.dense.weight,
                           pretrained.encoder.layer[0].output.dense.weight)


def test_save_random_init_keeps_architecture_and_tokenizer(tmp_path, minilm_dir):
    check_save_random_init(CH09["save_random_init"], tmp_path, minilm_dir)


def ch09_fails(defs: dict, definition: str, tmp_path: Path, minilm_dir: Path) -> bool:
    """Whether the drift check of `definition` rejects `defs`, on fixed inputs."""
    if definition == "PooledClassifier":
        return pooled_excess(defs["PooledClassifier"]) > BUG
    if definition == "MeanPooledClassifier":
        return mean_pooled_excess(defs["MeanPooledClassifier"]) > BUG
    if definition == "layerwise_lr":
        return fails(check_layerwise_lr, defs["layerwise_lr"], 0.9)
    if definition in ("bucketed", "padding_waste"):
        rng = random.Random(0)
        lengths = [rng.randint(1, 6) for _ in range(40)]  # many ties in length
        return fails(check_bucketed, defs, lengths, 4, 7)
    if definition == "smoothed_cross_entropy":
        return smoothed_excess(defs["smoothed_cross_entropy"]) > BUG
    if definition == "focal":
        return focal_excess(defs["focal"]) > BUG
    if definition == "inverse_frequency":
        return fails(check_inverse_frequency, defs["inverse_frequency"], [0, 0, 0, 1, 1, 2, 3, 0, 1, 0])  # no 4
    if definition == "symmetric_kl":
        return symmetric_kl_excess(defs["symmetric_kl"]) > BUG
    if definition == "fgm_step":
        return fgm_excess(defs["fgm_step"]) > BUG
    return fails(check_save_random_init, defs["save_random_init"], tmp_path, minilm_dir)


@pytest.mark.parametrize("definition, old, new", [
    pytest.param("PooledClassifier", ").pooler_output", ").last_hidden_state[:, 0]", id="unpooled-CLS"),
    pytest.param("PooledClassifier", "self.bert(input_ids, attention_mask, token_type_ids)",
                 "self.bert(input_ids, token_type_ids=token_type_ids)", id="padding-mask-dropped"),
    pytest.param("layerwise_lr", "depth = int(match.group(1)) + 1", "depth = int(match.group(1))",
                 id="layer-depth-off-by-one"),
    pytest.param("layerwise_lr", "decay ** (num_layers + 1 - depth)", "decay ** depth", id="decay-reversed"),
    pytest.param("layerwise_lr", r'r"(?:^|\.)encoder\.layer', r'r"^encoder\.layer', id="prefixed-names-missed"),
    pytest.param("layerwise_lr", "depth = 0", "depth = 1", id="embeddings-at-layer-0-rate"),
    pytest.param("bucketed", "key=lambda i: (lengths[i], tie[i])", "key=lambda i: lengths[i]",
                 id="ties-not-broken-randomly"),
    pytest.param("bucketed", "rng.shuffle(batches)", "pass", id="batch-order-not-shuffled"),
    pytest.param("bucketed", "key=lambda i: (lengths[i], tie[i]))", "key=lambda i: (lengths[i], tie[i]), reverse=True)",
                 id="sorted-longest-first"),
    pytest.param("padding_waste", "len(b) * max(lengths[i] for i in b)", "len(b) * max(lengths)",
                 id="waste-against-the-global-longest"),
    pytest.param("padding_waste", "return 1 - sum(", "return sum(", id="real-token-share-not-waste"),
    pytest.param("smoothed_cross_entropy", "/ num_classes  #", "/ (num_classes - 1)  #",
                 id="epsilon-over-C-1-classes"),
    pytest.param("smoothed_cross_entropy", ".sum() / w[labels].sum()", ".mean()", id="weighted-plain-mean"),
    pytest.param("smoothed_cross_entropy", "-(logp * w).sum(-1)", "-logp.sum(-1)", id="uniform-term-unweighted"),
    pytest.param("focal", "(1 - logp_y.exp()) ** gamma", "logp_y.exp() ** gamma", id="easy-examples-weighted-up"),
    pytest.param("focal", "loss = loss * alpha[labels]", "loss = loss / alpha[labels]", id="class-weights-inverted"),
    pytest.param("focal", "return loss.mean()", "return loss.sum()", id="summed-not-averaged"),
    pytest.param("inverse_frequency", "len(labels) / (num_classes * counts.clamp(min=1))",
                 "num_classes * counts / len(labels)", id="class-weights-inverted"),
    pytest.param("inverse_frequency", "(num_classes * counts.clamp(min=1))", "counts.clamp(min=1)",
                 id="no-1/C-factor"),
    pytest.param("inverse_frequency", "counts.clamp(min=1)", "counts", id="absent-class-divides-by-zero"),
    pytest.param("symmetric_kl", " + (logq.exp() * (logq - logp)).sum(-1)", "", id="one-direction-only"),
    pytest.param("symmetric_kl", "return 0.5 * (", "return (", id="no-half"),
    pytest.param("symmetric_kl", "F.log_softmax(p_logits.float(), -1)", "F.log_softmax(p_logits.float(), 0)",
                 id="softmax-over-examples"),
    pytest.param("fgm_step", "epsilon * emb.grad / emb.grad.norm()", "epsilon * emb.grad.sign()", id="fgsm-sign"),
    pytest.param("fgm_step", "emb.add_(", "emb.sub_(", id="perturbation-against-the-gradient"),
    pytest.param("fgm_step", "emb.copy_(saved)", "emb.sub_(epsilon * emb.grad / emb.grad.norm())",
                 id="restored-with-the-accumulated-gradient"),
    pytest.param("fgm_step", "model(**batch).loss.backward()  # accumulates",
                 "model.zero_grad()\n    model(**batch).loss.backward()  # accumulates", id="clean-gradient-dropped"),
    pytest.param("MeanPooledClassifier", "(hidden * mask).sum(1) / mask.sum(1)", "hidden.mean(1)",
                 id="padding-in-the-mean"),
    pytest.param("MeanPooledClassifier", "(hidden * mask).sum(1) / mask.sum(1)", "hidden[:, 0]", id="reads-cls"),
    pytest.param("save_random_init", "set_seed(seed)", "pass", id="not-seeded"),
    pytest.param("save_random_init", "BertForSequenceClassification(config).save_pretrained(out)",
                 "BertForSequenceClassification.from_pretrained(pretrained).save_pretrained(out)",
                 id="pretrained-weights-kept"),
])
def test_ch09_drift_test_catches_mutants(definition, old, new, tmp_path, minilm_dir):
    defs = mutated(NB09, CH09_NAMES, definition, old, new, tmp_path)
    assert ch09_fails(defs, definition, tmp_path / "run", minilm_dir)


# ---------------------------------------------------------------- chapter 10

bio_tags = st.lists(st.sampled_from([*WNUT_LABELS, "I-person", "B-person", "O"]), min_size=0, max_size=15)


def check_entities(get_entities, tags: list[str]) -> None:
    assert get_entities(tags) == metrics.get_entities(tags)


@settings(max_examples=300, deadline=None)
@given(bio_tags)
def test_get_entities_equals_bertmini(tags):
    check_entities(CH10["get_entities"], tags)


def check_conlleval_rules(get_entities) -> None:
    """I- after O or after another type starts an entity, B- always does, the entity at the end counts."""
    tags = ["I-person", "I-person", "B-person", "I-location", "O", "I-group", "B-group"]
    assert get_entities(tags) == [("person", 0, 1), ("person", 2, 2), ("location", 3, 3), ("group", 5, 5),
                                  ("group", 6, 6)]


def test_get_entities_conlleval_rules():
    check_conlleval_rules(CH10["get_entities"])


def noisy_predictions(gold: list[list[str]], rngs: list[random.Random]) -> list[list[str]]:
    """Gold tags with about 30% replaced by a random WNUT tag."""
    return [[rng.choice(WNUT_LABELS) if rng.random() < 0.3 else t for t in tags] for tags, rng in zip(gold, rngs)]


def check_entity_prf(entity_prf, gold: list[list[str]], pred: list[list[str]]) -> None:
    micro = metrics.entity_scores(gold, pred)["micro"]
    assert entity_prf(gold, pred) == pytest.approx((micro["precision"], micro["recall"], micro["f1"]), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(bio_tags, st.randoms(use_true_random=False)), min_size=1, max_size=6))
def test_entity_prf_equals_entity_scores(sentences):
    gold = [tags for tags, _ in sentences]
    check_entity_prf(CH10["entity_prf"], gold, noisy_predictions(gold, [rng for _, rng in sentences]))


word_id_lists = st.integers(1, 8).flatmap(lambda n: st.tuples(
    st.just(n), st.lists(st.integers(0, n - 1), min_size=0, max_size=20).map(sorted)))


def check_align_and_first_subtoken(defs: dict, n_words: int, inner: list[int], rng: random.Random) -> None:
    """Word labels -> token labels and token predictions -> word predictions, both as bertmini does them."""
    word_ids = [None, *inner, None]  # [CLS] ... [SEP], sub-tokens of a word are adjacent
    word_labels = [rng.randrange(len(WNUT_LABELS)) for _ in range(n_words)]
    labels = defs["align"](word_ids, word_labels)
    assert labels == align_labels(word_ids, word_labels)
    assert sum(l != -100 for l in labels) == len(set(inner))
    token_preds = [rng.randrange(len(WNUT_LABELS)) for _ in word_ids]
    assert defs["first_subtoken_tags"](token_preds, word_ids, n_words) == word_predictions(token_preds, word_ids,
                                                                                           n_words)


@settings(max_examples=200, deadline=None)
@given(word_id_lists, st.randoms(use_true_random=False))
def test_align_and_first_subtoken_equal_bertmini(words, rng):
    check_align_and_first_subtoken(CH10, *words, rng)


def ch10_fails(defs: dict, definition: str) -> bool:
    """Whether the drift checks of `definition` reject `defs` on a few fixed sentences."""
    tags, rng = [*WNUT_LABELS, "I-person", "B-person", "O"], random.Random(0)
    sentences = [rng.choices(tags, k=rng.randint(0, 15)) for _ in range(30)]
    if definition == "get_entities":
        return fails(check_conlleval_rules, defs["get_entities"]) or \
            any(fails(check_entities, defs["get_entities"], t) for t in sentences)
    if definition == "entity_prf":
        return any(fails(check_entity_prf, defs["entity_prf"], sentences[i:i + 5],
                         noisy_predictions(sentences[i:i + 5], [random.Random(i + j) for j in range(5)]))
                   for i in range(0, 30, 5))
    return any(fails(check_align_and_first_subtoken, defs, n, sorted(rng.choices(range(n), k=2 * n)), rng)
               for n in range(1, 9))


@pytest.mark.parametrize("definition, old, new", [
    pytest.param("get_entities", 'enumerate([*tags, "O"])', "enumerate(tags)", id="entity-at-the-end-lost"),
    pytest.param("get_entities", 'if prev != "O" and (prefix in ("B", "O") or kind != prev_type):',
                 'if prev != "O" and prefix in ("B", "O"):', id="type-change-continues-the-entity"),
    pytest.param("get_entities", "entities.append((prev_type, begin, i - 1))",
                 "entities.append((prev_type, begin, i))", id="end-exclusive"),
    pytest.param("get_entities", 'if prefix == "B" or (prefix == "I" and (prev == "O" or kind != prev_type)):',
                 'if prefix == "B":', id="only-B-begins-an-entity"),
    pytest.param("entity_prf", "precision = hits / len(pred) if pred else 0.0",
                 "precision = hits / len(gold) if gold else 0.0", id="precision-over-gold"),
    pytest.param("entity_prf", "2 * precision * recall / (precision + recall)", "(precision + recall) / 2",
                 id="f1-arithmetic-mean"),
    pytest.param("entity_prf", "hits = len(gold & pred)", "hits = len({e[:2] for e in gold} & {e[:2] for e in pred})",
                 id="hit-needs-only-the-type"),
    pytest.param("align", "-100 if word is None or word == previous else", "-100 if word is None else",
                 id="every-sub-token-labelled"),
    pytest.param("align", "labels.append(-100 if", "labels.append(0 if", id="ignore-index-0"),
    pytest.param("first_subtoken_tags", "if word is not None and word not in seen:", "if word is not None:",
                 id="last-sub-token-wins"),
    pytest.param("first_subtoken_tags", "int(token_preds[position])", "int(token_preds[word])",
                 id="indexed-by-word-not-position"),
    pytest.param("first_subtoken_tags", "def first_subtoken_tags(token_preds, word_ids, n_words, fill=0):",
                 "def first_subtoken_tags(token_preds, word_ids, n_words, fill=-100):",
                 id="missing-words-get-minus-100"),
])
def test_ch10_drift_test_catches_mutants(definition, old, new, tmp_path):
    assert ch10_fails(mutated(NB10, CH10_NAMES, definition, old, new, tmp_path), definition)


# ---------------------------------------------------------------- chapter 11

def span_excess(defs: dict, seed: int = 0) -> float:
    """Notebook span scores and loss vs BertForQuestionAnswering's (same weights, padded batch)."""
    torch.manual_seed(seed)
    ours = BertForQuestionAnswering(TINY).eval()
    with torch.no_grad():  # a head of std 1, not 0.02: scores as sensitive as the hidden states they read
        ours.qa_outputs.weight.normal_()
    inline = defs["SpanScorer"](BertModel(TINY)).eval()
    inline.bert.load_state_dict(ours.bert.state_dict(), strict=False)  # ours has no pooler
    inline.qa_outputs.load_state_dict(ours.qa_outputs.state_dict())
    batch = tiny_batch(seed)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    positions = torch.randint(0, 10, (2, 3), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        start, end = inline(**inputs)
        out = ours(**inputs, start_positions=positions[0], end_positions=positions[1])
    return max(excess(start, out.start_logits), excess(end, out.end_logits),
               excess(defs["span_loss"](start, end, positions[0], positions[1]), out.loss))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_span_scorer_and_loss_equal_bert_for_question_answering(seed):
    assert span_excess(CH11, seed) <= 1


@pytest.fixture(scope="module")
def squad_tok(minilm_dir):
    return WordPieceTokenizer.from_file(minilm_dir), load_squad("validation-2articles").examples


def inline_windows(tok, example, max_length, doc_stride, defs=CH11):
    """The notebook's inline_features: windows of one question with the labels of its first answer."""
    question_ids = tok.encode_plain([example.question.lstrip()])[0]
    context = tok.backend.encode(example.context, add_special_tokens=False)
    windows = defs["qa_windows"](question_ids, context.ids, context.offsets, max_length, doc_stride,
                                 tok.cls_token_id, tok.sep_token_id)
    start_char = example.answer_starts[0]
    for w in windows:
        w["start_positions"], w["end_positions"] = defs["answer_tokens"](w["offsets"], start_char,
                                                                         start_char + len(example.answer_texts[0]))
    return windows


def check_windows(defs: dict, tok, examples, max_length: int, doc_stride: int) -> None:
    """Notebook windows (ids, segments, offsets, answer labels) are prepare_qa_features', one for one."""
    package = prepare_qa_features(examples, tok, max_length, doc_stride)
    ours = [w for e in examples for w in inline_windows(tok, e, max_length, doc_stride, defs)]
    assert len(ours) == len(package)
    if max_length < 100:
        assert len(package) > len(examples)  # long contexts were cut into several windows
    for w, feature, offsets in zip(ours, package.features, package.offsets):
        assert w["offsets"] == offsets
        for key in ("input_ids", "token_type_ids", "start_positions", "end_positions"):
            assert w[key] == feature[key], key
    assert any(w["start_positions"] > 0 for w in ours)


@pytest.mark.parametrize("max_length, doc_stride", [(384, 128), (128, 32), (64, 16), (48, 8)])
def test_qa_windows_equal_prepare_qa_features(squad_tok, max_length, doc_stride):
    tok, examples = squad_tok
    check_windows(CH11, tok, random.Random(max_length).sample(examples, 60), max_length, doc_stride)


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


def check_top_spans(defs: dict, window, n_best: int, max_answer_length: int) -> None:
    """Notebook n-best spans are best_spans'; over all starts and ends they agree with the T^2 search."""
    start, end, offsets = window
    ours = defs["top_spans"](start, end, offsets, n_best, max_answer_length)
    assert ours == best_spans(start, end, offsets, n_best, max_answer_length)
    full = defs["top_spans"](start, end, offsets, len(offsets), max_answer_length)
    exhaustive = defs["exhaustive_best"](start, end, offsets, max_answer_length)
    assert full[0][0] == exhaustive[0] and exhaustive in full  # equal scores may tie in another order


@settings(max_examples=150, deadline=None)
@given(windows_with_logits(), st.integers(1, 25), st.integers(1, 12))
def test_top_spans_equal_best_spans(window, n_best, max_answer_length):
    check_top_spans(CH11, window, n_best, max_answer_length)


def fixed_window(seed: int, n: int = 30, n_question: int = 6) -> tuple[list[float], list[float], list]:
    """Like `windows_with_logits`: distinct random scores, question tokens and the final [SEP] without offsets."""
    rng = random.Random(seed)
    offsets = [None] * n_question + [(3 * i, 3 * i + 2) for i in range(n - n_question - 1)] + [None]
    return rng.sample(range(-2000, 2000), n), rng.sample(range(-2000, 2000), n), offsets


def check_best_answers(best_answers, tok, examples) -> None:
    """Answer text per question, the best span over its windows, as postprocess_qa finds it."""
    examples = examples[:40]
    features = prepare_qa_features(examples, tok, 64, 16)
    g = torch.Generator().manual_seed(0)
    start, end = torch.randn(len(features), 64, generator=g), torch.randn(len(features), 64, generator=g)
    ours = best_answers(examples, features.example_index, start.tolist(), end.tolist(), features.offsets)
    assert ours == postprocess_qa(examples, features, start, end)
    assert len(set(features.example_index)) < len(features)  # several windows per question were compared
    no_context = QAFeatures(features.features[:1], [0], [[None] * len(features.offsets[0])])
    assert best_answers(examples[:1], [0], start[:1].tolist(), end[:1].tolist(), no_context.offsets) == \
        postprocess_qa(examples[:1], no_context, start[:1], end[:1]) == {examples[0].id: ""}


def test_best_answers_equal_postprocess_qa(squad_tok):
    check_best_answers(CH11["best_answers"], *squad_tok)


answer_text = st.text(alphabet=st.sampled_from(list("abcThe AN.,;-'\"()!?x1 \t")), max_size=30)


def check_squad_metrics(defs: dict, prediction: str, answers: list[str]) -> None:
    assert defs["normalize"](prediction) == metrics.normalize_answer(prediction)
    assert defs["exact_match"](prediction, answers) == metrics.squad_exact_match(prediction, answers)
    assert defs["token_f1"](prediction, answers) == pytest.approx(metrics.squad_f1(prediction, answers), abs=1e-12)


@settings(max_examples=300, deadline=None)
@given(answer_text, st.lists(answer_text, min_size=1, max_size=3))
def test_squad_normalization_em_and_f1_equal_bertmini(prediction, answers):
    check_squad_metrics(CH11, prediction, answers)


def test_squad_normalization_official_cases():
    normalize = CH11["normalize"]
    assert normalize("The  Broncos.") == "broncos"
    assert normalize("the-end") == "theend"  # punctuation goes first: the article survives
    assert CH11["token_f1"]("in 1754", ["1754"]) == pytest.approx(2 / 3)
    assert CH11["exact_match"]("", ["x"]) == 0.0 and CH11["token_f1"]("", ["x"]) == 0.0


SQUAD_CASES = [  # (prediction, reference answers): case, punctuation, articles, spacing, repeats, several references
    ("The  Broncos.", ["broncos"]), ("Denver Broncos", ["the Denver Broncos!", "Broncos"]), ("in 1754", ["1754"]),
    ("an apple and a banana", ["Apple, banana"]), ("x x y", ["x x y"]), ("1754", ["in 1754", "1754"]),
    ("Panama\tCanal", ["panama canal"]), ("", ["x"])]


def ch11_fails(defs: dict, definition: str, squad_tok) -> bool:
    """Whether the drift checks of `definition` reject `defs`, on fixed inputs."""
    if definition in ("SpanScorer", "span_loss"):
        return span_excess(defs) > BUG
    if definition in ("qa_windows", "answer_tokens"):
        tok, examples = squad_tok
        return fails(check_windows, defs, tok, random.Random(0).sample(examples, 20), 64, 16)
    if definition in ("top_spans", "exhaustive_best"):
        return any(fails(check_top_spans, defs, fixed_window(seed), n_best, max_answer_length)
                   for seed in range(10) for n_best, max_answer_length in [(20, 3), (30, 30)])
    if definition == "best_answers":
        return fails(check_best_answers, defs["best_answers"], *squad_tok)
    return any(fails(check_squad_metrics, defs, prediction, answers) for prediction, answers in SQUAD_CASES)


@pytest.mark.parametrize("definition, old, new", [
    pytest.param("SpanScorer", "start_logits, end_logits = self.qa_outputs(hidden).unbind(-1)",
                 "end_logits, start_logits = self.qa_outputs(hidden).unbind(-1)", id="start-and-end-swapped"),
    pytest.param("SpanScorer", "self.bert(input_ids, attention_mask, token_type_ids)",
                 "self.bert(input_ids, token_type_ids=token_type_ids)", id="padding-mask-dropped"),
    pytest.param("span_loss", "F.cross_entropy(end_logits, end_positions)) / 2",
                 "F.cross_entropy(end_logits, end_positions))", id="summed-not-averaged"),
    pytest.param("span_loss", "F.cross_entropy(end_logits, end_positions)",
                 "F.cross_entropy(end_logits, start_positions)",
                 id="end-scored-against-start"),
    pytest.param("qa_windows", "start += room - doc_stride", "start += doc_stride", id="stride-as-step-not-overlap"),
    pytest.param("qa_windows", "room = max_length - len(question_ids) - 3", "room = max_length - len(question_ids) - 2",
                 id="room-for-only-two-specials"),
    pytest.param("qa_windows", '"token_type_ids": [0] * n_question + [1] * (n_context + 1)',
                 '"token_type_ids": [0] * (n_question - 1) + [1] * (n_context + 2)', id="first-SEP-in-segment-B"),
    pytest.param("answer_tokens", "return start, end", "return start, end + 1", id="end-exclusive"),
    pytest.param("answer_tokens", "return 0, 0", "return -100, -100", id="outside-answer-ignored-not-CLS"),
    pytest.param("top_spans", "s <= e < s + max_answer_length", "e < s + max_answer_length", id="end-before-start"),
    pytest.param("top_spans", "s <= e < s + max_answer_length", "s <= e <= s + max_answer_length",
                 id="max-answer-length-off-by-one"),
    pytest.param("top_spans", "offsets[s][0], offsets[e][1]) for s in starts",
                 "offsets[s][0], offsets[e][0]) for s in starts",
                 id="answer-cut-before-its-last-token"),
    pytest.param("exhaustive_best", "for e in range(s, min(n, s + max_answer_length))",
                 "for e in range(s, min(n, s + max_answer_length + 1))", id="max-answer-length-off-by-one"),
    pytest.param("exhaustive_best", "for e in range(s, min(n, s + max_answer_length))",
                 "for e in range(min(n, s + max_answer_length))", id="end-before-start"),
    pytest.param("best_answers", "(example_index not in best or spans[0][0] > best[example_index][0])",
                 "example_index not in best", id="first-window-wins"),
    pytest.param("best_answers", "e.context[best[i][1]:best[i][2]]", "e.context[best[i][1]:best[i][2] + 1]",
                 id="one-character-too-many"),
    pytest.param("normalize", r"\b(a|an|the)\b", "(a|an|the)", id="articles-inside-words-removed"),
    pytest.param("normalize", "text.lower()", "text", id="case-kept"),
    pytest.param("normalize", '" ".join(text.split())', "text.strip()", id="whitespace-not-squeezed"),
    pytest.param("exact_match", "normalize(prediction) == normalize(a)", "prediction == a", id="unnormalized"),
    pytest.param("exact_match", "for a in answers))", "for a in answers[:1]))", id="first-reference-only"),
    pytest.param("token_f1", "sum((Counter(pred_tokens) & Counter(gold_tokens)).values())",
                 "len(set(pred_tokens) & set(gold_tokens))", id="token-sets-not-bags"),
    pytest.param("token_f1", "return max(f1(a) for a in answers)", "return sum(f1(a) for a in answers) / len(answers)",
                 id="mean-over-references"),
])
def test_ch11_drift_test_catches_mutants(definition, old, new, tmp_path, squad_tok):
    assert ch11_fails(mutated(NB11, CH11_NAMES, definition, old, new, tmp_path), definition, squad_tok)
