"""The one reader of raw records: datasets from the hub or local files, typed or as plain rows.

Every stage that reads records someone else wrote goes through here: the preference sources
(``bpo.sources``), a BPO-format SFT dataset (``bpo.sft.bpo_dataset``), the evaluation test
sets (``bpo.eval.testsets``) and ``bpo optimize --input`` (both through :func:`read_records`).

Two ways in for a typed table (:func:`read_dataset`), chosen by config:

- a hub id, read with :func:`datasets.load_dataset` (the production path; a local
  folder laid out like a hub repository works too, which is how tests exercise it);
- a local file or folder (json, jsonl, jsonl.gz, json.gz, parquet), read with
  ``datasets.load_dataset`` and the source's explicit :class:`datasets.Features`.

The typed read of local files is strict: one record of the wrong type (or an
invalid JSON line, or text that is not UTF-8, which pyarrow would otherwise take as
a string) makes it fail as a whole. The reader then reads the files record by
record, keeps every record that fits the features and counts the rest by reason, so
a malformed record is one counted drop rather than a crash: ``malformed_invalid_json``,
``malformed_not_utf8`` (bad bytes, or a JSON escape of a lone surrogate),
``malformed_too_deep`` (nesting past the JSON parser's recursion limit),
``malformed_not_an_object``, ``malformed_wrong_type``, ``malformed_truncated`` (the
cut-off last line of a truncated .gz). A BOM is not a record's first character. A
file unreadable as a whole (missing, empty, not gzip, a JSON array that does not
parse) is a :class:`ReadError` that names the file, in one line.

Every row of a :class:`RawTable` can be located (:meth:`RawTable.location`): ``file:line`` for
JSON lines, ``file record N`` for a JSON array, ``file row N`` (from 0) for Parquet,
``hub:<id> split=<s> row N`` for the hub, so a parser's drop names the record.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import re
import tempfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from bpo.drops import Drops

log = logging.getLogger(__name__)

JSON_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")
PARQUET_SUFFIXES = (".parquet",)
SUPPORTED_SUFFIXES = JSON_SUFFIXES + PARQUET_SUFFIXES

# Malformed records logged with their file and line, per reason, before going quiet.
_EXAMPLES_PER_REASON = 3


class ReadError(RuntimeError):
    """A dataset could not be read at all (missing file, not JSON/Parquet, hub failure)."""


@dataclass
class RawTable:
    """The columns a parser needs, typed as the source's features declare."""

    table: pa.Table
    origin: str  # what was read, for logs and stats
    dropped: Counter = field(default_factory=Drops)  # records the reader could not use (located)
    locate: Callable[[int], str] | None = None  # row index -> where it was read

    @property
    def records_read(self) -> int:
        return self.table.num_rows + sum(self.dropped.values())

    def location(self, row: int) -> str:
        """Where row ``row`` of ``table`` was read (file:line, file row N, hub id + row)."""
        return self.locate(row) if self.locate else f"{self.origin} row {row}"


def _suffix(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True) if name.endswith(s)), None)


def data_files(path: str | Path) -> list[Path]:
    """The data files behind a configured local path: the file itself, or every
    supported file under a folder (sorted, so the row order is stable)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _suffix(p) and not p.name.startswith("."))
        if not files:
            raise ReadError(f"{path}: folder holds no data files ({', '.join(SUPPORTED_SUFFIXES)})")
        return files
    if not path.exists():
        raise ReadError(f"{path}: no such file or folder")
    if not _suffix(path):
        raise ReadError(f"{path}: unsupported file type (expected one of {', '.join(SUPPORTED_SUFFIXES)})")
    return [path]


def _schema(features, columns: Sequence[str]) -> pa.Schema:
    schema = features.arrow_schema
    unknown = [c for c in columns if c not in schema.names]
    if unknown:
        raise ValueError(f"columns {unknown} are not in the features {schema.names}")
    return pa.schema([schema.field(c) for c in columns])


def _conform(table: pa.Table, schema: pa.Schema, origin: str) -> pa.Table:
    """Select and order ``schema``'s columns, adding missing ones as nulls and casting types."""
    cols = []
    for f in schema:
        if f.name in table.column_names:
            col = table.column(f.name)
            if col.type != f.type:
                try:
                    col = col.cast(f.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                    raise ReadError(f"{origin}: column {f.name!r} of type {col.type} cannot be read as {f.type}: {exc}") from exc
        else:
            col = pa.nulls(table.num_rows, f.type)
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=schema)


