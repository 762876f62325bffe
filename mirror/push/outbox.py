"""The outbox: portal edits waiting to reach the CRM, and what happens to them on the way.

A portal edit updates the mirror row (marked ``_pending``, so the portal reads its own write at
once) and appends one outbox entry with each field's before and after values, in the same
transaction. Entries are open until the CRM has them and their echo came back on a pull
(``done`` + ``confirmed``), or until they are superseded, failed or parked as a conflict.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, insert, or_, select, update

from mirror.feed import append as append_to_feed
from mirror.push import wakeup
from mirror.store.database import utcnow
from mirror.store.records import field_value, json_safe
from mirror.store.tables import mirror_outbox, mirror_runs
from mirror.types import Change, ChangeOrigin, ObjectSpec

LOCAL_PREFIX = "local-"
OPEN_STATUSES = ("pending", "sending", "blocked")


@dataclass(frozen=True)
class OutboxEntry:
    """One outbox entry as stored: a portal edit of one record and where it stands.

    ``new_values`` and ``old_values`` are the fields it sets and the values they held when the
    portal edited them, JSON-stored (``field_value`` types them again); ``base_version`` the
    record's version the edit was made against. ``status`` is ``pending``, ``sending``,
    ``blocked``, ``done`` (with ``confirmed`` once its echo came back on a pull), ``failed``
    or ``superseded``.
    """

    seq: int
    source: str
    object: str
    record_id: str
    op: str
    new_values: dict[str, Any]
    old_values: dict[str, Any]
    base_version: str | None
    idempotency_key: str
    partner_id: str | None
    author: str | None
    status: str
    attempts: int
    next_attempt_at: datetime
    force: bool
    crm_id: str | None
    pushed_version: str | None
    confirmed: bool
    error_code: str | None
    error_message: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> OutboxEntry:
        """The entry of a ``mirror_outbox`` row (every column selected)."""
        return cls(**row._mapping)


def read_entries(conn: Connection, query: Any) -> list[OutboxEntry]:
    """The entries ``query`` (a select of whole ``mirror_outbox`` rows) finds, in its order."""
    return [OutboxEntry.from_row(row) for row in conn.execute(query)]


def latest_entries(
    conn: Connection, status: str | None = None, limit: int = 100
) -> list[OutboxEntry]:
    """The newest entries (of ``status`` when given), newest first."""
    o = mirror_outbox.c
    query = select(mirror_outbox).order_by(o.seq.desc()).limit(limit)
    if status:
        query = query.where(o.status == status)
    return read_entries(conn, query)


def status_counts(conn: Connection) -> dict[str, int]:
    """How many entries each status holds."""
    o = mirror_outbox.c
    counts = conn.execute(select(o.status, func.count()).group_by(o.status)).all()
    return {str(status): int(count) for status, count in counts}


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
    feed: bool = True,
) -> int:
    """Append one outbox entry and (unless not ``feed``) its change-feed entry; returns the
    entry's sequence.

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
    seq = result.inserted_primary_key
    assert seq is not None
    wakeup.written(conn, spec.source)
    if not feed:
        return int(seq[0])
    fields = {f: (before.get(f), values.get(f)) for f in values} if op != "delete" else None
    change = Change(spec.source, spec.name, record_id, op, ChangeOrigin.PORTAL, fields, author, now)
    append_to_feed(conn, [change])
    return int(seq[0])


def open_entries(
    conn: Connection, source: str, name: str, ids: Iterable[str]
) -> dict[str, list[OutboxEntry]]:
    """Open outbox entries per record id, oldest first."""
    o = mirror_outbox.c
    found: dict[str, list[OutboxEntry]] = {}
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
        for entry in read_entries(conn, query):
            found.setdefault(entry.record_id, []).append(entry)
    return found


def base_values(spec: ObjectSpec, row: OutboxEntry, replaced: Mapping[str, str]) -> dict[str, Any]:
    """The values entry ``row`` was edited against, of the fields it writes, typed: what the
    CRM must still hold for the write to replace nothing the portal did not see. A base that
    is a local id is given as the CRM id that replaced it (``replaced``); one not replaced yet
    is left out (the CRM cannot hold it)."""
    bases: dict[str, Any] = {}
    for name in row.new_values:
        if name not in row.old_values:
            continue
        value = row.old_values[name]
        if is_local(value):
            if value not in replaced:
                continue
            value = replaced[value]
        bases[name] = field_value(spec, name, value)
    return bases


