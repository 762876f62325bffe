"""Additive migrations of a store: the engine tables of a store an earlier version made gain this
version's columns and indexes, an object table gains its missing indexes, and the fields an
object lost are kept on record (their columns are never dropped).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table, inspect

from mirror.schema import Migration, spec_to_json
from mirror.store.tables import engine_metadata
from mirror.types import FieldSpec, ObjectSpec


def ensure_indexes(conn: Connection, table: Table) -> None:
    """Create the secondary indexes of an object table that are missing; one that an earlier
    version made on other columns under the same name is built again."""
    found = {i["name"]: i["column_names"] for i in inspect(conn).get_indexes(table.name)}
    for index in table.indexes:
        columns = [c.name for c in index.columns]
        if index.name in found and found[index.name] != columns:
            index.drop(conn)
        if found.get(index.name) != columns:
            index.create(conn)


def upgrade_engine_columns(conn: Connection) -> None:
    """Add the engine-table columns this version has and a store made by an earlier one lacks
    (each such column may be empty: rows written before it have none)."""
    inspector = inspect(conn)
    preparer = conn.dialect.identifier_preparer
    for table in engine_metadata.sorted_tables:
        found = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in found:
                continue
            ddl = column.type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(
                f"ALTER TABLE {preparer.quote(table.name)} "
                f"ADD COLUMN {preparer.quote(column.name)} {ddl}"
            )


def upgrade_engine_indexes(conn: Connection) -> None:
    """Give the engine tables of a store made by an earlier version the indexes of this one
    (an index whose columns changed is built again)."""
    inspector = inspect(conn)
    for table in engine_metadata.sorted_tables:
        found = {i["name"]: i["column_names"] for i in inspector.get_indexes(table.name)}
        wanted = {index.name for index in table.indexes}
        for name in sorted(n for n in found if n):
            # an index an earlier version kept and this one does not (engine tables only)
            if name.startswith("ix_") and name not in wanted:
                quoted = conn.dialect.identifier_preparer.quote(name)
                conn.exec_driver_sql(f"DROP INDEX IF EXISTS {quoted}")
        for index in table.indexes:
            columns = [c.name for c in index.columns]
            if index.name in found and found[index.name] != columns:
                index.drop(conn)
                index.create(conn)
            elif index.name not in found:
                index.create(conn)


def merge_removed(before: tuple[FieldSpec, ...], migration: Migration) -> tuple[FieldSpec, ...]:
    """The fields removed from the object so far: ``before`` and what ``migration`` removes,
    less those it brings back."""
    present = {f.name for f in migration.effective.fields}
    kept = {f.name: f for f in before if f.name not in present}
    kept.update({f.name: f for f in migration.removed})
    return tuple(kept.values())


def field_json(field: FieldSpec) -> dict[str, Any]:
    """One field's spec as stored in ``mirror_objects.removed_fields``."""
    data = spec_to_json(ObjectSpec(source="", name="", key="", cursor_field="", fields=(field,)))[
        "fields"
    ][0]
    return dict(data)
