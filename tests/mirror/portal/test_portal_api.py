"""What the public API gives a portal, on the Salesforce sandbox and both stores: the partner
user behind a sign-in name, the partner's feed position, its writes of one record with their
conflict state, field-level validation problems and the rejection reason of a registration."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mirror import Mirror, PartnerUser, ValidationError
from sandboxes.salesforce.sandbox import SalesforceSandbox
from tests.mirror.portal.registration_world import CLOSE, ranked_partners, synced_mirror


@pytest.fixture
def mirror(db_url: str, box: SalesforceSandbox) -> Iterator[Mirror]:
    with synced_mirror(db_url, box, conflicts={"default": "manual"}) as mirror:
        yield mirror


def busiest_partner(mirror: Mirror) -> str:
    return ranked_partners(mirror)[0]


def test_a_partner_user_is_found_by_e_mail_or_user_id(mirror: Mirror) -> None:
    partner = busiest_partner(mirror)
    user = mirror.as_partner(partner).select("User", fields=["Id", "Email"], limit=1)[0]
    found = mirror.partner_user(user["Email"])
    assert found == PartnerUser(partner_id=partner, user_id=user["Id"], role="rep")
    assert mirror.partner_user(user["Id"]) == found
    assert mirror.as_partner(found.partner_id, found.user_id).role == found.role


def test_no_partner_user_answers_to_an_unknown_or_vendor_login(
    mirror: Mirror, box: SalesforceSandbox
) -> None:
    assert mirror.partner_user("nobody@nowhere.example") is None
    assert mirror.partner_user("") is None
    assert mirror.partner_user("x" * 300) is None
    vendor = [u for u in map(lambda i: box.get("User", i), box.ids("User")) if not u["AccountId"]]
    assert vendor and mirror.partner_user(vendor[0]["Email"]) is None


def open_deals(mirror: Mirror, partner: str, count: int) -> list[str]:
    rows = mirror.as_partner(partner).select(
        "Opportunity", where={"IsClosed": False}, fields=["Id"], limit=count
    )
    assert len(rows) == count
    return [row["Id"] for row in rows]


def test_the_feed_cursor_is_where_the_next_change_begins(
    mirror: Mirror, box: SalesforceSandbox
) -> None:
    partner = busiest_partner(mirror)
    view = mirror.as_partner(partner)
    first, second = open_deals(mirror, partner, 2)
    box.update("Opportunity", first, {"NextStep": "history"})
    mirror.sync(["Opportunity"])
    assert view.changes(0).changes, "the feed has a history"
    cursor = view.feed_cursor()
    assert view.changes(cursor).changes == []
    box.update("Opportunity", second, {"NextStep": "call the buyer"})
    mirror.sync(["Opportunity"])
    later = view.changes(cursor).changes
    assert [(c["record_id"], c["op"]) for c in later] == [(second, "update")]
    assert view.feed_cursor() >= later[-1]["seq"]
    assert view.changes(view.feed_cursor()).changes == []


def test_writes_of_one_record_say_which_open_conflict_holds_them(
    mirror: Mirror, box: SalesforceSandbox
) -> None:
    partner = busiest_partner(mirror)
    view = mirror.as_partner(partner)
    first, second = open_deals(mirror, partner, 2)
    view.update("Opportunity", first, {"NextStep": "portal step"})
    view.update("Opportunity", second, {"NextStep": "other step"})
    box.update("Opportunity", first, {"NextStep": "crm step"})
    mirror.sync(["Opportunity"])
    mirror.push()
    (write,) = view.writes(record_id=first)
    (conflict,) = [c for c in mirror.conflicts("open") if c["record_id"] == first]
    assert write["record_id"] == first and write["conflict_id"] == conflict["id"]
    (other,) = view.writes(record_id=second)
    assert other["conflict_id"] is None and other["status"] == "done"
    assert {w["record_id"] for w in view.writes()} == {first, second}
    mirror.resolve_conflict(conflict["id"], "crm")
    assert view.writes(record_id=first)[0]["conflict_id"] is None


def test_a_refused_write_lists_its_problem_per_field(mirror: Mirror) -> None:
    partner = busiest_partner(mirror)
    view = mirror.as_partner(partner)
    (deal,) = open_deals(mirror, partner, 1)
    with pytest.raises(ValidationError) as refused:
        view.update("Opportunity", deal, {"NextStep": "x" * 300})
    assert str(refused.value) == "Opportunity.NextStep is longer than 255 characters"
    assert refused.value.problems == [("NextStep", "is longer than 255 characters")]
    assert refused.value.field == "NextStep"


def registration(**extra: object) -> dict[str, object]:
    return {"company": "Wombat Freight", "domain": "wombatfreight.com",
            "country": "United States", "contact_name": "Jane Buyer",
            "contact_email": "jane@example.org", "amount": 50_000, "currency": "USD",
            "close_date": CLOSE, **extra}  # fmt: skip


def test_a_refused_registration_lists_every_problem_per_field(mirror: Mirror) -> None:
    view = mirror.as_partner(busiest_partner(mirror))
    with pytest.raises(ValidationError) as refused:
        view.register_deal(registration(domain="not a domain", amount=-5))
    problems = refused.value.problems
    assert [field for field, _ in problems] == ["domain", "amount"]
    message = "; ".join(f"{field}: {problem}" for field, problem in problems)
    assert str(refused.value) == f"deal registration: {message}"


def test_my_registrations_carry_the_reason_of_a_rejection(
    mirror: Mirror, box: SalesforceSandbox
) -> None:
    view = mirror.as_partner(busiest_partner(mirror))
    view.register_deal(registration())
    view.register_deal(registration(company="Echidna Labs", domain="echidnalabs.com"))
    mirror.push()
    ids = {box.get("Deal_Registration__c", i)["Company_Name__c"]: i
           for i in box.ids("Deal_Registration__c")}  # fmt: skip
    registrations = mirror.registrations()
    assert registrations is not None
    registrations.reject(ids["Wombat Freight"], "customer is a direct account", by="cm")
    reasons = {r["Id"]: r["rejection_reason"] for r in view.my_registrations()}
    assert reasons[ids["Wombat Freight"]] == "customer is a direct account"
    assert reasons[ids["Echidna Labs"]] is None
