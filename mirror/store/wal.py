"""SQLite checkpoints run by a thread of their own, not by the writer that commits.

In WAL mode a commit appends the pages it changed to the log; a checkpoint copies them back into
the database file and syncs it to disk. By default the connection whose commit takes the log past
1,000 pages runs that checkpoint itself, before its commit returns: every page of a backfill and
every incremental sync of a thousand records would wait for the copy and the disk sync of what
it wrote. Here the store's connections checkpoint themselves only when the log is far behind
(``BACKSTOP_PAGES``, should the thread be stalled), and a thread woken after each commit runs
passive checkpoints, which never block readers or writers.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from typing import Any

from sqlalchemy.engine import URL

log = logging.getLogger(__name__)

# pages (4 KiB each) the log may hold before a committing connection checkpoints it itself
BACKSTOP_PAGES = 16_000


def database_file(url: URL) -> str | None:
    """The file a SQLite URL names, or ``None`` for an in-memory or URI-style database."""
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:") or url.query.get("uri"):
        return None
    return database


def hold_back_checkpoints(dbapi_connection: Any) -> None:
    """Leave checkpoints to the thread: the connection runs one only past the backstop."""
    dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")


class WalCheckpointer:
    """Checkpoints one SQLite database's log from a daemon thread, after each commit."""

    def __init__(self, path: str) -> None:
        """Start the thread for the database file at ``path``."""
        self.path = path
        self.checkpoints = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="prm-mirror-checkpoints", daemon=True
        )
        self._thread.start()

    def committed(self) -> None:
        """A transaction committed: checkpoint what it wrote, soon."""
        self._wake.set()

    def close(self) -> None:
        """Run a last checkpoint and stop the thread."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                self._checkpoint(conn)
                if self._stop.is_set():
                    return
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.checkpoints += 1
        except sqlite3.Error as error:
            # the next commit's checkpoint (or the writers' backstop) catches up
            log.warning("SQLite checkpoint of %s failed: %s", self.path, error)
