"""Plain records: the usable records of one file as dicts, with counted, located drops.

What ``bpo optimize --input`` and the evaluation test sets read (re-exported by bpo.readers).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from bpo.drops import Drops
from bpo.record_formats import (
    EXAMPLES_PER_REASON,
    PARQUET_SUFFIXES,
    TABLE_SUFFIXES,
    ReadError,
    Unparsed,
    iter_json_records,
    json_document,
    parquet_records,
    table_rows,
)

log = logging.getLogger("bpo.readers")


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
        if self.dropped[reason] <= EXAMPLES_PER_REASON:
            log.warning("%s: record dropped: %s", self.dropped.locations[reason][-1], reason)


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
        records: Iterable = iter_json_records(path, lines=True)
        label = lambda where: f"{path}:{where}"  # noqa: E731
    elif name.endswith((".json", ".json.gz")):
        records = enumerate(json_document(path), 1)  # from 1, as the typed reader counts array items
        label = lambda where: f"{path} record {where}"  # noqa: E731
    elif name.endswith(PARQUET_SUFFIXES):
        records = parquet_records(path)
        label = lambda where: f"{path} row {where}"  # noqa: E731
    elif name.endswith(TABLE_SUFFIXES):
        records = enumerate(table_rows(path))
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
