"""The task data sets from the Hugging Face hub, through ``datasets``, as the same examples as the local files.

The loaders of :mod:`bertmini.finetuning.loaders` come here with ``hub=True`` (or a ``datasets`` builder such
as ``"json"`` with its keyword arguments), and by themselves when there is no local data dir (Colab). Each
data set's columns are checked against its schema, and its class labels are mapped to ours by name.
"""
from __future__ import annotations

from typing import Any, Callable

from bertmini.errors import DataFormatError
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

__all__ = ["HUB_NAMES", "HUB_COLUMNS", "load_from_hub"]


HUB_NAMES = {"sst2": ("nyu-mll/glue", "sst2"), "trec": ("CogComp/trec", None),
             "sms_spam": ("ucirvine/sms_spam", None), "wnut_17": ("leondz/wnut_17", None),
             "squad": ("rajpurkar/squad", None)}
# The columns each hub data set must have (its schema), read into the same examples as the local files.
HUB_COLUMNS = {"sst2": ["sentence", "label"], "trec": ["text", "coarse_label"], "sms_spam": ["sms", "label"],
               "wnut_17": ["tokens", "ner_tags"], "squad": ["id", "title", "context", "question", "answers"]}


def _class_ids(dataset: Any, column: str, names: list[str]) -> Callable[[Any], int]:
    """Map a label column (ClassLabel ids, plain ids or strings) to ids into ``names``, by name."""
    feature = dataset.features[column]
    hub_names = getattr(getattr(feature, "feature", feature), "names", None)  # Sequence(ClassLabel) for NER
    if hub_names is not None and sorted(hub_names) != sorted(names):
        raise DataFormatError(f"column {column!r} has labels {hub_names}; expected {names}")

    def convert(value: Any) -> int:
        if hub_names is not None and isinstance(value, int) and 0 <= value < len(hub_names):
            value = hub_names[value]  # an id outside (GLUE hides test labels as -1) fails below
        if value in names:
            return names.index(value)
        if hub_names is None and isinstance(value, int) and 0 <= value < len(names):
            return value
        raise DataFormatError(f"column {column!r}: unknown label {value!r}; allowed: {names} or their ids")
    return convert


_HUB_TEXT = {"sst2": ("sentence", "label", SST2_LABELS), "trec": ("text", "coarse_label", TREC_LABELS),
             "sms_spam": ("sms", "label", SMS_LABELS)}


def load_from_hub(task: str, hub: bool | str, split: str, hf_kwargs: dict[str, Any]) -> TaskData:
    """Load ``task`` with ``datasets.load_dataset`` (hub name, or a local builder like "json") into our examples."""
    import datasets  # imported lazily: the offline loaders do not need it

    path, name = HUB_NAMES[task]
    if hub not in (True, False):  # False: no local copy, the default hub data set
        path, name = hub, (name if hub == path else None)
    if name is not None:
        hf_kwargs.setdefault("name", name)
    ds = datasets.load_dataset(path, split=split, **hf_kwargs)
    source = f"datasets:{path}/{split}"
    missing = [c for c in HUB_COLUMNS[task] if c not in ds.column_names]
    if missing:
        raise DataFormatError(f"{source}: expected columns {HUB_COLUMNS[task]}, found {ds.column_names} "
                              f"(missing {missing})")
    if task in _HUB_TEXT:
        text_col, label_col, names = _HUB_TEXT[task]
        to_id = _class_ids(ds, label_col, names)
        examples = [TextExample(row[text_col].strip(), to_id(row[label_col]), None, f"{source}:{i}")
                    for i, row in enumerate(ds)]
        return TaskData(examples, names, 0, source)
    if task == "wnut_17":
        to_id = _class_ids(ds, "ner_tags", WNUT_LABELS)
        examples = [TokenExample(list(row["tokens"]), [to_id(t) for t in row["ner_tags"]], f"{source}:{i}")
                    for i, row in enumerate(ds)]
        return TaskData(examples, WNUT_LABELS, 0, source)
    examples = [QAExample(row["id"], row["title"], row["context"], row["question"], list(row["answers"]["text"]),
                          list(row["answers"]["answer_start"])) for row in ds]
    return TaskData(examples, [], 0, source)
