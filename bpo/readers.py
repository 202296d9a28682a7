"""The one reader of raw records: datasets from the hub or local files, typed or as plain rows.

Every stage that reads records someone else wrote goes through here: the preference sources
(``bpo.sources``), a BPO-format SFT dataset (``bpo.sft.bpo_dataset``) and the evaluation test
sets (``bpo.eval.testsets``, through :func:`read_records`).

Two ways in for a typed table (:func:`read_dataset`), chosen by config:

- a hub id, read with :func:`datasets.load_dataset` (the production path; a local
  folder laid out like a hub repository works too, which is how tests exercise it);
- a local file or folder (json, jsonl, jsonl.gz, json.gz, parquet), read with
  ``datasets.load_dataset`` and the source's explicit :class:`datasets.Features`.

The typed read of local files is strict: one record of the wrong type (or an
invalid JSON line) makes it fail as a whole. The reader then reads the files
record by record, keeps every record that fits the features and counts the rest
by reason, so a malformed record is a counted drop rather than a crash. A missing
or unreadable file is a :class:`ReadError` that names the file.

Every row of a :class:`RawTable` can be located (:meth:`RawTable.location`): ``file:line`` for
JSON lines, ``file record N`` for a JSON array, ``file row N`` (from 0) for Parquet,
``hub:<id> split=<s> row N`` for the hub, so a parser's drop names the record.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import tempfile
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


_INVALID = object()  # stands for a line that is not JSON


def _open_text(path: Path):
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _iter_json_records(path: Path, *, lines: bool = False) -> Iterator[tuple[int, object]]:
    """(line number, parsed value) for every record; ``_INVALID`` for a line that is not JSON.
    A file that starts with ``[`` is one JSON array, unless ``lines`` says it is JSON lines."""
    with _open_text(path) as fh:
        text = fh.read()
    if not lines and text.lstrip().startswith("["):  # one JSON array of records
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ReadError(f"{path}: not valid JSON: {exc}") from exc
        for i, rec in enumerate(doc):
            yield i + 1, rec
        return
    for lineno, line in enumerate(text.splitlines(), 1):  # JSON lines
        if line.strip():
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError:
                yield lineno, _INVALID



def _is_json_array(path: Path) -> bool:
    with _open_text(path) as fh:
        for line in fh:
            if line.strip():
                return line.lstrip().startswith("[")
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


def _tolerant_read(files: list[Path], schema: pa.Schema) -> tuple[pa.Table, Drops, list[str]]:
    rows: list[dict] = []
    where_rows: list[str] = []  # the location of each kept row
    dropped = Drops()
    for path in files:
        kept_before, bad_before = len(rows), sum(dropped.values())
        try:
            label = _labeler(path)
            if _suffix(path) in PARQUET_SUFFIXES:
                records: Iterable = enumerate(pq.read_table(path).to_pylist())
            else:
                records = _iter_json_records(path)
            for where, rec in records:
                bad = None
                if rec is _INVALID:
                    reason = "malformed_invalid_json"
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
    except Exception as exc:  # datasets wraps the cause in its own error types
        cause = exc.__cause__ or exc
        log.warning(
            "%s: typed read failed (%s: %s); reading record by record",
            origin, type(cause).__name__, str(cause).splitlines()[0][:300] if str(cause) else "",
        )
        table, dropped, where_rows = _tolerant_read(files, schema)
        if dropped:
            log.warning("%s: %d record(s) unreadable: %s", origin, sum(dropped.values()), dict(dropped))
        return RawTable(table, origin, dropped, locate=where_rows.__getitem__)
    return RawTable(_conform(table, schema, origin), origin, locate=_lazy_locator(files))


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


def read_records(path: str | Path) -> list[dict]:
    """Every record of one file as a plain dict, strictly (the first bad record is a
    :class:`ReadError` naming it): .json (a list, or an object holding one list), .jsonl[.gz],
    .parquet, .csv or .tsv (cells as text)."""
    path = Path(path)
    if not path.is_file():
        raise ReadError(f"{path}: file not found")
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        rows = []
        for lineno, rec in _iter_json_records(path, lines=True):
            if rec is _INVALID:
                raise ReadError(f"{path}:{lineno}: not valid JSON")
            rows.append(rec)
    elif name.endswith((".json", ".json.gz")):
        with _open_text(path) as fh:
            try:
                data = json.load(fh)
            except json.JSONDecodeError as exc:
                raise ReadError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
        if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
            data = next(iter(data.values()))  # {"data": [...]} wrappers
        if not isinstance(data, list):
            raise ReadError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
        rows = data
    elif name.endswith(PARQUET_SUFFIXES):
        rows = pq.read_table(path).to_pylist()
    elif name.endswith(TABLE_SUFFIXES):
        import pandas as pd

        frame = pd.read_csv(path, sep="\t" if name.endswith(".tsv") else ",", dtype=str, keep_default_na=False)
        rows = frame.to_dict(orient="records")
    else:
        raise ReadError(f"{path}: unknown file type (use .json, .jsonl, .jsonl.gz, .parquet, .csv or .tsv)")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ReadError(f"{path}: record {i} is a {type(row).__name__}, not an object")
    return rows
