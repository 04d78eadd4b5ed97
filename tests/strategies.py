"""Hypothesis strategies shared by the tests: the bytes of data files, good, bad and in between.

A loader must either return examples or raise the project's error naming the file, whatever the file
holds, so :func:`file_bytes` takes rows in a loader's own format and then, or not, damages them: another
encoding (latin-1, UTF-16), CRLF line ends, a cut at a random byte, random bytes spliced in, or only
random bytes, or nothing at all.
"""
from __future__ import annotations

import json

from hypothesis import strategies as st

# Characters that trip readers: tabs and line breaks inside fields, non-ASCII (not latin-1 either),
# the separators str.splitlines breaks on but "\n"-splitting must not, a byte-order mark.
TRICKY = "\t\r\x0b\x1c\u2028\u00e9\u4e2d\ufeff "
words = st.text(alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "Zs")) | st.sampled_from(TRICKY),
                max_size=12)
ENCODINGS = ("utf-8", "latin-1", "utf-16")


def _encode(text: str, encoding: str) -> bytes:
    return text.encode(encoding, errors="replace")


@st.composite
def file_bytes(draw: st.DrawFn, rows: st.SearchStrategy[list[str]]) -> bytes:
    """A text file of ``rows`` (one per line), possibly damaged; sometimes only random bytes, or empty."""
    kind = draw(st.sampled_from(["rows", "rows", "rows", "random", "empty"]))
    if kind == "random":
        return draw(st.binary(max_size=300))
    if kind == "empty":
        return b""
    text = "".join(row + draw(st.sampled_from(["\n", "\n", "\r\n"])) for row in draw(rows))
    raw = _encode(text, draw(st.sampled_from(ENCODINGS)))
    damage = draw(st.sampled_from(["none", "none", "cut", "splice"]))
    if damage == "cut" and raw:
        raw = raw[:draw(st.integers(0, len(raw) - 1))]
    elif damage == "splice":
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=8)) + raw[at:]
    return raw


def tsv_rows(header: list[str], values: list[str]) -> st.SearchStrategy[list[str]]:
    """A header (usually ``header``) then rows of 0..4 tab-separated fields, often from ``values``."""
    field = st.sampled_from(values) | words
    row = st.lists(field, min_size=0, max_size=4).map("\t".join)
    head = st.sampled_from(["\t".join(header), "\t".join(header), "\t".join(reversed(header)), "text\tlabel"])
    return st.tuples(head, st.lists(row, max_size=8)).map(lambda t: [t[0], *t[1]])


def trec_rows(labels: list[str]) -> st.SearchStrategy[list[str]]:
    """``COARSE:fine question`` lines, some with unknown labels or no question."""
    good = st.tuples(st.sampled_from(labels), words, words).map(lambda t: f"{t[0]}:x{t[1]} {t[2]}")
    return st.lists(good | words, max_size=8)


def sms_rows(labels: list[str]) -> st.SearchStrategy[list[str]]:
    """``label<TAB>text`` lines, some without a tab or with an unknown label."""
    good = st.tuples(st.sampled_from([*labels, "Spam"]), words).map("\t".join)
    return st.lists(good | words, max_size=8)


def conll_rows(tags: list[str]) -> st.SearchStrategy[list[str]]:
    """``token<TAB>tag`` lines and blank separators, some with too many or too few fields."""
    good = st.tuples(words, st.sampled_from(tags)).map("\t".join)
    return st.lists(good | st.just("") | st.just("\t") | words, max_size=12)


SQUAD_KEYS = ["version", "data", "title", "paragraphs", "context", "qas", "id", "question", "answers", "text",
              "answer_start"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 50) | words,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(SQUAD_KEYS) | words, inner,
                                                                max_size=4),
    max_leaves=25,
)


@st.composite
def squad_documents(draw: st.DrawFn) -> list[str]:
    """One-line SQuAD JSON: a well-formed article with some keys replaced by random JSON, or any JSON."""
    if draw(st.booleans()):
        return [json.dumps(draw(json_values))]
    context = draw(words)
    start = draw(st.integers(0, len(context)))
    answer = {"text": context[start:start + draw(st.integers(0, 4))], "answer_start": start}
    qa = {"id": "q1", "question": draw(words), "answers": [answer]}
    doc = {"version": "1.1", "data": [{"title": "T", "paragraphs": [{"context": context, "qas": [qa]}]}]}
    for node, key in draw(st.lists(st.sampled_from([(qa, "id"), (qa, "answers"), (answer, "answer_start"),
                                                    (answer, "text"), (doc, "data")]), max_size=2)):
        node[key] = draw(json_values)
    return [json.dumps(doc)]


def jsonl_rows(keys: list[str]) -> st.SearchStrategy[list[str]]:
    """JSON lines: objects with the wanted keys, other JSON, or broken JSON."""
    obj = st.dictionaries(st.sampled_from(keys), words | st.integers(), min_size=0, max_size=len(keys))
    return st.lists(obj.map(json.dumps) | json_values.map(json.dumps) | words, max_size=6)
