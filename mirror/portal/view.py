"""``PartnerView``: one partner's slice of the mirror, the only way a portal session reads it.

Default deny: a view exists only for a partner id, and every query is driven by that partner's
grants (so its cost is the size of the slice, not of the table). Hidden fields are never
selected, filtered on, ordered by or echoed in errors. A record outside the slice raises
``AccessDenied`` and is logged. Views are immutable and safe to share across threads; each call
takes its own connection from the pool. What the view may see is its ``slice``
(``mirror.portal.slice.PartnerSlice``), the seam its writes, feed and explanations use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, Select, bindparam, func, select

from mirror.errors import AccessDenied
from mirror.portal import feed as partner_feed
from mirror.portal import query_args, write_log
from mirror.portal.explain import Explanation, explain
from mirror.portal.registration_request import Receipt
from mirror.portal.registrations import Registrations
from mirror.portal.slice import PartnerSlice
from mirror.portal.writes import PortalWrites, current_conditions, current_id
from mirror.store.database import Store
from mirror.store.tables import mirror_changes
from mirror.visibility import sizes as slice_sizes
from mirror.visibility.rule_check import served_rules
from mirror.visibility.rules import VisibilityRules, visible_fields, visible_values
from mirror.visibility.upkeep import GrantUpkeep

__all__ = ["ChangeBatch", "Explanation", "PartnerView", "vendor_explanation"]
MAX_PAGE = query_args.MAX_PAGE


@dataclass(frozen=True)
class ChangeBatch:
    """Changes in a partner's slice after a cursor; pass ``cursor`` back for the next batch."""

    changes: list[dict[str, Any]]
    cursor: int


def vendor_explanation(view: PartnerView, object_name: str, record_id: str) -> Explanation:
    """``view.explain`` with, outside the slice, why not: the record is not mirrored, was
    deleted, or no path leads to it (for the vendor's operators, never for a partner)."""
    return explain(view.slice, object_name, record_id, detail=True)


