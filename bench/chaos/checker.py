"""The checker: after quiescence, the CRM's own records against the mirror's tables, and the CRM's
write log against the portal edits the mirror accepted. The categories are defined in the
package docstring (``bench.chaos``); this module counts them and keeps the first examples.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from bench.chaos.nemesis import Crm
from bench.chaos.portal import Edit
from bench.chaos.scenarios import Scenario
from mirror import Mirror
from mirror.push.outbox import OPEN_STATUSES, is_local
from mirror.store.records import CONVERTERS, BadValue
from mirror.store.tables import mirror_conflicts, mirror_idmap, mirror_outbox
from mirror.types import FieldType

RECORD_KINDS = ("lost", "ghost", "stale", "duplicated")
EDIT_KINDS = ("lost", "stuck", "duplicated", "reordered")
CHANGE_KINDS = ("overwritten",)
EXAMPLES = 5


@dataclass
class Findings:
    """Counts per category with the first few examples of each, and what was compared."""

    records: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RECORD_KINDS, 0))
    edits: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EDIT_KINDS, 0))
    changes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHANGE_KINDS, 0))
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    compared: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, group: str, kind: str, detail: str) -> None:
        """Count one finding of ``group`` (records, edits or changes) and keep it if among the
        first."""
        getattr(self, group)[kind] += 1
        if len(self.examples[f"{group}.{kind}"]) < EXAMPLES:
            self.examples[f"{group}.{kind}"].append(detail)

    @property
    def clean(self) -> bool:
        """Whether every count is 0."""
        counts = (self.records, self.edits, self.changes)
        return not any(count for group in counts for count in group.values())


def check(mirror: Mirror, crm: Crm, scenario: Scenario, edits: list[Edit]) -> Findings:
    """Compare the quiesced mirror with the CRM (records) and the write log with ``edits``."""
    findings = Findings()
    tokens = {e.value: e for e in edits if e.op == "create"}
    for name in scenario.objects:
        _check_object(mirror, crm, scenario, name, tokens, findings)
    _check_edits(mirror, crm, edits, findings)
    return findings


# -- records -------------------------------------------------------------------------------------


def _state(crm: str, values: dict[str, Any]) -> tuple[bool, str | None]:
    """(live, the survivor it was merged into) of a dumped CRM record."""
    if crm == "salesforce":
        return not values["IsDeleted"], values.get("MasterRecordId")
    if crm == "hubspot":
        return not values["archived"] and not values["merged_into"], values["merged_into"]
    return True, None


def _check_object(
    mirror: Mirror,
    crm: Crm,
    scenario: Scenario,
    name: str,
    creates: dict[str | None, Edit],
    findings: Findings,
) -> None:
    try:
        mirrored = mirror.store.mirrored(scenario.crm, name)
    except KeyError:
        alive = [i for i, v in crm.dump(name).items() if _state(scenario.crm, v)[0]]
        for record_id in sorted(alive):
            findings.add("records", "lost", f"{name} {record_id}: the object was never mirrored")
        return
    spec, table = mirrored.spec, mirrored.table
    with mirror.store.engine.connect() as conn:
        rows = {str(r._mapping[spec.key]): r._mapping for r in conn.execute(select(table))}
        merges = dict(
            conn.execute(
                select(mirror_idmap.c.old_id, mirror_idmap.c.new_id).where(
                    mirror_idmap.c.source == scenario.crm,
                    mirror_idmap.c.object == name,
                    mirror_idmap.c.kind == "merge",
                )
            ).all()
        )
    dumped = crm.dump(name)
    name_field = scenario.name_field.get(name)
    standing: dict[str, list[str]] = defaultdict(list)
    by_token = {v[name_field]: i for i, v in dumped.items() if name_field and v.get(name_field)}
    for key, row in rows.items():
        if row["_deleted"]:
            continue
        if is_local(key):
            token = row.get(name_field) if name_field else None
            if token in creates and token in by_token:
                standing[by_token[token]].append(key)
            else:
                findings.add("records", "ghost", f"{name} {key}: a create never delivered")
            continue
        standing[key].append(key)
    fields = [f for f in spec.fields if f.name not in scenario.skip_compare.get(name, ())]
    for record_id, values in sorted(dumped.items()):
        live, survivor = _state(scenario.crm, values)
        mine = standing.pop(record_id, [])
        if not live:
            if mine:
                findings.add("records", "ghost", f"{name} {record_id}: deleted in the CRM")
            elif survivor and record_id in rows:
                unmapped = _unmapped(scenario.crm, dumped, survivor, merges.get(record_id))
                if unmapped:
                    findings.add("records", "stale", f"{name} {record_id}: {unmapped}")
            continue
        findings.compared[name] += 1
        if not mine:
            state = "marked deleted" if record_id in rows else "absent"
            findings.add("records", "lost", f"{name} {record_id}: {state} in the mirror")
        elif len(mine) > 1:
            findings.add("records", "duplicated", f"{name} {record_id}: rows {sorted(mine)}")
        elif mine[0] != record_id:
            findings.add("records", "stale", f"{name} {record_id}: still under {mine[0]}")
        else:
            differing = _differing(fields, rows[record_id], values)
            if differing:
                findings.add("records", "stale", f"{name} {record_id}: {differing}")
    for record_id in sorted(standing):
        findings.add("records", "ghost", f"{name} {record_id}: not in the CRM")


def _unmapped(
    crm: str, dumped: dict[str, dict[str, Any]], survivor: str, mapped: str | None
) -> str | None:
    """What is wrong with a merged-away record's id map entry (``mapped``), if anything: it
    must name its survivor or one that survivor was merged into later, when the last of them
    is live."""
    chain = [survivor]
    while chain[-1] in dumped and (later := _state(crm, dumped[chain[-1]])[1]):
        if later in chain:
            break
        chain.append(later)
    last = dumped.get(chain[-1])
    if mapped in chain or last is None or not _state(crm, last)[0]:
        return None
    return f"merged into {survivor}, mirror_idmap says {mapped}"


def _differing(fields: list[Any], row: Any, values: dict[str, Any]) -> str:
    """The first fields whose mirrored value is not the CRM's, as ``field: mirror != crm``."""
    out = []
    for spec in fields:
        if spec.name not in values:
            continue
        mine = _canonical(spec.type, row[spec.name])
        theirs = _canonical(spec.type, values[spec.name])
        if mine != theirs:
            out.append(f"{spec.name}: {mine!r} != {theirs!r}")
    return "; ".join(out[:3])


