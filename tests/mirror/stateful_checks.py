"""The invariant the stateful tests hold the mirror to once it is quiet.

``mirror_equals_crm``: every live CRM record is in the mirror, live, with the CRM's values of the
compared fields; nothing else in the mirror is live; a merge loser the mirror holds is deleted
and mapped to its survivor (to the last one, through ``mirror_idmap``, after merges in a row).

``edits_accounted``: every portal edit the portal accepted is closed (none pending, sending,
blocked or waiting for its echo), and each of its fields is applied in the CRM (one run of
writes carrying its value, never again after another value replaced it) or recorded as a
conflict or a refusal (or replaced by a later edit of the same field before the CRM had
it). No API write carries a value no accepted edit asked for, and no write
replaced a CRM value the edit was not made against unless a conflict was recorded for it.

Each check returns its findings as sentences (empty: it holds), so a failure lists them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from mirror import Mirror
from mirror.store.tables import mirror_conflicts, mirror_idmap, mirror_outbox
from tests.mirror.crm_driver import CrmDriver, LoggedWrite


@dataclass
class Edit:
    """A portal write the portal accepted: its outbox entry and what it asked for."""

    seq: int
    op: str
    object: str
    record_id: str
    values: dict[str, Any]
    partner: str


@dataclass
class Model:
    """What the test did: the CRM's record lifecycle and the portal's accepted edits."""

    deleted: set[tuple[str, str]] = field(default_factory=set)
    hard_deleted: set[tuple[str, str]] = field(default_factory=set)
    merged: dict[tuple[str, str], str] = field(default_factory=dict)
    edits: list[Edit] = field(default_factory=list)


def mirror_rows(mirror: Mirror, source: str, name: str) -> dict[str, dict[str, Any]]:
    """Every mirror row of an object by id (deleted ones included)."""
    try:
        mirrored = mirror.store.mirrored(source, name)
    except KeyError:
        return {}
    key = mirrored.spec.key
    with mirror.store.engine.connect() as conn:
        rows = conn.execute(select(mirrored.table)).all()
    return {str(row._mapping[key]): dict(row._mapping) for row in rows}


def idmap(mirror: Mirror) -> dict[str, str]:
    """``mirror_idmap``: old id to new id."""
    with mirror.store.engine.connect() as conn:
        rows = conn.execute(select(mirror_idmap.c.old_id, mirror_idmap.c.new_id)).all()
    return {str(old): str(new) for old, new in rows}


def mirror_equals_crm(mirror: Mirror, driver: CrmDriver, model: Model) -> list[str]:
    """Where the mirror differs from the CRM (see the module docstring)."""
    found: list[str] = []
    mapped = idmap(mirror)
    for name, fields in driver.compared.items():
        rows = mirror_rows(mirror, driver.source, name)
        live = {i for i, row in rows.items() if not row["_deleted"]}
        in_crm = set(driver.live_ids(name))
        for record_id in sorted(in_crm - live):
            state = "deleted in the mirror" if record_id in rows else "missing from the mirror"
            found.append(f"lost: {name} {record_id} is live in the CRM but {state}")
        for record_id in sorted(live - in_crm):
            found.append(f"ghost: {name} {record_id} is live in the mirror, not in the CRM")
        for record_id in sorted(in_crm & live):
            crm = driver.values(name, record_id) or {}
            for field_name in fields:
                if rows[record_id].get(field_name) != crm.get(field_name):
                    found.append(
                        f"stale: {name} {record_id}.{field_name} is"
                        f" {rows[record_id].get(field_name)!r} in the mirror,"
                        f" {crm.get(field_name)!r} in the CRM"
                    )
        merged = {loser: survivor for (n, loser), survivor in model.merged.items() if n == name}
        for loser in sorted(merged):
            survivor, mapped_to = _last(loser, merged), _last(loser, mapped)
            if loser in rows and mapped_to != survivor:
                found.append(f"merge: {name} {loser} leads to {mapped_to}, not to {survivor}")
    return found


def _chain(record_id: str, mapped: Mapping[str, str]) -> list[str]:
    """``record_id`` and the ids ``mapped`` leads it to, in order (no id twice)."""
    chain = [record_id]
    while chain[-1] in mapped and mapped[chain[-1]] not in chain:
        chain.append(mapped[chain[-1]])
    return chain


def _last(record_id: str, mapped: Mapping[str, str]) -> str:
    """Where following ``mapped`` from ``record_id`` ends (a merge's final survivor)."""
    return _chain(record_id, mapped)[-1]


def _entries(mirror: Mirror) -> dict[int, Any]:
    with mirror.store.engine.connect() as conn:
        return {row.seq: row for row in conn.execute(select(mirror_outbox))}


def _conflicts(mirror: Mirror) -> set[tuple[int, str]]:
    c = mirror_conflicts.c
    with mirror.store.engine.connect() as conn:
        return {(int(s), str(f)) for s, f in conn.execute(select(c.outbox_seq, c.field)) if s}


def _aliases(record_id: str, mapped: Mapping[str, str]) -> set[str]:
    """The ids a record went by: its local id, the CRM id it was given, its merge survivor."""
    return set(_chain(record_id, mapped))


def _runs(writes: list[LoggedWrite], field_name: str, value: Any) -> int:
    """How many separate runs of writes of ``value`` the field's history has."""
    runs, inside = 0, False
    for write in writes:
        if field_name not in write.values:
            continue
        carries = write.values[field_name] == value
        if carries and not inside:
            runs += 1
        inside = carries
    return runs


def edits_accounted(mirror: Mirror, driver: CrmDriver, model: Model) -> list[str]:
    """Where an accepted portal edit is lost, duplicated, stuck or silently overwrote the CRM."""
    found: list[str] = []
    entries, conflicts, mapped = _entries(mirror), _conflicts(mirror), idmap(mirror)
    for edit in model.edits:
        entry = entries.get(edit.seq)
        if entry is None:
            found.append(f"lost edit: outbox entry {edit.seq} is gone")
            continue
        if entry.status in ("pending", "sending", "blocked") or (
            entry.status == "done" and not entry.confirmed
        ):
            state = f"{entry.status}{'' if entry.confirmed else ', unconfirmed'}"
            found.append(f"stuck edit: {edit.op} #{edit.seq} of {edit.record_id} is {state}")
        ids = _aliases(edit.record_id, mapped)
        history = [w for w in driver.log if w.object == edit.object and w.record_id in ids]
        if edit.op == "create":
            found += _create_accounted(edit, entry, driver)
            continue
        for name, value in edit.values.items():
            runs = _runs(history, name, value)
            conflict = (edit.seq, name) in conflicts or _overtaken(edit, name, model, ids)
            if entry.status == "failed" and runs:
                found.append(f"refused but applied: #{edit.seq} {name}={value!r}")
            elif runs > 1:
                found.append(f"duplicated edit: #{edit.seq} {name}={value!r} applied {runs} times")
            elif not runs and not conflict and entry.status != "failed":
                found.append(
                    f"lost edit: #{edit.seq} {name}={value!r} on {edit.record_id} never reached"
                    f" the CRM, with no conflict or refusal recorded (entry {entry.status})"
                )
    found += _writes_accounted(driver, model, entries, conflicts)
    return found


def _overtaken(edit: Edit, name: str, model: Model, ids: set[str]) -> bool:
    """Whether a later accepted edit of the same field replaced ``edit``'s value before the
    CRM had it (the later one then answers for both)."""
    return any(
        later.seq > edit.seq and later.record_id in ids and name in later.values
        for later in model.edits
    )


def _create_accounted(edit: Edit, entry: Any, driver: CrmDriver) -> list[str]:
    name_field = driver.deal.fields[0]
    token = edit.values[name_field]
    made = [
        w
        for w in driver.log.api()
        if w.op == "create" and w.object == edit.object and w.values.get(name_field) == token
    ]
    if entry.status == "failed":
        return [f"refused but created: #{edit.seq} {token}"] if made else []
    if len(made) != 1:
        return [f"create #{edit.seq} ({token}) made {len(made)} CRM records"]
    return []


def _writes_accounted(
    driver: CrmDriver, model: Model, entries: Mapping[int, Any], conflicts: set[tuple[int, str]]
) -> list[str]:
    """Every API write of a field carries an accepted edit's value, over the value the edit
    was made against (or its own, when sent again) unless a conflict was recorded."""
    found: list[str] = []
    owners = {
        (edit.object, name, value): edit
        for edit in model.edits
        for name, value in edit.values.items()
    }
    for write in driver.log.api():
        if write.op != "update":
            continue
        for name, value in write.values.items():
            if name not in driver.deal.fields:
                continue
            edit = owners.get((write.object, name, value))
            if edit is None:
                if _given_back(driver, write, name, owners, conflicts):
                    continue
                found.append(f"ghost write: {write.object} {write.record_id}.{name}={value!r}")
                continue
            entry = entries.get(edit.seq)
            base = (entry.old_values or {}).get(name) if entry is not None else None
            before = write.before.get(name)
            if before in (value, base) or (edit.seq, name) in conflicts:
                continue
            found.append(
                f"overwritten CRM change: #{edit.seq} wrote {name}={value!r} over {before!r},"
                f" a value it was not made against ({base!r}), with no conflict recorded"
            )
    return found


def _given_back(
    driver: CrmDriver,
    write: LoggedWrite,
    name: str,
    owners: Mapping[tuple[str, str, Any], Edit],
    conflicts: set[tuple[int, str]],
) -> bool:
    """Whether ``write`` gives a field back the value the CRM's own users set, over a portal
    edit's value whose conflict was recorded: an adapter undoing an overwrite it found after
    the fact (HubSpot, from the property's history)."""
    value, over = write.values[name], write.before.get(name)
    edit = owners.get((write.object, name, over))
    if edit is None or (edit.seq, name) not in conflicts:
        return False
    return any(
        w.origin == "crm" and w.record_id == write.record_id and w.values.get(name) == value
        for w in driver.log
    )
