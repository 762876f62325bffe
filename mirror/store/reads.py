"""Plain reads of a mirrored object's table: its live rows with chosen columns, or one record as
stored, for the callers that need a few values of the mirror and no partner's slice of it
(the partner list, a user's role, a diff against the CRM)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select

from mirror.store.database import MirrorTable, Store


def live_rows(
    store: Store,
    mirrored: MirrorTable,
    columns: Sequence[str],
    *,
    where: Mapping[str, Any] | None = None,
    order_by: str | None = None,
) -> list[Any]:
    """The live (not deleted) rows of ``mirrored`` with ``columns`` selected, in that order:
    those whose columns hold the values ``where`` gives (``True``: a flag that is set)."""
    table = mirrored.table
    query = select(*(table.c[name] for name in columns)).where(table.c._deleted.is_(False))
    for name, value in (where or {}).items():
        column = table.c[name]
        query = query.where(column.is_(value) if isinstance(value, bool) else column == value)
    if order_by is not None:
        query = query.order_by(table.c[order_by])
    with store.engine.connect() as conn:
        return list(conn.execute(query).all())


def stored_record(store: Store, mirrored: MirrorTable, record_id: str) -> dict[str, Any] | None:
    """Record ``record_id`` as the mirror holds it, system columns included (a deleted one
    too); ``None`` when the mirror has no such record."""
    table = mirrored.table
    query = select(table).where(table.c[mirrored.spec.key] == record_id)
    with store.engine.connect() as conn:
        row = conn.execute(query).first()
    return dict(row._mapping) if row else None
