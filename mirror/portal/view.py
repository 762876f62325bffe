"""``PartnerView``: one partner's slice of the mirror, the only way a portal session reads it.

Default deny: a view exists only for a partner id, and every query is driven by that partner's
rows in ``mirror_access`` (so its cost is the size of the slice, not of the table). Hidden
fields are never selected, filtered on, ordered by or echoed in errors. A record outside the
slice raises ``AccessDenied`` and is logged. Views are immutable and safe to share across
threads; each call takes its own connection from the pool.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    func,
    select,
)

from mirror.errors import AccessDenied
from mirror.portal import feed as partner_feed
from mirror.portal import query_args
from mirror.portal import writes as portal_writes
from mirror.store.database import MirrorTable, Store
from mirror.store.tables import mirror_access, mirror_outbox
from mirror.visibility import sizes as slice_sizes
from mirror.visibility.grants import granted
from mirror.visibility.rule_check import served_rules
from mirror.visibility.rules import SliceRule, VisibilityRules, visible_fields, visible_values

if TYPE_CHECKING:
    from mirror.portal.registrations import Receipt, Registrations
    from mirror.visibility.access import AccessMaintainer

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
MAX_PAGE = query_args.MAX_PAGE


@dataclass(frozen=True)
class Explanation:
    """Why a record is or is not in a partner's slice."""

    visible: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class ChangeBatch:
    """Changes in a partner's slice after a cursor; pass ``cursor`` back for the next batch."""

    changes: list[dict[str, Any]]
    cursor: int


def vendor_explanation(view: PartnerView, object_name: str, record_id: str) -> Explanation:
    """``view.explain`` with, outside the slice, why not: the record is not mirrored, was
    deleted, or no path leads to it (for the vendor's operators, never for a partner)."""
    return view._explain(object_name, record_id, detail=True)


