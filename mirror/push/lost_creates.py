"""A pull meeting a portal create whose answer was lost.

The CRM committed a create but the pusher never recorded its answer (a dropped connection, a
pusher killed between the CRM's commit and its own). The next pull may then bring the record in
before the next push: it carries the create's idempotency key, in the object's external-id
field (``ObjectSpec.external_id_field``) or as the id itself when the CRM lets the client choose
it (``CreatedId``, from the adapter's ``KeyedIds``). The page recognises the pending create
(``adopt_creates``) and settles it (``mirror.push.local_ids.settle_create``) instead of mirroring a
second row, in the page's own transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from sqlalchemy import Connection, select

from mirror.push.diff import field_changes
from mirror.push.local_ids import AccessChanges, settle_create
from mirror.push.outbox import OutboxEntry, enqueue, is_local, read_entries, set_entry
from mirror.store.database import MirrorTable, Store
from mirror.store.records import field_value, json_safe
from mirror.store.tables import mirror_outbox
from mirror.types import ObjectSpec, Record

CreatedId = Callable[[ObjectSpec, str], "str | None"]


def pending_creates(conn: Connection, spec: ObjectSpec) -> list[OutboxEntry]:
    """The creates of ``spec`` whose record still has its local id (not sent yet, sent with
    the answer lost, or given up on): the ones a pulled record may turn out to be."""
    o = mirror_outbox.c
    # only these statuses leave a create under its local id: asked by status alone, the
    # database reads them off the status index instead of every entry the object ever had
    query = select(mirror_outbox).where(
        o.status.in_(("pending", "sending", "failed")), o.op == "create"
    )
    return [
        entry
        for entry in read_entries(conn, query.order_by(o.seq))
        if entry.source == spec.source and entry.object == spec.name and is_local(entry.record_id)
    ]


def _locked(conn: Connection, entry: OutboxEntry) -> bool:
    """Lock a matched create's entry until the page commits; whether it is still pending
    under its local id (a push may have settled it since it was read)."""
    o = mirror_outbox.c
    query = select(o.status, o.record_id).where(o.seq == entry.seq).with_for_update()
    row = conn.execute(query).first()
    return row is not None and row.record_id == entry.record_id and row.status != "done"


def adopt_creates(
    conn: Connection,
    store: Store,
    mirrored: MirrorTable,
    records: Mapping[str, Record],
    created_id: CreatedId | None,
    access: AccessChanges | None = None,
) -> list[str]:
    """Recognise pulled ``records`` that are portal creates whose answer never came back,
    by the idempotency key they carry; settle each create (its local id becomes the record's
    id) and queue again the values it sent that the record does not hold. Returns the ids."""
    spec = mirrored.spec
    creates = pending_creates(conn, spec) if records else []
    if not creates:
        return []
    matched = {
        record_id: entry
        for record_id, entry in _match(spec, creates, records, created_id).items()
        if _locked(conn, entry)
    }
    for record_id, entry in matched.items():
        record = records[record_id]
        version = record.get(spec.cursor_field)
        stamp = version.isoformat() if isinstance(version, datetime) else None
        settle_create(
            conn, store, spec, entry, record_id, version=stamp, confirmed=True, access=access
        )
        _requeue_missing(conn, spec, entry, record_id, record)
    return list(matched)


def _match(
    spec: ObjectSpec,
    creates: list[OutboxEntry],
    records: Mapping[str, Record],
    created_id: CreatedId | None,
) -> dict[str, OutboxEntry]:
    """Pulled record id -> the pending create it is, by the key in the external-id field or
    by the id the CRM derives from the key."""
    by_key = {entry.idempotency_key: entry for entry in creates}
    matched: dict[str, OutboxEntry] = {}
    field = spec.external_id_field
    if field:
        for record_id, record in records.items():
            value = record.get(field)
            if isinstance(value, str) and value in by_key:
                matched[record_id] = by_key[value]
    if created_id is not None:
        expected = {}
        for entry in creates:
            chosen = created_id(spec, entry.idempotency_key)
            if chosen:
                expected[chosen.lower()] = entry
        for record_id in records:
            found = expected.get(str(record_id).lower())
            if found is not None:
                matched.setdefault(record_id, found)
    taken: set[int] = set()
    unique = {}
    for record_id, entry in matched.items():
        if entry.seq not in taken and not is_local(record_id):
            taken.add(entry.seq)
            unique[record_id] = entry
    return unique


def _requeue_missing(
    conn: Connection, spec: ObjectSpec, entry: OutboxEntry, record_id: str, record: Record
) -> None:
    """The values the create sent that the CRM's record does not hold go out again as an
    update against an empty base: a create the CRM applied only in part (a CRM that writes a
    record's associations after the record itself) is completed by the next push, and a value
    the CRM changed since is a conflict under the field's policy, both decided by the page's
    reconciliation. They join the record's first queued update, so one write carries them (a
    later edit of the same field wins); else they make one of their own."""
    sent = {name: field_value(spec, name, value) for name, value in entry.new_values.items()}
    missing = field_changes(record, sent, [name for name in sent if name in record])
    o = mirror_outbox.c
    queued = conn.execute(
        select(o.seq, o.new_values, o.old_values)
        .where(
            o.source == spec.source,
            o.object == spec.name,
            o.record_id == record_id,
            o.op == "update",
            o.status.in_(("pending", "blocked")),
        )
        .order_by(o.seq)
    ).all()
    edited = {name for row in queued for name in row.new_values}
    values = {name: after for name, (_before, after) in missing.items() if name not in edited}
    if not values:
        return
    base = {name: None for name in values}
    if queued:
        first = queued[0]
        set_entry(
            conn,
            first.seq,
            new_values={**json_safe(values), **first.new_values},
            old_values={**base, **first.old_values},
        )
        return
    enqueue(
        conn,
        spec,
        record_id=record_id,
        op="update",
        values=values,
        before=base,
        base_version=None,
        partner_id=entry.partner_id,
        author=entry.author,
        feed=False,
    )