@contextlib.contextmanager
def _quiet_datasets():
    """Silence progress bars and the datasets logger while reading local files: a failed
    typed read is expected on malformed input and is reported by us, once, with the file."""
    import datasets

    bars = datasets.is_progress_bar_enabled()
    logger = logging.getLogger("datasets")
    level = logger.level
    datasets.disable_progress_bars()
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
        if bars:
            datasets.enable_progress_bars()


# ---------------------------------------------------------------- hub


def read_hub(hub_id: str, *, features, columns: Sequence[str], split: str = "train", data_dir: str | None = None,
             allow_missing: bool = False) -> RawTable:
    """Load ``split`` of a hub dataset with ``datasets.load_dataset``; check and type the columns
    (with ``allow_missing``, an absent column is all nulls, as in a local file)."""
    import datasets

    origin = f"hub:{hub_id}" + (f" data_dir={data_dir}" if data_dir else "") + f" split={split}"
    try:
        ds = datasets.load_dataset(hub_id, data_dir=data_dir, split=split)
    except Exception as exc:  # network, auth (gated sets), unknown id or split: all end here
        raise ReadError(f"{origin}: load_dataset failed: {type(exc).__name__}: {exc}") from exc
    table = ds.with_format("arrow")[:] if len(ds) else ds.data.table
    missing = [c for c in columns if c not in table.column_names]
    if missing and not allow_missing:
        raise ReadError(f"{origin}: dataset has no column(s) {missing} (has {table.column_names})")
    return RawTable(_conform(table, _schema(features, columns), origin), origin, locate=lambda i: f"{origin} row {i}")


# ---------------------------------------------------------------- local files


def _typed_read(files: list[Path], features) -> pa.Table:
    import datasets

    kinds = {"parquet" if _suffix(f) in PARQUET_SUFFIXES else "json" for f in files}
    if len(kinds) != 1:
        raise ValueError("mixed json and parquet files")
    kind = kinds.pop()
    kwargs = {"on_mixed_types": None} if kind == "json" else {}  # never JSON-encode a wrong-typed field
    if kind == "parquet":
        # the parquet builder rejects extra columns unless told which to keep
        present = set(pq.read_schema(files[0]).names)
        kwargs["columns"] = [c for c in features if c in present]
        features = datasets.Features({c: features[c] for c in kwargs["columns"]})
    # A throwaway cache: local files are re-read on every run, and a stale cache keyed
    # on path and mtime must never stand in for an edited file. keep_in_memory: the
    # table must not point into the cache once it is deleted.
    with tempfile.TemporaryDirectory(prefix="bpo-read-") as cache, _quiet_datasets():
        ds = datasets.load_dataset(
            kind,
            data_files=[str(f) for f in files],
            features=features,
            split="train",
            cache_dir=cache,
            keep_in_memory=True,
            **kwargs,
        )
        return ds.data.table if ds.num_rows else features.arrow_schema.empty_table()


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
        data = data[len(_BOM):]
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
            if text[start:m.start()].strip():
                yield text[start:m.start()]
            return
        elif tok == "," and not depth:
            yield text[start:m.start()]
            start = m.end()
    raise ReadError(f"{path}: not valid JSON: the array is not closed")


def _iter_json_records(path: Path, *, lines: bool = False) -> Iterator[tuple[int, object]]:
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
        head = head[len(_BOM):] if head == _BOM else head
        while True:
            stripped = head.lstrip()
            if stripped:
                return stripped.startswith(b"[")
            head = fh.read(4096)
            if not head:
                return False


def _labeler(path: Path) -> Callable[[int], str]:
    """How a record of ``path`` is named from what the readers yield: a line number (JSON
    lines), a 1-based array index (a JSON array) or a 0-based row (Parquet)."""
    if _suffix(path) in PARQUET_SUFFIXES:
        return lambda where: f"{path} row {where}"
    if _is_json_array(path):
        return lambda where: f"{path} record {where}"
    return lambda where: f"{path}:{where}"


def _file_locations(path: Path) -> list[str]:
    """The location of every record of a file that the typed read turns into rows, in order."""
    if _suffix(path) in PARQUET_SUFFIXES:
        return [f"{path} row {i}" for i in range(pq.ParquetFile(path).metadata.num_rows)]
    label = _labeler(path)
    return [label(where) for where, _ in _iter_json_records(path)]


