"""The delete sweep: records the CRM no longer has are marked deleted in the mirror.

A CRM that cannot say what was deleted (or whose deleted-records window has moved past the
checkpoint) is asked for its live ids instead; the mirror's live rows missing from that listing
are marked deleted, each with a ``delete`` in the change feed, and the page hooks (the partner
access upkeep) see them as a page of deletes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select, update

from mirror import feed
from mirror.adapter import CrmAdapter
from mirror.pull.pages import PageHook, PageOutcome
from mirror.push.local_ids import is_local_key
from mirror.push.outbox import OPEN_STATUSES, fail_open_edits
from mirror.store.database import MirrorTable, Store, utcnow
from mirror.store.tables import mirror_outbox, mirror_sweep
from mirror.types import Change, ChangeOrigin, ObjectSpec

log = logging.getLogger("prm_mirror.sync")


def sweep(
    store: Store,
    adapter: CrmAdapter,
    mirrored: MirrorTable,
    hooks: Sequence[PageHook] = (),
    run_id: int | None = None,
    keep_staged: bool = False,
) -> int:
    """Mark deleted every mirrored record the CRM no longer has; returns how many.

    The CRM's live ids are staged in ``mirror_sweep`` in short transactions (a long read
    never holds a write lock), then compared with the mirror in one transaction;
    ``keep_staged`` leaves them there for the caller (the self-audit). Rows the CRM cannot
    have listed are left alone: portal creates not in the CRM yet, or made there after the
    listing began, and rows a pull wrote after it began. The open edits of the records
    marked deleted fail: no write can reach them any more.
    """
    spec, table = mirrored.spec, mirrored.table
    started = utcnow()
    scope = (mirror_sweep.c.source == spec.source, mirror_sweep.c.object == spec.name)
    with store.transaction() as conn:
        conn.execute(delete(mirror_sweep).where(*scope))
    for batch in adapter.read_ids(spec):
        rows = [{"source": spec.source, "object": spec.name, "record_id": i} for i in batch]
        with store.transaction() as conn:
            store.upsert(conn, mirror_sweep, rows)
    key = table.c[spec.key]
    with store.transaction() as conn:
        gone = list(conn.execute(_unlisted(mirrored, started)).scalars())
        now = utcnow()
        for start in range(0, len(gone), 500):
            chunk = gone[start : start + 500]
            conn.execute(update(table).where(key.in_(chunk)).values(_deleted=True, _synced_at=now))
        if gone:
            feed.append(conn, [_sweep_change(spec, i, now, run_id) for i in gone])
            fail_open_edits(
                conn,
                spec.source,
                spec.name,
                gone,
                "ENTITY_IS_DELETED",
                "the record is no longer in the CRM (deleted there) and cannot take this edit",
            )
        outcome = PageOutcome(deleted=len(gone), deleted_ids=gone)
        for hook in hooks:
            hook(conn, mirrored, outcome)
        if not keep_staged:
            conn.execute(delete(mirror_sweep).where(*scope))
    log.info("sweep of %s.%s marked %d records deleted", spec.source, spec.name, len(gone))
    return len(gone)


def _unlisted(mirrored: MirrorTable, started: Any) -> Any:
    """The live rows missing from the CRM's listing staged in ``mirror_sweep``, save those
    the listing cannot have held: portal creates the CRM has not made yet (local ids, or
    creates still open) or made after the listing began (the push's answer recorded then),
    and rows written after the listing began.

    A create the CRM answered before the listing began is in it unless deleted since, also
    when no pull has confirmed it yet: its echo never comes if it was deleted for good."""
    spec, table = mirrored.spec, mirrored.table
    key, synced = table.c[spec.key], table.c._synced_at
    s, o = mirror_sweep.c, mirror_outbox.c
    listed = select(s.record_id).where(s.source == spec.source, s.object == spec.name)
    answered_since = (o.status == "done") & o.confirmed.is_(False) & (o.updated_at >= started)
    creating = select(o.record_id).where(
        o.source == spec.source,
        o.object == spec.name,
        o.op == "create",
        o.status.in_(OPEN_STATUSES) | answered_since,
    )
    return select(key).where(
        table.c._deleted.is_(False),
        key.not_in(listed),
        ~is_local_key(key),
        key.not_in(creating),
        synced.is_(None) | (synced < started),
    )


def _sweep_change(spec: ObjectSpec, record_id: str, now: Any, run_id: int | None) -> Change:
    return Change(
        spec.source,
        spec.name,
        record_id,
        "delete",
        ChangeOrigin.CRM,
        author="sweep",
        at=now,
        run_id=run_id,
    )
