"""What the task loaders return: one example type per task family, and the label names.

Label orders follow the Hugging Face data sets, so label ids agree between the local files and the hub.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

__all__ = ["TextExample", "TokenExample", "QAExample", "TaskData", "SST2_LABELS", "TREC_LABELS", "SMS_LABELS",
           "WNUT_LABELS"]

SST2_LABELS = ["negative", "positive"]
TREC_LABELS = ["ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"]
SMS_LABELS = ["ham", "spam"]
WNUT_LABELS = ["O", "B-corporation", "I-corporation", "B-creative-work", "I-creative-work", "B-group",
               "I-group", "B-location", "I-location", "B-person", "I-person", "B-product", "I-product"]


@dataclass(frozen=True)
class TextExample:
    """One (sentence or sentence-pair) classification example; ``label`` indexes ``TaskData.label_names``."""
    text_a: str
    label: int
    text_b: str | None = None
    guid: str = ""


@dataclass(frozen=True)
class TokenExample:
    """One NER sentence: words and one tag id per word."""
    tokens: list[str]
    tags: list[int]
    guid: str = ""


@dataclass(frozen=True)
class QAExample:
    """One SQuAD question; ``answer_starts`` are character offsets into ``context``."""
    id: str
    title: str
    context: str
    question: str
    answer_texts: list[str]
    answer_starts: list[int]


@dataclass
class TaskData:
    """Examples, label names (ids index them), rows skipped with ``skip_bad`` and why, and the source."""
    examples: list
    label_names: list[str]
    skipped: int = 0
    source: str = ""
    errors: list[str] = field(default_factory=list, repr=False)

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator:
        return iter(self.examples)

    def skip_summary(self) -> str | None:
        """``skipped 3 malformed rows in train.tsv (first: line 5: ...)``, or None when nothing was skipped."""
        if not self.skipped:
            return None
        first = self.errors[0].removeprefix(f"{self.source}: ") if self.errors else "?"
        rows = "row" if self.skipped == 1 else "rows"
        return f"skipped {self.skipped} malformed {rows} in {Path(self.source).name} (first: {first})"
