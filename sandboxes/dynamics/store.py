"""The Dataverse sandbox's SQLite storage: one table per Dataverse table plus its own tables.

On ``kit.store.SqliteStore`` (one connection, exactness over concurrency). Every write takes
the next value of one organisation-wide row-version counter, as Dataverse's ``versionnumber``
does; change tracking reads rows and the ``sandbox_deleted`` tombstones by that version.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandboxes.dynamics.schema import Attribute, DataverseSchema, Entity
from sandboxes.kit.store import SqliteStore, quote
from sandboxes.kit.writelog import create_table

_SIDE_TABLES = """
CREATE TABLE IF NOT EXISTS sandbox_version (id INTEGER PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO sandbox_version (id, value) VALUES (1, 1000);
CREATE TABLE IF NOT EXISTS sandbox_deleted (
    entity TEXT NOT NULL, record_id TEXT NOT NULL, version INTEGER NOT NULL,
    deleted_on INTEGER NOT NULL, PRIMARY KEY (entity, version)) WITHOUT ROWID;
"""


class _Row(dict[str, Any]):
    """A row that reads by column name and by position."""

    def __init__(self, names: list[str], values: tuple[Any, ...]) -> None:
        super().__init__(zip(names, values, strict=True))
        self._values = values

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, int):
            return self._values[key]
        return super().__getitem__(key)


def sql_type(attribute: Attribute) -> str:
    """The SQLite column type of an attribute."""
    if attribute.type == "DateTime":
        return "TEXT" if attribute.date_only else "INTEGER"
    if attribute.type in ("Integer", "BigInt", "Boolean", "Picklist", "State", "Status"):
        return "INTEGER"
    if attribute.type in ("Money", "Decimal", "Double"):
        return "REAL"
    return "TEXT"


@dataclass(frozen=True)
class RowChange:
    """One committed row write, as the event pipeline sees it: ``op`` is the write log's
    (``create``, ``update``, ``touch``, ``delete``, ``hard_delete``, ``merge``); ``values``
    are the stored values written; ``at`` is the epoch second of the write."""

    op: str
    entity: Entity
    record_id: str
    values: Mapping[str, Any]
    at: int
    extra: Mapping[str, Any] | None = None


ChangeHook = Callable[[list[RowChange]], None]


class DataverseStore(SqliteStore):
    """SQLite storage of every table and of the sandbox's own state.

    Row writes noted with ``note_change`` inside a transaction are handed, when the outermost
    transaction ends well, first to ``before_commit`` (still inside it: a synchronous event
    handler that raises rolls the whole transaction back) and then, once committed, to
    ``after_commit``. A transaction that fails hands them to neither.
    """

    pragmas = ("journal_mode=WAL", "synchronous=NORMAL")

    def __init__(self, path: str | Path, schema: DataverseSchema) -> None:
        """Open (or create) the database at ``path`` for ``schema``."""
        self.schema = schema
        self.before_commit: ChangeHook | None = None
        self.after_commit: ChangeHook | None = None
        self._changes: list[RowChange] = []
        super().__init__(path, _SIDE_TABLES)
        create_table(self.conn)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``SqliteStore.transaction`` with the commit hooks (class docstring)."""
        with self.lock:
            outer = self._depth == 0
            if outer:
                self._changes = []
            try:
                with super().transaction() as conn:
                    yield conn
                    if outer and self._changes and self.before_commit is not None:
                        self.before_commit(list(self._changes))
            except BaseException:
                if outer:
                    self._changes = []
                raise
            changes, self._changes = (self._changes, []) if outer else ([], self._changes)
        if changes and self.after_commit is not None:
            self.after_commit(changes)

    def note_change(self, change: RowChange) -> None:
        """Remember a row write of the current transaction for the commit hooks."""
        if self.before_commit is not None or self.after_commit is not None:
            self._changes.append(change)

    def create_tables(self) -> None:
        """Create every table (without indexes: see ``create_indexes``)."""
        with self.transaction() as conn:
            for entity in self.schema.entities.values():
                columns = ", ".join(
                    f"{quote(a.name)} {sql_type(a)}"
                    + (" PRIMARY KEY" if a.name == entity.primary_id else "")
                    for a in entity.attributes
                )
                conn.execute(f"CREATE TABLE IF NOT EXISTS {quote(entity.name)} ({columns})")

    def add_columns(self, entity: Entity, attributes: Iterable[Attribute]) -> None:
        """Add the columns of new attributes to their table (kept when they are there)."""
        table = quote(entity.name)
        with self.transaction() as conn:
            present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            for attribute in attributes:
                if attribute.name not in present:
                    column = f"{quote(attribute.name)} {sql_type(attribute)}"
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")

    def create_indexes(self) -> None:
        """Index row versions, modification stamps and lookups."""
        with self.transaction() as conn:
            for entity in self.schema.entities.values():
                table = quote(entity.name)
                wanted = ["versionnumber", "modifiedon"]
                wanted += [a.name for a in entity.attributes if a.is_lookup]
                for column in wanted:
                    name = quote(f"ix_{entity.name}_{column}")
                    conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({quote(column)})")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[_Row]:
        """All rows of a read; each reads by column name and by position."""
        with self.lock:
            cursor = self.conn.execute(sql, params)
            names = [d[0] for d in cursor.description or ()]
            return [_Row(names, row) for row in cursor.fetchall()]

    # --- versions ------------------------------------------------------------------------

    def next_version(self) -> int:
        """The next organisation-wide row version (inside the caller's transaction)."""
        with self.transaction() as conn:
            row = conn.execute(
                "UPDATE sandbox_version SET value = value + 1 WHERE id = 1 RETURNING value"
            ).fetchone()
            return int(row[0])

    def reserve_versions(self, count: int) -> int:
        """Reserve ``count`` versions at once; returns the first."""
        with self.transaction() as conn:
            row = conn.execute(
                "UPDATE sandbox_version SET value = value + ? WHERE id = 1 RETURNING value",
                (count,),
            ).fetchone()
            return int(row[0]) - count + 1

    def current_version(self) -> int:
        """The highest row version handed out so far."""
        return int(self.scalar("SELECT value FROM sandbox_version WHERE id = 1"))

    # --- rows ----------------------------------------------------------------------------

    def fetch(self, entity: Entity, record_id: str) -> dict[str, Any] | None:
        """One stored row as a dict, or ``None``."""
        rows = self.query(
            f"SELECT * FROM {quote(entity.name)} WHERE {quote(entity.primary_id)} = ?",
            (record_id,),
        )
        return dict(rows[0]) if rows else None

    def insert(self, entity: Entity, row: Mapping[str, Any]) -> None:
        """Insert one row."""
        self.insert_many(entity, list(row), [tuple(row.values())])

    def insert_many(
        self, entity: Entity, columns: list[str], rows: Iterable[tuple[Any, ...]]
    ) -> int:
        """Insert rows of ``columns`` values; returns how many."""
        names = ", ".join(quote(c) for c in columns)
        marks = ", ".join("?" for _ in columns)
        sql = f"INSERT INTO {quote(entity.name)} ({names}) VALUES ({marks})"
        with self.transaction() as conn:
            cursor = conn.executemany(sql, rows)
            return cursor.rowcount

    def update(self, entity: Entity, record_id: str, values: Mapping[str, Any]) -> None:
        """Set ``values`` on one row."""
        assignments = ", ".join(f"{quote(name)} = ?" for name in values)
        sql = f"UPDATE {quote(entity.name)} SET {assignments} WHERE {quote(entity.primary_id)} = ?"
        with self.transaction() as conn:
            conn.execute(sql, (*values.values(), record_id))

    def delete(
        self, entity: Entity, record_id: str, tombstone_version: int | None, when: int
    ) -> None:
        """Delete one row, leaving a change-tracking tombstone unless the version is ``None``."""
        with self.transaction() as conn:
            conn.execute(
                f"DELETE FROM {quote(entity.name)} WHERE {quote(entity.primary_id)} = ?",
                (record_id,),
            )
            if tombstone_version is not None:
                conn.execute(
                    "INSERT INTO sandbox_deleted (entity, record_id, version, deleted_on) "
                    "VALUES (?, ?, ?, ?)",
                    (entity.name, record_id, tombstone_version, when),
                )

    def count(self, entity: Entity) -> int:
        """How many rows a table holds."""
        return int(self.scalar(f"SELECT COUNT(*) FROM {quote(entity.name)}"))

    def ids(self, entity: Entity) -> list[str]:
        """Every id of a table, in id order."""
        key = quote(entity.primary_id)
        rows = self.query(f"SELECT {key} FROM {quote(entity.name)} ORDER BY {key}")
        return [row[0] for row in rows]
