"""The ``_partners`` column of each sliced object table on PostgreSQL: the distinct partner ids
its grants name, what the row-level-security policies of ``mirror.visibility.postgres_rls``
compare with the session's partner.

The column holds ``partner_arrays``: the partners of a record's stored grants in
``mirror_access``, or its parent's for a record seen through its parent. The page-by-page
upkeep brings the rows it touched in line in the same transaction as every synced page
(``track_partner_changes``); after a first backfill and by a rebuild, each table is recomputed
set-based, in one statement (``refresh_partner_columns``). A GIN index answers the policies'
comparison; a policy that looked rows up in ``mirror_access`` measured 9x slower (40x as a
plpgsql function).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Any

from sqlalchemy import (
    Connection,
    Select,
    any_,
    bindparam,
    cast,
    column,
    func,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy import table as sql_table
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.types import Text

from mirror.store.database import MirrorTable, Store
from mirror.store.tables import mirror_access
from mirror.visibility.rules import SliceRule, VisibilityRules

PARTNERS_COLUMN = "_partners"
PARTNERS_TYPE = ARRAY(Text())
EMPTY_PARTNERS = literal_column("'{}'::text[]", PARTNERS_TYPE)


def is_sliced(rule: SliceRule | None) -> bool:
    """Whether the object's rows are filtered per partner (it has paths and is not public)."""
    return rule is not None and bool(rule.paths) and not rule.public


def is_shared(rule: SliceRule | None) -> bool:
    """Whether partners see the object at all (sliced or public)."""
    return rule is not None and (rule.public or bool(rule.paths))


def track_partner_changes(
    conn: Connection,
    store: Store,
    rules: VisibilityRules,
    mirrored: MirrorTable | None,
    ids: Collection[str],
) -> None:
    """Bring ``_partners`` of ``ids`` in line with their grants, inside the caller's
    transaction; adds (and fills) the column the first time a sliced table needs it."""
    if conn.dialect.name != "postgresql" or mirrored is None or not ids:
        return
    if not is_sliced(rules.rule(mirrored.spec.name)):
        return
    if not ensure_partner_column(conn, store, rules, mirrored):
        _write_partners(conn, store, rules, mirrored, list(ids))


def refresh_partner_columns(
    conn: Connection, store: Store, rules: VisibilityRules, names: Iterable[str] | None = None
) -> None:
    """Recompute ``_partners`` of the sliced tables of the source (of ``names`` only, when
    given) from their grants."""
    if conn.dialect.name != "postgresql":
        return
    wanted = None if names is None else set(names)
    for name in mirrored_names(store, rules.source):
        if wanted is not None and name not in wanted:
            continue
        if is_sliced(rules.rule(name)):
            mirrored = store.mirrored(rules.source, name)
            if not ensure_partner_column(conn, store, rules, mirrored):
                _write_partners(conn, store, rules, mirrored, None)


def ensure_partner_column(
    conn: Connection, store: Store, rules: VisibilityRules, mirrored: MirrorTable
) -> bool:
    """Add ``_partners`` filled from the grants, then its GIN index, when missing; returns
    whether it was added.

    The catalog is asked every time rather than remembered, so a rolled-back page that added
    the column cannot leave a stale belief behind.
    """
    table = mirrored.spec.table_name
    found = conn.execute(
        text(
            "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(:table) "
            "AND attname = :column AND NOT attisdropped"
        ),
        {"table": _quote(conn, table), "column": PARTNERS_COLUMN},
    ).first()
    if found is not None:
        return False
    conn.exec_driver_sql(
        f"ALTER TABLE {_quote(conn, table)} ADD COLUMN IF NOT EXISTS "
        f"{PARTNERS_COLUMN} text[] NOT NULL DEFAULT '{{}}'"
    )
    _write_partners(conn, store, rules, mirrored, None, added=True)
    # built once over the filled column, not entry by entry as each row is filled
    ensure_partner_index(conn, table)
    return True


def ensure_partner_index(conn: Connection, table: str) -> None:
    """Create the GIN index on ``table._partners`` when it is missing."""
    name = partner_index_name(table)
    if conn.execute(text("SELECT to_regclass(:name)"), {"name": _quote(conn, name)}).scalar():
        return
    conn.exec_driver_sql(
        f"CREATE INDEX IF NOT EXISTS {_quote(conn, name)} ON {_quote(conn, table)} "
        f"USING gin ({PARTNERS_COLUMN})"
    )


def partner_index_name(table: str) -> str:
    """The name of the GIN index on ``table._partners``."""
    return f"ix_{table}__partners_gin"