def _lazy_locator(files: list[Path]) -> Callable[[int], str]:
    """Row -> location for a typed read of ``files``, worked out on the first call only (a read
    without drops never pays for it)."""
    cache: list[str] = []

    def locate(row: int) -> str:
        if not cache:
            for f in files:
                cache.extend(_file_locations(f))
        return cache[row] if row < len(cache) else f"{', '.join(map(str, files))} row {row}"

    return locate


def _fits(value, typ: pa.DataType) -> bool:
    """Whether a decoded JSON value can be stored as ``typ`` without coercion (null fits all)."""
    if value is None:
        return True
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return isinstance(value, str)
    if pa.types.is_boolean(typ):
        return isinstance(value, bool)
    if pa.types.is_integer(typ):
        return isinstance(value, int) and not isinstance(value, bool)
    if pa.types.is_floating(typ):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        return isinstance(value, list) and all(_fits(v, typ.value_type) for v in value)
    if pa.types.is_struct(typ):
        return isinstance(value, dict) and all(_fits(value.get(f.name), f.type) for f in typ)
    raise TypeError(f"feature type {typ} is not supported by the record-by-record reader")


def _parquet_records(path: Path, batch_rows: int = 4096) -> Iterator[tuple[int, object]]:
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


def _tolerant_read(files: list[Path], schema: pa.Schema) -> tuple[pa.Table, Drops, list[str]]:
    rows: list[dict] = []
    where_rows: list[str] = []  # the location of each kept row
    dropped = Drops()
    for path in files:
        kept_before, bad_before = len(rows), sum(dropped.values())
        try:
            label = _labeler(path)
            if _suffix(path) in PARQUET_SUFFIXES:
                records: Iterable = _parquet_records(path)
            else:
                records = _iter_json_records(path)
            for where, rec in records:
                bad = None
                if isinstance(rec, Unparsed):
                    reason = rec.reason
                elif not isinstance(rec, dict):
                    reason = "malformed_not_an_object"
                else:
                    bad = next((f.name for f in schema if not _fits(rec.get(f.name), f.type)), None)
                    if bad is None:
                        rows.append({f.name: rec.get(f.name) for f in schema})
                        where_rows.append(label(where))
                        continue
                    reason = "malformed_wrong_type"
                dropped.add(reason, label(where), bad)
                if dropped[reason] <= _EXAMPLES_PER_REASON:
                    log.warning("%s: record dropped: %s", dropped.locations[reason][-1], reason)
        except ReadError:
            raise
        except (OSError, EOFError, UnicodeDecodeError, pa.ArrowException) as exc:
            raise ReadError(f"{path}: unreadable: {type(exc).__name__}: {exc}") from exc
        if len(rows) == kept_before and sum(dropped.values()) > bad_before:
            raise ReadError(f"{path}: no record could be read ({sum(dropped.values()) - bad_before} malformed)")
    return pa.Table.from_pylist(rows, schema=schema), dropped, where_rows


def read_local(path: str | Path, *, features, columns: Sequence[str]) -> RawTable:
    """Read a local file or folder with explicit features; malformed records are counted drops."""
    files = data_files(path)
    origin = str(path)
    schema = _schema(features, columns)
    try:
        table = _typed_read(files, features)
        table.validate(full=True)  # pyarrow's JSON and Parquet readers take bytes that are not UTF-8 as text
    except Exception as exc:  # datasets wraps the cause in its own error types
        cause = exc.__cause__ or exc
        log.warning(
            "%s: typed read failed (%s: %s); reading record by record",
            origin, type(cause).__name__, str(cause).splitlines()[0][:300] if str(cause) else "",
        )
        table, dropped, where_rows = _tolerant_read(files, schema)
        if dropped:
            log.warning("%s: %d record(s) unreadable: %s", origin, sum(dropped.values()), dict(dropped))
        raw = RawTable(table, origin, dropped, locate=where_rows.__getitem__)
    else:
        raw = RawTable(_conform(table, schema, origin), origin, locate=_lazy_locator(files))
    if not raw.records_read:
        raise ReadError(f"{origin}: no records (the file is empty)" if len(files) == 1 else f"{origin}: no records")
    return raw


def read_dataset(
    *,
    path: str | Path | None,
    hub_id: str | None,
    features,
    columns: Sequence[str] | None = None,
    split: str = "train",
    data_dir: str | None = None,
    what: str = "dataset",
    allow_missing: bool = False,
) -> RawTable:
    """Read from ``hub_id`` when set, else from the local ``path``; ``what`` names the config
    entry in errors (e.g. ``sources.hh_rlhf``). Local files may always lack a column (it reads
    as nulls); a hub dataset only with ``allow_missing``."""
    columns = list(columns or features)
    if hub_id:
        return read_hub(hub_id, features=features, columns=columns, split=split, data_dir=data_dir,
                        allow_missing=allow_missing)
    if path:
        return read_local(path, features=features, columns=columns)
    raise ReadError(f"{what}: neither hub_id nor path is set")


