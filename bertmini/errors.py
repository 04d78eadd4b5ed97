"""Bad input, one clear message: the project's error types, the shared checks and readers that raise them,
and how the commands report them.

Every message says what is wrong, where (file and line, key or option), what was expected and what was
got, e.g. ``train.tsv: line 5: expected 2 tab-separated fields`` or ``TrainConfig.lr: expected a number > 0,
got 'abc'``. The commands print it as one ``error: ...`` line and exit with status 2
(:func:`report`); anything else (a bug) keeps its traceback.
"""
from __future__ import annotations

import codecs
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

__all__ = ["InputError", "DataFormatError", "ConfigError", "InputKeyError", "INPUT_ERRORS", "message", "report",
           "require", "is_int", "is_number", "Bounds", "integer", "number", "read_bytes", "read_text", "read_lines",
           "read_tsv", "parse_json", "read_json"]


class InputError(ValueError):
    """Bad user input (a file, an option, a config value); the message names what, where, expected and got."""


class DataFormatError(InputError):
    """A data file does not have the expected format (the message names file, line, expected and got)."""


class ConfigError(InputError):
    """An invalid config file or override; the message names the file and the key."""


class InputKeyError(KeyError, InputError):
    """An unknown or missing name in the input (a split, a column, a checkpoint key). Still a KeyError for
    callers that catch one, but printed as its message, without KeyError's quotes."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# What the commands turn into `error: ...` + exit 2. ValueError covers InputError and the checks of the
# libraries we call on user input (json, yaml, torch.device); OSError covers unreadable or missing paths.
INPUT_ERRORS = (ValueError, OSError)


def message(err: BaseException) -> str:
    """The error as one line: OS errors as ``path: reason``, multi-line messages joined by "; "."""
    if isinstance(err, OSError) and err.strerror and err.filename:
        text = f"{err.filename}: {err.strerror}"
    else:
        text = str(err)
    return "; ".join(line.strip() for line in text.splitlines() if line.strip()) or type(err).__name__


def report(err: BaseException) -> int:
    """Print ``error: <message>`` on stderr and return the commands' exit status for bad input, 2."""
    print(f"error: {message(err)}", file=sys.stderr)
    return 2


# ---- checks ------------------------------------------------------------------------------------
def require(ok: bool, where: str, expected: str, value: Any, error: type[Exception] = InputError) -> None:
    """Raise ``error("<where>: expected <expected>, got <value>")`` unless ``ok``."""
    if not ok:
        raise error(f"{where}: expected {expected}, got {value!r}")


def is_int(value: Any, low: int | None = None) -> bool:
    """An int (not a bool: ``True`` is no count), at least ``low`` when given."""
    return isinstance(value, int) and not isinstance(value, bool) and (low is None or value >= low)


def is_number(value: Any, low: float | None = None, high: float | None = None) -> bool:
    """An int or float (not a bool, not NaN) in ``[low, high]`` where given."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
            and (low is None or value >= low) and (high is None or value <= high))


@dataclass(frozen=True)
class Bounds:
    """The valid values of a numeric setting, which also say themselves in messages: ``an integer >= 1``,
    ``a number in (0, 1]``, ``null or a number > 0``."""
    kind: str  # "integer" or "number"
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself is excluded
    high_open: bool = False
    optional: bool = False  # None is allowed too

    def ok(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if not (is_int(value) if self.kind == "integer" else is_number(value)):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        article = "an" if self.kind == "integer" else "a"
        if self.low is not None and self.high is not None:
            text = (f"{article} {self.kind} in {'(' if self.low_open else '['}{self.low:g}, "
                    f"{self.high:g}{')' if self.high_open else ']'}")
        elif self.low is not None:
            text = f"{article} {self.kind} {'>' if self.low_open else '>='} {self.low:g}"
        elif self.high is not None:
            text = f"{article} {self.kind} {'<' if self.high_open else '<='} {self.high:g}"
        else:
            text = f"{article} {self.kind}"
        return f"null or {text}" if self.optional else text

    def check(self, value: Any, where: str, error: type[Exception] = InputError) -> None:
        require(self.ok(value), where, str(self), value, error)


def integer(low: int | None = None, high: int | None = None, optional: bool = False) -> Bounds:
    """Integers in ``[low, high]``: ``integer(1)`` is "an integer >= 1"."""
    return Bounds("integer", low, high, optional=optional)


def number(low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False,
           optional: bool = False) -> Bounds:
    """Numbers between ``low`` and ``high``: ``number(0, low_open=True)`` is "a number > 0"."""
    return Bounds("number", low, high, low_open, high_open, optional)


# ---- reading files -----------------------------------------------------------------------------
def _unreadable(path: Path, err: OSError) -> OSError:
    """The OSError of a failed read, reworded to name the path and what was expected there."""
    if isinstance(err, IsADirectoryError) or path.is_dir():
        return IsADirectoryError(f"{path}: is a directory, expected a file")
    if isinstance(err, FileNotFoundError):
        return FileNotFoundError(f"{path}: no such file")
    return type(err)(f"{path}: cannot read it: {err.strerror or err}")


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes; a missing file, a folder or an unreadable file raises an OSError naming the path."""
    path = Path(path)
    try:
        return path.read_bytes()
    except OSError as err:
        raise _unreadable(path, err) from None


