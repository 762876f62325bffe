"""The size of every partner's slice of every object, kept beside the grant table.

A slice's size is the number of distinct records its grants reach. The incremental upkeep
adds what entered and subtracts what left, in the transaction that changed the grants; a
set-based derivation counts the objects it derived again. ``PartnerView.count`` and
``Mirror.partners`` read these rows instead of counting index entries, so a count costs the
same for a slice of ten records and one of a million.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, Select, String, delete, func, insert, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from mirror.store.bulk import execute_many
from mirror.store.tables import mirror_access, mirror_slice_sizes


def recount(
    conn: Connection,
    source: str,
    names: Iterable[str] | None = None,
    inherited: Mapping[str, Select[Any]] | None = None,
) -> None:
    """Count the slices of ``names`` (every object when ``None``) from the grant table; the
    objects of ``inherited`` from their grant rows (``mirror.visibility.grants.granted``)."""
    a, s = mirror_access.c, mirror_slice_sizes.c
    stale = delete(mirror_slice_sizes).where(s.source == source)
    counted = select(
        literal(source, String(64)), a.partner_id, a.object, func.count(a.record_id.distinct())
    ).where(a.source == source)
    if names is not None:
        names = list(names)
        stale = stale.where(s.object.in_(names))
        counted = counted.where(a.object.in_(names))
    conn.execute(stale)
    columns = ["source", "partner_id", "object", "records"]
    rows = counted.group_by(a.partner_id, a.object)
    conn.execute(insert(mirror_slice_sizes).from_select(columns, rows))
    for name, grant_rows in (inherited or {}).items():
        g = grant_rows.subquery()
        per_partner = select(
            literal(source, String(64)),
            g.c.partner_id,
            literal(name, String(128)),
            func.count(g.c.record_id.distinct()),
        ).group_by(g.c.partner_id)
        conn.execute(insert(mirror_slice_sizes).from_select(columns, per_partner))


def adjust(conn: Connection, source: str, name: str, deltas: Mapping[str, int]) -> None:
    """Add ``deltas`` (partner -> records entered minus records left) to ``name``'s slices."""
    values = [
        {"source": source, "partner_id": partner, "object": name, "records": delta}
        for partner, delta in sorted(deltas.items())
        if delta
    ]
    if not values:
        return
    maker: Any = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = maker(mirror_slice_sizes)
    statement = statement.on_conflict_do_update(
        index_elements=["source", "partner_id", "object"],
        set_={"records": mirror_slice_sizes.c.records + statement.excluded.records},
    )
    execute_many(conn, statement, values)


def size(conn: Connection, source: str, partner_id: str, name: str) -> int:
    """How many records of ``name`` the partner's slice holds."""
    s = mirror_slice_sizes.c
    found = conn.execute(
        select(s.records).where(s.source == source, s.partner_id == partner_id, s.object == name)
    ).scalar()
    return int(found or 0)


def sizes(conn: Connection, source: str) -> dict[str, dict[str, int]]:
    """Every partner's slice sizes: partner -> object -> records (empty slices left out)."""
    s = mirror_slice_sizes.c
    found: dict[str, dict[str, int]] = {}
    query = select(s.partner_id, s.object, s.records).where(s.source == source, s.records > 0)
    for partner, name, records in conn.execute(query):
        found.setdefault(partner, {})[name] = int(records)
    return found


def recount_every_source(conn: Connection) -> None:
    """Count every source's slices (a store made before the sizes were kept)."""
    sources = conn.execute(select(mirror_access.c.source).distinct()).scalars().all()
    for source in sources:
        recount(conn, source)
