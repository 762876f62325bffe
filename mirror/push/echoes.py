"""Pushed edits a pull could not settle, settled by a read made after their write.

A pushed edit waits for its echo (``mirror.push.diff.merge_field``). When the record comes back
with another value at a version no later than the one our write produced, the read alone
cannot tell a read taken before the write from a CRM edit made after it within the CRM's
timestamp resolution (whole seconds for some CRMs): the edit stays open, unconfirmed, with the
portal's value in the mirror. At the end of every sync of an object, the records of its edits
pushed before the sync began and still unconfirmed are fetched again. That fetch begins after
those writes had landed, so it decides: the portal's value confirms the edit, any other value
is a change made in the CRM since, taken into the mirror and logged like any CRM change. Each
fetched row is merged with its entries even if nothing marked it pending (a page that took the
record in just as the push's answer committed), so an entry never waits for a pull to list a
record its object's checkpoint has moved past. The fetched records go through the ordinary
page path (``mirror.pull.pages``), so the merge, the change feed and the page hooks behave as for a
read.

Nothing is confirmed without a read that shows it: records the fetch does not return stay as
they are (their delete reaches the mirror through the read's tombstones or the sweep).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from sqlalchemy import select, update

from mirror.adapter import CrmAdapter
from mirror.pull.pages import PageContext, apply_page
from mirror.push.outbox import is_local
from mirror.store.database import MirrorTable, Store
from mirror.store.idsets import batches, id_in
from mirror.store.tables import mirror_outbox
from mirror.types import Checkpoint, Page, Record

FETCH_CHUNK = 200


def verify_echoes(
    store: Store,
    adapter: CrmAdapter,
    mirrored: MirrorTable,
    ctx: PageContext,
    written_before: datetime,
) -> int:
    """Fetch and merge again the records of pushed, unconfirmed edits written before
    ``written_before``; returns how many records were read."""
    spec = mirrored.spec
    entries = unconfirmed(store, mirrored, written_before)
    if not entries:
        return 0
    ids = list(entries)
    fetched: list[Record] = []
    for start in range(0, len(ids), FETCH_CHUNK):
        fetched += adapter.fetch(spec, ids[start : start + FETCH_CHUNK])
    live = {
        r[spec.key]: r for r in fetched if r.get(spec.key) in entries and not r.get("IsDeleted")
    }
    if not live:
        return 0
    fresh = frozenset(seq for record_id in live for seq in entries[record_id])
    table, key = mirrored.table, mirrored.table.c[spec.key]
    with store.transaction() as conn:
        # the content hash would call an unchanged record "seen" and skip its merge, and a row
        # not marked pending would skip it too (a page that took the record in as the push's
        # answer committed under it left the row unmarked): each has an open entry
        for batch in batches(live):
            conn.execute(
                update(table)
                .where(id_in(store.dialect, key, batch))
                .values(_hash=None, _pending=True)
            )
        # records read by id leave the object's checkpoint to its polls: one loaded before
        # this transaction and saved in it would undo a poll's checkpoint committed between
        page = Page(list(live.values()), Checkpoint())
        by_id = dataclasses.replace(ctx, fresh=fresh, save_checkpoint=False)
        apply_page(store, conn, mirrored, page, by_id)
    return len(live)


def unconfirmed(
    store: Store, mirrored: MirrorTable, written_before: datetime
) -> dict[str, list[int]]:
    """The outbox entries of ``mirrored``'s live rows pushed before ``written_before`` whose
    echo has not been seen, by record id."""
    spec, table = mirrored.spec, mirrored.table
    o, key = mirror_outbox.c, table.c[spec.key]
    query = (
        select(o.record_id, o.seq)
        .select_from(mirror_outbox.join(table, key == o.record_id))
        .where(
            o.source == spec.source,
            o.object == spec.name,
            o.status == "done",
            o.confirmed.is_(False),
            o.op.in_(("update", "create")),
            o.updated_at <= written_before,
            table.c._deleted.is_(False),
        )
        .order_by(o.seq)
    )
    found: dict[str, list[int]] = {}
    with store.engine.connect() as conn:
        for record_id, seq in conn.execute(query):
            if not is_local(record_id):
                found.setdefault(record_id, []).append(seq)
    return found
