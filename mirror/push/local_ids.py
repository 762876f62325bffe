"""Portal-created records meeting their CRM ids.

A portal create lives under a local id (``local-...``) until the CRM has the record. Its CRM id
then replaces the local one everywhere the mirror holds it (``settle_create``): the row,
references from other rows, queued edits and the values that point at it, the grants and the
change feed; ``mirror_idmap`` keeps the mapping, so a partner who kept the local id still reads
and updates the record by it (``current_ids``).

The CRM id arrives one of two ways: the pusher's create is answered with it, or, when that
answer was lost, the next pull recognises the record as the create (``mirror.push.lost_creates``).
Either way, the CRM's row may already be mirrored when the swap comes (a store that took the
second row before): the local row is then merged into it, never renamed onto its key.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager, ExitStack
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, delete, exists, select, update

from mirror import feed
from mirror.push.outbox import LOCAL_PREFIX, OPEN_STATUSES, OutboxEntry, is_local, set_entry
from mirror.store.database import MirrorTable, Store, utcnow
from mirror.store.tables import given_by_children, mirror_access, mirror_idmap, mirror_outbox
from mirror.types import ObjectSpec


class AccessChanges(Protocol):
    """What the id swap needs of the partner access table's upkeep."""

    def changing(
        self, conn: Connection, name: str, ids: Iterable[str]
    ) -> AbstractContextManager[None]:
        """Around a change of records ``ids`` of ``name``: their grants follow it."""
        ...


def is_local_key(column: Any) -> Any:
    """Whether a key column holds a local id (a pattern, not a range: under a database's
    linguistic collation, punctuation need not sort as in ASCII)."""
    return column.like(f"{LOCAL_PREFIX}%")


def settle_create(
    conn: Connection,
    store: Store,
    spec: ObjectSpec,
    entry: OutboxEntry,
    crm_id: str,
    *,
    version: str | None,
    confirmed: bool,
    access: AccessChanges | None = None,
) -> None:
    """The create ``entry`` took effect as CRM record ``crm_id``: its local id becomes
    ``crm_id`` everywhere and the entry is done. ``confirmed`` says the mirror already holds
    the CRM's version of the record (so no echo is awaited); a merge into a row the mirror
    already had confirms it too."""
    merged = replace_local_id(conn, store, spec, entry.record_id, crm_id, utcnow(), access)
    set_entry(
        conn,
        entry.seq,
        status="done",
        crm_id=crm_id,
        pushed_version=version,
        confirmed=confirmed or merged,
        error_code=None,
        error_message=None,
    )


def replace_local_id(
    conn: Connection,
    store: Store,
    spec: ObjectSpec,
    local_id: str,
    crm_id: str,
    now: datetime,
    access: AccessChanges | None = None,
) -> bool:
    """Swap a portal-created id for the CRM's everywhere the mirror holds it; returns whether
    the CRM's row was already mirrored (the local row was merged into it)."""
    mirrored = store.mirrored(spec.source, spec.name)
    key = mirrored.table.c[spec.key]
    merging = conn.execute(select(key).where(key == crm_id)).first() is not None
    edited = _edited_fields(conn, spec, local_id) if merging else set()
    _rename_journal(conn, store, spec, local_id, crm_id, now)
    referencing = _referencing(store, spec)
    if merging:
        _merge_into(conn, mirrored, referencing, local_id, crm_id, edited, access)
        return True
    conn.execute(update(mirrored.table).where(key == local_id).values({spec.key: crm_id}))
    _repoint_references(conn, spec, referencing, local_id, crm_id)
    a = mirror_access.c
    conn.execute(
        update(mirror_access)
        .where(a.source == spec.source, a.object == spec.name, a.record_id == local_id)
        .values(record_id=crm_id)
    )
    _rewrite_grants_via(conn, spec, referencing, local_id, crm_id)
    return False


def _rename_journal(
    conn: Connection, store: Store, spec: ObjectSpec, local_id: str, crm_id: str, now: datetime
) -> None:
    """The outbox (entries and the values that point at the record), the change feed and the
    id map follow the swap."""
    o = mirror_outbox.c
    conn.execute(
        update(mirror_outbox)
        .where(o.source == spec.source, o.object == spec.name, o.record_id == local_id)
        .values(record_id=crm_id)
    )
    query = select(o.seq, o.new_values).where(o.source == spec.source, o.status.in_(OPEN_STATUSES))
    for seq, values in conn.execute(query).all():
        if local_id in values.values():
            rewritten = {k: crm_id if v == local_id else v for k, v in values.items()}
            set_entry(conn, seq, new_values=rewritten)
    feed.rename_record(conn, spec.source, spec.name, local_id, crm_id)
    row = {"source": spec.source, "object": spec.name, "old_id": local_id, "new_id": crm_id}
    store.upsert(conn, mirror_idmap, [{**row, "kind": "create", "at": now}])


