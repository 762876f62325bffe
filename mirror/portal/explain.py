"""Why a record is or is not in a partner's slice: each path and what it went through.

A partner learns the paths to a record in its slice, and of a record outside it only that it is
not in the slice, the same whether the record exists, was deleted or has no path. The vendor's
operators (``vendor_explanation``, ``Mirror.explain``) learn which.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select

from mirror.portal import query_args
from mirror.portal.slice import PartnerSlice
from mirror.store.database import MirrorTable

# how many hops of "via" an explanation follows back towards the partner
_MAX_DEPTH = 6


@dataclass(frozen=True)
class Explanation:
    """Why a record is or is not in a partner's slice."""

    visible: bool
    reasons: tuple[str, ...]


def explain(slice_: PartnerSlice, object_name: str, record_id: str, *, detail: bool) -> Explanation:
    """Why ``record_id`` is in the slice; outside it, with ``detail``, why not (for the
    vendor), else only that it is not."""
    mirrored, rule = slice_.shared_object(object_name)
    query_args.text("record_id", record_id)
    if rule.public:
        return Explanation(True, (f"{object_name} is visible to every partner",))
    with slice_.store.engine.connect() as conn:
        reasons = _reasons(slice_, conn, object_name, record_id, depth=0)
        if reasons:
            return Explanation(True, tuple(reasons))
        if not detail:
            return Explanation(False, (f"{object_name} {record_id} is not in your slice",))
        return Explanation(False, (_why_not(slice_, conn, mirrored, record_id),))


def _reasons(
    slice_: PartnerSlice, conn: Connection, name: str, record_id: str, depth: int
) -> list[str]:
    g = slice_.grants(name, record_ids=[record_id]).subquery()
    query = (
        select(g.c.path, g.c.via_object, g.c.via_id, g.c.owner_id)
        .distinct()
        .order_by(g.c.path, g.c.via_id)
        .limit(5)
    )
    reasons = []
    for path, via_object, via_id, owner in conn.execute(query):
        indent = "  " * depth
        if not via_object:
            what = "your partner record" if path == "self" else f"attributed to you ({path})"
            mine = f", owned by {owner}" if owner and slice_.role == "rep" else ""
            reasons.append(f"{indent}{name} {record_id}: {what}{mine}")
            continue
        reasons.append(f"{indent}{name} {record_id}: via {via_object} {via_id} ({path})")
        if depth < _MAX_DEPTH:
            reasons += _reasons(slice_, conn, via_object, via_id, depth + 1)
    return reasons


def _why_not(slice_: PartnerSlice, conn: Connection, mirrored: MirrorTable, record_id: str) -> str:
    table, key = mirrored.table, mirrored.table.c[mirrored.spec.key]
    row = conn.execute(select(table.c._deleted).where(key == record_id)).first()
    name = mirrored.spec.name
    if row is None:
        return f"{name} {record_id} is not in the mirror"
    if row._deleted:
        return f"{name} {record_id} was deleted in the CRM"
    if slice_.role == "rep":
        return f"{name} {record_id} is not reachable from records owned by {slice_.user_id}"
    return f"no path of the {name} slice leads from your partner record to {record_id}"