def _canonical(kind: FieldType, value: Any) -> Any:
    """A value in one form for both sides: typed as the mirror types it, then made plain."""
    if value is None or value == "":
        return None
    try:
        typed = CONVERTERS[kind](value)
    except (BadValue, TypeError, ValueError):
        return repr(value)
    if isinstance(typed, dt.datetime):
        moment = typed if typed.tzinfo else typed.replace(tzinfo=dt.UTC)
        return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds")
    if isinstance(typed, dt.date | dt.time):
        return typed.isoformat()
    if isinstance(typed, float):
        return round(typed, 6)
    if isinstance(typed, dict | list):
        return json.dumps(typed, sort_keys=True, default=str)
    return typed


# -- edits ---------------------------------------------------------------------------------------


@dataclass
class _Write:
    seq: int
    origin: str
    op: str
    object: str
    record_id: str
    fields: dict[str, Any]


@dataclass
class _History:
    """The CRM's write log and the mirror's outbox, conflicts and id map, indexed by edit."""

    by_token: dict[str, list[_Write]]
    by_record: dict[tuple[str, str], list[_Write]]
    outbox: list[Any]
    entries: dict[str, Any]
    conflicted: set[str]
    created: dict[str, str]

    @classmethod
    def read(cls, mirror: Mirror, crm: Crm) -> _History:
        """Everything the edits are judged against, read once."""
        by_token: dict[str, list[_Write]] = defaultdict(list)
        by_record: dict[tuple[str, str], list[_Write]] = defaultdict(list)
        for write in _write_log(crm):
            by_record[(write.object, write.record_id)].append(write)
            for value in write.fields.values() if write.origin == "api" else ():
                if isinstance(value, str) and value.startswith("portal-"):
                    by_token[value].append(write)
        o, c, m = mirror_outbox.c, mirror_conflicts.c, mirror_idmap.c
        with mirror.store.engine.connect() as conn:
            outbox = conn.execute(select(mirror_outbox).where(o.source == crm.crm)).all()
            portal = conn.execute(select(c.portal).where(c.source == crm.crm)).scalars()
            conflicted = {json.dumps(value) for value in portal}
            mapped = select(m.old_id, m.new_id).where(m.source == crm.crm, m.kind == "create")
            created = {old: new for old, new in conn.execute(mapped).all()}
        entries = {
            value: entry
            for entry in outbox
            for value in entry.new_values.values()
            if isinstance(value, str) and value.startswith("portal-")
        }
        return cls(by_token, by_record, list(outbox), entries, conflicted, created)

    def writes(self, edit: Edit, record_id: str) -> list[_Write]:
        """The engine's writes that carry the edit (a delete: of its record)."""
        if edit.op == "delete":
            return [w for w in self.by_record[(edit.object, record_id)] if w.op == "delete"]
        return self.by_token.get(edit.value or "", [])

    def entry(self, edit: Edit, record_id: str) -> Any:
        """The edit's outbox entry, if it has one."""
        if edit.op == "delete":
            return next(
                (e for e in self.outbox if e.op == "delete" and e.record_id == record_id), None
            )
        return self.entries.get(edit.value or "")

    def in_conflict(self, edit: Edit) -> bool:
        """Whether a conflict holds the edit's value."""
        return edit.value is not None and json.dumps(edit.value) in self.conflicted


