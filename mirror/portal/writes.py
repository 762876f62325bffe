"""Portal writes through a ``PartnerView``: update, create and delete within the slice.

Each write is checked first (the record is in the slice, every field is writable, every value
fits its field, every reference points into the slice or at a public object) and then applied
in ONE transaction: the mirror row changes and is marked ``_pending`` (the portal reads its own
write at once), an outbox entry records each field's before and after values with the author,
and the partners' grants follow. Anything refused changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, insert, select, update

from mirror.errors import AccessDenied, ValidationError
from mirror.portal.query_args import Condition
from mirror.portal.slice import PartnerSlice
from mirror.push.diff import field_changes
from mirror.push.local_ids import current_ids
from mirror.push.outbox import enqueue, is_local, new_local_id
from mirror.store.database import MirrorTable, Store, utcnow
from mirror.store.records import CONVERTERS, BadValue
from mirror.store.tables import mirror_outbox
from mirror.types import FieldType, ObjectSpec
from mirror.visibility.rules import SliceRule
from mirror.visibility.upkeep import GrantUpkeep


class PortalWrites:
    """The writes of one partner view: checked against its slice, applied with the grants
    following (when the view has the source's grant upkeep)."""

    def __init__(self, slice_: PartnerSlice, upkeep: GrantUpkeep | None) -> None:
        self.slice = slice_
        self.upkeep = upkeep

    def update(self, name: str, record_id: str, changes: Mapping[str, Any]) -> str:
        """Change writable fields of one record in the slice; returns the record's id now
        (a local id the CRM has since replaced still names the record, and so do local ids
        in reference fields)."""
        slice_ = self.slice
        mirrored, rule = slice_.shared_object(name)
        values = _checked_values(mirrored.spec, rule, changes)
        with slice_.store.transaction() as conn:
            record_id = current_id(conn, slice_.source, name, record_id)
            values = _current_references(conn, slice_.source, values)
            slice_.require(conn, mirrored, rule, record_id)
            _check_references(conn, slice_, mirrored.spec, values)
            with self._grants_follow(conn, name, record_id):
                apply_update(conn, mirrored, record_id, values, slice_.partner_id, slice_.user_id)
        return record_id

    def create(self, name: str, values: Mapping[str, Any]) -> str:
        """Create a record in the slice; returns its local id (the CRM id replaces it once
        pushed)."""
        slice_ = self.slice
        mirrored, rule = slice_.shared_object(name)
        if not rule.creatable:
            raise AccessDenied(f"partners may not create {name} records")
        typed = _checked_values(mirrored.spec, rule, values)
        typed.update(_attribution(slice_, rule, typed))
        with slice_.store.transaction() as conn:
            typed = _current_references(conn, slice_.source, typed)
            _check_references(conn, slice_, mirrored.spec, typed)
            local_id = insert_local(conn, mirrored, typed, slice_.partner_id, slice_.user_id)
            if self.upkeep is not None:
                self.upkeep.refresh(conn, name, [local_id])
        return local_id

    def delete(self, name: str, record_id: str) -> None:
        """Delete a record of the slice (where the rule allows partners to delete)."""
        slice_ = self.slice
        mirrored, rule = slice_.shared_object(name)
        if not rule.deletable:
            raise AccessDenied(f"partners may not delete {name} records")
        spec, table = mirrored.spec, mirrored.table
        key = table.c[spec.key]
        with slice_.store.transaction() as conn:
            record_id = current_id(conn, slice_.source, name, record_id)
            slice_.require(conn, mirrored, rule, record_id)
            row = conn.execute(select(table).where(key == record_id)).one()._mapping
            with self._grants_follow(conn, name, record_id):
                conn.execute(
                    update(table).where(key == record_id).values(_deleted=True, _pending=True)
                )
            enqueue(
                conn,
                spec,
                record_id=record_id,
                op="delete",
                values={},
                before={},
                base_version=row["_modstamp"].isoformat() if row["_modstamp"] else None,
                partner_id=slice_.partner_id,
                author=slice_.user_id,
            )

    @contextmanager
    def _grants_follow(self, conn: Connection, name: str, record_id: str) -> Iterator[None]:
        """Around a local write of an existing record: its grants (and its dependents')
        follow."""
        if self.upkeep is None:
            yield
            return
        with self.upkeep.changing(conn, name, [record_id]):
            yield


def apply_update(
    conn: Connection,
    mirrored: MirrorTable,
    record_id: str,
    values: Mapping[str, Any],
    partner_id: str | None,
    author: str | None,
) -> bool:
    """Write already-checked ``values`` to the mirror row and queue them for the CRM, in the
    caller's transaction; ``False`` when nothing actually changed."""
    spec, table = mirrored.spec, mirrored.table
    key = table.c[spec.key]
    row = conn.execute(select(table).where(key == record_id)).one()._mapping
    before = {f: row[f] for f in values}
    changed = field_changes(before, values, list(values))
    if not changed:
        return False
    new = {f: after for f, (_, after) in changed.items()}
    conn.execute(update(table).where(key == record_id).values(**new, _pending=True))
    enqueue(
        conn,
        spec,
        record_id=record_id,
        op="update",
        values=new,
        before={f: before[f] for f in new},
        base_version=row["_modstamp"].isoformat() if row["_modstamp"] else None,
        partner_id=partner_id,
        author=author,
    )
    return True


def insert_local(
    conn: Connection,
    mirrored: MirrorTable,
    values: Mapping[str, Any],
    partner_id: str | None,
    author: str | None,
    idempotency_key: str | None = None,
) -> str:
    """Insert a new record under a local id and queue its creation, in the caller's
    transaction; returns the local id."""
    spec = mirrored.spec
    local_id = new_local_id()
    row: dict[str, Any] = {f.name: None for f in spec.fields}
    row.update(values)
    row[spec.key] = local_id
    conn.execute(
        insert(mirrored.table).values(
            **row, _deleted=False, _pending=True, _synced_at=utcnow(), _hash=None
        )
    )
    enqueue(
        conn,
        spec,
        record_id=local_id,
        op="create",
        values=dict(values),
        before={},
        base_version=None,
        partner_id=partner_id,
        author=author,
        idempotency_key=idempotency_key,
    )
    return local_id


def current_id(conn: Connection, source: str, name: str, record_id: str) -> str:
    """``record_id``, or the CRM id that replaced it when it is a local id the CRM created."""
    return current_ids(conn, source, [record_id], [name]).get(record_id, record_id)


def current_conditions(store: Store, source: str, conditions: list[Condition]) -> list[Condition]:
    """A query's conditions with the local ids they name replaced by the CRM's ids."""
    values = [v for _, _, value in conditions for v in _values(value) if is_local(v)]
    if not values:
        return conditions
    with store.engine.connect() as conn:
        mapped = current_ids(conn, source, values)

    def one(value: Any) -> Any:
        return mapped.get(value, value) if isinstance(value, str) else value

    return [
        (name, operator, [one(v) for v in value] if isinstance(value, list) else one(value))
        for name, operator, value in conditions
    ]


def _values(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _current_references(conn: Connection, source: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with local ids the CRM has since created replaced by their CRM ids."""
    mapped = current_ids(conn, source, values.values())
    return {name: mapped.get(v, v) if isinstance(v, str) else v for name, v in values.items()}


def _checked_values(spec: ObjectSpec, rule: SliceRule, values: Mapping[str, Any]) -> dict[str, Any]:
    refused = sorted(n for n in values if n not in rule.writable or not spec.has_field(n))
    if refused:
        raise AccessDenied(f"{spec.name}: partners may not write {', '.join(refused)}")
    return typed_values(spec, values)


def typed_values(spec: ObjectSpec, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` converted to their fields' types; ``ValidationError`` naming the field."""
    typed: dict[str, Any] = {}
    for name, value in values.items():
        field = spec.field(name)
        if value is None:
            if not field.nullable:
                raise _invalid(spec, name, "is required")
            typed[name] = None
            continue
        try:
            typed[name] = CONVERTERS[field.type](value)
        except BadValue as exc:
            raise _invalid(spec, name, str(exc), ": ") from None
        text = field.type in (FieldType.STRING, FieldType.TEXT)
        if text and field.length and len(typed[name]) > field.length:
            raise _invalid(spec, name, f"is longer than {field.length} characters")
    return typed


def _invalid(spec: ObjectSpec, name: str, problem: str, joint: str = " ") -> ValidationError:
    """The error of one field's value: ``Object.Field<joint>problem``, and the problem."""
    return ValidationError(
        f"{spec.name}.{name}{joint}{problem}", field=name, problems=[(name, problem)]
    )


def _attribution(slice_: PartnerSlice, rule: SliceRule, values: dict[str, Any]) -> dict[str, Any]:
    """The fields that make a new record the partner's own (and the rep's, for a rep)."""
    forced: dict[str, Any] = {}
    for path in rule.paths:
        if path.kind == "direct":
            forced[path.field] = slice_.partner_id
    if rule.owner_field and slice_.role == "rep":
        forced[rule.owner_field] = slice_.user_id
    return forced


def _check_references(
    conn: Connection, slice_: PartnerSlice, spec: ObjectSpec, values: Mapping[str, Any]
) -> None:
    for name, value in values.items():
        field = spec.field(name)
        if field.type is not FieldType.REFERENCE or value is None:
            continue
        if value == slice_.partner_id or any(
            _visible(conn, slice_, target, value) for target in field.references
        ):
            continue
        if is_local(value) and _created_by(conn, slice_, value):
            continue
        raise AccessDenied(f"{spec.name}.{name} points at a record outside your slice")


def _visible(conn: Connection, slice_: PartnerSlice, target: str, record_id: str) -> bool:
    rule = slice_.rules.rule(target)
    if rule is None:
        return False
    if rule.public:
        return True
    query = slice_.grants(target, record_ids=[record_id])
    return conn.execute(query.limit(1)).first() is not None


def _created_by(conn: Connection, slice_: PartnerSlice, local_id: str) -> bool:
    """Whether the partner itself created ``local_id`` (not yet in the CRM)."""
    o = mirror_outbox.c
    query = select(o.seq).where(
        o.source == slice_.source,
        o.record_id == local_id,
        o.op == "create",
        o.partner_id == slice_.partner_id,
    )
    return conn.execute(query.limit(1)).first() is not None
