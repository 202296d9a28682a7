"""Per-format record readers: JSON lines and arrays (plain or gzip), Parquet, CSV/TSV, record by record.

Each yields ``(place, record)``: a record that cannot be parsed comes as an :class:`Unparsed`
holding its drop reason, so the callers (bpo.readers, bpo.plain_records) count it, located,
instead of failing. A file unreadable as a whole is a :class:`ReadError` naming it.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow.parquet as pq

log = logging.getLogger("bpo.readers")

JSON_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")
PARQUET_SUFFIXES = (".parquet",)
SUPPORTED_SUFFIXES = JSON_SUFFIXES + PARQUET_SUFFIXES

# Malformed records logged with their file and line, per reason, before going quiet.
EXAMPLES_PER_REASON = 3


class ReadError(RuntimeError):
    """A dataset could not be read at all (missing file, not JSON/Parquet, hub failure)."""


def suffix_of(path: Path) -> str | None:
    """The supported suffix ``path`` ends with (the longest), or None."""
    name = path.name.lower()
    return next((s for s in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True) if name.endswith(s)), None)


class Unparsed:
    """What a reader yields in place of a record it cannot parse: the drop reason."""

    __slots__ = ("reason",)

    def __init__(self, reason: str):
        self.reason = reason


_INVALID = Unparsed("malformed_invalid_json")  # not JSON
_NOT_UTF8 = Unparsed("malformed_not_utf8")  # bytes that are not UTF-8 (or a JSON escape of a lone surrogate)
_TOO_DEEP = Unparsed("malformed_too_deep")  # nested deeper than the JSON parser goes
_TRUNCATED = Unparsed("malformed_truncated")  # the cut-off last line of a truncated .gz
_WRONG_CELLS = Unparsed("malformed_cell_count")  # a .csv/.tsv row with more or fewer cells than the header

_BOM = b"\xef\xbb\xbf"
# A JSON escape of a UTF-16 surrogate: only a lone one survives decoding, and it is no text.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# What matters to find the end of a JSON value without parsing it: escapes, quotes, brackets, commas.
_JSON_TOKEN = re.compile(r'\\.|["\[\]{},]', re.S)


def _gunzip(data: bytes) -> tuple[bytes, bool]:
    """The content of a (multi-member) gzip file, and whether it was cut off before its end."""
    out, rest = [], data
    while rest:
        d = zlib.decompressobj(wbits=31)
        try:
            out.append(d.decompress(rest))
        except zlib.error as exc:
            if out:  # trailing garbage after a complete member, as gzip itself tolerates
                break
            raise ReadError(f"not a gzip file ({exc})") from None
        if not d.eof:
            return b"".join(out), True
        rest = d.unused_data
    return b"".join(out), False


def _read_text(path: Path) -> tuple[str, bool]:
    """The text of a file and whether it is a truncated .gz. Bytes that are not UTF-8 are kept as
    lone surrogates (``surrogateescape``), so they spoil only the records holding them; a BOM goes."""
    try:
        data = path.read_bytes()
        truncated = False
        if path.name.lower().endswith(".gz"):
            data, truncated = _gunzip(data)
    except ReadError as exc:
        raise ReadError(f"{path}: unreadable: {exc}") from None
    except OSError as exc:
        raise ReadError(f"{path}: unreadable: {type(exc).__name__}: {exc.strerror or exc}") from None
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    return data.decode("utf-8", "surrogateescape"), truncated


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _parse(text: str) -> object:
    """One JSON value, or the marker of why it is not a usable record."""
    if not _is_text(text):
        return _NOT_UTF8
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return _INVALID
    except RecursionError:
        return _TOO_DEEP
    return _NOT_UTF8 if _SURROGATE_ESCAPE.search(text) and not _holds_text(value) else value


def _holds_text(value) -> bool:
    """Whether every string in a decoded value is encodable text (no lone surrogate)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, RecursionError):
        return False
    return True


def _array_items(text: str, path: Path) -> Iterator[str]:
    """The text of each item of the JSON array ``text``, found by bracket depth (strings skipped)
    without parsing: for an array json.loads cannot take whole because one item nests too deep."""
    depth, start, in_string = 0, text.index("[") + 1, False
    for m in _JSON_TOKEN.finditer(text, start):
        tok = m.group()
        if in_string:
            in_string = tok != '"'
        elif tok == '"':
            in_string = True
        elif tok in "[{":
            depth += 1
        elif tok in "]}" and depth:
            depth -= 1
        elif tok == "]":  # the array's own end
            if text[start : m.start()].strip():
                yield text[start : m.start()]
            return
        elif tok == "," and not depth:
            yield text[start : m.start()]
            start = m.end()
    raise ReadError(f"{path}: not valid JSON: the array is not closed")


def iter_json_records(path: Path, *, lines: bool = False) -> Iterator[tuple[int, object]]:
    """(line number, parsed value) for every record, or (for a file that starts with ``[``,
    unless ``lines``) (index from 1, value) for every item of one JSON array. A record that
    cannot be parsed yields an :class:`Unparsed` in place of its value."""
    text, truncated = _read_text(path)
    if not lines and text.lstrip().startswith("["):  # one JSON array of records
        yield from enumerate(_array_records(text, path, truncated), 1)
        return
    # split on newlines only: str.splitlines would also cut at U+2028 etc., legal inside JSON strings
    numbered = list(enumerate(text.split("\n"), 1))
    tail = numbered.pop() if truncated else None  # the last line of a cut-off file is incomplete
    for lineno, line in numbered:
        if line.strip():
            yield lineno, _parse(line)
    if tail is not None:
        log.warning("%s: the gzip data ends early (a truncated file); its last line is dropped", path)
        yield tail[0], _TRUNCATED