def _check_edits(mirror: Mirror, crm: Crm, edits: list[Edit], findings: Findings) -> None:
    history = _History.read(mirror, crm)
    latest = {(e.object, history.created.get(e.record_id, e.record_id), e.field): e.number
              for e in edits}  # fmt: skip
    order: dict[tuple[str, str], list[tuple[int, int, Edit]]] = defaultdict(list)
    for edit in edits:
        record_id = history.created.get(edit.record_id, edit.record_id)
        writes, entry = history.writes(edit, record_id), history.entry(edit, record_id)
        what = f"#{edit.number} {edit.op} {edit.object} {edit.record_id} {edit.field or ''}"
        if writes:
            _applied(edit, what, writes, entry, history, findings)
            order[(edit.object, writes[0].record_id)].append((writes[0].seq, writes[-1].seq, edit))
        elif history.in_conflict(edit):
            findings.compared["edits in a conflict"] += 1
        elif entry is not None and entry.status == "failed":
            findings.compared[f"edits refused: {entry.error_code}"] += 1
        elif latest[(edit.object, record_id, edit.field)] > edit.number:
            findings.compared["edits overtaken by a later edit of the field"] += 1
        else:
            findings.add("edits", "lost", f"{what}: never written ({_status(entry)})")
    for applied in order.values():
        last = 0
        for first, final, edit in sorted(applied, key=lambda item: item[2].number):
            if first < last:
                detail = f"#{edit.number} {edit.object}: written before an earlier edit of it"
                findings.add("edits", "reordered", detail)
            last = max(last, final)


def _applied(
    edit: Edit,
    what: str,
    writes: list[_Write],
    entry: Any,
    history: _History,
    findings: Findings,
) -> None:
    """Judge an edit the CRM has: stuck, duplicated, or over a CRM change."""
    findings.compared["edits applied"] += 1
    target = writes[0].record_id
    still_open = entry is not None and (
        entry.status in OPEN_STATUSES or (entry.status == "done" and not entry.confirmed)
    )
    if still_open and not history.in_conflict(edit):
        findings.add("edits", "stuck", f"{what}: in the CRM as {target}, {_status(entry)}")
    elif edit.op == "create" and edit.record_id not in history.created:
        findings.add("edits", "stuck", f"{what}: in the CRM as {target}, its id maps to nothing")
    targets = sorted({w.record_id for w in writes})
    if edit.op == "create" and len(targets) > 1:
        findings.add("edits", "duplicated", f"{what}: created as {targets}")
    elif edit.op != "delete" and _reapplied(edit, writes, history.by_record):
        findings.add("edits", "duplicated", f"{what}: written again over a newer value")
    overwrote = edit.op == "update" and _overwrote(edit, writes[0], history.by_record)
    if overwrote and not history.in_conflict(edit):
        detail = f"{edit.object} {target} {edit.field}: by edit #{edit.number}"
        findings.add("changes", "overwritten", detail)


def _status(entry: Any) -> str:
    if entry is None:
        return "no outbox entry"
    status = "done, never confirmed" if entry.status == "done" else entry.status
    return f"outbox entry {status} {entry.error_message or ''}".strip()[:160]


def _reapplied(
    edit: Edit, writes: list[_Write], by_record: dict[tuple[str, str], list[_Write]]
) -> bool:
    """Whether the edit's value was written again after another value of its field landed."""
    field, value = edit.field or "", edit.value
    for first, again in itertools.pairwise(writes):
        between = [
            w for w in by_record[(again.object, again.record_id)]
            if first.seq < w.seq < again.seq and w.fields.get(field, value) != value
        ]  # fmt: skip
        if between:
            return True
    return False


def _overwrote(edit: Edit, write: _Write, by_record: dict[tuple[str, str], list[_Write]]) -> bool:
    """Whether the edit's first write replaced a value of its field that the CRM's own users
    wrote after the edit was made."""
    return any(
        w.origin == "crm" and edit.log_head < w.seq < write.seq and (edit.field or "") in w.fields
        for w in by_record[(write.object, write.record_id)]
    )


def _write_log(crm: Crm) -> list[_Write]:
    entries: list[_Write] = []
    after = 0
    while page := crm.admin("write_log", after=after, limit=10_000):
        entries += [
            _Write(e["seq"], e["origin"], e["op"], e["object"], e["record_id"], e["fields"])
            for e in page
        ]
        after = page[-1]["seq"]
    return entries
