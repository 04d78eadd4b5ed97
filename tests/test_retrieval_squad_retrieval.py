"""The SQuAD retrieval benchmark: passages, gold ids, article subsets and the fine-tuning split."""
from __future__ import annotations

import pytest

from bertmini.errors import InputError
from bertmini.finetuning.loaders import load_squad
from bertmini.finetuning.tasks import load_splits
from bertmini.retrieval.squad_retrieval import RetrievalSet, from_squad, squad_article_split


@pytest.fixture(scope="module")
def dev():
    return load_squad("validation").examples


def test_dev_has_10570_questions_over_2067_paragraphs(dev):
    data = from_squad(dev)
    assert (len(data.queries), len(data.passages), len(data.titles)) == (10_570, 2_067, 48)
    assert all(data.passages[g] == e.context and data.passage_titles[g] == e.title for g, e in zip(data.gold, dev))


def test_the_split_is_finetune_squads(dev):
    train, held_out = squad_article_split(dev)
    splits = load_splits("squad", None, False, 0.2, False)  # finetune_squad.yaml's eval_fraction
    assert (len(train), len(held_out)) == (38, 10)
    assert set(held_out) == {e.title for e in splits.eval} and set(train) == {e.title for e in splits.train}


def test_subset_renumbers_passages_and_keeps_gold(dev):
    data = from_squad(dev)
    titles = set(data.titles[3:5])
    part = data.subset(titles)
    assert set(part.passage_titles) == titles and set(part.query_titles) == titles
    assert len(part.queries) == sum(t in titles for t in data.query_titles)
    assert all(part.passages[g] == dev[[e.question for e in dev].index(q)].context
               for q, g in zip(part.queries[:50], part.gold[:50]))
    sample = part.sample_queries([2, 0])
    assert sample.queries == [part.queries[2], part.queries[0]] and sample.passages is part.passages


def test_bad_sets_are_refused():
    with pytest.raises(InputError, match="needs passages: got none"):
        RetrievalSet([], [], [], [], [])
    with pytest.raises(InputError, match="one entry per query, got 1, 0 and 1"):
        RetrievalSet(["p"], ["t"], ["q"], [], ["t"])
    with pytest.raises(InputError, match="is an article of this set"):
        RetrievalSet(["p"], ["t"], ["q"], [0], ["t"]).subset({"other"})
