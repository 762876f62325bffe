"""SQLite's one writer: how the store's connections take it, in one process and across several.

SQLite in WAL mode lets any number of readers run beside one writer. A second writer gets
``SQLITE_BUSY``; the busy timeout makes it wait, except in a deferred transaction that read
before it wrote: when another writer committed since that read, its snapshot is stale, and the
upgrade to a write fails at once with "database is locked", whatever the timeout. The Python
driver's own transaction handling opens exactly such deferred transactions (and runs DDL, such
as dropping an index, outside them), so several threads or processes writing one store fail.

Here the driver's handling is switched off and the store opens its write transactions itself
with ``BEGIN IMMEDIATE``, which takes the write lock before the first read, waiting for it under
the busy timeout (the path between processes: the CLI beside a daemon). Within one process the
writers of a database file also queue, first come first served, on a lock of their own
(``writer_lock``): the daemon's jobs are threads of one process, and a queue hands the lock over
at once and without a time limit, where the busy handler polls and gives up. Reads take no lock
and open no transaction (each statement reads the latest commit), so a portal reading the store
is never held up by a writer.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mirror.errors import MirrorError
from mirror.store.wal import hold_back_checkpoints

# how long a write waits for another process's write transaction (a first backfill's index
# builds are the longest) before it fails with "database is locked"
BUSY_TIMEOUT_MS = 60_000


class NestedWriteError(MirrorError):
    """A write transaction was opened while the same thread held one on the same database:
    SQLite has one writer, so the inner one could only wait for the outer one forever."""


class WriterLock:
    """Write transactions on one database file, one at a time, in the order they asked."""

    def __init__(self) -> None:
        self._turns = threading.Condition()
        self._next_ticket = 0
        self._serving = 0
        self._holder: int | None = None

    @contextmanager
    def held(self) -> Iterator[None]:
        """Wait for this thread's turn, and keep the lock for the body."""
        me = threading.get_ident()
        with self._turns:
            if self._holder == me:
                raise NestedWriteError(
                    "a write transaction was opened inside another one on the same SQLite store"
                )
            ticket = self._next_ticket
            self._next_ticket += 1
            while ticket != self._serving:
                self._turns.wait()
            self._holder = me
        try:
            yield
        finally:
            with self._turns:
                self._holder = None
                self._serving += 1
                self._turns.notify_all()


_locks: dict[str, WriterLock] = {}
_locks_guard = threading.Lock()


def writer_lock(path: str | None) -> WriterLock:
    """The process's lock for the database file at ``path`` (shared by every store opened on
    it); a store with no file of its own (in memory) gets a lock of its own."""
    if path is None:
        return WriterLock()
    key = os.path.realpath(path)
    with _locks_guard:
        return _locks.setdefault(key, WriterLock())


def configure_connection(dbapi_connection: Any, _record: Any) -> None:
    """Set up a new SQLite connection: WAL, the busy timeout, and transactions left to
    the store (``BEGIN IMMEDIATE`` for writes, none for reads)."""
    # the driver would otherwise open deferred transactions of its own before each write
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # first: a new file's switch to WAL takes the write lock too
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # index builds sort with helper threads: rebuilding the access table's index after a
    # first backfill of millions of grants is the longest step a sync leaves to the end
    cursor.execute(f"PRAGMA threads={min(os.cpu_count() or 1, 4)}")
    cursor.close()
    hold_back_checkpoints(dbapi_connection)
