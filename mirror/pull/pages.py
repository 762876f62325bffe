"""Applying one page to the store, inside the page's transaction (steps 1-5 of docs/guarantees.md).

1. records are checked (malformed ones go to ``mirror_rejects``) and hashed; a record that is a
   portal create whose answer was lost (it carries the create's idempotency key) takes over
   the create's local row (``mirror.push.local_ids``); unchanged records are recognised by hash and
   skipped;
2. changed records are diffed field by field against their mirror row;
3. upserts and tombstones are written, and the field-level changes appended to ``mirror_changes``;
4. page hooks run (the partner access table keeps itself current here);
5. the checkpoint is saved (not by the change stream's applier nor the echo check: they read
   records by id, outside the cursor's order, and leave the object's checkpoint to its polls).
The caller commits all of it at once, so a crash re-reads the page and the upsert makes the
second application a no-op.

The newer version wins: a record whose change-cursor value is older than the stored row's
(a page read before a change-stream fetch of the same record, applied after it) is counted
unchanged and not written, and neither is a tombstone dated before the stored version; equal
values are applied (stamps of one-second resolution cannot order two versions of one second).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from mirror import feed
from mirror.pull.reconcile import PolicyOf, reconcile
from mirror.push.diff import Policy, field_changes
from mirror.push.local_ids import AccessChanges
from mirror.push.lost_creates import CreatedId, adopt_creates
from mirror.push.outbox import fail_open_edits
from mirror.store.database import MirrorTable, Store, utcnow
from mirror.store.idsets import batches, id_in
from mirror.store.records import BadValue, json_safe
from mirror.store.tables import mirror_idmap, mirror_rejects
from mirror.types import Change, ChangeOrigin, Page, Record, Tombstone


@dataclass
class PageOutcome:
    """What one page did to the mirror."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    rejected: int = 0
    written_ids: list[str] = field(default_factory=list)
    deleted_ids: list[str] = field(default_factory=list)
    changed_fields: dict[str, frozenset[str]] = field(default_factory=dict)
    # per updated live record: the values its changed fields held before the page
    previous: dict[str, dict[str, Any]] = field(default_factory=dict)
    initial: bool = False
    backfill_done: bool = False

    def add(self, other: PageOutcome) -> None:
        """Accumulate ``other``'s counts (ids are per page and not accumulated)."""
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.deleted += other.deleted
        self.rejected += other.rejected


PageHook = Callable[[Connection, MirrorTable, PageOutcome], None]


def _manual(_object: str, _field: str) -> Policy:
    return Policy.MANUAL


@dataclass(frozen=True)
class PageContext:
    """Who applies the page: the run, whether inserts count as changes, the page hooks, the
    conflict policy for records with open portal edits, the outbox entries whose writes had
    landed before the page was read (``fresh``, see ``mirror.pull.reconcile``), the id the CRM
    gives a create with a given key (when it derives ids from keys) and the access upkeep of
    a create's merge. ``save_checkpoint`` is off for records read by id (the change stream,
    the echo check): the page's checkpoint is then ignored and the object's left as it is.
    ``stamp_deletes`` dates a tombstoned row at its tombstone's ``deleted_at`` (the change
    stream's deletes), so a page read before the delete cannot bring the record back."""

    run_id: int | None
    log_inserts: bool
    hooks: Sequence[PageHook] = ()
    policy_of: PolicyOf = _manual
    fresh: frozenset[int] = frozenset()
    created_id: CreatedId | None = None
    access: AccessChanges | None = None
    save_checkpoint: bool = True
    stamp_deletes: bool = False


def apply_page(
    store: Store, conn: Connection, mirrored: MirrorTable, page: Page, ctx: PageContext
) -> PageOutcome:
    """Apply ``page`` to ``mirrored`` within ``conn``'s transaction and save its checkpoint
    (unless ``ctx.save_checkpoint`` is off)."""
    outcome = PageOutcome(initial=not ctx.log_inserts)
    outcome.backfill_done = outcome.initial and page.checkpoint.phase == "incremental"
    adapter_rejects: Sequence[Any] = page.rejects
    for chunk in _chunks(page.records, mirrored.spec.key):
        records = _clean(conn, mirrored, chunk, adapter_rejects, ctx, outcome)
        adapter_rejects = ()
        _write_records(store, conn, mirrored, records, ctx, outcome)
    if adapter_rejects:
        _clean(conn, mirrored, [], adapter_rejects, ctx, outcome)
    _write_tombstones(store, conn, mirrored, page.tombstones, ctx, outcome)
    if outcome.backfill_done:
        store.build_indexes(conn, mirrored)
    for hook in ctx.hooks:
        hook(conn, mirrored, outcome)
    if ctx.save_checkpoint:
        spec = mirrored.spec
        store.save_checkpoint(conn, spec.source, spec.name, page.checkpoint)
    return outcome