class PartnerView:
    """Read access to one partner's slice (as the partner's admin, or as one of its reps)."""

    def __init__(
        self,
        store: Store,
        rules: VisibilityRules,
        partner_id: str,
        *,
        user_id: str | None = None,
        role: str = "admin",
        access: AccessMaintainer | None = None,
        registrations: Registrations | None = None,
    ) -> None:
        if not partner_id:
            raise AccessDenied("no partner context: a partner id is required")
        query_args.text("partner_id", partner_id)
        if user_id is not None:
            query_args.text("user_id", user_id)
        if role not in ("admin", "rep"):
            raise AccessDenied(f"unknown partner role {role!r} (admin or rep)")
        if role == "rep" and not user_id:
            raise AccessDenied("a rep view needs the user id")
        self.store = store
        self.rules = served_rules(store, rules)
        self.partner_id = partner_id
        self.user_id = user_id
        self.role = role
        self.source = rules.source
        self.access = access
        self.registrations = registrations

    def register_deal(self, request: Mapping[str, Any]) -> Receipt:
        """Register a deal (company, domain, country, contact, amount, currency, close date,
        products, notes); returns its id, status and verdict, never another partner's details."""
        if self.registrations is None:
            raise AccessDenied("deal registration is not configured for this CRM")
        return self.registrations.register(self, request)

    def my_registrations(self) -> list[dict[str, Any]]:
        """This partner's registrations with their status and verdict."""
        if self.registrations is None:
            return []
        return self.registrations.of_partner(self)

    def update(self, object_name: str, record_id: str, changes: Mapping[str, Any]) -> dict:
        """Change writable fields of a record in the slice; the CRM gets it on the next push."""
        query_args.text("record_id", record_id)
        return portal_writes.update_record(self, object_name, record_id, changes)

    def create(self, object_name: str, values: Mapping[str, Any]) -> str:
        """Create a record in the slice; returns its local id until the CRM assigns its own."""
        return portal_writes.create_record(self, object_name, values)

    def delete(self, object_name: str, record_id: str) -> None:
        """Delete a record of the slice (where partners may delete that object)."""
        query_args.text("record_id", record_id)
        portal_writes.delete_record(self, object_name, record_id)

    def writes(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """This partner's writes on their way to the CRM (or failed, with the CRM's message)."""
        query_args.bounded("limit", limit, 1, MAX_PAGE)
        o = mirror_outbox.c
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
        ).where(o.source == self.source, o.partner_id == self.partner_id)
        if self.role == "rep":
            query = query.where(o.author == self.user_id)
        if status:
            query = query.where(o.status == status)
        with self.store.engine.connect() as conn:
            rows = conn.execute(query.order_by(o.seq.desc()).limit(limit)).all()
        return [dict(r._mapping) for r in rows]

    def get(self, object_name: str, record_id: str, fields: Sequence[str] | None = None) -> dict:
        """One record of the slice (also by the local id ``create`` returned, once the CRM
        has replaced it); ``AccessDenied`` when it is not in it."""
        mirrored, rule = self._object(object_name)
        query_args.text("record_id", record_id)
        fields = query_args.fields(fields)
        key = mirrored.table.c[mirrored.spec.key]
        with self.store.engine.connect() as conn:
            record_id = portal_writes.current_id(conn, self, object_name, record_id)
            query = self._query(mirrored, rule, fields).where(key == record_id)
            row = conn.execute(query).first()
        if row is None:
            raise self._deny(object_name, record_id)
        return dict(row._mapping)

    def select(
        self,
        object_name: str,
        *,
        where: Mapping[str, Any] | None = None,
        fields: Sequence[str] | None = None,
        order_by: Sequence[str] | str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[dict]:
        """Records of the slice, filtered, ordered (``"-Amount"`` for descending) and paged.

        ``where`` maps a field to a value (equality), to ``(operator, value)`` with operator
        one of ``= != < <= > >= in like is_null``, or to a list of such pairs (all apply).
        An argument the query cannot take raises ``QueryError`` naming it.
        """
        mirrored, rule = self._object(object_name)
        limit, offset = query_args.page(limit, offset)
        fields = query_args.fields(fields)
        order = query_args.ordering(order_by)
        conditions = portal_writes.current_conditions(self, query_args.conditions(where))
        if not conditions and not order and not rule.public:
            # the default page (by id, unfiltered) is read off the access index in id order:
            # its cost is the page's, not the slice's (a grant exists only for a live record)
            query = self._query(mirrored, rule, fields, page=(limit, offset))
            query = query.order_by(mirrored.table.c[mirrored.spec.key])
        else:
            query = self._query(mirrored, rule, fields)
            query = query.where(*self._filters(mirrored, rule, conditions))
            query = query.order_by(*self._ordering(mirrored, rule, order))
            query = query.limit(limit).offset(offset)
        with self.store.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [dict(row._mapping) for row in rows]

    def count(self, object_name: str, *, where: Mapping[str, Any] | None = None) -> int:
        """How many records of the slice match ``where``."""
        mirrored, rule = self._object(object_name)
        conditions = portal_writes.current_conditions(self, query_args.conditions(where))
        if not conditions and not rule.public:
            with self.store.engine.connect() as conn:
                if self.role != "rep":
                    return slice_sizes.size(conn, self.source, self.partner_id, mirrored.spec.name)
                # a grant exists only for a live record: a rep's stored grants are counted
                # off the index alone, without a row lookup per record
                rows = self._granted(mirrored.spec.name).subquery()
                counted = select(func.count(rows.c.record_id.distinct()))
                return int(conn.execute(counted).scalar_one())
        key = mirrored.table.c[mirrored.spec.key]
        query = self._query(mirrored, rule, [mirrored.spec.key])
        query = query.where(*self._filters(mirrored, rule, conditions))
        counted = select(func.count()).select_from(query.with_only_columns(key).subquery())
        with self.store.engine.connect() as conn:
            return int(conn.execute(counted).scalar_one())

    def changes(self, since: int = 0, limit: int = 500) -> ChangeBatch:
        """What changed in the slice after cursor ``since``: data changes of visible records
        (hidden fields left out) and records entering or leaving the slice.

        A record's data changes are served only while it is in the slice: from its "enter"
        to its "leave" (or "delete"), never its history from before it entered nor the change
        that took it out (whose values name where it went). A rep's feed follows the rep's
        own slice the same way. ``limit`` is at most ``query_args.MAX_FEED_PAGE``."""
        query_args.bounded("since", since, 0, 2**63 - 1)
        query_args.bounded("limit", limit, 1, query_args.MAX_FEED_PAGE)
        with self.store.engine.connect() as conn:
            rows = conn.execute(partner_feed.feed_query(self, since, limit)).all()
        return ChangeBatch([self._change(r) for r in rows], rows[-1].seq if rows else since)

    def explain(self, object_name: str, record_id: str) -> Explanation:
        """Why ``record_id`` is in the slice (each path and what it went through); outside
        it, only that it is not in the slice, the same whether the record exists, was deleted
        or has no path (``Mirror.explain`` tells the vendor which)."""
        return self._explain(object_name, record_id, detail=False)

    def _explain(self, object_name: str, record_id: str, *, detail: bool) -> Explanation:
        mirrored, rule = self._object(object_name)
        query_args.text("record_id", record_id)
        if rule.public:
            return Explanation(True, (f"{object_name} is visible to every partner",))
        with self.store.engine.connect() as conn:
            reasons = self._reasons(conn, object_name, record_id, depth=0)
            if reasons:
                return Explanation(True, tuple(reasons))
            if not detail:
                return Explanation(False, (f"{object_name} {record_id} is not in your slice",))
            return Explanation(False, (self._why_not(conn, mirrored, record_id),))

    def _reasons(self, conn: Connection, name: str, record_id: str, depth: int) -> list[str]:
        g = self._granted(name, record_ids=[record_id]).subquery()
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
                mine = f", owned by {owner}" if owner and self.role == "rep" else ""
                reasons.append(f"{indent}{name} {record_id}: {what}{mine}")
                continue
            reasons.append(f"{indent}{name} {record_id}: via {via_object} {via_id} ({path})")
            if depth < 6:
                reasons += self._reasons(conn, via_object, via_id, depth + 1)
        return reasons

    def _why_not(self, conn: Connection, mirrored: MirrorTable, record_id: str) -> str:
        table, key = mirrored.table, mirrored.table.c[mirrored.spec.key]
        row = conn.execute(select(table.c._deleted).where(key == record_id)).first()
        name = mirrored.spec.name
        if row is None:
            return f"{name} {record_id} is not in the mirror"
        if row._deleted:
            return f"{name} {record_id} was deleted in the CRM"
        if self.role == "rep":
            return f"{name} {record_id} is not reachable from records owned by {self.user_id}"
        return f"no path of the {name} slice leads from your partner record to {record_id}"

    def _object(self, name: str) -> tuple[MirrorTable, SliceRule]:
        query_args.text("object_name", name)
        rule = self.rules.rule(name)
        if rule is None or (not rule.paths and not rule.public):
            raise AccessDenied(f"{name} is not shared with partners")
        try:
            return self.store.mirrored(self.source, name), rule
        except KeyError:
            raise AccessDenied(f"{name} is not mirrored") from None

    def _columns(
        self, mirrored: MirrorTable, rule: SliceRule, fields: Sequence[str] | None
    ) -> list:
        allowed = visible_fields(rule, mirrored.spec.field_names)
        if fields is None:
            return [mirrored.table.c[name] for name in allowed]
        unknown = [f for f in fields if f not in allowed]
        if unknown:
            raise AccessDenied(
                f"{mirrored.spec.name} has no field {unknown[0]!r} shared with partners"
            )
        return [mirrored.table.c[name] for name in fields]

    def _query(
        self,
        mirrored: MirrorTable,
        rule: SliceRule,
        fields: Sequence[str] | None,
        page: tuple[int, int] | None = None,
    ) -> Select:
        table = mirrored.table
        columns = self._columns(mirrored, rule, fields)
        live = table.c._deleted.is_(False)
        if rule.public:
            return select(*columns).where(live)
        key = table.c[mirrored.spec.key]
        rows = self._granted(mirrored.spec.name)
        record = rows.selected_columns.record_id
        granted_ids = rows.with_only_columns(record).distinct()
        if page is not None:
            granted_ids = granted_ids.order_by(record).limit(page[0]).offset(page[1])
        granted = granted_ids.subquery("granted")
        return select(*columns).join_from(table, granted, granted.c.record_id == key).where(live)

    def _visible_change(self, name: str, record_id: Any) -> ColumnElement[bool]:
        """Whether the record ``record_id`` (a column of the feed) of ``name`` is in the slice."""
        rows = self._granted(name)
        return rows.where(rows.selected_columns.record_id == record_id).exists()

    def _granted(self, name: str, record_ids: Sequence[str] | None = None) -> Select:
        """The grant rows of ``name`` in this view's slice
        (``mirror.visibility.grants.granted``)."""
        owner = self.user_id if self.role == "rep" else None
        return granted(
            self.store,
            self.rules,
            name,
            partner=self.partner_id,
            owner=owner,
            record_ids=record_ids,
        )

    def _access_scope(self) -> list[ColumnElement[bool]]:
        a = mirror_access.c
        scope = [a.source == self.source, a.partner_id == self.partner_id]
        if self.role == "rep":
            scope.append(a.owner_id == self.user_id)
        return scope

    def _filters(
        self, mirrored: MirrorTable, rule: SliceRule, conditions: list[query_args.Condition]
    ) -> list[ColumnElement[bool]]:
        types = {f.name: f.type for f in mirrored.spec.fields}
        found = []
        for name, operator, value in conditions:
            column = self._columns(mirrored, rule, [name])[0]
            value = query_args.typed(name, types[name], operator, value)
            found.append(FILTERS[operator](column, value))
        return found

    def _ordering(self, mirrored: MirrorTable, rule: SliceRule, names: list[str]) -> list:
        ordering = []
        for name in names:
            column = self._columns(mirrored, rule, [name.lstrip("-")])[0]
            ordering.append(column.desc() if name.startswith("-") else column.asc())
        key = mirrored.table.c[mirrored.spec.key]
        return [*ordering, key.asc()]

    def _change(self, row: Any) -> dict[str, Any]:
        rule = self.rules.rule(row.object)
        fields = row.fields
        if isinstance(fields, dict):
            fields = visible_values(rule, fields)
        return {
            "seq": row.seq,
            "object": row.object,
            "record_id": row.record_id,
            "op": row.op,
            "origin": row.origin,
            "fields": fields,
            "at": row.at,
        }

    def _deny(self, object_name: str, record_id: str) -> AccessDenied:
        log.warning(
            "access denied: partner %s (user %s) asked for %s %s",
            self.partner_id,
            self.user_id,
            object_name,
            record_id,
        )
        return AccessDenied(f"{object_name} {record_id} is not in your slice")
