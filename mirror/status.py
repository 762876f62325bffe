"""Where the mirror stands: each mirrored object's phase, cursor, row counts and last run, and
the outbox's entries per status. ``Mirror.status`` and ``Mirror.queue_summary`` answer with
these; every figure is read from the module that keeps it."""

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
