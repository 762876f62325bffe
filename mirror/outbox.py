"""The outbox: portal edits waiting to reach the CRM, and what happens to them on the way.

A portal edit updates the mirror row (marked ``_pending``, so the portal reads its own write at
once) and appends one outbox entry with each field's before and after values, in the same
transaction. Entries are open until the CRM has them and their echo came back on a pull
(``done`` + ``confirmed``), or until they are superseded, failed or parked as a conflict.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, insert, or_, select, update

from mirror.records import CONVERTERS, json_safe
from mirror.store import MirrorTable, Store, utcnow
from mirror.tables import (
    given_by_children,
    mirror_access,
    mirror_changes,
    mirror_idmap,
    mirror_outbox,
)
from mirror.types import ObjectSpec

LOCAL_PREFIX = "local-"
OPEN_STATUSES = ("pending", "sending", "blocked")


def new_local_id() -> str:
    """An id for a record created in the portal, until the CRM gives it its own."""
    return f"{LOCAL_PREFIX}{uuid.uuid4().hex[:20]}"


def is_local(value: Any) -> bool:
    """Whether ``value`` is a portal-created id the CRM has not replaced yet."""
    return isinstance(value, str) and value.startswith(LOCAL_PREFIX)


def open_entry_filter() -> Any:
    """Entries whose effect the mirror has not seen confirmed by the CRM yet."""
    o = mirror_outbox.c
    return or_(
        o.status.in_(OPEN_STATUSES),
        and_(o.status == "done", o.confirmed.is_(False)),
    )


def enqueue(
    conn: Connection,
    spec: ObjectSpec,
    *,
    record_id: str,
    op: str,
    values: Mapping[str, Any],
    before: Mapping[str, Any],
    base_version: str | None,
    partner_id: str | None,
    author: str | None,
    idempotency_key: str | None = None,
) -> int:
    """Append one outbox entry and its change-feed entry; returns the entry's sequence.

    ``idempotency_key`` (random when not given) makes a create land once in the CRM however
    often it is sent; a caller that derives it from what it creates (an approval from its
    registration) gets one record even when it asks twice.
    """
    now = utcnow()
    key = idempotency_key or uuid.uuid4().hex
    result = conn.execute(
        insert(mirror_outbox).values(
            source=spec.source,
            object=spec.name,
            record_id=record_id,
            op=op,
            new_values=json_safe(dict(values)),
            old_values=json_safe(dict(before)),
            base_version=base_version,
            idempotency_key=key,
            partner_id=partner_id,
            author=author,
            status="pending",
            attempts=0,
            next_attempt_at=now,
            force=False,
            confirmed=False,
            created_at=now,
            updated_at=now,
        )
    )
    fields = {f: [before.get(f), values.get(f)] for f in values} if op != "delete" else None
    conn.execute(
        insert(mirror_changes).values(
            source=spec.source,
            object=spec.name,
            record_id=record_id,
            op=op,
            origin="portal",
            author=author,
            fields=json_safe(fields) if fields is not None else None,
            at=now,
        )
    )
    seq = result.inserted_primary_key
    assert seq is not None
    return int(seq[0])


def open_entries(
    conn: Connection, source: str, name: str, ids: Iterable[str]
) -> dict[str, list[Any]]:
    """Open outbox entries per record id, oldest first."""
    o = mirror_outbox.c
    found: dict[str, list[Any]] = {}
    wanted = list(ids)
    for start in range(0, len(wanted), 500):
        query = (
            select(mirror_outbox)
            .where(
                o.source == source,
                o.object == name,
                o.record_id.in_(wanted[start : start + 500]),
                open_entry_filter(),
            )
            .order_by(o.seq)
        )
        for row in conn.execute(query):
            found.setdefault(row.record_id, []).append(row)
    return found


def typed(spec: ObjectSpec, name: str, value: Any) -> Any:
    """A JSON-stored outbox value converted back to the field's Python type."""
    if value is None or not spec.has_field(name):
        return value
    return CONVERTERS[spec.field(name).type](value)


def set_entry(conn: Connection, seq: int, **values: Any) -> None:
    """Update one outbox entry."""
    conn.execute(
        update(mirror_outbox)
        .where(mirror_outbox.c.seq == seq)
        .values(**values, updated_at=utcnow())
    )


def still_pending(conn: Connection, source: str, name: str, record_id: str) -> bool:
    """Whether the record has any open outbox entry left."""
    o = mirror_outbox.c
    query = select(o.seq).where(
        o.source == source, o.object == name, o.record_id == record_id, open_entry_filter()
    )
    return conn.execute(query.limit(1)).first() is not None


