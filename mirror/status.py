"""Where the mirror stands: each mirrored object's phase, cursor, row counts and last run, and
the outbox's entries per status, and each change stream's state. ``Mirror.status``,
``Mirror.queue_summary`` and ``Mirror.stream_status`` answer with these; every figure is read
from the module that keeps it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from mirror.pull.pages import reject_count
from mirror.pull.runs import last_run, last_success
from mirror.push.conflicts import open_conflicts
from mirror.push.outbox import status_counts
from mirror.store.database import Store
from mirror.stream import inbox
from mirror.visibility.derivation import GrantDerivation


@dataclass(frozen=True)
class ObjectStatus:
    """Where one mirrored object stands."""

    source: str
    object: str
    phase: str | None
    cursor: str | None
    rows: int
    deleted: int
    rejects: int
    last_run_status: str | None
    last_run_at: datetime | None
    last_error: str | None
    # backfilled, but its partner slices wait for the end of the sync (or, after a crash,
    # for the next sync)
    slices_pending: bool = False
    # when a sync of the object last ended well
    last_success_at: datetime | None = None


def object_statuses(
    store: Store, configured: Mapping[str, Sequence[str]] | None = None
) -> list[ObjectStatus]:
    """The status of every mirrored object; then, given the ``configured`` objects per source,
    each of them never synced (phase ``None``)."""
    statuses = []
    with store.engine.connect() as conn:
        pending = GrantDerivation.pending_objects(conn)
    for source, name in store.objects():
        mirrored = store.mirrored(source, name)
        checkpoint = store.load_checkpoint(source, name)
        total = store.count(mirrored.table, include_deleted=True)
        live = store.count(mirrored.table)
        with store.engine.connect() as conn:
            last = last_run(conn, source, name)
            rejects = reject_count(conn, source, name)
            succeeded = last_success(conn, source, name)
        statuses.append(
            ObjectStatus(
                source=source,
                object=name,
                phase=checkpoint.phase if checkpoint else None,
                cursor=checkpoint.cursor if checkpoint else None,
                rows=live,
                deleted=total - live,
                rejects=rejects,
                **_last_run_fields(last),
                slices_pending=(source, name) in pending,
                last_success_at=succeeded,
            )
        )
    if configured is None:
        return statuses
    return statuses + _never_synced(store, configured, {(s.source, s.object) for s in statuses})


def _never_synced(
    store: Store, configured: Mapping[str, Sequence[str]], mirrored: set[tuple[str, str]]
) -> list[ObjectStatus]:
    """The configured objects with no table yet: their status says so (phase ``None``)."""
    missing = []
    for source, names in configured.items():
        for name in names:
            if (source, name) in mirrored:
                continue
            with store.engine.connect() as conn:
                last = last_run(conn, source, name)
            missing.append(
                ObjectStatus(
                    source=source,
                    object=name,
                    phase=None,
                    cursor=None,
                    rows=0,
                    deleted=0,
                    rejects=0,
                    **_last_run_fields(last),
                )
            )
    return missing


def _last_run_fields(last: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "last_run_status": last.get("status"),
        "last_run_at": last.get("finished_at") or last.get("started_at"),
        "last_error": last.get("error"),
    }


def queue_summary(conn: Connection) -> dict[str, int]:
    """Outbox entries per status, plus ``conflicts``: the open conflicts."""
    return {**status_counts(conn), "conflicts": open_conflicts(conn)}


@dataclass(frozen=True)
class StreamStatus:
    """Where one source's change stream stands: its state (``live``, ``connecting``, ``gap``,
    ``down``, ``stopped``; ``not started`` before its first event) and why, its replay
    position, when the CRM committed the newest change it told of and when it was received,
    the lag of the last change applied (commit to mirror), the records waiting in the inbox,
    its counters, its last gap, and the objects whose requested poll has not run yet."""

    source: str
    state: str
    detail: str | None
    position: str | None
    last_event_at: datetime | None
    last_received_at: datetime | None
    last_applied_at: datetime | None
    lag_seconds: float | None
    waiting: int
    received: int
    applied: int
    gaps: int
    last_gap_reason: str | None
    last_gap_at: datetime | None
    polls_requested: tuple[str, ...]


def stream_statuses(store: Store, sources: Sequence[str]) -> list[StreamStatus]:
    """The status of each of ``sources``' streams."""
    rows = {row["source"]: row for row in inbox.positions(store)}
    waiting = inbox.waiting(store)
    polls = inbox.requested_polls(store)
    found = []
    for source in sources:
        row = rows.get(source, {})
        found.append(
            StreamStatus(
                source=source,
                state=row.get("state", "not started"),
                detail=row.get("detail"),
                position=row.get("position"),
                last_event_at=row.get("last_event_at"),
                last_received_at=row.get("last_received_at"),
                last_applied_at=row.get("last_applied_at"),
                lag_seconds=row.get("lag_seconds"),
                waiting=sum(n for (s, _o), n in waiting.items() if s == source),
                received=row.get("received", 0),
                applied=row.get("applied", 0),
                gaps=row.get("gaps", 0),
                last_gap_reason=row.get("last_gap_reason"),
                last_gap_at=row.get("last_gap_at"),
                polls_requested=tuple(o for s, o, _r in polls if s == source),
            )
        )
    return found
