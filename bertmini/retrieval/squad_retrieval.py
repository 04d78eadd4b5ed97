"""A passage-retrieval benchmark from SQuAD v1.1 dev (Rajpurkar et al. 2016), offline (chapter 14).

Each question was written by a crowdworker reading one paragraph, so that paragraph is its one gold
passage, and every paragraph of the dev set is a candidate: 10,570 questions over 2,067 paragraphs in 48
articles. This is the "open" setting of Chen et al. 2017 (§5) shrunk to one file. Questions were written
while looking at the paragraph, so they share many of its words: a setting friendly to BM25.
The article split is the one ``finetune --task squad`` uses (same eval_fraction and seed), so the
cross-encoder is trained on 38 articles and every system is also scored on the 10 held-out ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Sequence

from bertmini.errors import InputError
from bertmini.finetuning.examples import QAExample
from bertmini.finetuning.qa import split_squad_by_article
from bertmini.finetuning.tasks import SPLIT_SEED
from bertmini.training.yaml_config import load_config

__all__ = ["RetrievalSet", "from_squad", "squad_article_split"]


@dataclass
class RetrievalSet:
    """Passages and queries; ``gold[q]`` is the id (index into ``passages``) of query q's gold passage."""
    passages: list[str]
    passage_titles: list[str]
    queries: list[str]
    gold: list[int]
    query_titles: list[str]

    def __post_init__(self) -> None:
        if not self.passages:
            raise InputError("a retrieval set needs passages: got none")
        if not len(self.queries) == len(self.gold) == len(self.query_titles):
            raise InputError(f"queries, gold and query_titles must have one entry per query, got "
                             f"{len(self.queries)}, {len(self.gold)} and {len(self.query_titles)}")

    @property
    def titles(self) -> list[str]:
        return list(dict.fromkeys(self.passage_titles))

    def subset(self, titles: Collection[str]) -> RetrievalSet:
        """Only these articles' passages and questions, passage ids renumbered from 0."""
        keep = [i for i, t in enumerate(self.passage_titles) if t in titles]
        if not keep:
            raise InputError(f"none of the titles {sorted(titles)[:3]}... is an article of this set")
        new_id = {old: new for new, old in enumerate(keep)}
        rows = [q for q, t in enumerate(self.query_titles) if t in titles]
        return RetrievalSet([self.passages[i] for i in keep], [self.passage_titles[i] for i in keep],
                            [self.queries[q] for q in rows], [new_id[self.gold[q]] for q in rows],
                            [self.query_titles[q] for q in rows])

    def sample_queries(self, rows: Sequence[int]) -> RetrievalSet:
        """The same passages with only the queries ``rows`` (e.g. a random sample to re-rank)."""
        return RetrievalSet(self.passages, self.passage_titles, [self.queries[q] for q in rows],
                            [self.gold[q] for q in rows], [self.query_titles[q] for q in rows])


def from_squad(examples: Sequence[QAExample]) -> RetrievalSet:
    """One passage per distinct (title, paragraph), in file order; each question's gold is its paragraph."""
    ids: dict[tuple[str, str], int] = {}
    for e in examples:
        ids.setdefault((e.title, e.context), len(ids))
    passages = list(ids)
    return RetrievalSet([c for _, c in passages], [t for t, _ in passages], [e.question for e in examples],
                        [ids[e.title, e.context] for e in examples], [e.title for e in examples])


def squad_article_split(examples: Sequence[QAExample]) -> tuple[list[str], list[str]]:
    """``(train titles, held-out titles)``: the split of ``finetune --task squad`` (the shipped
    finetune_squad config's eval_fraction, the fine-tuning split seed)."""
    fraction = float(load_config("finetune_squad").get("eval_fraction", 0.1))
    train, held_out = split_squad_by_article(examples, fraction, SPLIT_SEED)
    return sorted({e.title for e in train}), sorted({e.title for e in held_out})
