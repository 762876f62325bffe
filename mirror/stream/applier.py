"""The applier: an object's waiting inbox records, fetched from the CRM and applied through the
page path (``mirror.pull.pages``) without moving the object's checkpoint.

A batch of waiting records is read, the CRM's current version of each is fetched (200 ids a
request), and in ONE transaction the live ones are applied as a page, the ones the stream said
were deleted and the fetch does not return become tombstones (dated when the CRM committed the
delete), and the batch's inbox rows are deleted. A crash anywhere before that commit leaves the
rows in the inbox, and the next applier fetches them again. Records the fetch does not return
and the stream did not call deleted are left as they are: the poll's tombstones or the delete
sweep settle them.

The page is applied like a poll's: the change feed, the partner slices and the outbox merge
behave the same. Outbox entries whose write landed before the fetch began are ``fresh``, as in
``mirror.push.echoes``, so our own writes echoed by the stream are recognised as echoes. A
record the stream applied is newer than the version a poll read before it; ``apply_page``
keeps the newer (``mirror.pull.pages``), so the two paths never make a value flip back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, update

from mirror.adapter import CrmAdapter
from mirror.pull.pages import PageContext, apply_page
from mirror.push.echoes import FETCH_CHUNK, unconfirmed
from mirror.store.database import MirrorTable, Store, utcnow
from mirror.store.idsets import batches, id_in
from mirror.stream.inbox import InboxRow, drop, note_applied, take
from mirror.types import Checkpoint, Page, Record, Tombstone

BATCH = 2000


@dataclass
class Applied:
    """What one batch did: records fetched, written, deleted, left unchanged, and the lag of
    its newest change (now minus the CRM's commit), when the stream dated it."""

    object: str
    taken: int = 0
    fetched: int = 0
    written: int = 0
    deleted: int = 0
    unchanged: int = 0
    lag: float | None = None


def apply_waiting(
    store: Store,
    adapter: CrmAdapter,
    mirrored: MirrorTable,
    ctx: PageContext,
    *,
    limit: int = BATCH,
) -> Applied:
    """Apply one batch of ``mirrored``'s waiting records (none waiting: nothing done)."""
    spec = mirrored.spec
    rows = take(store, spec.source, spec.name, limit)
    done = Applied(spec.name, taken=len(rows))
    if not rows:
        return done
    began = utcnow()
    ids = [row.record_id for row in rows]
    fetched = _fetch(adapter, mirrored, ids)
    done.fetched = len(fetched)
    key = spec.key
    live = {r[key]: r for r in fetched if r.get(key) in set(ids) and not r.get("IsDeleted")}
    gone = {r[key] for r in fetched if r.get(key) in set(ids) and r.get("IsDeleted")}
    tombstones = [
        Tombstone(row.record_id, row.committed_at, row.merged_into)
        for row in rows
        if row.record_id not in live and (row.deleted or row.record_id in gone)
    ]
    entries = unconfirmed(store, mirrored, began)
    echoed = [record_id for record_id in live if record_id in entries]
    fresh = frozenset(seq for record_id in echoed for seq in entries[record_id])
    page = Page(list(live.values()), Checkpoint(), tombstones)
    by_id = dataclasses.replace(ctx, fresh=fresh, save_checkpoint=False, stamp_deletes=True)
    done.lag = _lag(rows)
    with store.transaction() as conn:
        _merge_again(store, conn, mirrored, echoed)
        outcome = apply_page(store, conn, mirrored, page, by_id)
        drop(conn, spec.source, spec.name, rows)
        note_applied(conn, spec.source, len(rows), done.lag)
    done.written = outcome.inserted + outcome.updated
    done.deleted = outcome.deleted
    done.unchanged = outcome.unchanged
    return done


def _fetch(adapter: CrmAdapter, mirrored: MirrorTable, ids: Sequence[str]) -> list[Record]:
    fetched: list[Record] = []
    for start in range(0, len(ids), FETCH_CHUNK):
        fetched += adapter.fetch(mirrored.spec, ids[start : start + FETCH_CHUNK])
    return fetched


def _merge_again(store: Store, conn: Connection, mirrored: MirrorTable, ids: Sequence[str]) -> None:
    """Rows with a pushed, unconfirmed edit are merged with it whatever their hash says (as
    ``mirror.push.echoes`` does): the fetch shows whether our write is what the CRM holds."""
    table, key = mirrored.table, mirrored.table.c[mirrored.spec.key]
    for batch in batches(list(ids)):
        conn.execute(
            update(table).where(id_in(store.dialect, key, batch)).values(_hash=None, _pending=True)
        )


def _lag(rows: Sequence[InboxRow]) -> float | None:
    stamps = [row.committed_at for row in rows if row.committed_at is not None]
    if not stamps:
        return None
    newest: datetime = max(stamps)
    return max((utcnow() - newest).total_seconds(), 0.0)
