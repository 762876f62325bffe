"""A partner's change feed over time: which rows of ``mirror_changes`` a ``PartnerView`` reads.

A record's data changes are served only while it is in the view's slice: from its "enter" to
its "leave" (or "delete"), never its history from before it entered nor the change that took it
out (whose values name where it went). The membership events say when: the engine logs them per
(record, partner), and per (record, partner, rep) for reps' slices, in the transaction of the
change that caused them, after that change. They alternate, so the last one before a change
says whether the record was in then; records that entered with a first backfill have none until
they first leave, and then the first one after says it.

The page is read in two index-ordered parts, each stopped at ``limit`` rows: the view's events
(``ix_mirror_changes_partner``) and the data changes (the same index, partner NULL), each data
change checked with a few seeks of ``ix_mirror_changes_record``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    func,
    literal,
    or_,
    select,
    union_all,
)

from mirror.portal.slice import PartnerSlice
from mirror.store.tables import mirror_access, mirror_changes
from mirror.visibility.grants import is_inherited


def feed_query(slice_: PartnerSlice, since: Any, limit: Any) -> Select[Any]:
    """The query of ``changes``: the view's membership events and the data changes it may
    see, each read along its index in the feed's order from ``since`` and stopped at
    ``limit`` rows (not every change of the source filtered, then sorted). ``since`` and
    ``limit`` are values, or bound parameters of a query built once and run with each."""
    c = mirror_changes.c
    public = [name for name, rule in slice_.rules.slices.items() if rule.public]
    after = (c.seq > since, c.source == slice_.source)
    events = select(mirror_changes).where(
        *after, c.partner_id == slice_.partner_id, _event_scope(slice_, c.owner_id)
    )
    data = select(mirror_changes).where(
        *after,
        c.partner_id.is_(None),
        or_(c.object.in_(public), _in_slice_then(slice_, mirror_changes)),
    )
    pages = [q.order_by(c.seq).limit(limit).subquery() for q in (events, data)]
    both = union_all(*(select(page) for page in pages)).subquery()
    return select(both).order_by(both.c.seq).limit(limit)


def _event_scope(slice_: PartnerSlice, owner: Any) -> ColumnElement[bool]:
    """Which membership events are this view's: a rep's own, or the partner's."""
    return owner == slice_.user_id if slice_.role == "rep" else owner.is_(None)


def _in_slice_then(slice_: PartnerSlice, changes: Any) -> ColumnElement[bool]:
    """Whether the data change (a row of ``changes``) was made while its record was in
    this view's slice, and did not take it out.

    Membership events alternate per record: the last one before the change says whether
    it was in; with none before, the first one after says (a "leave" means it was in);
    with none at all, it is in now or never was. A change followed by the record's
    "leave" with no other change between is the one that took it out (or its last one
    before it left): a leave ends the record's changes."""
    c = changes.c
    event = mirror_changes.alias("membership")
    e = event.c
    same = and_(
        e.source == c.source,
        e.object == c.object,
        e.record_id == c.record_id,
        e.partner_id == slice_.partner_id,
        _event_scope(slice_, e.owner_id),
    )
    last_before = select(e.op).where(same, e.seq < c.seq).order_by(e.seq.desc()).limit(1)
    first_after = select(e.op).where(same, e.seq > c.seq).order_by(e.seq).limit(1)
    next_event = first_after.with_only_columns(e.seq).scalar_subquery()
    before_op = func.coalesce(last_before.scalar_subquery(), "")
    next_op = func.coalesce(first_after.scalar_subquery(), "")
    data = mirror_changes.alias("data")
    d = data.c
    next_data = (
        select(d.seq)
        .where(
            d.source == c.source,
            d.object == c.object,
            d.record_id == c.record_id,
            d.partner_id.is_(None),
            d.owner_id.is_(None),
            d.seq > c.seq,
        )
        .order_by(d.seq)
        .limit(1)
        .scalar_subquery()
    )
    # each subquery once per change (SQLite evaluates a correlated subquery every time
    # it is named): CASE on its value, not comparisons of it
    edited_before_leaving = func.coalesce(next_data, 2**62) < next_event
    yes, no = literal(True), literal(False)
    after_entering = case(
        {"leave": edited_before_leaving, "delete": edited_before_leaving},
        value=next_op,
        else_=yes,
    )
    without_events_before = case(
        {
            "leave": edited_before_leaving,
            "delete": edited_before_leaving,
            "": _visible_now(slice_, c),
        },
        value=next_op,
        else_=no,
    )
    return case({"enter": after_entering, "": without_events_before}, value=before_op, else_=no)


def _visible_now(slice_: PartnerSlice, c: Any) -> ColumnElement[bool]:
    """Whether the record of the feed row ``c`` is in the slice now."""
    a = mirror_access.c
    inherited = [name for name in slice_.rules.slices if is_inherited(slice_.rules, name)]
    return or_(
        and_(
            c.object.not_in(inherited),
            select(a.record_id)
            .where(
                a.source == c.source,
                a.object == c.object,
                a.record_id == c.record_id,
                *slice_.stored_grant_scope(),
            )
            .exists(),
        ),
        *(and_(c.object == name, slice_.sees(name, c.record_id)) for name in inherited),
    )
