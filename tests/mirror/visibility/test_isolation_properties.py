"""Property: through random orgs, reassignments, re-parentings and deletes synced by the real
pull path, a partner sees exactly its slice (never a row or hidden field of anyone else), and
the incrementally kept access table always equals a rebuild from scratch. A partner's feed, and
a rep's, never holds a change made before the record entered its slice or after it left: the
model says, from the mirror's rows alone, who saw each record before and after the pull that
changed it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from mirror.store.tables import mirror_changes
from mirror.visibility import sizes as slice_sizes
from tests.conftest import BACKENDS, fresh_database
from tests.mirror.org import Org

PARTNERS = ["P1", "P2", "P3"]
CUSTOMERS = ["C1", "C2", "C3"]
OPPS = [f"o{i}" for i in range(6)]
OWNERS = ["UP1", "UP2", "V1"]

opportunity = st.fixed_dictionaries(
    {
        "AccountId": st.sampled_from(CUSTOMERS + PARTNERS),
        "PartnerAccountId": st.sampled_from([*PARTNERS, None]),
        "OwnerId": st.sampled_from(OWNERS),
        "Amount": st.floats(0, 1e6, allow_nan=False),
    }
)
step = st.one_of(
    st.tuples(st.just("opp"), st.sampled_from(OPPS), opportunity),
    st.tuples(st.just("delete_opp"), st.sampled_from(OPPS), st.none()),
    st.tuples(
        st.just("contact"),
        st.sampled_from(["k1", "k2", "k3"]),
        st.sampled_from(CUSTOMERS + PARTNERS),
    ),
    st.tuples(st.just("line"), st.sampled_from(["l1", "l2", "l3"]), st.sampled_from(OPPS)),
    st.tuples(st.just("partner_flag"), st.sampled_from(PARTNERS), st.booleans()),
    st.tuples(st.just("delete_account"), st.sampled_from(CUSTOMERS), st.none()),
)


def seed(org: Org) -> None:
    for p in PARTNERS:
        org.put("Account", p, Name=p, IsPartner=True, Revenue=1.0)
        org.put("User", f"U{p}", Name=p, AccountId=p, Role="Rep")
    for c in CUSTOMERS:
        org.put("Account", c, Name=c, IsPartner=False, Revenue=2.0)


def apply(org: Org, kind: str, key: str, value: object) -> None:
    live = org.crm.stores
    if kind == "opp":
        org.put("Opportunity", key, Name=key, Secret="hidden", **value)  # type: ignore[arg-type]
    elif kind == "delete_opp" and key in live["Opportunity"]:
        org.remove("Opportunity", key)
    elif kind == "contact":
        org.put("Contact", key, Name=key, AccountId=value)
    elif kind == "line":
        org.put("LineItem", key, OpportunityId=value, Quantity=1.0)
    elif kind == "partner_flag":
        org.put("Account", key, IsPartner=value)
    elif kind == "delete_account" and key in live["Account"]:
        org.remove("Account", key)


# a viewer: (partner, rep's user id or None for the partner's whole slice)
Viewer = tuple[str, str | None]
VIEWERS: list[Viewer] = [(p, owner) for p in PARTNERS for owner in (None, f"U{p}")]


def last_seq(org: Org) -> int:
    with org.store.engine.connect() as conn:
        return int(conn.execute(select(func.max(mirror_changes.c.seq))).scalar() or 0)


class FeedModel:
    """Which data changes each viewer may be shown: those of a record it saw both before and
    after the pull of the record's object (a record's membership changes only with its own
    change, in that change's transaction, or in another object's pull)."""

    def __init__(self, org: Org) -> None:
        self.org = org
        self.allowed: dict[Viewer, set[int]] = {v: set() for v in VIEWERS}
        # the slices as the last pull left them (only pulls change the mirror's rows)
        self.current: dict[Viewer, dict[str, set[str]]] | None = None

    def slices(self) -> dict[Viewer, dict[str, set[str]]]:
        live = self.org.mirrored()
        return {(p, o): self.org.expected(p, owner=o, live=live) for p, o in VIEWERS}

    @contextmanager
    def around(self, name: str) -> Iterator[None]:
        """Note the data changes the pull of ``name`` logs, and who may see each."""
        before, start = self.current or self.slices(), last_seq(self.org)
        yield
        if last_seq(self.org) == start:  # a pull that logged nothing changed no slice
            return
        after = self.current = self.slices()
        c = mirror_changes.c
        query = select(c.seq, c.record_id).where(
            c.seq > start, c.object == name, c.partner_id.is_(None)
        )
        with self.org.store.engine.connect() as conn:
            changes = conn.execute(query).all()
        for viewer in VIEWERS:
            inside = before[viewer].get(name, set()) & after[viewer].get(name, set())
            self.allowed[viewer] |= {seq for seq, record_id in changes if record_id in inside}

    def check_feeds(self) -> None:
        for partner, owner in VIEWERS:
            role = {"user_id": owner, "role": "rep"} if owner else {}
            feed = self.org.view(partner, **role).changes(limit=5000).changes
            shown = {c["seq"] for c in feed if c["origin"] != "access"}
            assert shown <= self.allowed[(partner, owner)], (partner, owner)


def slice_sizes_of(org: Org) -> dict[tuple[str, str], int]:
    """The kept slice sizes, empty slices left out."""
    with org.store.engine.connect() as conn:
        kept = slice_sizes.sizes(conn, org.rules.source)
    return {
        (partner, name): records
        for partner, by_object in kept.items()
        for name, records in by_object.items()
    }


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=st.lists(st.lists(step, min_size=1, max_size=6), min_size=1, max_size=4))
def test_partners_see_exactly_their_slice_and_access_equals_rebuild(backend, batches) -> None:
    with fresh_database(backend) as url:
        org = Org(url, page_size=3)
        try:
            seed(org)
            feeds = FeedModel(org)
            for batch in batches:
                for kind, key, value in batch:
                    apply(org, kind, key, value)
                org.sync(around=feeds.around)
                for partner in PARTNERS:
                    view = org.view(partner)
                    seen = org.seen(view)
                    assert seen == org.expected(partner)
                    assert {name: view.count(name) for name in seen} == {
                        name: len(ids) for name, ids in seen.items()
                    }
                    rows = view.select("Opportunity", limit=1000)
                    assert all("Secret" not in r for r in rows)
                    assert all(r["PartnerAccountId"] == partner for r in rows)
                    rep = org.view(partner, user_id=f"U{partner}", role="rep")
                    seen_by_rep = org.seen(rep)
                    assert seen_by_rep == org.expected(partner, owner=f"U{partner}")
                    assert [rep.count(name) for name in seen_by_rep] == [
                        len(ids) for ids in seen_by_rep.values()
                    ]
                incremental = org.access_rows()
                sizes = slice_sizes_of(org)
                with org.store.transaction() as conn:
                    org.access.rebuild(conn)
                assert org.access_rows() == incremental
                assert slice_sizes_of(org) == sizes
            feeds.check_feeds()  # every change of every batch: the feeds only grow
        finally:
            org.close()
