"""The grants of any sliced object as rows of one query, stored or inherited.

Most objects' grants are rows of ``mirror_access``. An object whose only path goes through its
parent (a Contact via its Account, a line item via its Opportunity) sees exactly what its parent
sees, so its grants are not stored: they are its parent's grants, read through the reference
field at query time. Storing them would double the rows the upkeep writes when a deal moves
(each contact and line item of it lost by one partner and gained by another) for no answer a
join cannot give: the join starts from the partner's parent grants and probes the children by
their indexed reference field.

``granted`` writes that query for either kind, over any number of inheriting hops, with the
partner (and owner) narrowing applied where the stored grants are read.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from sqlalchemy import Select, false, literal, select

from mirror.store.database import MirrorTable, Store
from mirror.store.idsets import id_in
from mirror.store.tables import mirror_access
from mirror.visibility.rules import VisibilityRules

# the columns of a grant row, as ``granted`` labels them
GRANT_FIELDS = ("record_id", "partner_id", "owner_id", "path", "via_object", "via_id")
# one grant of an object: record_id, partner_id, owner_id, path, via_object, via_id
Grant = tuple[str, str, str, str, str, str]
# per record: the (partner, owner) pairs that see it
Pairs = dict[str, frozenset[tuple[str, str]]]
# per record whose (partner, owner) set changed: that set before and after
Changes = dict[str, tuple[frozenset[tuple[str, str]], frozenset[tuple[str, str]]]]
NO_PAIRS: frozenset[tuple[str, str]] = frozenset()


def mirrored_or_none(store: Store, source: str, name: str) -> MirrorTable | None:
    """The mirrored table of ``name``, or ``None`` before it is first synced."""
    try:
        return store.mirrored(source, name)
    except KeyError:
        return None


def pairs_of(rows: Iterable[Grant]) -> Pairs:
    """Per record of ``rows``: the (partner, owner) pairs its grants name."""
    found: dict[str, set[tuple[str, str]]] = {}
    for row in rows:
        found.setdefault(row[0], set()).add((row[1], row[2]))
    return {k: frozenset(v) for k, v in found.items()}


def changed_pairs(ids: Iterable[str], before: Pairs, after: Pairs) -> Changes:
    """The records of ``ids`` whose (partner, owner) set differs, with the set before and after."""
    return {
        i: (before.get(i, NO_PAIRS), after.get(i, NO_PAIRS))
        for i in ids
        if before.get(i, NO_PAIRS) != after.get(i, NO_PAIRS)
    }


def is_inherited(rules: VisibilityRules, name: str) -> bool:
    """Whether ``name``'s grants are its parent's, read through the reference (not stored)."""
    return rules.inherited_path(name) is not None


def stored_grants(source: str) -> Select[Any]:
    """Every stored grant row of ``source``: its object, then the columns ``GRANT_FIELDS``."""
    a = mirror_access.c
    return select(a.object, *(a[c] for c in GRANT_FIELDS)).where(a.source == source)


def granted(
    store: Store,
    rules: VisibilityRules,
    name: str,
    *,
    partner: str | None = None,
    owner: str | None = None,
    record_ids: Collection[str] | None = None,
) -> Select[Any]:
    """The grant rows of ``name`` (columns ``GRANT_FIELDS``), of one partner (and owner) and
    of records ``record_ids`` when given; a deleted record has none."""
    path = rules.inherited_path(name)
    if path is None:
        a = mirror_access.c
        conditions = [a.source == rules.source, a.object == name]
        if record_ids is not None:
            conditions.append(id_in(store.dialect, a.record_id, record_ids))
        if partner is not None:
            conditions.append(a.partner_id == partner)
        if owner is not None:
            conditions.append(a.owner_id == owner)
        return select(*(a[c] for c in GRANT_FIELDS)).where(*conditions)
    try:
        child = store.mirrored(rules.source, name)
    except KeyError:
        return _nothing()
    try:
        store.mirrored(rules.source, path.other)
    except KeyError:
        return _nothing()
    parent = granted(store, rules, path.other, partner=partner, owner=owner).subquery()
    t = child.table
    fk = t.c[path.field]
    rows = select(
        t.c[child.spec.key].label("record_id"),
        parent.c.partner_id,
        parent.c.owner_id,
        literal(path.text).label("path"),
        literal(path.other).label("via_object"),
        fk.label("via_id"),
    ).join_from(t, parent, parent.c.record_id == fk)
    rows = rows.where(t.c._deleted.is_(False))
    if record_ids is not None:
        rows = rows.where(id_in(store.dialect, t.c[child.spec.key], record_ids))
    return rows


def _nothing() -> Select[Any]:
    a = mirror_access.c
    return select(*(a[c] for c in GRANT_FIELDS)).where(false())
