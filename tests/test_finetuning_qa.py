"""SQuAD preprocessing (sliding windows, answer token positions) and postprocessing (best span)."""
from __future__ import annotations

from collections import defaultdict

import pytest

from bertmini.finetuning import (
    QAExample,
    QAFeatures,
    answer_token_span,
    best_spans,
    load_squad,
    pad_collate,
    postprocess_qa,
    prepare_qa_features,
)
from bertmini.finetuning.metrics import squad_scores

MAX_LENGTH, STRIDE = 96, 32


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    transformers = pytest.importorskip("transformers")
    return transformers.BertTokenizerFast.from_pretrained(str(minilm_dir))


@pytest.fixture(scope="module")
def squad(tokenizer):
    examples = load_squad("validation-2articles").examples[::20]  # 53 questions from both articles
    return examples, prepare_qa_features(examples, tokenizer, max_length=MAX_LENGTH, doc_stride=STRIDE)


#            [CLS] q     [SEP] "Bob" "went" "to"    "Rome"   "." [SEP]
OFFSETS = [None, None, None, (0, 3), (4, 8), (9, 11), (12, 16), (16, 17), None]
CONTEXT = "Bob went to Rome."


@pytest.mark.parametrize("chars, tokens", [
    ((12, 16), (6, 6)),     # "Rome"
    ((4, 16), (4, 6)),      # "went to Rome"
    ((13, 16), (6, 6)),     # starts inside a token: that token
    ((0, 17), (3, 7)),
])
def test_answer_token_span(chars, tokens):
    assert answer_token_span(OFFSETS, *chars) == tokens


def test_answer_outside_window_points_at_cls():
    window = [None, None, (4, 8), (9, 11), None]  # the window starts at "went"
    assert answer_token_span(window, 0, 3) == (0, 0)     # "Bob" is before it
    assert answer_token_span(window, 4, 16) == (0, 0)    # "went to Rome" runs past its end
    assert answer_token_span([None, None], 0, 1) == (0, 0)


def test_windows_overlap_by_doc_stride_and_cover_the_context(squad, tokenizer):
    examples, features = squad
    assert len(features) > len(examples)  # long contexts were split
    windows = defaultdict(list)
    for f, index in enumerate(features.example_index):
        windows[index].append(f)
    assert sorted(windows) == list(range(len(examples)))
    for index, fs in windows.items():
        contexts = [[tok for tok, off in zip(features[f]["input_ids"], features.offsets[f]) if off is not None]
                    for f in fs]
        for f in fs:
            ids, types = features[f]["input_ids"], features[f]["token_type_ids"]
            assert len(ids) <= MAX_LENGTH and ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
            assert all(t == 1 for t, o in zip(types, features.offsets[f]) if o is not None)
        for before, after in zip(contexts, contexts[1:]):
            assert before[-STRIDE:] == after[:STRIDE]  # HF meaning of stride: shared tokens
        spans = [o for f in fs for o in features.offsets[f] if o is not None]
        full = tokenizer(examples[index].context, return_offsets_mapping=True)["offset_mapping"][1:-1]
        assert sorted(set(spans)) == sorted(set(map(tuple, full)))


def test_training_targets_cover_the_answer(squad):
    examples, features = squad
    found, exact = set(), 0
    for f, feature in enumerate(features.features):
        example, offsets = examples[features.example_index[f]], features.offsets[f]
        start, end = feature["start_positions"], feature["end_positions"]
        if (start, end) == (0, 0):
            continue
        found.add(features.example_index[f])
        text = example.context[offsets[start][0]:offsets[end][1]]
        assert example.answer_texts[0] in text and start <= end
        exact += text == example.answer_texts[0]
    assert found == set(range(len(examples)))  # every answer fits in some window
    assert exact >= 0.95 * len(found)          # the rest differ by a partial word ("gold" in "golden")
    assert any(f["start_positions"] == 0 for f in features.features)
    batch = pad_collate(features.features[:4], pad_token_id=0)
    assert batch["start_positions"].shape == (4,) and batch["input_ids"].shape[0] == 4


def test_postprocess_with_oracle_logits_recovers_answers(squad):
    examples, features = squad
    start_logits = [[0.0] * MAX_LENGTH for _ in features.features]  # padded to the batch width
    end_logits = [[0.0] * MAX_LENGTH for _ in features.features]
    for f, feature in enumerate(features.features):
        start_logits[f][feature["start_positions"]] += 10.0
        end_logits[f][feature["end_positions"]] += 10.0
    predictions = postprocess_qa(examples, features, start_logits, end_logits)
    assert set(predictions) == {e.id for e in examples}
    scores = squad_scores(predictions, {e.id: e.answer_texts for e in examples})
    assert scores["exact_match"] >= 95.0 and scores["f1"] >= 97.0
    with pytest.raises(ValueError, match=rf"got 1 start and 1 end logit rows for {len(features)} features"):
        postprocess_qa(examples, features, start_logits[:1], end_logits[:1])
    with pytest.raises(ValueError, match=r"features refer to example 52 but only 10 examples were given"):
        postprocess_qa(examples[:10], features, start_logits, end_logits)


def test_best_spans_rules():
    start = [9.0, 8.0, 0, 0, 1.0, 3.0, 2.0, 0, 0]   # [CLS] and a question token score highest
    end = [9.0, 0, 0, 0, 0.5, 0, 2.5, 1.0, 0]
    spans = best_spans(start, end, OFFSETS, n_best=20, max_answer_length=30)
    assert spans[0] == (5.5, 9, 16)                 # "to Rome"; (start 6, end 4) is not allowed
    assert all(s <= e for _, s, e in spans) and all(a[0] >= b[0] for a, b in zip(spans, spans[1:]))
    assert best_spans(start, end, OFFSETS, max_answer_length=1)[0] == (4.5, 12, 16)   # one token: "Rome"
    assert best_spans(start, end, OFFSETS, n_best=2) == []   # the top-2 starts are [CLS] and a question token
    assert best_spans(start, end, OFFSETS, n_best=3) == [(5.5, 9, 16), (4.0, 9, 17)]
    assert best_spans([1.0] * 3, [1.0] * 3, [None, None, None]) == []


def test_postprocess_picks_best_window():
    example = QAExample("q", "T", CONTEXT, "Where?", ["Rome"], [12])
    features = QAFeatures([{}, {}, {}], [0, 0, 1], [OFFSETS, OFFSETS, [None] * len(OFFSETS)])
    low = [0.0, 0, 0, 1.0, 0, 0, 0, 0, 0]       # "Bob", score 2
    high = [0.0, 0, 0, 0, 0, 0, 3.0, 0, 0]      # "Rome", score 6
    nothing = QAExample("r", "T", CONTEXT, "Why?", ["Bob"], [0])
    predictions = postprocess_qa([example, nothing], features, [low, high, high], [low, high, high])
    assert predictions == {"q": "Rome", "r": ""}  # no valid span in r's only window


def test_tokenizer_without_sequence_ids_is_rejected():
    def plain(*args, **kwargs):
        return {"input_ids": [[1]], "overflow_to_sample_mapping": [0], "offset_mapping": [[(0, 0)]]}
    with pytest.raises(TypeError, match=r"function output has no sequence_ids\(\)"):
        prepare_qa_features([QAExample("q", "T", "c", "?", ["c"], [0])], plain)