def _merge_into(
    conn: Connection,
    mirrored: MirrorTable,
    referencing: list[MirrorTable],
    local_id: str,
    crm_id: str,
    edited: set[str],
    access: AccessChanges | None,
) -> None:
    """Fold the local row into the CRM's row already mirrored: the CRM's values stay, the
    fields ``edited`` by edits of the local row still on their way keep the portal's values,
    the local row goes, and whatever pointed at it points at the CRM's row; the grants
    follow."""
    spec, table = mirrored.spec, mirrored.table
    key = table.c[spec.key]
    children = {
        other.spec.name: _children(conn, other, spec.name, local_id) for other in referencing
    }
    with ExitStack() as stack:
        if access is not None:
            stack.enter_context(access.changing(conn, spec.name, [local_id, crm_id]))
            for name, ids in children.items():
                if ids:
                    stack.enter_context(access.changing(conn, name, ids))
        local = conn.execute(select(table).where(key == local_id)).first()
        values = dict(local._mapping) if local else {}
        overlay = {name: values[name] for name in sorted(edited) if name in values}
        if overlay:
            conn.execute(update(table).where(key == crm_id).values(**overlay, _pending=True))
        conn.execute(delete(table).where(key == local_id))
        _repoint_references(conn, spec, referencing, local_id, crm_id)
        if access is None:
            a = mirror_access.c
            conn.execute(
                delete(mirror_access).where(
                    a.source == spec.source, a.object == spec.name, a.record_id == local_id
                )
            )
        _rewrite_grants_via(conn, spec, referencing, local_id, crm_id, merging=True)


def _edited_fields(conn: Connection, spec: ObjectSpec, local_id: str) -> set[str]:
    """The fields that open updates of the local row still have to bring to the CRM."""
    o = mirror_outbox.c
    query = select(o.new_values).where(
        o.source == spec.source,
        o.object == spec.name,
        o.record_id == local_id,
        o.op == "update",
        o.status.in_(OPEN_STATUSES),
    )
    return {name for (values,) in conn.execute(query) for name in values}


def _children(conn: Connection, other: MirrorTable, target: str, record_id: str) -> list[str]:
    key = other.table.c[other.spec.key]
    found: set[str] = set()
    for field in other.spec.fields:
        if target in field.references:
            column = other.table.c[field.name]
            found.update(conn.execute(select(key).where(column == record_id)).scalars())
    return sorted(found)


def _repoint_references(
    conn: Connection,
    spec: ObjectSpec,
    referencing: list[MirrorTable],
    local_id: str,
    crm_id: str,
) -> None:
    for other in referencing:
        for field in other.spec.fields:
            if spec.name in field.references:
                column = other.table.c[field.name]
                conn.execute(
                    update(other.table).where(column == local_id).values({field.name: crm_id})
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
    *,
    merging: bool = False,
) -> None:
    """Point the grants that went through the record's local id at its CRM id: those it gave
    its parents (found by ``via``) and those its children got from it (found by the children's
    keys, whose reference fields already hold ``crm_id``). When ``merging``, a grant the CRM's
    row already gave the same way is not written twice."""
    a = mirror_access
    via = [a.c.source == spec.source, a.c.via_object == spec.name, a.c.via_id == local_id]
    scopes = [[given_by_children(a.c.path)]]
    for other in referencing:
        key = other.table.c[other.spec.key]
        for field in other.spec.fields:
            if spec.name in field.references:
                children = select(key).where(other.table.c[field.name] == crm_id)
                scopes.append([a.c.object == other.spec.name, a.c.record_id.in_(children)])
    twin = a.alias("twin")
    same = [twin.c[c.name] == c for c in a.c if c.name != "via_id"]
    for scope in scopes:
        if merging:
            conn.execute(
                delete(a).where(*via, *scope, exists().where(*same, twin.c.via_id == crm_id))
            )
        conn.execute(update(a).where(*via, *scope).values(via_id=crm_id))


def current_ids(
    conn: Connection, source: str, ids: Iterable[Any], names: Iterable[str] | None = None
) -> dict[str, str]:
    """For each local id among ``ids`` (of objects ``names``; local ids are unique across
    objects) whose record the CRM has since created: its CRM id."""
    wanted = sorted({i for i in ids if is_local(i)})
    if not wanted:
        return {}
    m = mirror_idmap.c
    query = select(m.old_id, m.new_id).where(
        m.source == source, m.old_id.in_(wanted), m.kind == "create"
    )
    if names is not None:
        query = query.where(m.object.in_(sorted(set(names))))
    return {old: new for old, new in conn.execute(query)}
