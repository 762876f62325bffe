"""A write the CRM refused for good: the mirror row returns to the CRM's values, the change feed
says so (a ``revert`` of origin ``writeback``, with the CRM's error), and the record's later
edits made on top of the refused values are rebased onto what the CRM kept.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select, update

from mirror import feed
from mirror.push.outbox import OPEN_STATUSES, OutboxEntry, set_entry
from mirror.store.database import Store
from mirror.store.records import field_value
from mirror.store.tables import mirror_outbox
from mirror.types import Change, ChangeOrigin, ObjectSpec, WriteResult


def revert(
    conn: Connection,
    store: Store,
    spec: ObjectSpec,
    row: OutboxEntry,
    answer: WriteResult,
    now: datetime,
) -> None:
    """Entry ``row``'s write was refused for good (``answer``): the mirror row returns to the
    CRM's values and the change feed says so, at ``now``."""
    mirrored = store.mirrored(spec.source, spec.name)
    table, key = mirrored.table, mirrored.table.c[spec.key]
    if row.op == "create":
        conn.execute(update(table).where(key == row.record_id).values(_deleted=True))
    elif row.op == "delete":
        conn.execute(update(table).where(key == row.record_id).values(_deleted=False))
    else:
        current = conn.execute(select(table).where(key == row.record_id)).first()
        restore = {
            name: field_value(spec, name, old)
            for name, old in row.old_values.items()
            if current is not None
            and name in table.c
            and current._mapping[name] == field_value(spec, name, row.new_values.get(name))
        }
        if restore:
            conn.execute(update(table).where(key == row.record_id).values(**restore))
        rebase_followers(conn, row)
    error = {"error": (answer.error_code, answer.message)}
    change = Change(
        spec.source,
        spec.name,
        row.record_id,
        "revert",
        ChangeOrigin.WRITEBACK,
        error,
        row.author,
        now,
    )
    feed.append(conn, [change])


def rebase_followers(conn: Connection, row: OutboxEntry) -> None:
    """Later open edits of the record made on top of the refused one's values were made
    against values the CRM never held: their base becomes what the CRM kept, so their write
    is not refused for a change nobody made."""
    o = mirror_outbox.c
    query = select(o.seq, o.old_values).where(
        o.source == row.source,
        o.object == row.object,
        o.record_id == row.record_id,
        o.seq > row.seq,
        o.op == "update",
        o.status.in_(OPEN_STATUSES),
    )
    for seq, old_values in conn.execute(query).all():
        rebased = {
            name: row.old_values[name]
            if name in row.new_values and name in row.old_values and value == row.new_values[name]
            else value
            for name, value in old_values.items()
        }
        if rebased != old_values:
            set_entry(conn, seq, old_values=rebased)