# a page's records are checked and written this many at a time (in the page's transaction):
# the copies made on the way to the database stay this small however large the CRM's pages
WRITE_CHUNK = 2000


def _chunks(records: Sequence[Record], key: str) -> Iterator[list[Record]]:
    """``records`` in lists of at most ``WRITE_CHUNK``, in key order; a record repeated
    within the page is written once, as its last copy (as a whole page written at once
    would). In key order, each list extends the key's index where the one before ended,
    instead of interleaving with it."""
    latest: dict[Any, Record] = {}
    keyless: list[Record] = []
    for record in records:
        record_id = record.get(key)
        if record_id:
            latest.pop(record_id, None)
            latest[record_id] = record
        else:
            keyless.append(record)
    unique = [latest[record_id] for record_id in sorted(latest, key=str)] + keyless
    for start in range(0, len(unique), WRITE_CHUNK):
        yield unique[start : start + WRITE_CHUNK]


def _clean(
    conn: Connection,
    mirrored: MirrorTable,
    page_records: Sequence[Record],
    page_rejects: Sequence[Any],
    ctx: PageContext,
    outcome: PageOutcome,
) -> dict[str, Record]:
    spec = mirrored.spec
    rejects = [
        {"record_id": r.record_id, "reason": r.reason, "payload": json_safe(dict(r.payload))}
        for r in page_rejects
    ]
    cleaned: dict[str, Record] = {}
    for record in page_records:
        try:
            clean = mirrored.checker.clean(record)
        except BadValue as exc:
            rejects.append(
                {
                    "record_id": record.get(spec.key),
                    "reason": str(exc),
                    "payload": json_safe(record),
                }
            )
            continue
        cleaned[clean[spec.key]] = clean
    if rejects:
        now = utcnow()
        rows = [
            {**r, "source": spec.source, "object": spec.name, "at": now, "run_id": ctx.run_id}
            for r in rejects
        ]
        conn.execute(insert(mirror_rejects), rows)
        outcome.rejected += len(rows)
    return cleaned


def reject_count(conn: Connection, source: str, name: str) -> int:
    """How many records of one object the sync has set aside in ``mirror_rejects``."""
    r = mirror_rejects.c
    query = select(func.count()).where(r.source == source, r.object == name)
    return int(conn.execute(query).scalar_one())


def _write_records(
    store: Store,
    conn: Connection,
    mirrored: MirrorTable,
    records: dict[str, Record],
    ctx: PageContext,
    outcome: PageOutcome,
) -> None:
    if not records:
        return
    spec, table, checker = mirrored.spec, mirrored.table, mirrored.checker
    state = ["_hash", "_deleted", "_pending", "_modstamp"]
    existing = store.rows_by_id(conn, table, spec.key, records, state)
    # a portal create whose answer was lost is a record the mirror has not seen under its id
    arrived = {i: r for i, r in records.items() if i not in existing}
    adopt_creates(conn, store, mirrored, arrived, ctx.created_id, ctx.access)
    # read again, the adopted ones and any a push's answer swapped in since the first read
    # (PostgreSQL does not hold the push back): that row carries the create's open entry and
    # is reconciled with it, not overwritten as a record the mirror never had
    if arrived:
        existing.update(store.rows_by_id(conn, table, spec.key, arrived, state))
    hashes = {record_id: checker.content_hash(r) for record_id, r in records.items()}
    changed = [
        i
        for i, row in existing.items()
        if (row._hash != hashes[i] or row._deleted)
        and not older(records[i].get(spec.cursor_field), row._modstamp)
    ]
    names = spec.field_names
    before = store.rows_by_id(conn, table, spec.key, changed, names) if changed else {}
    pending = {i: records[i] for i in changed if existing[i]._pending}
    merged = reconcile(conn, mirrored, pending, ctx.policy_of, ctx.fresh) if pending else {}
    system = {f.name for f in spec.fields if not (f.createable or f.updateable)}
    now = utcnow()
    rows: list[dict[str, Any]] = []
    changes: list[Change] = []
    for record_id, record in records.items():
        previous = existing.get(record_id)
        if previous is not None and record_id not in before:
            outcome.unchanged += 1
            continue
        reconciled = merged.get(record_id)
        values = reconciled.values if reconciled else record
        rows.append(
            {
                **values,
                "_modstamp": record.get(spec.cursor_field),
                "_deleted": False,
                "_synced_at": now,
                "_pending": bool(reconciled and reconciled.pending),
                "_hash": hashes[record_id],
            }
        )
        outcome.written_ids.append(record_id)
        if previous is None:
            outcome.inserted += 1
            if ctx.log_inserts:
                changes.append(_change(spec.source, spec.name, record_id, "insert", None, now, ctx))
            continue
        outcome.updated += 1
        old = before[record_id]._mapping
        diff = field_changes(old, values, names)
        if not previous._deleted:
            outcome.changed_fields[record_id] = frozenset(diff)
            outcome.previous[record_id] = {f: old for f, (old, _new) in diff.items()}
        if reconciled and reconciled.confirmed_fields and set(diff) <= system:
            continue  # the echo of our own write: not a change made in the CRM
        op = "undelete" if previous._deleted else "update"
        changes.append(_change(spec.source, spec.name, record_id, op, diff, now, ctx))
    store.upsert(conn, table, rows)
    feed.append(conn, changes)


