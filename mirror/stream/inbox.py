"""The durable inbox: what a change stream said, stored before the stream is answered.

``record`` writes a delivery's events (one inbox row per record, the last event of a record
replacing the ones before, so duplicates collapse), the gaps it reported (as requests for an
incremental poll) and the stream's new replay position in ONE transaction; only then is the
delivery acknowledged (a webhook answered 2xx, a listener's next event read). A crash after
that commit loses nothing; a crash before it leaves the CRM to deliver again (or the listener
to replay from the position saved before).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, case, delete, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from mirror.adapter import StreamItem
from mirror.store.bulk import upsert
from mirror.store.database import Store, utcnow
from mirror.store.stream_tables import (
    mirror_stream_inbox,
    mirror_stream_polls,
    mirror_stream_positions,
)
from mirror.store.tables import UtcDateTime
from mirror.types import StreamEvent, StreamGap

LISTENER = ""  # the channel of a listener's position; webhooks keep none


@dataclass
class Recorded:
    """What one ``record`` stored: events and records per object, gaps, the newest commit."""

    events: int = 0
    records: dict[str, int] = field(default_factory=dict)
    ignored: int = 0
    gaps: list[tuple[str | None, str]] = field(default_factory=list)
    newest: datetime | None = None


@dataclass(frozen=True)
class InboxRow:
    """One record waiting to be applied."""

    record_id: str
    deleted: bool
    merged_into: str | None
    committed_at: datetime | None
    token: str


def record(
    store: Store,
    source: str,
    items: Sequence[StreamItem],
    objects: Sequence[str],
    *,
    channel: str = LISTENER,
    state: str = "live",
) -> Recorded:
    """Store ``items`` of ``source`` (events of objects not in ``objects`` are ignored), the
    polls its gaps ask for and the last position they carry, in one transaction."""
    done = Recorded()
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    polls: dict[str, str] = {}
    position: str | None = None
    now = utcnow()
    for item in items:
        if item.position is not None:
            position = item.position
        if isinstance(item, StreamGap):
            done.gaps.append((item.object, item.reason))
            for name in objects if item.object is None else [item.object]:
                if name in objects:
                    polls[name] = item.reason
            continue
        done.events += 1
        if item.object not in objects:
            done.ignored += 1
            continue
        if item.committed_at is not None and (
            done.newest is None or item.committed_at > done.newest
        ):
            done.newest = item.committed_at
        for record_id, deleted in _records_of(item):
            rows.pop((item.object, record_id), None)
            rows[(item.object, record_id)] = {
                "source": source,
                "object": item.object,
                "record_id": record_id,
                "deleted": deleted,
                "merged_into": item.merged_into.get(record_id) if deleted else None,
                "committed_at": item.committed_at,
                "received_at": now,
                "token": uuid.uuid4().hex,
            }
    for name, _record_id in rows:
        done.records[name] = done.records.get(name, 0) + 1
    with store.transaction() as conn:
        # in key order, so deliveries stored at once lock their rows in one order (no deadlock)
        store.upsert(conn, mirror_stream_inbox, [rows[key] for key in sorted(rows)])
        request_polls(conn, source, polls, now)
        _note_received(conn, source, channel, done, position, state, now)
    return done


def _records_of(event: StreamEvent) -> Iterable[tuple[str, bool]]:
    for record_id in event.changed:
        yield record_id, False
    for record_id in event.deleted:
        yield record_id, True


def _note_received(
    conn: Connection,
    source: str,
    channel: str,
    done: Recorded,
    position: str | None,
    state: str,
    now: datetime,
) -> None:
    # counters move by expressions, not by values read before: two deliveries stored at once
    # (a webhook endpoint serves several) both count
    p = mirror_stream_positions.c
    _ensure_position(conn, source, channel, now)
    values: dict[str, Any] = {
        "state": "gap" if done.gaps else state,
        "detail": done.gaps[-1][1] if done.gaps else None,
        "received": p.received + done.events,
        "gaps": p.gaps + len(done.gaps),
        "updated_at": now,
    }
    if position is not None:
        values["position"] = position
    if done.events:
        values["last_received_at"] = now
    if done.newest is not None:
        newest = literal(done.newest, UtcDateTime())
        values["last_event_at"] = case(
            (p.last_event_at.is_(None), newest),
            (p.last_event_at < newest, newest),
            else_=p.last_event_at,
        )
    if done.gaps:
        values["last_gap_reason"] = done.gaps[-1][1]
        values["last_gap_at"] = now
    where = and_(p.source == source, p.channel == channel)
    conn.execute(update(mirror_stream_positions).where(where).values(**values))


def _ensure_position(conn: Connection, source: str, channel: str, now: datetime) -> None:
    """The position row of ``source``'s ``channel``, inserted if missing (never replaced)."""
    table = mirror_stream_positions
    insert = pg_insert(table) if conn.dialect.name == "postgresql" else sqlite_insert(table)
    conn.execute(
        insert.values(
            source=source,
            channel=channel,
            state="not started",
            received=0,
            applied=0,
            gaps=0,
            updated_at=now,
        ).on_conflict_do_nothing(index_elements=["source", "channel"])
    )


def _position_row(conn: Connection, source: str, channel: str) -> dict[str, Any] | None:
    p = mirror_stream_positions.c
    row = conn.execute(
        select(mirror_stream_positions).where(p.source == source, p.channel == channel)
    ).first()
    return None if row is None else dict(row._mapping)


