"""Which keys carry which tag, in SQLite beside a disk tier's entries: what an
invalidation by tag deletes there, even for entries written before a restart.

A row lives as long as its entry would (its expiry); rows past it are pruned as the index
is used. An entry evicted for space keeps its row until then: a stale key only costs a
delete that finds nothing. Synchronous: the disk tier calls it from its thread pool.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable

from app.types import CacheKey

FILENAME = "llmcache-tags.sqlite"
# Expired rows are pruned after this many writes (and at every take).
PRUNE_EVERY = 1000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tagged (
    tag TEXT NOT NULL,
    key TEXT NOT NULL,
    expires REAL,
    PRIMARY KEY (tag, key)
) WITHOUT ROWID
"""


class TagIndex:
    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, FILENAME)
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._writes = 0

    def _open(self) -> sqlite3.Connection:
        """The connection, made anew if the file is gone (the directory was removed)."""
        if self._connection is not None and not os.path.exists(self.path):
            self._connection.close()
            self._connection = None
        if self._connection is None:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute(_SCHEMA)
            self._connection = connection
        return self._connection

    def add(self, tagged: dict[str, list[CacheKey]], ttl_s: float | None) -> None:
        """A row per tag and key; a key written again takes the later expiry (or none)."""
        expires = None if ttl_s is None else time.time() + ttl_s
        rows = [(tag, key, expires) for tag, keys in tagged.items() for key in keys]
        with self._lock:
            connection = self._open()
            with connection:
                connection.execute("BEGIN")
                connection.executemany(
                    "INSERT INTO tagged (tag, key, expires) VALUES (?, ?, ?) ON CONFLICT (tag, key) DO UPDATE SET "
                    "expires = CASE WHEN excluded.expires IS NULL OR tagged.expires IS NULL THEN NULL "
                    "ELSE max(excluded.expires, tagged.expires) END",
                    rows,
                )
            self._writes += len(rows)
            if self._writes >= PRUNE_EVERY:
                self._writes = 0
                self._prune(connection)

    def take(self, tags: Iterable[str]) -> list[CacheKey]:
        """The live keys of `tags`, forgotten now."""
        wanted = list(tags)
        marks = ",".join("?" * len(wanted))
        with self._lock:
            connection = self._open()
            with connection:
                connection.execute("BEGIN IMMEDIATE")
                rows = connection.execute(
                    f"SELECT DISTINCT key FROM tagged WHERE tag IN ({marks}) AND (expires IS NULL OR expires > ?)",
                    [*wanted, time.time()],
                ).fetchall()
                connection.execute(f"DELETE FROM tagged WHERE tag IN ({marks})", wanted)
            self._prune(connection)
        return sorted(row[0] for row in rows)

    def clear(self) -> None:
        with self._lock:
            self._open().execute("DELETE FROM tagged")

    def _prune(self, connection: sqlite3.Connection) -> None:
        connection.execute("DELETE FROM tagged WHERE expires IS NOT NULL AND expires <= ?", (time.time(),))

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
