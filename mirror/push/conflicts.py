"""Conflicts parked for a person (policy ``manual``), and how a person resolves one.

A parked conflict keeps both values; the mirror row shows the CRM's and the CRM keeps its own
until someone chooses: ``crm`` (drop the portal's value), ``portal`` (push the portal's value
over the CRM's), or ``value`` (push a value of their own). The last two go out through the
outbox like any portal edit, forced past the precondition since the person saw both sides.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select, update

from mirror.errors import MirrorError
from mirror.push.outbox import enqueue, set_entry
from mirror.store.database import Store, utcnow
from mirror.store.records import field_value
from mirror.store.tables import mirror_conflicts, mirror_outbox


class ConflictNotFound(MirrorError):
    """No open conflict with that id."""


def list_conflicts(store: Store, status: str | None = "open", limit: int = 100) -> list[dict]:
    """Conflicts, newest first (``status=None`` for all, resolved ones included)."""
    c = mirror_conflicts.c
    query = select(mirror_conflicts).order_by(c.id.desc()).limit(limit)
    if status:
        query = query.where(c.status == status)
    with store.engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def open_conflicts(conn: Connection) -> int:
    """How many conflicts wait for a person."""
    c = mirror_conflicts.c
    return int(conn.execute(select(func.count()).where(c.status == "open")).scalar_one())


def resolve_conflict(
    store: Store, conflict_id: int, take: str, value: Any = None, by: str | None = None
) -> dict:
    """Resolve an open conflict by taking ``crm``, ``portal`` or ``value``."""
    if take not in ("crm", "portal", "value"):
        raise ValueError("take one of crm, portal, value")
    c = mirror_conflicts.c
    with store.transaction() as conn:
        row = conn.execute(
            select(mirror_conflicts).where(c.id == conflict_id, c.status == "open")
        ).first()
        if row is None:
            raise ConflictNotFound(f"no open conflict {conflict_id} (see `prm-mirror conflicts`)")
        mirrored = store.mirrored(row.source, row.object)
        spec, table = mirrored.spec, mirrored.table
        chosen = row.crm if take == "crm" else row.portal if take == "portal" else value
        if take != "crm":
            key = table.c[spec.key]
            current = conn.execute(select(table).where(key == row.record_id)).one()._mapping
            new = field_value(spec, row.field, chosen)
            entry = conn.execute(
                select(mirror_outbox.c.partner_id).where(mirror_outbox.c.seq == row.outbox_seq)
            ).first()
            seq = enqueue(
                conn,
                spec,
                record_id=row.record_id,
                op="update",
                values={row.field: new},
                before={row.field: current[row.field]},
                base_version=current["_modstamp"].isoformat() if current["_modstamp"] else None,
                partner_id=entry.partner_id if entry else None,
                author=by,
            )
            set_entry(conn, seq, force=True)
            conn.execute(
                update(table).where(key == row.record_id).values({row.field: new, "_pending": True})
            )
        conn.execute(
            update(mirror_conflicts)
            .where(c.id == conflict_id)
            .values(
                status="resolved",
                resolution=take,
                resolved_value=chosen,
                resolved_at=utcnow(),
                resolved_by=by,
            )
        )
    return {"id": conflict_id, "field": row.field, "take": take, "value": chosen}
