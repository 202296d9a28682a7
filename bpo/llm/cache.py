"""The LLM call cache: one SQLite database (WAL) shared by every stage and run.

It lives outside ``results/`` (path ``llm.cache``) so deleting a stage's outputs never pays a
call twice. A row is one answered call, keyed by (request key, answer source): ``openai`` rows
come from a real endpoint (``replay`` reads them), ``standin`` rows from the offline stand-in,
which therefore can never be mistaken for a real model's answer, and ``local:<hash>`` rows from a
local model (the hash names its weights, dtype and engine). Rows are committed as answers
arrive (WAL + synchronous=NORMAL: a commit is a write() to the WAL, no fsync), so a process
killed with ``kill -9`` loses only the calls in flight. Failed calls are not answers: they go to
a separate ``failures`` table for the usage report and are retried on the next run.

What is stored: the request body (model, messages, sampling), the reply and its usage. Never
the API key or request headers; every text column of ``calls`` and ``failures`` but the row's
identity (key, backend) is redacted (:mod:`bpo.redact`) before it is written, and again on
export and import, so a server that echoes a key in a reply leaves no trace of it here.

The row's columns and Parquet form are in bpo.llm.cache_rows, claim owners in bpo.llm.claims
(both re-exported here).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bpo.llm.cache_rows import CACHE_EXPORT_SCHEMA, COLUMNS, call_values, result_row
from bpo.llm.claims import CLAIM_LEASE_S, new_owner, owner_alive, retire_owner
from bpo.llm.errors import LLMError
from bpo.llm.local import is_local_source
from bpo.redact import redact

DEFAULT_CACHE_PATH = ".bpo-cache/llm.sqlite"

# The answer sources a cache row can come from (the `backend` column), besides
# ``local:<16 hex>`` for a local model's answers (bpo.llm.local.local_source).
SOURCES = ("openai", "standin")

__all__ = [
    "CACHE_EXPORT_SCHEMA",
    "CLAIM_LEASE_S",
    "DEFAULT_CACHE_PATH",
    "SOURCES",
    "Cache",
    "new_owner",
    "owner_alive",
    "result_row",
    "retire_owner",
]

_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT NOT NULL,
    backend TEXT NOT NULL,
    stage TEXT NOT NULL,
    model TEXT NOT NULL,
    response_model TEXT,
    status TEXT NOT NULL,
    text TEXT,
    choices TEXT,
    finish_reason TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    error TEXT,
    request TEXT NOT NULL,
    created REAL NOT NULL,
    latency_s REAL,
    attempts INTEGER,
    PRIMARY KEY (key, backend)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS failures (
    key TEXT NOT NULL,
    backend TEXT NOT NULL,
    stage TEXT NOT NULL,
    model TEXT NOT NULL,
    error TEXT,
    attempts INTEGER,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (
    key TEXT NOT NULL,
    backend TEXT NOT NULL,
    owner TEXT NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (key, backend)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS claims_owner ON claims (owner);
"""

_SQL_CHUNK = 500  # keys per IN (...) query, under SQLite's variable limit


# The counters of one usage row (`bpo usage`), all starting at 0.
_USAGE_FIELDS = ("calls", "ok", "truncated", "refused", "failed", "prompt_tokens", "completion_tokens")