def source_entries(conn: Connection, source: str, statuses: Iterable[str]) -> list[OutboxEntry]:
    """The entries of ``source`` with one of ``statuses``, oldest first."""
    o = mirror_outbox.c
    query = select(mirror_outbox).where(o.source == source, o.status.in_(list(statuses)))
    return read_entries(conn, query.order_by(o.seq))


def locked_entries(
    conn: Connection, seqs: Iterable[int], statuses: tuple[str, ...]
) -> dict[int, OutboxEntry]:
    """The entries ``seqs`` that have one of ``statuses``, as they stand now, locked until
    ``conn``'s transaction ends."""
    o = mirror_outbox.c
    wanted = sorted(seqs)
    found: dict[int, OutboxEntry] = {}
    for start in range(0, len(wanted), 500):
        query = (
            select(mirror_outbox)
            .where(o.seq.in_(wanted[start : start + 500]), o.status.in_(statuses))
            .order_by(o.seq)
            .with_for_update()
        )
        found.update((entry.seq, entry) for entry in read_entries(conn, query))
    return found


def created_versions(conn: Connection, source: str, ids: list[str]) -> dict[str, str]:
    """The version the CRM gave each of the records ``ids`` that the portal created."""
    o = mirror_outbox.c
    found: dict[str, str] = {}
    for start in range(0, len(ids), 500):
        query = select(o.record_id, o.pushed_version).where(
            o.source == source,
            o.record_id.in_(ids[start : start + 500]),
            o.op == "create",
            o.status == "done",
            o.pushed_version.is_not(None),
        )
        found.update((record_id, version) for record_id, version in conn.execute(query))
    return found


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


def fail_open_edits(
    conn: Connection, source: str, name: str, ids: list[str], code: str, message: str
) -> None:
    """Fail the not-yet-pushed edits of records that can no longer take them, and close the
    pushed ones still waiting for their echo: a deleted record never brings it back."""
    o = mirror_outbox.c
    for start in range(0, len(ids), 500):
        chunk = o.record_id.in_(ids[start : start + 500])
        conn.execute(
            update(mirror_outbox)
            .where(o.source == source, o.object == name, chunk, o.status.in_(OPEN_STATUSES))
            .values(status="failed", error_code=code, error_message=message, updated_at=utcnow())
        )
        conn.execute(
            update(mirror_outbox)
            .where(
                o.source == source,
                o.object == name,
                chunk,
                o.status == "done",
                o.confirmed.is_(False),
            )
            .values(confirmed=True, updated_at=utcnow())
        )


def entry_by_key(conn: Connection, source: str, key: str) -> OutboxEntry | None:
    """The outbox entry created with idempotency key ``key``, if any."""
    o = mirror_outbox.c
    query = select(mirror_outbox).where(o.source == source, o.idempotency_key == key)
    found = read_entries(conn, query.limit(1))
    return found[0] if found else None


def stale_blocks(conn: Connection, source: str) -> list[int]:
    """The blocked entries of ``source`` that a completed sync of their object, begun after
    the block, did not release: the record did not come back, so only the CRM can say what
    became of it (and the entry's precondition still guards the write)."""
    o, r = mirror_outbox.c, mirror_runs.c
    # by status alone: the status index holds the few blocked entries
    query = select(o.seq, o.source, o.object, o.updated_at).where(o.status == "blocked")
    blocked = [row for row in conn.execute(query) if row.source == source]
    if not blocked:
        return []
    runs = (
        select(r.object, func.max(r.started_at))
        .where(
            r.source == source,
            r.object.in_(sorted({row.object for row in blocked})),
            r.status == "ok",
        )
        .group_by(r.object)
    )
    synced = dict(conn.execute(runs).all())
    return [
        row.seq
        for row in blocked
        if (started := synced.get(row.object)) is not None and started > row.updated_at
    ]


def release_blocks(conn: Connection, seqs: list[int]) -> None:
    """Make the blocked entries ``seqs`` (still blocked) ``pending`` again, due now."""
    o = mirror_outbox.c
    now = utcnow()
    for start in range(0, len(seqs), 500):
        conn.execute(
            update(mirror_outbox)
            .where(o.seq.in_(seqs[start : start + 500]), o.status == "blocked")
            .values(status="pending", next_attempt_at=now, updated_at=now)
        )
