"""Pull-side reconciliation: an incoming CRM record meets the portal's open edits of it.

Runs inside the page's transaction for every changed record whose mirror row is ``_pending``.
Fields edited on one side only merge; a field changed on both sides is a conflict resolved by
its policy (``mirror.diff.merge_field``), and every conflict is recorded in
``mirror_conflicts`` (resolved ones as an audit trail, ``manual`` ones open for a person, with
nothing overwritten in the CRM meanwhile). Our own pushed writes coming back are confirmed,
not treated as CRM changes; a pushed edit whose record came back with another value that the
read cannot place before or after our write stays open until a read made after the write
(``fresh``: the entries known to be written before the page was read) decides it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, insert

from mirror.diff import FieldMerge, Outcome, PendingEdit, Policy, merge_record
from mirror.outbox import open_entries, set_entry, typed
from mirror.records import json_safe
from mirror.store import MirrorTable, utcnow
from mirror.tables import mirror_conflicts
from mirror.types import ObjectSpec, Record

PolicyOf = Callable[[str, str], Policy]


@dataclass
class Reconciled:
    """What the mirror row of one record becomes after the merge."""

    values: Record
    pending: bool
    confirmed_fields: set[str] = field(default_factory=set)


def reconcile(
    conn: Connection,
    mirrored: MirrorTable,
    records: dict[str, Record],
    policy_of: PolicyOf,
    fresh: Collection[int] = (),
) -> dict[str, Reconciled]:
    """Merge each record with its open outbox entries and update the entries accordingly.

    ``fresh`` holds the sequence numbers of entries whose write had landed before ``records``
    were read: a value other than theirs is then a change made in the CRM after them.
    """
    spec = mirrored.spec
    entries = open_entries(conn, spec.source, spec.name, records)
    results: dict[str, Reconciled] = {}
    for record_id, record in records.items():
        rows = entries.get(record_id)
        if not rows:
            results[record_id] = Reconciled(record, pending=False)
            continue
        results[record_id] = _reconcile_one(conn, spec, record, rows, policy_of, fresh)
    return results


def _reconcile_one(
    conn: Connection,
    spec: ObjectSpec,
    record: Record,
    rows: list[Any],
    policy_of: PolicyOf,
    fresh: Collection[int],
) -> Reconciled:
    edits, owner = _edits(spec, rows, fresh)
    crm_version = record.get(spec.cursor_field)
    changed_at = record.get("LastModifiedDate") or crm_version
    values, merges = merge_record(
        record,
        edits,
        crm_version=crm_version,
        crm_changed_at=changed_at,
        policy_of=lambda name: policy_of(spec.name, name),
    )
    for name, merged in merges.items():
        if merged.conflict:
            _record_conflict(conn, spec, record, name, edits[name], merged, owner[name], policy_of)
    _update_entries(conn, spec, rows, merges, record, crm_version)
    confirmed = {n for n, m in merges.items() if m.outcome in (Outcome.AGREED, Outcome.CRM)}
    pending = any(m.still_pending for m in merges.values())
    return Reconciled(values, pending, confirmed)


def _edits(
    spec: ObjectSpec, rows: list[Any], fresh: Collection[int]
) -> tuple[dict[str, PendingEdit], dict[str, Any]]:
    """The latest open edit per field (with the base it was made against) and its entry."""
    edits: dict[str, PendingEdit] = {}
    owner: dict[str, Any] = {}
    for row in rows:
        if row.op != "update" and row.op != "create":
            continue
        done = row.status == "done"
        pushed = _parse(row.pushed_version) if done else None
        for name, value in row.new_values.items():
            edits[name] = PendingEdit(
                base=typed(spec, name, row.old_values.get(name)),
                value=typed(spec, name, value),
                edited_at=row.created_at,
                pushed_version=pushed,
                read_after_write=done and row.seq in fresh,
            )
            owner[name] = row
    return edits, owner


def _update_entries(
    conn: Connection,
    spec: ObjectSpec,
    rows: list[Any],
    merges: dict[str, FieldMerge],
    record: Record,
    crm_version: Any,
) -> None:
    version = crm_version.isoformat() if isinstance(crm_version, dt.datetime) else None
    for row in rows:
        fields = [n for n in row.new_values if n in merges]
        if not fields:
            continue
        if row.status == "done":
            if not any(merges[n].still_pending for n in fields):
                set_entry(conn, row.seq, confirmed=True)
            continue
        kept = {
            n: v for n, v in row.new_values.items() if n not in merges or merges[n].still_pending
        }
        if not kept:
            status = "superseded"
            set_entry(conn, row.seq, status=status)
            continue
        before = dict(row.old_values)
        force = row.force
        for name in kept:
            if name in merges:
                before[name] = json_safe({"v": record.get(name)})["v"]
                force = force or merges[name].outcome is Outcome.CONFLICT_PORTAL
        status = "pending" if row.status == "blocked" else row.status
        set_entry(
            conn,
            row.seq,
            new_values=kept,
            old_values=before,
            base_version=version,
            force=force,
            status=status,
        )


def _record_conflict(
    conn: Connection,
    spec: ObjectSpec,
    record: Record,
    name: str,
    edit: PendingEdit,
    merged: FieldMerge,
    entry: Any,
    policy_of: PolicyOf,
) -> None:
    parked = merged.outcome is Outcome.PARKED
    now = utcnow()
    conn.execute(
        insert(mirror_conflicts).values(
            source=spec.source,
            object=spec.name,
            record_id=record[spec.key],
            field=name,
            base=json_safe({"v": edit.base})["v"],
            portal=json_safe({"v": edit.value})["v"],
            crm=json_safe({"v": record.get(name)})["v"],
            outbox_seq=entry.seq,
            policy=policy_of(spec.name, name).value,
            status="open" if parked else "resolved",
            resolution=None if parked else merged.outcome.value,
            resolved_value=None if parked else json_safe({"v": merged.value})["v"],
            detected_at=now,
            resolved_at=None if parked else now,
            resolved_by=None if parked else "policy",
        )
    )


def _parse(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