def _array_records(text: str, path: Path, truncated: bool) -> list:
    if truncated:
        raise ReadError(f"{path}: a truncated gzip file: its JSON array is cut off")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReadError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:  # one item nests too deep: take the items one by one
        return [_parse(item) for item in _array_items(text, path)]
    if _is_text(text) and not _SURROGATE_ESCAPE.search(text):
        return doc
    return [rec if _holds_text(rec) else _NOT_UTF8 for rec in doc]


def _is_json_array(path: Path) -> bool:
    """Whether the file's first non-blank character (after a BOM) is ``[``: read only that far."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as fh:
        head = fh.read(len(_BOM))
        head = head[len(_BOM) :] if head == _BOM else head
        while True:
            stripped = head.lstrip()
            if stripped:
                return stripped.startswith(b"[")
            head = fh.read(4096)
            if not head:
                return False


def labeler(path: Path) -> Callable[[int], str]:
    """How a record of ``path`` is named from what the readers yield: a line number (JSON
    lines), a 1-based array index (a JSON array) or a 0-based row (Parquet)."""
    if suffix_of(path) in PARQUET_SUFFIXES:
        return lambda where: f"{path} row {where}"
    if _is_json_array(path):
        return lambda where: f"{path} record {where}"
    return lambda where: f"{path}:{where}"


def _file_locations(path: Path) -> list[str]:
    """The location of every record of a file that the typed read turns into rows, in order."""
    if suffix_of(path) in PARQUET_SUFFIXES:
        return [f"{path} row {i}" for i in range(pq.ParquetFile(path).metadata.num_rows)]
    label = labeler(path)
    return [label(where) for where, _ in iter_json_records(path)]


def lazy_locator(files: list[Path]) -> Callable[[int], str]:
    """Row -> location for a typed read of ``files``, worked out on the first call only (a read
    without drops never pays for it)."""
    cache: list[str] = []

    def locate(row: int) -> str:
        if not cache:
            for f in files:
                cache.extend(_file_locations(f))
        return cache[row] if row < len(cache) else f"{', '.join(map(str, files))} row {row}"

    return locate


def parquet_records(path: Path, batch_rows: int = 4096) -> Iterator[tuple[int, object]]:
    """(row from 0, record) for every row of a Parquet file; a row whose text is not UTF-8 (the
    Parquet reader does not check) is :data:`_NOT_UTF8`, found row by row only in its batch."""
    row = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
        try:
            recs = batch.to_pylist()
        except UnicodeDecodeError:
            recs = []
            for i in range(batch.num_rows):
                try:
                    recs.append(batch.slice(i, 1).to_pylist()[0])
                except UnicodeDecodeError:
                    recs.append(_NOT_UTF8)
        yield from enumerate(recs, row)
        row += batch.num_rows


TABLE_SUFFIXES = (".csv", ".tsv")

_WRAPPER_HEAD = re.compile(r'\s*\{\s*"[^"\\]*"\s*:\s*\[')


def json_document(path: Path) -> list:
    """The items of a .json file: a list of records, or an object holding exactly one list."""
    text, truncated = _read_text(path)
    if text.lstrip().startswith("["):
        return _array_records(text, path, truncated)
    if truncated:
        raise ReadError(f"{path}: a truncated gzip file: its JSON is cut off")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReadError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        head = _WRAPPER_HEAD.match(text)
        if not head:
            raise ReadError(f"{path}: nested too deep for the JSON parser") from None
        return [_parse(item) for item in _array_items(text[head.end() - 1 :], path)]
    lists = [v for v in data.values() if isinstance(v, list)] if isinstance(data, dict) else []
    if len(lists) != 1:
        what = "an object without exactly one list" if isinstance(data, dict) else type(data).__name__
        raise ReadError(f"{path}: expected a JSON list of records, got {what}")
    if _is_text(text) and not _SURROGATE_ESCAPE.search(text):
        return lists[0]
    return [rec if _holds_text(rec) else _NOT_UTF8 for rec in lists[0]]


def table_rows(path: Path) -> list:
    """The rows of a .csv/.tsv file (first line: the header), cells as text. The csv module, not
    pandas: it takes bytes that are not UTF-8 (kept as surrogates), so they spoil only their row."""
    import csv
    import io

    text, _ = _read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if path.name.lower().endswith(".tsv") else ",")
    try:
        header = next(reader, None)
        if header is None:
            return []
        rows: list = []
        for cells in reader:
            if not cells:
                continue  # a blank line
            if len(cells) != len(header):
                rows.append(_WRONG_CELLS)
            else:
                rec = dict(zip(header, cells))
                rows.append(rec if _holds_text(rec) else _NOT_UTF8)
    except csv.Error as exc:
        raise ReadError(f"{path}: unreadable: {exc}") from None
    return rows
