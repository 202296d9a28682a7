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
from pathlib import Path
from typing import Iterable

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
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()  # one connection, used from the event loop and a writer thread
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA_SQL)
        except (sqlite3.DatabaseError, OSError) as exc:
            raise CacheError(f"rewrite cache {self.path} (config cache / --cache) cannot be opened: {exc}") from None

    def get(self, key: str) -> Rewrite | None:
        with self._lock:
            row = self._db.execute("SELECT text, fallback_reason FROM rewrites WHERE key = ?", (key,)).fetchone()
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
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM rewrites").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
