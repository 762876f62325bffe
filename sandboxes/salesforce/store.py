"""The Salesforce sandbox's SQLite storage: one table per sObject plus the sandbox's own tables.

On ``kit.store.SqliteStore`` (one connection, exactness over concurrency). Side tables hold
the meta values (generation flag, clock, schema additions), id sequences, deletion log (for
getDeleted), query-locator snapshots and Bulk jobs.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from sandboxes.kit.store import SqliteStore, quote
from sandboxes.salesforce.cdc import ChangeBus
from sandboxes.salesforce.schema import SalesforceSchema, SObject, sql_type

_SIDE_TABLES = """
CREATE TABLE IF NOT EXISTS sandbox_sequences (prefix TEXT PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sandbox_deleted (
    sobject TEXT NOT NULL, record_id TEXT NOT NULL, deleted_date TEXT NOT NULL,
    PRIMARY KEY (sobject, record_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sandbox_deleted_by_date ON sandbox_deleted (sobject, deleted_date);
CREATE TABLE IF NOT EXISTS sandbox_locators (
    locator TEXT PRIMARY KEY, state TEXT NOT NULL, total INTEGER NOT NULL,
    last_used REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sandbox_cursor (
    locator TEXT NOT NULL, position INTEGER NOT NULL, record_id TEXT NOT NULL,
    PRIMARY KEY (locator, position)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sandbox_bulk_jobs (id TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sandbox_fields (
    sobject TEXT NOT NULL, name TEXT NOT NULL, describe TEXT NOT NULL,
    PRIMARY KEY (sobject, name));
"""
# The lookups partner slices and parent/child reads follow; other lookups stay unindexed.
INDEXED_REFERENCES = frozenset(
    ("Contact.AccountId", "Opportunity.AccountId", "Opportunity.PartnerAccountId",
     "OpportunityLineItem.OpportunityId", "Deal_Registration__c.Partner_Account__c",
     "Deal_Registration__c.Opportunity__c", "User.AccountId", "Account.ParentId")
)  # fmt: skip


class Store(SqliteStore):
    """SQLite storage of every sObject and of the sandbox's own state."""

    def __init__(self, path: str | Path, schema: SalesforceSchema) -> None:
        """Open (or create) the database file at ``path`` for ``schema``."""
        self.schema = schema
        self.cdc: ChangeBus | None = None
        super().__init__(path, _SIDE_TABLES)
        self._restore_added_fields()

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside a transaction: undo only this block's writes when it raises."""
        with self.transaction() as conn:
            conn.execute("SAVEPOINT record")
            mark = self.cdc.mark() if self.cdc else 0
            try:
                yield
            except BaseException:
                conn.execute("ROLLBACK TO record")
                conn.execute("RELEASE record")
                if self.cdc:
                    self.cdc.rollback_to(mark)
                raise
            conn.execute("RELEASE record")

    def committed(self) -> None:
        """Publish the transaction's change events."""
        if self.cdc:
            self.cdc.commit()

    def rolled_back(self) -> None:
        """Forget the transaction's staged change events."""
        if self.cdc:
            self.cdc.discard()

    # -- schema ------------------------------------------------------------------------------

    def create_tables(self) -> None:
        """Create every sObject table (columns from the describes) that does not exist yet."""
        with self.transaction() as conn:
            for obj in self.schema.objects.values():
                columns = ", ".join(
                    f"{quote(f['name'])} {sql_type(f['type'])}"
                    + (" PRIMARY KEY" if f["type"] == "id" else "")
                    for f in obj.stored_fields()
                )
                conn.execute(f"CREATE TABLE IF NOT EXISTS {quote(obj.sql_table)} ({columns})")

    def create_indexes(self) -> None:
        """Index modstamps, external ids and the references partner queries follow."""
        with self.transaction() as conn:
            for obj in self.schema.objects.values():
                table = quote(obj.sql_table)
                conn.execute(
                    f"CREATE INDEX IF NOT EXISTS {quote(obj.sql_table + '_modstamp')}"
                    f' ON {table} ("SystemModstamp", "Id")'
                )
                for f in obj.stored_fields():
                    self._index_field(conn, obj, f)

    def _index_field(self, conn: sqlite3.Connection, obj: SObject, field: dict[str, Any]) -> None:
        name = quote(f"{obj.sql_table}_{field['name']}")
        column = quote(field["name"])
        if field["externalId"] or field["unique"]:
            conn.execute(
                f"CREATE INDEX IF NOT EXISTS {name} ON {quote(obj.sql_table)}"
                f" ({column} COLLATE NOCASE)"
            )
        elif f"{obj.name}.{field['name']}" in INDEXED_REFERENCES:
            conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {quote(obj.sql_table)} ({column})")

    def add_column(self, obj: SObject, field: dict[str, Any]) -> None:
        """Add a column for a new field and remember the field across restarts."""
        with self.transaction() as conn:
            conn.execute(
                f"ALTER TABLE {quote(obj.sql_table)}"
                f" ADD COLUMN {quote(field['name'])} {sql_type(field['type'])}"
            )
            conn.execute(
                "INSERT INTO sandbox_fields (sobject, name, describe) VALUES (?, ?, ?)",
                (obj.name, field["name"], orjson.dumps(field).decode()),
            )
            self._index_field(conn, obj, field)

    def _restore_added_fields(self) -> None:
        rows = self.conn.execute("SELECT sobject, describe FROM sandbox_fields").fetchall()
        for sobject, describe in rows:
            self.schema.add_field(sobject, orjson.loads(describe))

    # -- sequences ---------------------------------------------------------------------------

    def reserve_sequences(self, prefix: str, count: int) -> int:
        """Reserve ``count`` consecutive id sequence numbers for ``prefix``; returns the first."""
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT next FROM sandbox_sequences WHERE prefix = ?", (prefix,)
            ).fetchone()
            first = row[0] if row else 1
            conn.execute(
                "INSERT INTO sandbox_sequences (prefix, next) VALUES (?, ?)"
                " ON CONFLICT (prefix) DO UPDATE SET next = excluded.next",
                (prefix, first + count),
            )
            return int(first)

    # -- rows --------------------------------------------------------------------------------

    def insert_many(
        self, obj: SObject, columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> int:
        """Insert rows (tuples in ``columns`` order) with executemany; returns how many."""
        marks = ", ".join("?" * len(columns))
        names = ", ".join(quote(c) for c in columns)
        sql = f"INSERT INTO {quote(obj.sql_table)} ({names}) VALUES ({marks})"
        with self.transaction() as conn:
            before = conn.total_changes
            conn.executemany(sql, rows)
            return conn.total_changes - before

    def fetch_row(self, obj: SObject, record_id: str) -> dict[str, Any] | None:
        """The stored row of ``record_id`` (deleted or not) as ``{field: value}``, or ``None``."""
        with self.lock:
            cursor = self.conn.execute(
                f'SELECT * FROM {quote(obj.sql_table)} WHERE "Id" = ?', (record_id,)
            )
            row = cursor.fetchone()
            if row is None:
                return None
            return {column[0]: value for column, value in zip(cursor.description, row, strict=True)}

    def fetch_rows(self, obj: SObject, record_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Stored rows by id for the ids that exist."""
        if not record_ids:
            return {}
        marks = ", ".join("?" * len(record_ids))
        with self.lock:
            cursor = self.conn.execute(
                f'SELECT * FROM {quote(obj.sql_table)} WHERE "Id" IN ({marks})', tuple(record_ids)
            )
            names = [column[0] for column in cursor.description]
            rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        return {row["Id"]: row for row in rows}

    def update_row(self, obj: SObject, record_id: str, values: dict[str, Any]) -> None:
        """Set ``values`` on one row."""
        if not values:
            return
        assignments = ", ".join(f"{quote(name)} = ?" for name in values)
        with self.transaction() as conn:
            conn.execute(
                f'UPDATE {quote(obj.sql_table)} SET {assignments} WHERE "Id" = ?',
                (*values.values(), record_id),
            )

    def delete_row(self, obj: SObject, record_id: str) -> None:
        """Remove a row for good, with its deletion-log entry."""
        with self.transaction() as conn:
            conn.execute(f'DELETE FROM {quote(obj.sql_table)} WHERE "Id" = ?', (record_id,))
            conn.execute(
                "DELETE FROM sandbox_deleted WHERE sobject = ? AND record_id = ?",
                (obj.name, record_id),
            )

    def log_deletion(self, obj: SObject, record_id: str, when: str) -> None:
        """Record that ``record_id`` was deleted at ``when`` (storage datetime)."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO sandbox_deleted (sobject, record_id, deleted_date)"
                " VALUES (?, ?, ?)",
                (obj.name, record_id, when),
            )

    def forget_deletion(self, obj: SObject, record_id: str) -> None:
        """Drop the deletion-log entry of an undeleted record."""
        with self.transaction() as conn:
            conn.execute(
                "DELETE FROM sandbox_deleted WHERE sobject = ? AND record_id = ?",
                (obj.name, record_id),
            )

    def find_by(self, obj: SObject, field_name: str, value: Any) -> list[str]:
        """Ids of the live rows whose ``field_name`` equals ``value`` (text ignores case)."""
        return [
            row[0]
            for row in self.query(
                f'SELECT "Id" FROM {quote(obj.sql_table)}'
                f' WHERE {quote(field_name)} = ? COLLATE NOCASE AND "IsDeleted" = 0'
                ' ORDER BY "Id"',
                (value,),
            )
        ]

    def referring_ids(self, child: SObject, field_name: str, parent_id: str) -> list[str]:
        """The ids of ``child`` records whose ``field_name`` points at ``parent_id``."""
        sql = f'SELECT "Id" FROM {quote(child.sql_table)} WHERE {quote(field_name)} = ?'
        return [row[0] for row in self.query(sql, (parent_id,))]

    def exists(self, obj: SObject, record_id: str, *, include_deleted: bool = False) -> bool:
        """Whether a row with ``record_id`` exists (and is not deleted, unless asked)."""
        condition = "" if include_deleted else ' AND "IsDeleted" = 0'
        sql = f'SELECT 1 FROM {quote(obj.sql_table)} WHERE "Id" = ?{condition}'
        return self.scalar(sql, (record_id,)) is not None

    def json_state(self, table: str, key: str) -> dict[str, Any] | None:
        """A JSON ``state`` column of a side table row (locators, bulk jobs)."""
        key_column = "locator" if table == "sandbox_locators" else "id"
        raw = self.scalar(f"SELECT state FROM {table} WHERE {key_column} = ?", (key,))
        return None if raw is None else orjson.loads(raw)


def utc_now_wall() -> datetime:
    """The wall clock in UTC, whole seconds."""
    return datetime.fromtimestamp(int(time.time()), UTC)