def _not_utf8(path: Path, line: int, raw: bytes, position: int) -> DataFormatError:
    """``path: line N: not UTF-8 text (byte 0xe9 at column 4)``: ``raw`` is line N, ``position`` its bad byte."""
    column = len(raw[:position].decode("utf-8", errors="replace")) + 1
    hint = "; a UTF-16 file? save it as UTF-8" if raw[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else ""
    return DataFormatError(f"{path}: line {line}: not UTF-8 text (byte 0x{raw[position]:02x} at column {column}"
                           f"{hint})")


def read_text(path: str | Path) -> str:
    """A whole UTF-8 text file (a leading byte-order mark dropped); bad bytes raise a
    :class:`DataFormatError` naming file, line and column."""
    path = Path(path)
    raw = read_bytes(path).removeprefix(codecs.BOM_UTF8)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        start = raw.rfind(b"\n", 0, err.start) + 1
        end = raw.find(b"\n", err.start)
        line = raw[start:end if end >= 0 else len(raw)]
        raise _not_utf8(path, raw.count(b"\n", 0, start) + 1, line, err.start - start) from None


def read_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a UTF-8 text file, streamed, split at "\\n" only (a line's own \\x0b, \\x1c
    or \\u2028 stay in it) and without the line end ("\\n" or "\\r\\n"); no piece follows a final newline."""
    path = Path(path)
    try:
        handle = path.open("rb")
    except OSError as err:
        raise _unreadable(path, err) from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            raw = raw.removesuffix(b"\n").removesuffix(b"\r")
            if number == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise _not_utf8(path, number, raw, err.start) from None


def _reject(path: Path, line: int, expected: str, got: str) -> None:
    raise DataFormatError(f"{path}: line {line}: expected {expected}, got {got[:80]!r}")


def read_tsv(path: str | Path, columns: Sequence[str],
             bad: Callable[[int, str, str], None] | None = None) -> Iterator[tuple[int, list[str]]]:
    """``(line number, values of columns)`` per row of a GLUE-style TSV: a header row naming the columns,
    tab-separated fields, no quoting. A row with the wrong number of fields goes to ``bad(line, expected,
    got)`` (default: a :class:`DataFormatError` naming file and line); a row ``bad`` returns from is skipped."""
    path = Path(path)
    lines = read_lines(path)
    first = next(lines, None)
    if first is None:
        raise DataFormatError(f"{path}: the file is empty; expected a header row with column(s) {list(columns)}, "
                              "then one row per example")
    header = first[1].split("\t")
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataFormatError(f"{path}: line 1: header lacks column(s) {missing}; got header {header}")
    cols = [header.index(c) for c in columns]
    for number, line in lines:
        fields = line.split("\t")
        if len(fields) != len(header):
            (bad or partial(_reject, path))(number, f"{len(header)} tab-separated fields ({', '.join(header)})",
                                            f"{len(fields)} field(s): {line}")
            continue
        yield number, [fields[c] for c in cols]


def parse_json(text: str, path: str | Path, line: int = 1) -> Any:
    """``json.loads(text)``, where ``text`` starts at ``line`` of ``path``; invalid JSON raises a
    :class:`DataFormatError` naming file, line and column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataFormatError(f"{path}: line {line + err.lineno - 1}: invalid JSON at column {err.colno}: "
                              f"{err.msg}") from None


_JSON_NAMES = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number",
               bool: "a boolean", type(None): "null"}


def read_json(path: str | Path, expected: type | None = None) -> Any:
    """A UTF-8 JSON file; invalid JSON, or a top-level value that is not an ``expected`` (e.g. ``dict``),
    raises a :class:`DataFormatError` naming the file."""
    data = parse_json(read_text(path), path)
    if expected is not None and not isinstance(data, expected):
        raise DataFormatError(f"{path}: expected a JSON file holding {_JSON_NAMES[expected]}, got "
                              f"{_JSON_NAMES.get(type(data), type(data).__name__)}")
    return data