def _write_partners(
    conn: Connection,
    store: Store,
    rules: VisibilityRules,
    mirrored: MirrorTable,
    ids: list[str] | None,
    *,
    added: bool = False,
) -> None:
    """Set ``_partners`` of ``ids`` (every row when ``None``) to the partners their grants
    name, touching only rows whose value differs, so an unchanged slice writes nothing;
    ``added``: the column was just added, every row holds ``{}``.

    Set-based, in plans that stay linear whatever the planner believes: rows are written from
    their partner arrays joined on the key, and the rows that lost every partner are found as
    those holding partners ``EXCEPT`` those granted (a hashed or sorted set operation). A
    probe per row (``NOT EXISTS`` over the grants) rescans an object's grants for every row
    whenever the statistics lag a bulk load: minutes for 40,000 contacts.
    """
    spec = mirrored.spec
    key = spec.key
    target = sql_table(spec.table_name, column(key), column(PARTNERS_COLUMN, PARTNERS_TYPE))
    narrow = None
    if ids is not None:
        narrow = _among(bindparam("ids", ids, type_=PARTNERS_TYPE))
        # Rows first: the updates then take their snapshot after any concurrent page holding
        # these rows has committed, so its grants are counted instead of overwritten.
        t = mirrored.table
        lock = select(t.c[key]).where(narrow(t.c[key])).order_by(t.c[key]).with_for_update()
        conn.execute(lock)
    arrays = partner_arrays(store, rules, spec.name, narrow)
    if arrays is not None:
        w = arrays.subquery("w")
        written = update(target).values({PARTNERS_COLUMN: w.c.partners})
        written = written.where(target.c[key] == w.c.record_id)
        if not added:
            written = written.where(target.c[PARTNERS_COLUMN].is_distinct_from(w.c.partners))
        conn.execute(written)
    if added:
        return
    held = select(target.c[key]).where(target.c[PARTNERS_COLUMN] != EMPTY_PARTNERS)
    if narrow is not None:
        held = held.where(narrow(target.c[key]))
    lost: Any = held if arrays is None else held.except_(select(arrays.subquery().c.record_id))
    gone = lost.subquery("gone")
    conn.execute(
        update(target).values({PARTNERS_COLUMN: EMPTY_PARTNERS}).where(target.c[key] == gone.c[key])
    )


# narrows a query to some records: a condition on the column holding their ids
Narrowing = Callable[[Any], Any]


def _among(ids: Any) -> Narrowing:
    return lambda record: record == any_(ids)


def _within(ids: Select[Any]) -> Narrowing:
    return lambda record: record.in_(ids)


def partner_arrays(
    store: Store, rules: VisibilityRules, name: str, narrow: Narrowing | None = None
) -> Select[Any] | None:
    """Per record of ``name`` granted to at least one partner: ``record_id`` and ``partners``
    (the distinct partner ids, sorted, as ``text[]``); of the records whose id meets
    ``narrow`` when given; ``None`` when the object can have no grants yet.

    Stored grants are aggregated per record. A record seen only through its parent takes the
    parent's array through its reference: the parent's grants are aggregated once per parent,
    not once per child, and joined to the children by the indexed reference field.
    """
    path = rules.inherited_path(name)
    if path is None:
        a = mirror_access.c
        conditions = [a.source == rules.source, a.object == name, a.partner_id != ""]
        if narrow is not None:
            conditions.append(narrow(a.record_id))
        partners = func.array_agg(aggregate_order_by(a.partner_id.distinct(), a.partner_id))
        return (
            select(a.record_id.label("record_id"), cast(partners, PARTNERS_TYPE).label("partners"))
            .where(*conditions)
            .group_by(a.record_id)
        )
    try:
        child = store.mirrored(rules.source, name)
    except KeyError:
        return None
    t = child.table
    key, reference = t.c[child.spec.key], t.c[path.field]
    parents_narrow = None
    if narrow is not None:
        n = t.alias()
        parents_narrow = _within(select(n.c[path.field]).where(narrow(n.c[child.spec.key])))
    parents = partner_arrays(store, rules, path.other, parents_narrow)
    if parents is None:
        return None
    p = parents.subquery()
    rows = select(key.label("record_id"), p.c.partners).join_from(t, p, p.c.record_id == reference)
    rows = rows.where(t.c._deleted.is_(False))
    if narrow is not None:
        rows = rows.where(narrow(key))
    return rows


def mirrored_names(store: Store, source: str) -> list[str]:
    """The objects of ``source`` the store mirrors."""
    return [name for src, name in store.objects() if src == source]


def _quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)