# ---------------------------------------------------------------- plain records

TABLE_SUFFIXES = (".csv", ".tsv")


@dataclass
class Records:
    """The usable records of one file as plain dicts, and the counted, located drops."""

    path: Path
    rows: list[dict]
    numbers: list[int]  # each row's record number in the file, from 0, dropped records counted
    dropped: Drops = field(default_factory=Drops)
    places: list[int] = field(default_factory=list)  # each row's line (JSON lines) or record/row index
    label: Callable[[int], str] = str  # a place -> its location, e.g. file:line

    def location(self, i: int) -> str:
        """Where ``rows[i]`` was read: file:line (JSON lines), file record N (a JSON array, from 1),
        file row N (Parquet, csv/tsv data rows; from 0)."""
        return self.label(self.places[i])

    @property
    def records_read(self) -> int:
        return len(self.rows) + sum(self.dropped.values())

    def count_drop(self, reason: str, where: str, field_name: str | None = None) -> None:
        """Count a record as dropped (logged with its location for the first few of a reason)."""
        self.dropped.add(reason, where, field_name)
        if self.dropped[reason] <= _EXAMPLES_PER_REASON:
            log.warning("%s: record dropped: %s", self.dropped.locations[reason][-1], reason)


# {"data": [...]}: an object whose one value is the list of records, up to that list's "["
_WRAPPER_HEAD = re.compile(r'\s*\{\s*"[^"\\]*"\s*:\s*\[')


def _json_document(path: Path) -> list:
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
        return [_parse(item) for item in _array_items(text[head.end() - 1:], path)]
    lists = [v for v in data.values() if isinstance(v, list)] if isinstance(data, dict) else []
    if len(lists) != 1:
        what = "an object without exactly one list" if isinstance(data, dict) else type(data).__name__
        raise ReadError(f"{path}: expected a JSON list of records, got {what}")
    if _is_text(text) and not _SURROGATE_ESCAPE.search(text):
        return lists[0]
    return [rec if _holds_text(rec) else _NOT_UTF8 for rec in lists[0]]


def _table_rows(path: Path) -> list:
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


def read_records(path: str | Path) -> Records:
    """The records of one file as plain dicts: .json (a list, or an object holding one list),
    .jsonl[.gz], .parquet, .csv or .tsv (cells as text). A record that cannot be read (not JSON,
    not UTF-8, nested too deep, not an object) is a counted drop located in the file; a file
    that cannot be read as a whole is a :class:`ReadError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise ReadError(f"{path}: file not found")
    name = path.name.lower()
    label: Callable[[int], str]
    if name.endswith((".jsonl", ".jsonl.gz")):
        records: Iterable = _iter_json_records(path, lines=True)
        label = lambda where: f"{path}:{where}"  # noqa: E731
    elif name.endswith((".json", ".json.gz")):
        records = enumerate(_json_document(path), 1)  # from 1, as the typed reader counts array items
        label = lambda where: f"{path} record {where}"  # noqa: E731
    elif name.endswith(PARQUET_SUFFIXES):
        records = _parquet_records(path)
        label = lambda where: f"{path} row {where}"  # noqa: E731
    elif name.endswith(TABLE_SUFFIXES):
        records = enumerate(_table_rows(path))
        label = lambda where: f"{path} row {where}"  # noqa: E731
    else:
        raise ReadError(f"{path}: unknown file type (use .json, .jsonl, .jsonl.gz, .parquet, .csv or .tsv)")
    out = Records(path, [], [], label=label)
    try:
        for number, (where, rec) in enumerate(records):
            if isinstance(rec, dict):
                out.rows.append(rec)
                out.numbers.append(number)
                out.places.append(where)
            else:
                out.count_drop(rec.reason if isinstance(rec, Unparsed) else "malformed_not_an_object", label(where))
    except (OSError, EOFError, pa.ArrowException) as exc:
        raise ReadError(f"{path}: unreadable: {type(exc).__name__}: {exc}") from None
    if out.dropped:
        log.warning("%s: %d record(s) unreadable: %s", path, sum(out.dropped.values()), dict(out.dropped))
    return out
