"""The write an outbox entry becomes: its values typed again, the version and values it was
edited against as its precondition, whether an earlier attempt may have landed, and whether
the entry can go to the CRM at all yet."""

from __future__ import annotations

from mirror.push.landed import IN_DOUBT
from mirror.push.outbox import OutboxEntry, base_values, is_local
from mirror.store.records import field_value
from mirror.types import ObjectSpec, Write, WriteOp


def write_of(
    spec: ObjectSpec,
    row: OutboxEntry,
    replaced: dict[str, str],
    created: dict[str, str],
    synced_through: str | None,
) -> Write:
    """The write of entry ``row``: ``replaced`` gives the CRM ids of the local ids it was
    edited against, ``created`` the version the CRM gave a portal-created record (the
    precondition of an update that carries none), ``synced_through`` the object's checkpoint
    cursor."""
    values = {name: field_value(spec, name, value) for name, value in row.new_values.items()}
    op = WriteOp(row.op)
    version = None
    if not row.force and op is not WriteOp.CREATE:
        version = row.base_version or (created.get(row.record_id) if op is WriteOp.UPDATE else None)
    return Write(
        op=op,
        object=spec.name,
        values=values if op is not WriteOp.DELETE else {},
        record_id=None if op is WriteOp.CREATE else row.record_id,
        expected_version=version,
        idempotency_key=row.idempotency_key,
        synced_through=synced_through,
        # the version cannot tell a change made in its own second: the values can
        expected_values=(
            base_values(spec, row, replaced) if version and op is WriteOp.UPDATE else None
        ),
        in_doubt=row.status == "sending"
        or (row.attempts > 0 and row.error_code in (*IN_DOUBT, "NOT_RECORDED")),
    )


def sendable(row: OutboxEntry) -> bool:
    """Whether an open entry can go to the CRM now: not blocked, and referencing no record
    the CRM has not created yet."""
    return (
        row.status != "blocked"
        and not any(is_local(v) for v in row.new_values.values())
        and (row.op == "create" or not is_local(row.record_id))
    )
