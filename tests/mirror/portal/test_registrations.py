"""Deal registration end to end on the Salesforce sandbox and both stores: registering,
conflict detection across partners and the open pipeline, approval into exactly one
opportunity, rejection, expiry, approval made in the CRM, and what a partner may learn: only
whether its registration goes to review, never anything that moves with another partner's
deal; repeated registrations of one customer are limited and shown to the channel manager."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from mirror import Mirror
from mirror.errors import AccessDenied, ValidationError
from mirror.store.tables import mirror_idmap
from sandboxes.salesforce.sandbox import SalesforceSandbox
from tests.mirror.portal.registration_world import CLOSE, ranked_partners, synced_mirror


@pytest.fixture
def mirror(db_url: str, box: SalesforceSandbox) -> Iterator[Mirror]:
    with synced_mirror(db_url, box) as mirror:
        yield mirror


def two_partners(mirror: Mirror) -> tuple[str, str]:
    first, second, *_ = ranked_partners(mirror)
    return first, second


def request(company: str, domain: str | None, **extra: Any) -> dict[str, Any]:
    return {"company": company, "domain": domain, "country": "United States",
            "contact_name": "Jane Buyer", "contact_email": "jane@example.org",
            "amount": 50_000, "currency": "USD", "close_date": CLOSE, **extra}  # fmt: skip


def regs_in_crm(box: SalesforceSandbox) -> list[dict[str, Any]]:
    return [box.get("Deal_Registration__c", i) for i in box.ids("Deal_Registration__c")]


def test_two_partners_registering_one_customer_with_different_spellings(mirror, box) -> None:
    first, second = two_partners(mirror)
    mine = mirror.as_partner(first).register_deal(request("Zyxwv Robotics Corp.", "zyxwv.io"))
    assert mine.verdict == "clear" and mine.status == "Submitted"
    theirs = mirror.as_partner(second).register_deal(
        request("ZYXWV Robotics Corporation", "https://www.zyxwv.io/contact")
    )
    assert theirs.verdict == "review"
    second_view = mirror.as_partner(second)
    visible = {r["Id"] for r in second_view.select("Deal_Registration__c", limit=1000)}
    assert mine.registration_id not in visible and theirs.registration_id in visible
    assert all(first not in str(r) for r in second_view.my_registrations())
    detail = mirror.registrations().show(theirs.registration_id)
    assert detail["verdict"] == "conflict"
    assert detail["matches"][0]["partner"] == first
    assert "same web domain (zyxwv.io)" in detail["matches"][0]["reasons"]
    mirror.push()
    statuses = {r["Company_Name__c"]: r["Conflict_Status__c"] for r in regs_in_crm(box)}
    assert statuses["ZYXWV Robotics Corporation"] == "Conflict"


def test_a_registration_against_the_vendors_own_open_opportunity(mirror, box) -> None:
    partner, _ = two_partners(mirror)
    opps = mirror.store.mirrored("salesforce", "Opportunity").table
    accounts = mirror.store.mirrored("salesforce", "Account").table
    with mirror.store.engine.connect() as conn:
        name, website = conn.execute(
            select(accounts.c.Name, accounts.c.Website)
            .join(opps, opps.c.AccountId == accounts.c.Id)
            .where(opps.c.IsClosed.is_(False), opps.c.PartnerAccountId.is_(None))
        ).first()
    receipt = mirror.as_partner(partner).register_deal(request(name.upper(), website))
    assert receipt.verdict == "review"
    kinds = {m["kind"] for m in mirror.registrations().show(receipt.registration_id)["matches"]}
    assert "opportunity" in kinds


def test_approval_twice_and_after_a_lost_response_makes_one_opportunity(mirror, box) -> None:
    partner, _ = two_partners(mirror)
    receipt = mirror.as_partner(partner).register_deal(request("Quokka Analytics", "quokka.ai"))
    mirror.push()
    with mirror.store.engine.connect() as conn:
        reg_id = conn.execute(
            select(mirror_idmap.c.new_id).where(mirror_idmap.c.old_id == receipt.registration_id)
        ).scalar_one()
    registrations = mirror.registrations()
    first = registrations.approve(reg_id, by="channel manager")
    assert registrations.approve(reg_id, by="channel manager") == first
    before = box.count("Opportunity")
    box.drop_next_response(1, path_contains="composite")
    mirror.push()
    mirror.push()
    assert box.count("Opportunity") == before + 1
    made = [o for o in map(lambda i: box.get("Opportunity", i), box.ids("Opportunity"))
            if o["Mirror_Key__c"] == f"reg-{reg_id}"]  # fmt: skip
    assert len(made) == 1 and made[0]["PartnerAccountId"] == partner
    registration = box.get("Deal_Registration__c", reg_id)
    assert registration["Status__c"] == "Approved"
    assert registration["Opportunity__c"] == made[0]["Id"]
    box.advance_clock(2)
    mirror.sync(["Opportunity", "Deal_Registration__c"])
    view = mirror.as_partner(partner)
    assert view.get("Opportunity", made[0]["Id"])["Name"].startswith("Quokka Analytics")


def test_rejection_and_expiry_reach_the_partner(mirror, box) -> None:
    partner, _ = two_partners(mirror)
    view = mirror.as_partner(partner)
    cursor = view.changes().cursor
    rejected = view.register_deal(request("Wombat Freight", "wombatfreight.com"))
    expiring = view.register_deal(request("Echidna Labs", "echidnalabs.com"))
    mirror.push()
    ids = {r["Company_Name__c"]: r["Id"] for r in regs_in_crm(box)}
    registrations = mirror.registrations()
    registrations.reject(ids["Wombat Freight"], "customer is a direct account", by="cm")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=400)
    box.advance_clock(1)
    mirror.sync(["Deal_Registration__c"])
    assert ids["Echidna Labs"] in registrations.expire(now=later)
    mirror.push()
    assert box.get("Deal_Registration__c", ids["Wombat Freight"])["Status__c"] == "Rejected"
    assert box.get("Deal_Registration__c", ids["Echidna Labs"])["Status__c"] == "Expired"
    mine = {r["Id"]: r["Status__c"] for r in view.my_registrations()}
    assert mine[ids["Wombat Freight"]] == "Rejected" and mine[ids["Echidna Labs"]] == "Expired"
    feed = view.changes(since=cursor).changes
    statuses = [c["fields"].get("Status__c") for c in feed if c["fields"] and c["op"] == "update"]
    assert ["Submitted", "Rejected"] in statuses and ["Submitted", "Expired"] in statuses
    assert rejected.registration_id and expiring.registration_id


def test_an_approval_made_in_the_crm_is_picked_up_by_the_sync(mirror, box) -> None:
    partner, _ = two_partners(mirror)
    mirror.as_partner(partner).register_deal(request("Numbat Systems", "numbat.systems"))
    mirror.push()
    reg_id = next(r["Id"] for r in regs_in_crm(box) if r["Company_Name__c"] == "Numbat Systems")
    box.advance_clock(2)
    box.update("Deal_Registration__c", reg_id, {"Status__c": "Approved"})
    mirror.sync(["Deal_Registration__c"])
    mirror.push()
    opportunity = box.get("Deal_Registration__c", reg_id)["Opportunity__c"]
    assert opportunity and box.get("Opportunity", opportunity)["PartnerAccountId"] == partner


def test_validation_errors_name_the_field(mirror) -> None:
    partner, _ = two_partners(mirror)
    view = mirror.as_partner(partner)
    for bad, field in (
        (request("Acme", "acme.com", amount=-1), "amount"),
        (request("Acme", "not a domain"), "domain"),
        (request("Acme", "acme.com", close_date="2001-01-01"), "close_date"),
        (request("Acme", "acme.com", currency="dollars"), "currency"),
        (request("Acme", "acme.com", contact_email="nobody"), "contact_email"),
        (request("", "acme.com"), "company"),
    ):
        with pytest.raises(ValidationError, match=field) as caught:
            view.register_deal(bad)
        assert caught.value.field == field
    assert mirror.outbox() == []


def test_the_verdict_a_partner_sees_never_moves_with_another_partners_deal(mirror) -> None:
    first, second = two_partners(mirror)
    mirror.as_partner(first).register_deal(
        request("Zyxwv Robotics", "zyxwv.io", country="Germany", products=["PRD-1", "PRD-2"])
    )
    prober = mirror.as_partner(second)
    # the probes that recovered a country and product codes: one field varied at a time
    receipts = [
        prober.register_deal(request("Zyxwv Robotics", "zyxwv.io", country=c, products=p))
        for c, p in (("Germany", ["PRD-1"]), ("France", ["PRD-9"]), ("Germany", ["PRD-9"]))
    ]
    assert [r.verdict for r in receipts] == ["review", "review", "review"]
    rows = prober.select("Deal_Registration__c", limit=1000)
    assert rows and not any({"Conflict_Status__c", "Conflict_Score__c"} & set(r) for r in rows)
    with pytest.raises(AccessDenied):
        prober.select("Deal_Registration__c", fields=["Id", "Conflict_Score__c"])
    made = {r.registration_id for r in receipts}
    assert [r["verdict"] for r in prober.my_registrations() if r["Id"] in made] == ["review"] * 3
    scores = {mirror.registrations().show(r.registration_id)["score"] for r in receipts}
    assert len(scores) > 1  # the channel manager still sees the graded assessment


def test_repeated_registrations_of_one_customer_are_limited_and_recorded(mirror) -> None:
    _, partner = two_partners(mirror)
    view = mirror.as_partner(partner)
    names = ["Quoll Mining", "QUOLL Mining Ltd", "Quoll Mining Pty", "Quoll Mining Corp.",
             "quoll mining"]  # fmt: skip
    accepted, refusals = [], []
    for i, name in enumerate(names):
        try:
            accepted.append(view.register_deal(request(name, "quoll.com.au" if i % 2 else None)))
        except AccessDenied as exc:
            refusals.append(str(exc))
    assert len(accepted) == 3 and len(refusals) == 2
    assert all("channel manager" in r and "Quoll" not in r for r in refusals)
    assert view.register_deal(request("Bilby Freight", "bilbyfreight.com")).verdict == "clear"
    saved = [e for e in mirror.outbox() if e["object"] == "Deal_Registration__c"]
    assert len(saved) == 4
    registrations = mirror.registrations()
    (probe,) = registrations.probes()
    assert (probe["partner"], probe["attempts"], probe["refused"]) == (partner, 5, 2)
    assert sorted(probe["registrations"]) == sorted(r.registration_id for r in accepted)
    shown = registrations.show(accepted[0].registration_id)["probing"]
    assert shown == {"attempts": 5, "refused": 2}


def test_a_partners_own_open_deal_is_no_conflict_against_it(mirror, box) -> None:
    partner, other = two_partners(mirror)
    customer = box.create(
        "Account", {"Name": "Wallaby Dynamics", "Website": "https://wallabydynamics.com"}
    )
    box.create("Opportunity", {"Name": "Wallaby renewal", "AccountId": customer,
                               "PartnerAccountId": partner, "StageName": "Prospecting",
                               "CloseDate": CLOSE, "Amount": 10_000})  # fmt: skip
    box.advance_clock(2)
    mirror.sync(["Account", "Opportunity"])
    own = mirror.as_partner(partner).register_deal(
        request("Wallaby Dynamics Inc.", "wallabydynamics.com")
    )
    assert own.verdict == "clear"
    assert mirror.registrations().show(own.registration_id)["matches"] == []
    theirs = mirror.as_partner(other).register_deal(request("Wallaby Dynamics", None))
    assert theirs.verdict == "review"
    matches = mirror.registrations().show(theirs.registration_id)["matches"]
    assert {(m["kind"], m["partner"]) for m in matches} >= {("opportunity", partner)}
