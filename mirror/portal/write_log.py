"""The outbox as one partner sees it: its own writes, newest first, each with the open
conflict it is parked in (if any), so a portal shows a write's state without reading the
engine's conflict list."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, or_, select

from mirror.portal.slice import PartnerSlice
from mirror.store.tables import mirror_conflicts, mirror_outbox


def writes_query(
    slice_: PartnerSlice, status: str | None, record_id: str | None, limit: int
) -> Select[Any]:
    """The slice's outbox entries (a rep's own only), of one record when ``record_id`` is
    given (its local id or the CRM's), with ``conflict_id``: the first open conflict parked
    on the entry, or ``None``."""
    o, k = mirror_outbox.c, mirror_conflicts.c
    conflict = (
        select(func.min(k.id))
        .where(k.outbox_seq == o.seq, k.source == o.source, k.status == "open")
        .scalar_subquery()
    )
    query = select(
        o.seq,
        o.object,
        o.record_id,
        o.crm_id,
        o.op,
        o.status,
        o.error_code,
        o.error_message,
        o.created_at,
        o.author,
        conflict.label("conflict_id"),
    ).where(o.source == slice_.source, o.partner_id == slice_.partner_id)
    if slice_.role == "rep":
        query = query.where(o.author == slice_.user_id)
    if status:
        query = query.where(o.status == status)
    if record_id is not None:
        query = query.where(or_(o.record_id == record_id, o.crm_id == record_id))
    return query.order_by(o.seq.desc()).limit(limit)
