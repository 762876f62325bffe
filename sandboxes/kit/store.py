"""The SQLite file under every sandbox: one connection, its transactions and the meta values.

One connection, serialised by a re-entrant lock: a sandbox favours exactness (a write and the
snapshot a query takes never interleave) over concurrency. Each sandbox's store adds its own
tables and row operations on top.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_META = "CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY, value TEXT NOT NULL);"


def quote(identifier: str) -> str:
    """An SQL identifier in double quotes."""
    return '"' + identifier.replace('"', '""') + '"'


class SqliteStore:
    """A sandbox's SQLite connection with nested write transactions and a meta table."""

    meta_table = "sandbox_meta"
    pragmas: tuple[str, ...] = ("journal_mode=WAL", "synchronous=NORMAL", "temp_store=MEMORY")

    def __init__(self, path: str | Path, tables: str) -> None:
        """Open (or create) the database file at ``path`` with the meta table and ``tables``
        (a script of ``CREATE ... IF NOT EXISTS`` statements)."""
        self.path = Path(path)
        self.lock = threading.RLock()
        self._depth = 0
        self.conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        for pragma in self.pragmas:
            self.conn.execute(f"PRAGMA {pragma}")
        self.conn.executescript(_META.format(table=self.meta_table) + tables)

    def close(self) -> None:
        """Close the connection."""
        with self.lock:
            self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the lock and one write transaction; nested calls join the outer one."""
        with self.lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self.conn
                finally:
                    self._depth -= 1
                return
            self.conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                self._depth = 0
                self.rolled_back()
                raise
            try:
                self.conn.execute("COMMIT")
            finally:
                self._depth = 0
            self.committed()

    def committed(self) -> None:
        """Called after each outermost transaction commits, still holding the lock (a
        subclass publishes what the transaction did)."""

    def rolled_back(self) -> None:
        """Called after an outermost transaction rolls back, still holding the lock."""

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """All rows of a read."""
        with self.lock:
            return self.conn.execute(sql, params).fetchall()

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row of a read, or ``None``."""
        with self.lock:
            row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def get_meta(self, key: str) -> str | None:
        """A stored meta value, or ``None``."""
        value = self.scalar(f"SELECT value FROM {self.meta_table} WHERE key = ?", (key,))
        return None if value is None else str(value)

    def set_meta(self, key: str, value: str) -> None:
        """Store a meta value."""
        with self.transaction() as conn:
            conn.execute(
                f"INSERT INTO {self.meta_table} (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
