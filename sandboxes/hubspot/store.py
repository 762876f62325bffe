"""The HubSpot sandbox's SQLite storage.

One table holds every CRM record of every object type: its id, its properties as a JSON object
of HubSpot's strings, and the columns search and paging need indexed (created and modified
instants in epoch milliseconds, archived state, the survivor a merged record went into).
Associations are stored once per direction, unique property values in a side table. One
connection (``kit.store.SqliteStore``): exactness over concurrency.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from sandboxes.kit.store import SqliteStore

_TABLES = """
CREATE TABLE IF NOT EXISTS hs_objects (
    type TEXT NOT NULL, id INTEGER NOT NULL, props TEXT NOT NULL,
    created_ms INTEGER NOT NULL, modified_ms INTEGER NOT NULL,
    archived INTEGER NOT NULL DEFAULT 0, archived_ms INTEGER, merged_into INTEGER,
    PRIMARY KEY (type, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hs_associations (
    from_type TEXT NOT NULL, from_id INTEGER NOT NULL, to_type TEXT NOT NULL,
    to_id INTEGER NOT NULL, type_id INTEGER NOT NULL,
    PRIMARY KEY (from_type, from_id, to_type, to_id, type_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hs_unique (
    type TEXT NOT NULL, property TEXT NOT NULL, value TEXT NOT NULL, id INTEGER NOT NULL,
    PRIMARY KEY (type, property, value)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hs_sequences (type TEXT PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS hs_added_properties (
    type TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (type, name));
"""
_INDEXES = """
CREATE INDEX IF NOT EXISTS hs_objects_live ON hs_objects (type, archived, modified_ms, id);
CREATE INDEX IF NOT EXISTS hs_objects_archived ON hs_objects (type, archived, id);
CREATE INDEX IF NOT EXISTS hs_associations_to ON hs_associations (to_type, to_id);
"""
LIVE = "archived = 0 AND merged_into IS NULL"


class Store(SqliteStore):
    """SQLite storage of the portal's records, associations and unique values."""

    meta_table = "hs_meta"

    def __init__(self, path: str | Path) -> None:
        """Open (or create) the database at ``path``."""
        super().__init__(path, _TABLES)
        self._committed: list[Callable[[], None]] = []

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The kit's nested write transaction; the outermost one runs the ``after_commit``
        work queued inside it once it has committed (and drops it on a rollback)."""
        with self.lock:
            outermost = self._depth == 0
            try:
                with super().transaction() as conn:
                    yield conn
            except BaseException:
                if outermost:
                    self._committed.clear()
                raise
            if outermost:
                work, self._committed = self._committed, []
                for job in work:
                    job()

    def after_commit(self, job: Callable[[], None]) -> None:
        """Run ``job`` once the current transaction commits (at once outside of one)."""
        with self.lock:
            if self._depth:
                self._committed.append(job)
                return
        job()

    def build_indexes(self) -> None:
        """Create the indexes (after a bulk load)."""
        with self.lock:
            self.conn.executescript(_INDEXES)

    # -- sequences ----------------------------------------------------------------------

    def next_ids(self, object_type: str, base: int, count: int = 1) -> list[int]:
        """``count`` fresh ids of an object type (its sequence starts above ``base``)."""
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT next FROM hs_sequences WHERE type = ?", (object_type,)
            ).fetchone()
            start = row[0] if row else base + 1
            conn.execute(
                "INSERT OR REPLACE INTO hs_sequences (type, next) VALUES (?, ?)",
                (object_type, start + count),
            )
        return list(range(start, start + count))

    # -- records ------------------------------------------------------------------------

    def insert_many(self, rows: Iterable[tuple[str, int, dict[str, str], int, int]]) -> None:
        """Insert live records ``(type, id, props, created_ms, modified_ms)``."""
        with self.transaction() as conn:
            conn.executemany(
                "INSERT INTO hs_objects (type, id, props, created_ms, modified_ms) "
                "VALUES (?, ?, ?, ?, ?)",
                ((t, i, orjson.dumps(p).decode(), c, m) for t, i, p, c, m in rows),
            )

    def fetch(self, object_type: str, record_id: int) -> dict[str, Any] | None:
        """One record row as a dict (with ``props`` decoded), live or not."""
        with self.lock:
            row = self.conn.execute(
                "SELECT id, props, created_ms, modified_ms, archived, archived_ms, merged_into "
                "FROM hs_objects WHERE type = ? AND id = ?",
                (object_type, record_id),
            ).fetchone()
        return _row(row) if row else None

    def fetch_many(self, object_type: str, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Record rows by id (any state)."""
        found: dict[int, dict[str, Any]] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self.query(
                "SELECT id, props, created_ms, modified_ms, archived, archived_ms, merged_into "
                f"FROM hs_objects WHERE type = ? AND id IN ({marks})",
                (object_type, *chunk),
            )
            found.update((row[0], _row(row)) for row in rows)
        return found

    def select(self, sql_tail: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        """Record rows of ``SELECT ... FROM hs_objects <sql_tail>``."""
        rows = self.query(
            "SELECT id, props, created_ms, modified_ms, archived, archived_ms, merged_into "
            f"FROM hs_objects {sql_tail}",
            params,
        )
        return [_row(row) for row in rows]

    def write(self, object_type: str, row: dict[str, Any]) -> None:
        """Insert or replace one record row."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO hs_objects (type, id, props, created_ms, modified_ms, "
                "archived, archived_ms, merged_into) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    object_type,
                    row["id"],
                    orjson.dumps(row["props"]).decode(),
                    row["created_ms"],
                    row["modified_ms"],
                    int(row["archived"]),
                    row["archived_ms"],
                    row["merged_into"],
                ),
            )

    def purge(self, object_type: str, record_id: int) -> None:
        """Remove a record, its associations and unique values for good."""
        with self.transaction() as conn:
            conn.execute(
                "DELETE FROM hs_objects WHERE type = ? AND id = ?", (object_type, record_id)
            )
            conn.execute(
                "DELETE FROM hs_associations WHERE (from_type = ? AND from_id = ?) "
                "OR (to_type = ? AND to_id = ?)",
                (object_type, record_id, object_type, record_id),
            )
            conn.execute(
                "DELETE FROM hs_unique WHERE type = ? AND id = ?", (object_type, record_id)
            )

    # -- unique values ------------------------------------------------------------------

    def unique_owner(self, object_type: str, prop: str, value: str) -> int | None:
        """The live record holding ``value`` in the unique property ``prop``."""
        return self.scalar(
            "SELECT id FROM hs_unique WHERE type = ? AND property = ? AND value = ?",
            (object_type, prop, value.lower()),
        )

    def set_unique(self, object_type: str, record_id: int, values: dict[str, str | None]) -> None:
        """Record the unique values a record now holds (``None``: it holds none)."""
        with self.transaction() as conn:
            for prop, value in values.items():
                conn.execute(
                    "DELETE FROM hs_unique WHERE type = ? AND property = ? AND id = ?",
                    (object_type, prop, record_id),
                )
                if value:
                    conn.execute(
                        "INSERT OR REPLACE INTO hs_unique (type, property, value, id) "
                        "VALUES (?, ?, ?, ?)",
                        (object_type, prop, value.lower(), record_id),
                    )

    def release_unique(self, object_type: str, record_id: int) -> None:
        """Forget every unique value of a record (archived or merged away)."""
        with self.transaction() as conn:
            conn.execute(
                "DELETE FROM hs_unique WHERE type = ? AND id = ?", (object_type, record_id)
            )

    # -- associations -------------------------------------------------------------------

    def add_associations(self, rows: Iterable[tuple[str, int, str, int, int]]) -> None:
        """Store directed associations ``(from_type, from_id, to_type, to_id, type_id)``."""
        with self.transaction() as conn:
            conn.executemany("INSERT OR IGNORE INTO hs_associations VALUES (?, ?, ?, ?, ?)", rows)

    def remove_associations(self, rows: Iterable[tuple[str, int, str, int, int]]) -> None:
        """Remove directed associations."""
        with self.transaction() as conn:
            conn.executemany(
                "DELETE FROM hs_associations WHERE from_type = ? AND from_id = ? AND to_type = ? "
                "AND to_id = ? AND type_id = ?",
                rows,
            )

    def associations_of(self, from_type: str, from_id: int, to_type: str) -> list[tuple[int, int]]:
        """``(to_id, type_id)`` of one record's associations to ``to_type``, by ``to_id``."""
        rows = self.query(
            "SELECT to_id, type_id FROM hs_associations WHERE from_type = ? AND from_id = ? "
            "AND to_type = ? ORDER BY to_id, type_id",
            (from_type, from_id, to_type),
        )
        return [(row[0], row[1]) for row in rows]

    def live_ids(self, object_type: str, ids: Sequence[int]) -> set[int]:
        """Which of ``ids`` are live records of ``object_type``."""
        found: set[int] = set()
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self.query(
                f"SELECT id FROM hs_objects WHERE type = ? AND id IN ({marks}) AND {LIVE}",
                (object_type, *chunk),
            )
            found.update(row[0] for row in rows)
        return found

    def associations_of_many(
        self, from_type: str, from_ids: Sequence[int], to_type: str
    ) -> dict[int, list[tuple[int, int]]]:
        """``associations_of`` for many records at once (records with none left out)."""
        found: dict[int, list[tuple[int, int]]] = {}
        for start in range(0, len(from_ids), 500):
            chunk = list(from_ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self.query(
                "SELECT from_id, to_id, type_id FROM hs_associations WHERE from_type = ? AND "
                f"from_id IN ({marks}) AND to_type = ? ORDER BY from_id, to_id, type_id",
                (from_type, *chunk, to_type),
            )
            for from_id, to_id, type_id in rows:
                found.setdefault(from_id, []).append((to_id, type_id))
        return found

    def associations_touching(self, object_type: str, record_id: int) -> list[tuple[Any, ...]]:
        """Every stored association from or to one record."""
        return [
            tuple(row)
            for row in self.query(
                "SELECT from_type, from_id, to_type, to_id, type_id FROM hs_associations "
                "WHERE (from_type = ? AND from_id = ?) OR (to_type = ? AND to_id = ?)",
                (object_type, record_id, object_type, record_id),
            )
        ]

    # -- schema drift -------------------------------------------------------------------

    def save_property(self, object_type: str, name: str, body: dict[str, Any]) -> None:
        """Persist a property added at run time."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO hs_added_properties (type, name, body) VALUES (?, ?, ?)",
                (object_type, name, orjson.dumps(body).decode()),
            )

    def added_properties(self) -> list[tuple[str, dict[str, Any]]]:
        """Properties added at run time, in insertion order."""
        rows = self.query("SELECT type, body FROM hs_added_properties ORDER BY rowid")
        return [(row[0], orjson.loads(row[1])) for row in rows]


def _row(row: Sequence[Any]) -> dict[str, Any]:
    return {
        "id": row[0],
        "props": orjson.loads(row[1]),
        "created_ms": row[2],
        "modified_ms": row[3],
        "archived": bool(row[4]),
        "archived_ms": row[5],
        "merged_into": row[6],
    }