class PartnerView:
    """One partner's slice, read and written (as the partner's admin, or as one of its reps)."""

    def __init__(
        self,
        store: Store,
        rules: VisibilityRules,
        partner_id: str,
        *,
        user_id: str | None = None,
        role: str = "admin",
        upkeep: GrantUpkeep | None = None,
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
        self.upkeep = upkeep
        self.registrations = registrations
        self.slice = PartnerSlice(store, self.rules, partner_id, user_id, role)
        self._writes = PortalWrites(self.slice, upkeep)
        self._feed: Select[Any] | None = None

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
        return self.get(object_name, self._writes.update(object_name, record_id, changes))

    def create(self, object_name: str, values: Mapping[str, Any]) -> str:
        """Create a record in the slice; returns its local id until the CRM assigns its own."""
        return self._writes.create(object_name, values)

    def delete(self, object_name: str, record_id: str) -> None:
        """Delete a record of the slice (where partners may delete that object)."""
        query_args.text("record_id", record_id)
        self._writes.delete(object_name, record_id)

    def writes(
        self, status: str | None = None, limit: int = 100, *, record_id: str | None = None
    ) -> list[dict[str, Any]]:
        """This partner's writes on their way to the CRM (or failed, with the CRM's message),
        newest first; of one record when ``record_id`` is given (its local or its CRM id).
        Each carries ``conflict_id``: the open conflict it is parked in, or ``None``."""
        query_args.bounded("limit", limit, 1, MAX_PAGE)
        if record_id is not None:
            query_args.text("record_id", record_id)
        query = write_log.writes_query(self.slice, status, record_id, limit)
        with self.store.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [dict(r._mapping) for r in rows]

    def feed_cursor(self) -> int:
        """The feed's position now: ``changes(since=view.feed_cursor())`` serves only what
        changes after this call, without reading the feed's history. The position is the
        engine's change sequence, shared by every partner (it tells nothing of what changed)."""
        with self.store.engine.connect() as conn:
            return int(conn.execute(select(func.max(mirror_changes.c.seq))).scalar() or 0)

    def fields(self, object_name: str) -> list[str]:
        """The fields of ``object_name`` this view reads (what ``select`` returns by default);
        a page that shows a few of them selects only those."""
        mirrored, rule = self.slice.shared_object(object_name)
        return visible_fields(rule, mirrored.spec.field_names)

    def get(self, object_name: str, record_id: str, fields: Sequence[str] | None = None) -> dict:
        """One record of the slice (also by the local id ``create`` returned, once the CRM
        has replaced it); ``AccessDenied`` when it is not in it."""
        mirrored, rule = self.slice.shared_object(object_name)
        query_args.text("record_id", record_id)
        fields = query_args.fields(fields)
        key = mirrored.table.c[mirrored.spec.key]
        with self.store.engine.connect() as conn:
            record_id = current_id(conn, self.source, object_name, record_id)
            query = self.slice.records(mirrored, rule, fields).where(key == record_id)
            row = conn.execute(query).first()
        if row is None:
            raise self.slice.denied(object_name, record_id)
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
        mirrored, rule = self.slice.shared_object(object_name)
        limit, offset = query_args.page(limit, offset)
        fields = query_args.fields(fields)
        order = query_args.ordering(order_by)
        conditions = current_conditions(self.store, self.source, query_args.conditions(where))
        if not conditions and not order and not rule.public:
            # the default page (by id, unfiltered) is read off the grant index in id order:
            # its cost is the page's, not the slice's (a grant exists only for a live record)
            query = self.slice.records(mirrored, rule, fields, page=(limit, offset))
            query = query.order_by(mirrored.table.c[mirrored.spec.key])
        else:
            probe = self.slice.narrows(mirrored, conditions)
            query = self.slice.records(mirrored, rule, fields, probe=probe)
            query = query.where(*self.slice.filters(mirrored, rule, conditions))
            query = query.order_by(*self.slice.ordering(mirrored, rule, order))
            query = query.limit(limit).offset(offset)
        with self.store.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [dict(row._mapping) for row in rows]

    def count(
        self,
        object_name: str,
        *,
        where: Mapping[str, Any] | None = None,
        at_most: int | None = None,
    ) -> int:
        """How many records of the slice match ``where``; with ``at_most``, counting stops
        there (a filtered count reads its matches, so a page over a huge slice bounds it)."""
        if at_most is not None:
            query_args.bounded("at_most", at_most, 1, 2**31)
        mirrored, rule = self.slice.shared_object(object_name)
        conditions = current_conditions(self.store, self.source, query_args.conditions(where))
        if not conditions and not rule.public:
            with self.store.engine.connect() as conn:
                if self.role != "rep":
                    size = slice_sizes.size(conn, self.source, self.partner_id, mirrored.spec.name)
                    return size if at_most is None else min(size, at_most)
                # a grant exists only for a live record: a rep's stored grants are counted
                # off the index alone, without a row lookup per record
                grants = self.slice.grants(mirrored.spec.name)
                ids = grants.with_only_columns(grants.selected_columns.record_id).distinct()
                rows = ids.limit(at_most).subquery()
                return int(conn.execute(select(func.count()).select_from(rows)).scalar_one())
        key = mirrored.table.c[mirrored.spec.key]
        probe = self.slice.narrows(mirrored, conditions)
        query = self.slice.records(mirrored, rule, [mirrored.spec.key], probe=probe)
        query = query.where(*self.slice.filters(mirrored, rule, conditions))
        matches = query.with_only_columns(key).limit(at_most).subquery()
        counted = select(func.count()).select_from(matches)
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
        if self._feed is None:
            # built once per view (a poll asks it every second): the bounds are parameters
            since_at, limit_at = (
                bindparam("since", type_=Integer),
                bindparam("limit", type_=Integer),
            )
            self._feed = partner_feed.feed_query(self.slice, since_at, limit_at)
        with self.store.engine.connect() as conn:
            rows = conn.execute(self._feed, {"since": since, "limit": limit}).all()
        return ChangeBatch([self._change(r) for r in rows], rows[-1].seq if rows else since)

    def explain(self, object_name: str, record_id: str) -> Explanation:
        """Why ``record_id`` is in the slice (each path and what it went through); outside
        it, only that it is not in the slice, the same whether the record exists, was deleted
        or has no path (``Mirror.explain`` tells the vendor which)."""
        return explain(self.slice, object_name, record_id, detail=False)

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
