"""``PartnerSlice``: what one partner (or one of its reps) may see, as queries.

The seam between a ``PartnerView`` and the modules that serve it (its writes, its change feed,
its explanations): which objects are shared, the query of the slice's records with only the
visible fields, the slice's grant rows, and the refusal of a record outside it. Every query is
driven by the partner's grants (so its cost is the size of the slice, not of the table); hidden
fields are never selected, filtered on, ordered by or echoed in errors.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, false, select

from mirror.errors import AccessDenied
from mirror.portal import query_args
from mirror.store.database import MirrorTable, Store
from mirror.store.tables import mirror_access
from mirror.visibility.grants import granted
from mirror.visibility.rules import (
    SliceRule,
    VisibilityRules,
    path_index_fields,
    visible_fields,
)

log = logging.getLogger("prm_mirror.access")
FILTERS = {
    "=": lambda c, v: c == v,
    "!=": lambda c, v: c != v,
    "<": lambda c, v: c < v,
    "<=": lambda c, v: c <= v,
    ">": lambda c, v: c > v,
    ">=": lambda c, v: c >= v,
    "in": lambda c, v: c.in_(list(v)),
    "like": lambda c, v: c.like(v),
    "is_null": lambda c, v: c.is_(None) if v else c.is_not(None),
}


class PartnerSlice:
    """The records and fields one partner's admin (or one rep) may see, as queries."""

    def __init__(
        self,
        store: Store,
        rules: VisibilityRules,
        partner_id: str,
        user_id: str | None,
        role: str,
    ) -> None:
        self.store = store
        self.rules = rules
        self.partner_id = partner_id
        self.user_id = user_id
        self.role = role
        self.source = rules.source

    def shared_object(self, name: str) -> tuple[MirrorTable, SliceRule]:
        """The mirrored table of ``name`` and its rule; ``AccessDenied`` when partners do not
        see the object or it is not mirrored."""
        query_args.text("object_name", name)
        rule = self.rules.rule(name)
        if rule is None or (not rule.paths and not rule.public):
            raise AccessDenied(f"{name} is not shared with partners")
        try:
            return self.store.mirrored(self.source, name), rule
        except KeyError:
            raise AccessDenied(f"{name} is not mirrored") from None

    def records(
        self,
        mirrored: MirrorTable,
        rule: SliceRule,
        fields: Sequence[str] | None,
        page: tuple[int, int] | None = None,
        *,
        probe: bool = False,
    ) -> Select:
        """The live records of the slice, with ``fields`` (every visible one when ``None``);
        with ``page`` (limit, offset), only that page of them in id order. With ``probe``,
        each record the rest of the query finds is checked against the slice's grants one by
        one (``narrows``: for a condition an index answers), instead of the slice's grants
        being read whole and joined."""
        table = mirrored.table
        columns = self.columns(mirrored, rule, fields)
        live = table.c._deleted.is_(False)
        if rule.public:
            return select(*columns).where(live)
        key = table.c[mirrored.spec.key]
        if probe:
            return select(*columns).where(live, self.holds(mirrored))
        rows = self.grants(mirrored.spec.name)
        record = rows.selected_columns.record_id
        granted_ids = rows.with_only_columns(record).distinct()
        if page is not None:
            granted_ids = granted_ids.order_by(record).limit(page[0]).offset(page[1])
        found = granted_ids.subquery("granted")
        return select(*columns).join_from(table, found, found.c.record_id == key).where(live)

    def narrows(self, mirrored: MirrorTable, conditions: list[query_args.Condition]) -> bool:
        """Whether one of ``conditions`` finds its records through an index of the object's
        table (``=`` or ``in`` on the key or an indexed field, such as a deal's line items by
        ``OpportunityId``): then probing each found record's grants costs the records found,
        where reading the slice's grants whole costs the slice."""
        spec = mirrored.spec
        # the fields slice paths follow are indexed (``prepare_object``), as are the key and
        # the partner field; a table read without preparing it may not list them
        indexed = {spec.key, *path_index_fields(self.rules).get(spec.name, ())}
        if spec.partner_field:
            indexed.add(spec.partner_field)
        indexed.update(next(iter(index.columns)).name for index in mirrored.table.indexes)
        return any(operator in ("=", "in") and name in indexed for name, operator, _ in conditions)

    def require(
        self, conn: Connection, mirrored: MirrorTable, rule: SliceRule, record_id: str
    ) -> None:
        """``AccessDenied`` (logged) unless record ``record_id`` of ``mirrored`` is in the
        slice."""
        key = mirrored.table.c[mirrored.spec.key]
        found = self.records(mirrored, rule, [mirrored.spec.key]).where(key == record_id)
        if conn.execute(found).first() is None:
            raise self.denied(mirrored.spec.name, record_id)

    def columns(self, mirrored: MirrorTable, rule: SliceRule, fields: Sequence[str] | None) -> list:
        """The columns of ``fields`` (every visible one when ``None``); ``AccessDenied`` for a
        field partners do not see."""
        allowed = visible_fields(rule, mirrored.spec.field_names)
        if fields is None:
            return [mirrored.table.c[name] for name in allowed]
        unknown = [f for f in fields if f not in allowed]
        if unknown:
            raise AccessDenied(
                f"{mirrored.spec.name} has no field {unknown[0]!r} shared with partners"
            )
        return [mirrored.table.c[name] for name in fields]

    def filters(
        self, mirrored: MirrorTable, rule: SliceRule, conditions: list[query_args.Condition]
    ) -> list[ColumnElement[bool]]:
        """``conditions`` as SQL on visible fields, each value typed as its field."""
        types = {f.name: f.type for f in mirrored.spec.fields}
        found = []
        for name, operator, value in conditions:
            column = self.columns(mirrored, rule, [name])[0]
            value = query_args.typed(name, types[name], operator, value)
            found.append(FILTERS[operator](column, value))
        return found

    def ordering(self, mirrored: MirrorTable, rule: SliceRule, names: list[str]) -> list:
        """The order of ``names`` (``-Field`` descending) on visible fields, then the id."""
        ordering = []
        for name in names:
            column = self.columns(mirrored, rule, [name.lstrip("-")])[0]
            ordering.append(column.desc() if name.startswith("-") else column.asc())
        key = mirrored.table.c[mirrored.spec.key]
        return [*ordering, key.asc()]

    def grants(self, name: str, record_ids: Sequence[str] | None = None) -> Select:
        """The grant rows of ``name`` in this slice (``mirror.visibility.grants.granted``)."""
        owner = self.user_id if self.role == "rep" else None
        return granted(
            self.store,
            self.rules,
            name,
            partner=self.partner_id,
            owner=owner,
            record_ids=record_ids,
        )

    def sees(self, name: str, record_id: Any) -> ColumnElement[bool]:
        """Whether the record ``record_id`` (a value or a column) of ``name`` is in the
        slice now."""
        path = self.rules.inherited_path(name)
        if path is None:
            rows = self.grants(name)
            return rows.where(rows.selected_columns.record_id == record_id).exists()
        # a record that sees through its parent: found by its key, then its parent probed
        # (not every one of the slice's parents read to find it)
        try:
            child = self.store.mirrored(self.source, name)
        except KeyError:
            return false()
        t = child.table
        found = select(t.c[child.spec.key]).where(
            t.c[child.spec.key] == record_id,
            t.c._deleted.is_(False),
            self.sees(path.other, t.c[path.field]),
        )
        return found.exists()

    def holds(self, mirrored: MirrorTable) -> ColumnElement[bool]:
        """Whether the row of ``mirrored`` that the enclosing query reads is in the slice: a
        probe of its grant, or of its parent's when its grants are its parent's (the probe
        must not read ``mirrored``'s table itself, which would not correlate with the row)."""
        path = self.rules.inherited_path(mirrored.spec.name)
        if path is None:
            return self.sees(mirrored.spec.name, mirrored.table.c[mirrored.spec.key])
        return self.sees(path.other, mirrored.table.c[path.field])

    def stored_grant_scope(self) -> list[ColumnElement[bool]]:
        """The conditions on ``mirror_access`` rows that are this slice's stored grants."""
        a = mirror_access.c
        scope = [a.source == self.source, a.partner_id == self.partner_id]
        if self.role == "rep":
            scope.append(a.owner_id == self.user_id)
        return scope

    def denied(self, object_name: str, record_id: str) -> AccessDenied:
        """The refusal of a record outside the slice, logged for the vendor."""
        log.warning(
            "access denied: partner %s (user %s) asked for %s %s",
            self.partner_id,
            self.user_id,
            object_name,
            record_id,
        )
        return AccessDenied(f"{object_name} {record_id} is not in your slice")