def _write_tombstones(
    store: Store,
    conn: Connection,
    mirrored: MirrorTable,
    tombstones: Sequence[Tombstone],
    ctx: PageContext,
    outcome: PageOutcome,
) -> None:
    if not tombstones:
        return
    spec, table = mirrored.spec, mirrored.table
    by_id = {t.id: t for t in tombstones}
    stored = store.rows_by_id(conn, table, spec.key, by_id, ["_deleted", "_modstamp"])
    live = [
        i
        for i, row in stored.items()
        if not row._deleted and not older(by_id[i].deleted_at, row._modstamp)
    ]
    now = utcnow()
    key = table.c[spec.key]
    if ctx.stamp_deletes:
        _stamp_deletes(conn, mirrored, [by_id[i] for i in live])
    for batch in batches(live):
        conn.execute(
            update(table)
            .where(id_in(store.dialect, key, batch))
            .values(_deleted=True, _synced_at=now)
        )
    changes = [
        _change(
            spec.source, spec.name, record_id, "delete", _merge_note(by_id[record_id]), now, ctx
        )
        for record_id in live
    ]
    feed.append(conn, changes)
    fail_open_edits(
        conn,
        spec.source,
        spec.name,
        list(by_id),
        "ENTITY_IS_DELETED",
        "the record was deleted in the CRM before this edit reached it",
    )
    merges = [
        {
            "source": spec.source,
            "object": spec.name,
            "old_id": t.id,
            "new_id": t.merged_into,
            "kind": "merge",
            "at": now,
        }
        for t in tombstones
        if t.merged_into
    ]
    store.upsert(conn, mirror_idmap, merges)
    outcome.deleted += len(live)
    outcome.deleted_ids.extend(live)


def older(version: Any, stored: Any) -> bool:
    """Whether ``version`` (a change-cursor value) is strictly older than ``stored`` (a row's
    ``_modstamp``); ``False`` when either is unknown."""
    if not isinstance(version, datetime) or not isinstance(stored, datetime):
        return False
    return _utc(version) < _utc(stored)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _stamp_deletes(
    conn: Connection, mirrored: MirrorTable, tombstones: Sequence[Tombstone]
) -> None:
    """Date each row at its tombstone's ``deleted_at`` (rows are live and not newer: checked)."""
    table, key = mirrored.table, mirrored.table.c[mirrored.spec.key]
    for tombstone in tombstones:
        if tombstone.deleted_at is not None:
            conn.execute(
                update(table).where(key == tombstone.id).values(_modstamp=tombstone.deleted_at)
            )


def _merge_note(tombstone: Tombstone) -> dict[str, Any] | None:
    if tombstone.merged_into:
        return {"merged_into": [None, tombstone.merged_into]}
    return None


def _change(
    source: str,
    name: str,
    record_id: str,
    op: str,
    diff: dict[str, Any] | None,
    now: Any,
    ctx: PageContext,
) -> Change:
    return Change(source, name, record_id, op, ChangeOrigin.CRM, diff, at=now, run_id=ctx.run_id)