def replace_local_id(
    conn: Connection, store: Store, spec: ObjectSpec, local_id: str, crm_id: str, now: datetime
) -> None:
    """Swap a portal-created id for the CRM's everywhere the mirror holds it."""
    mirrored = store.mirrored(spec.source, spec.name)
    key = mirrored.table.c[spec.key]
    conn.execute(update(mirrored.table).where(key == local_id).values({spec.key: crm_id}))
    referencing = _referencing(store, spec)
    for other in referencing:
        for field in other.spec.fields:
            if spec.name in field.references:
                column = other.table.c[field.name]
                conn.execute(
                    update(other.table).where(column == local_id).values({field.name: crm_id})
                )
    o, a, c = mirror_outbox.c, mirror_access.c, mirror_changes.c
    conn.execute(
        update(mirror_outbox)
        .where(o.source == spec.source, o.object == spec.name, o.record_id == local_id)
        .values(record_id=crm_id)
    )
    _rewrite_outbox_values(conn, spec.source, local_id, crm_id)
    conn.execute(
        update(mirror_access)
        .where(a.source == spec.source, a.object == spec.name, a.record_id == local_id)
        .values(record_id=crm_id)
    )
    _rewrite_grants_via(conn, spec, referencing, local_id, crm_id)
    conn.execute(
        update(mirror_changes)
        .where(c.source == spec.source, c.object == spec.name, c.record_id == local_id)
        .values(record_id=crm_id)
    )
    store.upsert(
        conn,
        mirror_idmap,
        [
            {
                "source": spec.source,
                "object": spec.name,
                "old_id": local_id,
                "new_id": crm_id,
                "kind": "create",
                "at": now,
            }
        ],
    )


def _referencing(store: Store, spec: ObjectSpec) -> list[MirrorTable]:
    tables = []
    for source, name in store.objects():
        if source != spec.source:
            continue
        other = store.mirrored(source, name)
        if any(spec.name in f.references for f in other.spec.fields):
            tables.append(other)
    return tables


def _rewrite_grants_via(
    conn: Connection,
    spec: ObjectSpec,
    referencing: list[MirrorTable],
    local_id: str,
    crm_id: str,
) -> None:
    """Point the grants that went through the record's local id at its CRM id: those it gave
    its parents (found by ``via``) and those its children got from it (found by the children's
    keys, whose reference fields already hold ``crm_id``)."""
    a = mirror_access.c
    via = [a.source == spec.source, a.via_object == spec.name, a.via_id == local_id]
    conn.execute(update(mirror_access).where(*via, given_by_children(a.path)).values(via_id=crm_id))
    for other in referencing:
        key = other.table.c[other.spec.key]
        for field in other.spec.fields:
            if spec.name not in field.references:
                continue
            children = select(key).where(other.table.c[field.name] == crm_id)
            conn.execute(
                update(mirror_access)
                .where(*via, a.object == other.spec.name, a.record_id.in_(children))
                .values(via_id=crm_id)
            )


def _rewrite_outbox_values(conn: Connection, source: str, local_id: str, crm_id: str) -> None:
    o = mirror_outbox.c
    query = select(o.seq, o.new_values).where(o.source == source, o.status.in_(OPEN_STATUSES))
    for seq, values in conn.execute(query).all():
        if local_id in values.values():
            rewritten = {k: crm_id if v == local_id else v for k, v in values.items()}
            set_entry(conn, seq, new_values=rewritten)


def fail_open_edits(
    conn: Connection, source: str, name: str, ids: list[str], code: str, message: str
) -> None:
    """Fail the not-yet-pushed edits of records that can no longer take them."""
    o = mirror_outbox.c
    for start in range(0, len(ids), 500):
        conn.execute(
            update(mirror_outbox)
            .where(
                o.source == source,
                o.object == name,
                o.record_id.in_(ids[start : start + 500]),
                o.status.in_(OPEN_STATUSES),
            )
            .values(status="failed", error_code=code, error_message=message, updated_at=utcnow())
        )


def entry_by_key(conn: Connection, source: str, key: str) -> Any:
    """The outbox entry created with idempotency key ``key``, if any."""
    o = mirror_outbox.c
    query = select(mirror_outbox).where(o.source == source, o.idempotency_key == key)
    return conn.execute(query.limit(1)).first()
