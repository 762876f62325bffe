"""The sandboxes' write log: every record write a sandbox committed, with its origin and values.

Each write (create, update, delete, undelete, merge, hard delete, re-stamp) is appended to the
``sandbox_writes`` table of the sandbox's own SQLite file inside the write's own transaction, so
the log holds exactly the writes that took effect, in commit order (a write refused or rolled
back leaves no entry). ``origin`` is ``api`` for a write a CRM-facing request made (the
integration user: the mirror's pushes) and ``crm`` for one made through a test control (a change
made inside the CRM by someone else). ``fields`` are the values written, in the sandbox's storage
form. The ``write_log`` control of each sandbox reads it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import orjson

SCHEMA = """
CREATE TABLE IF NOT EXISTS sandbox_writes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, origin TEXT NOT NULL,
    op TEXT NOT NULL, object TEXT NOT NULL, record_id TEXT NOT NULL, fields TEXT NOT NULL)
"""
_IN_API_REQUEST: ContextVar[bool] = ContextVar("sandbox_api_request", default=False)


@contextmanager
def api_request() -> Iterator[None]:
    """Around the handling of one CRM-facing request: its writes are logged as ``api``."""
    token = _IN_API_REQUEST.set(True)
    try:
        yield
    finally:
        _IN_API_REQUEST.reset(token)


def in_api_request() -> bool:
    """Whether the current write comes from a CRM-facing request (``api``) rather than a test
    control (``crm``)."""
    return _IN_API_REQUEST.get()


def create_table(conn: sqlite3.Connection) -> None:
    """Create the log table if the file has none yet."""
    conn.execute(SCHEMA)


def log_write(
    conn: sqlite3.Connection,
    op: str,
    object_name: str,
    record_id: Any,
    fields: Mapping[str, Any],
    at: str,
) -> None:
    """Append one write (call inside the write's transaction)."""
    origin = "api" if in_api_request() else "crm"
    body = orjson.dumps(dict(fields), default=str).decode()
    conn.execute(
        "INSERT INTO sandbox_writes (at, origin, op, object, record_id, fields)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (at, origin, op, object_name, str(record_id), body),
    )


def read_log(conn: sqlite3.Connection, after: int = 0, limit: int = 10_000) -> list[dict[str, Any]]:
    """Up to ``limit`` entries with ``seq > after``, oldest first."""
    rows = conn.execute(
        "SELECT seq, at, origin, op, object, record_id, fields FROM sandbox_writes"
        " WHERE seq > ? ORDER BY seq LIMIT ?",
        (after, limit),
    ).fetchall()
    names = ("seq", "at", "origin", "op", "object", "record_id")
    return [
        {**dict(zip(names, row[:6], strict=True)), "fields": orjson.loads(row[6])} for row in rows
    ]