def load_position(store: Store, source: str, channel: str = LISTENER) -> str | None:
    """The replay position saved for ``source``'s stream (``None``: from now)."""
    with store.engine.connect() as conn:
        row = _position_row(conn, source, channel)
    return None if row is None else row["position"]


def set_state(
    store: Store, source: str, state: str, detail: str | None = None, channel: str = LISTENER
) -> None:
    """Say how ``source``'s stream stands (``live``, ``connecting``, ``down``, ``stopped``)."""
    now = utcnow()
    p = mirror_stream_positions.c
    with store.transaction() as conn:
        _ensure_position(conn, source, channel, now)
        conn.execute(
            update(mirror_stream_positions)
            .where(p.source == source, p.channel == channel)
            .values(state=state, detail=detail, updated_at=now)
        )


def note_applied(conn: Connection, source: str, count: int, lag: float | None) -> None:
    """Count ``count`` records applied from ``source``'s stream, the newest ``lag`` seconds
    after the CRM committed it, in the applier's transaction."""
    p = mirror_stream_positions.c
    values: dict[str, Any] = {"applied": p.applied + count, "last_applied_at": utcnow()}
    if lag is not None:
        values["lag_seconds"] = lag
    conn.execute(update(mirror_stream_positions).where(p.source == source).values(**values))


def waiting(store: Store, source: str | None = None) -> dict[tuple[str, str], int]:
    """Records waiting in the inbox, per (source, object)."""
    i = mirror_stream_inbox.c
    query = select(i.source, i.object, func.count()).group_by(i.source, i.object)
    if source is not None:
        query = query.where(i.source == source)
    with store.engine.connect() as conn:
        return {(s, o): int(n) for s, o, n in conn.execute(query)}


def take(store: Store, source: str, name: str, limit: int) -> list[InboxRow]:
    """Up to ``limit`` of the object's waiting records, the longest waiting first."""
    i = mirror_stream_inbox.c
    query = (
        select(i.record_id, i.deleted, i.merged_into, i.committed_at, i.token)
        .where(i.source == source, i.object == name)
        .order_by(i.received_at, i.record_id)
        .limit(limit)
    )
    with store.engine.connect() as conn:
        return [InboxRow(*row) for row in conn.execute(query)]


def drop(conn: Connection, source: str, name: str, rows: Sequence[InboxRow]) -> None:
    """Delete the rows taken, unless an event replaced them since (their token moved on)."""
    i = mirror_stream_inbox.c
    for row in rows:
        conn.execute(
            delete(mirror_stream_inbox).where(
                i.source == source,
                i.object == name,
                i.record_id == row.record_id,
                i.token == row.token,
            )
        )


def discard(store: Store, source: str, name: str) -> int:
    """Drop every waiting record of an object not mirrored yet (its backfill reads them)."""
    i = mirror_stream_inbox.c
    with store.transaction() as conn:
        result = conn.execute(
            delete(mirror_stream_inbox).where(i.source == source, i.object == name)
        )
    return int(result.rowcount or 0)


def hand_to_poll(store: Store, source: str, name: str, reason: str) -> int:
    """Delete every waiting record of the object and request a poll of it, in one transaction;
    returns how many records."""
    i = mirror_stream_inbox.c
    with store.transaction() as conn:
        result = conn.execute(
            delete(mirror_stream_inbox).where(i.source == source, i.object == name)
        )
        request_polls(conn, source, {name: reason})
        p = mirror_stream_positions.c
        conn.execute(
            update(mirror_stream_positions)
            .where(p.source == source)
            .values(gaps=p.gaps + 1, last_gap_reason=reason, last_gap_at=utcnow())
        )
    return int(result.rowcount or 0)


def request_polls(
    conn: Connection, source: str, reasons: dict[str, str], now: datetime | None = None
) -> None:
    """Ask for an incremental poll of each object of ``reasons`` (object -> why). A request
    already waiting takes the new time: only a poll begun after the latest gap answers it."""
    when = now or utcnow()
    rows = [
        {"source": source, "object": name, "reason": reason[:500], "requested_at": when}
        for name, reason in reasons.items()
    ]
    upsert(conn, mirror_stream_polls, rows)


def requested_polls(store: Store, source: str | None = None) -> list[tuple[str, str, str]]:
    """The polls gaps asked for and no sync has made yet: (source, object, reason)."""
    q = mirror_stream_polls.c
    query = select(q.source, q.object, q.reason).order_by(q.requested_at)
    if source is not None:
        query = query.where(q.source == source)
    with store.engine.connect() as conn:
        return [(s, o, r) for s, o, r in conn.execute(query)]


def polled(store: Store, source: str, name: str, began: datetime) -> None:
    """A sync of the object that began at ``began`` ended well: the requests made before it
    are answered."""
    q = mirror_stream_polls.c
    with store.transaction() as conn:
        conn.execute(
            delete(mirror_stream_polls).where(
                q.source == source, q.object == name, q.requested_at <= began
            )
        )


def positions(store: Store) -> list[dict[str, Any]]:
    """Every stream's position row."""
    p = mirror_stream_positions.c
    with store.engine.connect() as conn:
        rows = conn.execute(select(mirror_stream_positions).order_by(p.source, p.channel))
        return [dict(row._mapping) for row in rows]
