"""A partner's change feed follows its slice over time: a record's changes only between its
"enter" and its "leave", and a rep's feed follows the rep's own slice (both stores)."""

from __future__ import annotations

from typing import Any

import pytest

from mirror.portal.view import PartnerView
from mirror.visibility.upkeep import GrantUpkeep
from tests.mirror.org import Org, build_small_org


@pytest.fixture
def org(db_url: str):
    org = Org(db_url)
    build_small_org(org)
    yield org
    org.close()


def feed_of(view: PartnerView, record_id: str, since: int = 0) -> list[dict[str, Any]]:
    """The view's feed entries about ``record_id`` after cursor ``since``."""
    return [c for c in view.changes(since=since, limit=1000).changes if c["record_id"] == record_id]


def test_a_deal_that_moves_in_brings_no_history_of_its_former_partner(org: Org) -> None:
    p1 = org.view("P1")
    cursor = p1.changes().cursor
    p2 = PartnerView(org.store, org.rules, "P2", upkeep=GrantUpkeep(org.store, org.rules))
    p2.update("Opportunity", "o3", {"Name": "P2's portal name"})
    org.put("Opportunity", "o3", Amount=31.0)
    org.sync()
    org.put("Opportunity", "o3", PartnerAccountId="P1")
    org.sync()
    seen = feed_of(p1, "o3", since=cursor)
    assert [c["op"] for c in seen] == ["enter"]
    assert "P2" not in str(p1.changes(since=cursor, limit=1000).changes)
    # from cursor 0 too: nothing from before the deal entered P1's slice
    assert [c["op"] for c in feed_of(p1, "o3")] == ["enter"]
    # its edits from then on are P1's
    org.put("Opportunity", "o3", Amount=32.0)
    org.sync()
    assert [c["op"] for c in feed_of(p1, "o3")] == ["enter", "update"]
    # the former partner: its edits, then the leave, but not the change naming P1
    left = feed_of(org.view("P2"), "o3", since=cursor)
    assert [c["op"] for c in left] == ["update", "update", "leave"]
    assert "P1" not in str(left)


def test_a_record_that_left_and_came_back_shows_only_the_spans_inside(org: Org) -> None:
    org.put("Opportunity", "o1", Amount=11.0)  # inside
    org.sync()
    org.put("Opportunity", "o1", PartnerAccountId="P2")  # takes it out
    org.sync()
    org.put("Opportunity", "o1", Amount=12.0)  # outside
    org.sync()
    org.put("Opportunity", "o1", PartnerAccountId="P1")  # brings it back
    org.sync()
    org.put("Opportunity", "o1", Amount=13.0)  # inside
    org.sync()
    seen = feed_of(org.view("P1"), "o1")
    assert [c["op"] for c in seen] == ["update", "leave", "enter", "update"]
    assert [c["fields"]["Amount"] for c in seen if c["op"] == "update"] == [
        [10.0, 11.0],
        [12.0, 13.0],
    ]
    # the line item (seen only through the deal) follows the same spans
    org.put("LineItem", "l1", Quantity=5.0)
    org.sync()
    assert [c["op"] for c in feed_of(org.view("P1"), "l1")] == ["leave", "enter", "update"]
    assert [c["op"] for c in feed_of(org.view("P2"), "l1")] == ["enter", "leave"]


def test_a_reps_feed_follows_its_own_slice(org: Org) -> None:
    rep = org.view("P2", user_id="UP2", role="rep")
    cursor = rep.changes().cursor
    org.put("Opportunity", "o3", Amount=33.0)  # V1's deal, same partner
    org.sync()
    org.put("Opportunity", "o3", PartnerAccountId="P1")  # leaves P2
    org.sync()
    org.put("Opportunity", "o2", Amount=21.0)  # UP2's own deal
    org.sync()
    seen = rep.changes(since=cursor, limit=1000).changes
    assert {c["record_id"] for c in seen} == {"o2"}
    assert "o3" in {c["record_id"] for c in org.view("P2").changes(since=cursor).changes}
    # a deal handed to the rep enters its feed without its history
    org.put("Opportunity", "o3", PartnerAccountId="P2")
    org.sync()
    org.put("Opportunity", "o3", Amount=34.0)
    org.sync()
    org.put("Opportunity", "o3", OwnerId="UP2")
    org.sync()
    assert [c["op"] for c in feed_of(rep, "o3")] == ["enter"]
    assert [c["op"] for c in feed_of(rep, "l3")] == ["enter"]
    # and the former owner sees it leave, not the change that names its new owner
    former = org.view("P2", user_id="V1", role="rep")
    assert [c["op"] for c in feed_of(former, "o3", since=cursor)] == [
        "update",
        "leave",
        "enter",
        "update",
        "leave",
    ]
    org.remove("Opportunity", "o3")
    org.sync()
    assert feed_of(former, "o3")[-1]["op"] == "leave"
    assert feed_of(rep, "o3")[-1]["op"] == "delete"
