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

This module reads typed tables; the per-format record readers are in bpo.record_formats, the
plain-record reader (:func:`read_records`, re-exported here) in bpo.plain_records.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bpo.drops import Drops
from bpo.plain_records import Records, read_records
from bpo.record_formats import (
    EXAMPLES_PER_REASON,
    JSON_SUFFIXES,
    PARQUET_SUFFIXES,
    SUPPORTED_SUFFIXES,
    TABLE_SUFFIXES,
    ReadError,
    Unparsed,
    iter_json_records,
    labeler,
    lazy_locator,
    parquet_records,
    suffix_of,
)

log = logging.getLogger(__name__)

# Re-exported: callers import every reader and its error from here.
__all__ = [
    "JSON_SUFFIXES",
    "PARQUET_SUFFIXES",
    "SUPPORTED_SUFFIXES",
    "TABLE_SUFFIXES",
    "RawTable",
    "ReadError",
    "Records",
    "data_files",
    "read_dataset",
    "read_hub",
    "read_local",
    "read_records",
]


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


def data_files(path: str | Path) -> list[Path]:
    """The data files behind a configured local path: the file itself, or every
    supported file under a folder (sorted, so the row order is stable)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and suffix_of(p) and not p.name.startswith("."))
        if not files:
            raise ReadError(f"{path}: folder holds no data files ({', '.join(SUPPORTED_SUFFIXES)})")
        return files
    if not path.exists():
        raise ReadError(f"{path}: no such file or folder")
    if not suffix_of(path):
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
                    raise ReadError(
                        f"{origin}: column {f.name!r} of type {col.type} cannot be read as {f.type}: {exc}"
                    ) from exc
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


def read_hub(
    hub_id: str,
    *,
    features,
    columns: Sequence[str],
    split: str = "train",
    data_dir: str | None = None,
    allow_missing: bool = False,
) -> RawTable:
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

    kinds = {"parquet" if suffix_of(f) in PARQUET_SUFFIXES else "json" for f in files}
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
            label = labeler(path)
            if suffix_of(path) in PARQUET_SUFFIXES:
                records: Iterable = parquet_records(path)
            else:
                records = iter_json_records(path)
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
                if dropped[reason] <= EXAMPLES_PER_REASON:
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
            origin,
            type(cause).__name__,
            str(cause).splitlines()[0][:300] if str(cause) else "",
        )
        table, dropped, where_rows = _tolerant_read(files, schema)
        if dropped:
            log.warning("%s: %d record(s) unreadable: %s", origin, sum(dropped.values()), dict(dropped))
        raw = RawTable(table, origin, dropped, locate=where_rows.__getitem__)
    else:
        raw = RawTable(_conform(table, schema, origin), origin, locate=lazy_locator(files))
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
        return read_hub(
            hub_id, features=features, columns=columns, split=split, data_dir=data_dir, allow_missing=allow_missing
        )
    if path:
        return read_local(path, features=features, columns=columns)
    raise ReadError(f"{what}: neither hub_id nor path is set")
