"""The rewrite cache: one SQLite database (WAL), keyed by the content of what was rewritten.

Same guarantees as the LLM cache (``bpo.llm.cache``): several processes (proxy replicas, a
restarted proxy) may share the file; a row is committed when its batch finishes (WAL +
synchronous=NORMAL: a process killed with ``kill -9`` loses only the rewrites in flight); the
first answer for a key wins (INSERT OR IGNORE), so concurrent writers never flip a rewrite a
client has already seen. Only the optimizer's answers are stored, a degenerate one with its
fallback reason included; timeouts and rewriter errors are not answers and are retried.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from bpo.serve.rewriter import Rewrite

_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS rewrites (
    key TEXT PRIMARY KEY,
    rewriter TEXT NOT NULL,
    prompt TEXT NOT NULL,
    text TEXT NOT NULL,
    fallback_reason TEXT,
    created REAL NOT NULL
) WITHOUT ROWID;
"""


class CacheError(RuntimeError):
    pass


def cache_key(rewriter_identity: str, prompt: str) -> str:
    return hashlib.sha256(json.dumps([rewriter_identity, prompt], ensure_ascii=False).encode()).hexdigest()


class RewriteCache:
    """Reads come from the event loop, writes from a worker thread: two connections, so a write
    waiting for another process's lock never blocks a read (WAL readers do not wait for writers)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()  # serialises writers of this process
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._connect()
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA_SQL)
            self._reader = self._connect()
        except (sqlite3.DatabaseError, OSError) as exc:
            raise CacheError(f"rewrite cache {self.path} (config cache / --cache) cannot be opened: {exc}") from None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def get(self, key: str) -> Rewrite | None:
        """Called from the event loop thread only."""
        row = self._reader.execute("SELECT text, fallback_reason FROM rewrites WHERE key = ?", (key,)).fetchone()
        return Rewrite(row[0], row[1]) if row else None

    def put_many(self, rows: Iterable[tuple[str, str, str, Rewrite]]) -> None:
        """Store (key, rewriter identity, prompt, rewrite) rows in one transaction."""
        now = time.time()
        values = [(k, ident, p, r.text, r.fallback_reason, now) for k, ident, p, r in rows]
        if not values:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR IGNORE INTO rewrites VALUES (?,?,?,?,?,?)", values)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def count(self) -> int:
        return self._reader.execute("SELECT COUNT(*) FROM rewrites").fetchone()[0]

    def close(self) -> None:
        self._reader.close()
        with self._lock:
            self._db.close()