class Cache:
    """SQLite-backed store of answered calls (safe for several processes at once)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Processes that open a new cache at the same moment can get "database is locked" from the
        # switch to WAL, which SQLite does not always retry itself: retry the set-up for a while.
        deadline = time.monotonic() + 60.0
        while True:
            try:
                # autocommit mode: we open transactions ourselves, one per batch of answers
                self._db = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None, check_same_thread=False)
                if self._db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_SCHEMA_SQL)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise LLMError(f"LLM cache {self.path} (config llm.cache) cannot be opened: {exc}") from None
                self._db.close()
                time.sleep(0.05)
            except sqlite3.DatabaseError as exc:
                raise LLMError(f"LLM cache {self.path} (config llm.cache) cannot be opened: {exc}") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- reads ---------------------------------------------------------------------------
    def get_many(self, keys: Sequence[str], backend: str) -> dict[str, dict]:
        """Rows for ``keys`` answered by ``backend`` (openai | standin), keyed by request key."""
        out: dict[str, dict] = {}
        cols = ", ".join(COLUMNS)
        for i in range(0, len(keys), _SQL_CHUNK):
            chunk = list(keys[i : i + _SQL_CHUNK])
            marks = ",".join("?" * len(chunk))
            cur = self._db.execute(
                f"SELECT {cols} FROM calls WHERE backend = ? AND key IN ({marks})", [backend, *chunk]
            )
            for row in cur:
                out[row[0]] = dict(zip(COLUMNS, row))
        return out

    def has_many(self, keys: Sequence[str], backend: str) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(keys), _SQL_CHUNK):
            chunk = list(keys[i : i + _SQL_CHUNK])
            marks = ",".join("?" * len(chunk))
            cur = self._db.execute(f"SELECT key FROM calls WHERE backend = ? AND key IN ({marks})", [backend, *chunk])
            found.update(r[0] for r in cur)
        return found

    def rows(self) -> Iterator[dict]:
        cur = self._db.execute(f"SELECT {', '.join(COLUMNS)} FROM calls ORDER BY created, key")
        for row in cur:
            yield dict(zip(COLUMNS, row))

    def count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def usage(self) -> list[dict]:
        """Calls and tokens per (stage, model, backend), with status counts and failures."""
        stats: dict[tuple, dict] = {}
        for stage, model, backend, status, n, pt, ct in self._db.execute(
            "SELECT stage, model, backend, status, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens) "
            "FROM calls GROUP BY stage, model, backend, status"
        ):
            s = stats.setdefault((stage, model, backend), dict.fromkeys(_USAGE_FIELDS, 0))
            s["calls"] += n
            s[status] = s.get(status, 0) + n
            s["prompt_tokens"] += pt or 0
            s["completion_tokens"] += ct or 0
        for stage, model, backend, n in self._db.execute(
            "SELECT stage, model, backend, COUNT(DISTINCT key) FROM failures f WHERE NOT EXISTS "
            "(SELECT 1 FROM calls c WHERE c.key = f.key AND c.backend = f.backend) GROUP BY stage, model, backend"
        ):
            s = stats.setdefault((stage, model, backend), dict.fromkeys(_USAGE_FIELDS, 0))
            s["failed"] += n
        return [{"stage": k[0], "model": k[1], "backend": k[2], **v} for k, v in sorted(stats.items())]

    # ---- writes --------------------------------------------------------------------------
    def put_many(self, rows: Iterable[dict]) -> None:
        """Store answered calls in one transaction (a later answer for a key replaces it)."""
        rows = list(rows)
        if not rows:
            return
        marks = ",".join("?" * len(COLUMNS))
        with _transaction(self._db):
            self._db.executemany(
                f"INSERT OR REPLACE INTO calls ({', '.join(COLUMNS)}) VALUES ({marks})",
                [call_values(r) for r in rows],
            )

    def put_failures(self, rows: Iterable[dict]) -> None:
        rows = list(rows)
        if not rows:
            return
        with _transaction(self._db):
            self._insert_failures(rows)

    def _insert_failures(self, rows: list[dict]) -> None:
        self._db.executemany(
            "INSERT INTO failures (key, backend, stage, model, error, attempts, created) VALUES (?,?,?,?,?,?,?)",
            [
                (
                    r["key"],
                    r["backend"],
                    redact(r["stage"]),
                    redact(r["model"]),
                    redact(r.get("error")),
                    r.get("attempts"),
                    r.get("created", time.time()),
                )
                for r in rows
            ],
        )

    def store(self, answers: Sequence[dict], failures: Sequence[dict], owner: str | None) -> None:
        """Answers and failures of one batch in ONE transaction, releasing ``owner``'s claims on
        their keys (a waiting process then finds the answer, or takes the failed key over)."""
        if not answers and not failures:
            return
        marks = ",".join("?" * len(COLUMNS))
        with _transaction(self._db):
            if answers:
                self._db.executemany(
                    f"INSERT OR REPLACE INTO calls ({', '.join(COLUMNS)}) VALUES ({marks})",
                    [call_values(r) for r in answers],
                )
            if failures:
                self._insert_failures(list(failures))
            if owner is not None:
                self._db.executemany(
                    "DELETE FROM claims WHERE key = ? AND backend = ? AND owner = ?",
                    [(r["key"], r["backend"], owner) for r in (*answers, *failures)],
                )

    # ---- in-flight claims ----------------------------------------------------------------
    def claim(
        self, keys: Sequence[str], backend: str, owner: str, lease_s: float = CLAIM_LEASE_S
    ) -> tuple[list[str], dict[str, dict], list[str]]:
        """Claim ``keys`` for ``owner`` in one transaction: (claimed, answered rows, held by a
        live owner). A key already answered is returned as its row, never claimed; a claim whose
        lease ran out or whose owner is dead is taken over."""
        claimed: list[str] = []
        held: list[str] = []
        answered: dict[str, dict] = {}
        now = time.time()
        alive: dict[str, bool] = {}
        cols = ", ".join(COLUMNS)
        with _transaction(self._db):
            for i in range(0, len(keys), _SQL_CHUNK):
                chunk = list(keys[i : i + _SQL_CHUNK])
                marks = ",".join("?" * len(chunk))
                for row in self._db.execute(
                    f"SELECT {cols} FROM calls WHERE backend = ? AND key IN ({marks})", [backend, *chunk]
                ):
                    answered[row[0]] = dict(zip(COLUMNS, row))
                current = {
                    k: (o, e)
                    for k, o, e in self._db.execute(
                        f"SELECT key, owner, expires FROM claims WHERE backend = ? AND key IN ({marks})",
                        [backend, *chunk],
                    )
                }
                take = []
                for key in chunk:
                    if key in answered:
                        continue
                    other = current.get(key)
                    if other is not None and other[0] != owner and other[1] > now:
                        if other[0] not in alive:
                            alive[other[0]] = owner_alive(other[0])
                        if alive[other[0]]:
                            held.append(key)
                            continue
                    take.append(key)
                if take:
                    self._db.executemany(
                        "INSERT OR REPLACE INTO claims (key, backend, owner, expires) VALUES (?,?,?,?)",
                        [(k, backend, owner, now + lease_s) for k in take],
                    )
                    claimed.extend(take)
        return claimed, answered, held

    def renew_claims(self, owner: str, lease_s: float = CLAIM_LEASE_S) -> None:
        """The heartbeat: extend every claim ``owner`` holds."""
        with _transaction(self._db):
            self._db.execute("UPDATE claims SET expires = ? WHERE owner = ?", (time.time() + lease_s, owner))

    def release_claims(self, owner: str) -> None:
        """Drop every claim ``owner`` still holds (keys it claimed but did not send)."""
        with _transaction(self._db):
            self._db.execute("DELETE FROM claims WHERE owner = ?", (owner,))

    # ---- sharing -------------------------------------------------------------------------
    def export_parquet(self, path: str | Path) -> int:
        """Write every answered call to ``path`` (CACHE_EXPORT_SCHEMA); returns the row count."""
        cols: dict[str, list] = {c: [] for c in COLUMNS}
        for row in self.rows():  # redacted again: rows written before redaction covered them
            for c, v in zip(COLUMNS, call_values(row)):
                cols[c].append(v)
        table = pa.table(cols, schema=CACHE_EXPORT_SCHEMA)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        pq.write_table(table, tmp)
        tmp.replace(path)
        return table.num_rows

    def import_parquet(self, path: str | Path) -> tuple[int, int]:
        """Add the calls in ``path`` that this cache lacks (rows already here win).

        Returns (added, already present). Rows are checked before anything is written.
        """
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowInvalid) as exc:
            raise LLMError(f"cache import: cannot read {path} as Parquet: {exc}") from None
        missing = [f.name for f in CACHE_EXPORT_SCHEMA if f.name not in table.column_names]
        if missing:
            raise LLMError(f"cache import: {path} is not a BPO cache export (missing columns {missing})")
        table = table.select([f.name for f in CACHE_EXPORT_SCHEMA])
        rows = table.to_pylist()
        for i, r in enumerate(rows):
            for col in ("key", "backend", "stage", "model", "status", "request"):
                if not r.get(col):
                    raise LLMError(f"cache import: {path} row {i} has no {col}")
            if r["backend"] not in SOURCES and not is_local_source(r["backend"]):
                raise LLMError(
                    f"cache import: {path} row {i} (key {r['key'][:12]}): backend "
                    f"{r['backend']!r} is not one of {SOURCES} or local:<16 hex>"
                )
            if r["status"] not in ("ok", "truncated", "refused"):
                raise LLMError(f"cache import: {path} row {i} (key {r['key'][:12]}): status {r['status']!r}")
        before = self.count()
        marks = ",".join("?" * len(COLUMNS))
        with _transaction(self._db):
            self._db.executemany(
                f"INSERT OR IGNORE INTO calls ({', '.join(COLUMNS)}) VALUES ({marks})",
                [call_values(r) for r in rows],
            )
        added = self.count() - before
        return added, len(rows) - added


class _transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb):
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
