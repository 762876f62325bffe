"""Pull-side reconciliation: an incoming CRM record meets the portal's open edits of it.

Runs inside the page's transaction for every changed record whose mirror row is ``_pending``.
Fields edited on one side only merge; a field changed on both sides is a conflict resolved by
its policy (``mirror.push.diff.merge_field``), and every conflict is recorded in
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

from mirror.push.diff import FieldMerge, Outcome, PendingEdit, Policy, differs, merge_record
from mirror.push.outbox import OutboxEntry, open_entries, set_entry
from mirror.store.database import MirrorTable, utcnow
from mirror.store.records import field_value, json_safe
from mirror.store.tables import mirror_conflicts
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
    rows: list[OutboxEntry],
    policy_of: PolicyOf,
    fresh: Collection[int],
) -> Reconciled:
    edits, owner = _edits(spec, rows, fresh, record)
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
    # an edit on top of a write whose echo is undecided keeps its base: the read may predate it
    undecided = frozenset(
        n for n, e in edits.items() if e.pushed_version and owner[n].status != "done"
    )
    _update_entries(conn, spec, rows, merges, record, crm_version, undecided)
    confirmed = {n for n, m in merges.items() if m.outcome in (Outcome.AGREED, Outcome.CRM)}
    pending = any(m.still_pending for m in merges.values())
    return Reconciled(values, pending, confirmed)


def _edits(
    spec: ObjectSpec, rows: list[OutboxEntry], fresh: Collection[int], record: Record
) -> tuple[dict[str, PendingEdit], dict[str, Any]]:
    """The one edit the merge weighs per field (the portal's latest value, against the base
    its chain of open edits was made on) and the entry that made the latest value."""
    chains: dict[str, list[OutboxEntry]] = {}
    for row in rows:
        if row.op != "update" and row.op != "create":
            continue
        for name in row.new_values:
            chains.setdefault(name, []).append(row)
    crm_version = record.get(spec.cursor_field)
    edits = {
        name: _field_edit(spec, name, chain, fresh, record.get(name), crm_version)
        for name, chain in chains.items()
    }
    return edits, {name: chain[-1] for name, chain in chains.items()}


def _field_edit(
    spec: ObjectSpec,
    name: str,
    chain: list[OutboxEntry],
    fresh: Collection[int],
    crm_value: Any,
    crm_version: Any,
) -> PendingEdit:
    """The edit of field ``name`` that its open entries (``chain``, oldest first) add up to.

    The base is what the CRM held when the portal first changed the field, not the portal's
    own value a later edit was made on; once an edit of the field was written, the value that
    write put in the CRM. A CRM value some open edit was made against, or one an earlier open
    edit set (its write may have landed with its answer lost), is no change the portal did not
    see. A value other than the last write's, read at a version no later than that
    write's and not after it had landed, cannot be told from a read taken before the write:
    the portal's value stays until a read made after the write decides it.
    """
    latest = chain[-1]
    value = field_value(spec, name, latest.new_values[name])
    if latest.status == "done":
        return PendingEdit(
            base=field_value(spec, name, latest.old_values.get(name)),
            value=value,
            edited_at=latest.created_at,
            pushed_version=_parse(latest.pushed_version),
            read_after_write=latest.seq in fresh,
        )
    written = [i for i, row in enumerate(chain) if row.status == "done"]
    tail = chain[written[-1] + 1 :] if written else chain
    bases = [field_value(spec, name, row.old_values.get(name)) for row in tail]
    bases += [field_value(spec, name, row.new_values[name]) for row in tail[:-1]]
    if written:
        last = chain[written[-1]]
        base = field_value(spec, name, last.new_values[name])
        bases.append(base)
    else:
        last, base = None, bases[0]
    if any(not differs(crm_value, seen) for seen in bases):
        return PendingEdit(crm_value, value, latest.created_at)
    if last is not None and not _after_write(last, fresh, crm_version):
        return PendingEdit(
            base, value, latest.created_at, pushed_version=_parse(last.pushed_version)
        )
    return PendingEdit(base, value, latest.created_at)


def _after_write(entry: OutboxEntry, fresh: Collection[int], crm_version: Any) -> bool:
    """Whether a record read at ``crm_version`` is known to show the CRM after ``entry``'s
    write (read after it landed, or stamped later than the version it produced)."""
    if entry.seq in fresh:
        return True
    pushed = _parse(entry.pushed_version)
    return pushed is None or (isinstance(crm_version, dt.datetime) and crm_version > pushed)


def _update_entries(
    conn: Connection,
    spec: ObjectSpec,
    rows: list[OutboxEntry],
    merges: dict[str, FieldMerge],
    record: Record,
    crm_version: Any,
    undecided: frozenset[str] = frozenset(),
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
        rebased = row.base_version if undecided & kept.keys() else version
        for name in kept:
            if name in merges and name not in undecided:
                before[name] = json_safe({"v": record.get(name)})["v"]
                force = force or merges[name].outcome is Outcome.CONFLICT_PORTAL
        status = "pending" if row.status == "blocked" else row.status
        set_entry(
            conn,
            row.seq,
            new_values=kept,
            old_values=before,
            base_version=rebased,
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
    entry: OutboxEntry,
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
