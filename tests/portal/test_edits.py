"""Edits from the partner's pages reach the CRM through the outbox, and each shows its status:
queued, in the CRM, refused by the CRM with its message, or in conflict."""

from __future__ import annotations

import datetime as dt
import re

from tests.portal.conftest import PARTNER_A, Portal, open_deals, partner_client, post, text


def edit(deal: dict, **changes: object) -> dict[str, object]:
    form = {
        "StageName": deal["StageName"],
        "Amount": f"{deal['Amount'] or 0:.2f}",
        "CloseDate": deal["CloseDate"].isoformat(),
        "NextStep": deal["NextStep"] or "",
    }
    form.update({k: str(v) for k, v in changes.items()})
    return form


def status_of(page: str, seq: str) -> str:
    row = re.search(rf'<tr data-write="{seq}">(.*?)</tr>', page, re.DOTALL)
    assert row, f"write {seq} not shown"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row.group(1))).strip()


def latest_write(page: str) -> str:
    found = re.search(r'<tr data-write="(\d+)">', page)
    assert found
    return found.group(1)


def test_a_deal_edit_is_queued_then_lands_in_the_crm(portal: Portal) -> None:
    client = partner_client(portal)
    deal = open_deals(portal)[0]
    close = dt.date.today() + dt.timedelta(days=40)
    changes = edit(
        deal, StageName="Negotiation/Review", Amount="123456.00", CloseDate=close, NextStep="Demo"
    )
    answer = post(client, f"/deals/{deal['Id']}", changes)
    assert answer.status_code == 302
    page = text(client.get(f"/deals/{deal['Id']}"))
    seq = latest_write(page)
    assert "queued" in status_of(page, seq) and "123,456.00" in page
    portal.round()
    page = text(client.get(f"/deals/{deal['Id']}"))
    assert "in the CRM" in status_of(page, seq)
    crm = portal.box.get("Opportunity", deal["Id"])
    assert (crm["StageName"], crm["Amount"], crm["NextStep"]) == (
        "Negotiation/Review",
        123456,
        "Demo",
    )
    assert crm["CloseDate"] == close
    assert "in the CRM" in text(client.get("/writes"))


def test_a_write_the_crm_refuses_shows_its_message(portal: Portal) -> None:
    client = partner_client(portal)
    deal = open_deals(portal)[1]
    post(client, f"/deals/{deal['Id']}", edit(deal, NextStep="Refused step"))
    portal.box.fail_next(
        5,
        status=400,
        error_code="FIELD_CUSTOM_VALIDATION_EXCEPTION",
        message="Next step needs a date",
        path_contains="composite/sobjects",
    )
    try:
        portal.mirror.push()
    finally:
        portal.box.clear_faults()
    page = text(client.get(f"/deals/{deal['Id']}"))
    shown = status_of(page, latest_write(page))
    assert "refused by the CRM" in shown and "Next step needs a date" in shown


def test_a_field_changed_on_both_sides_shows_in_conflict(portal: Portal) -> None:
    client = partner_client(portal)
    deal = open_deals(portal)[2]
    post(client, f"/deals/{deal['Id']}", edit(deal, NextStep="portal step"))
    portal.box.update("Opportunity", deal["Id"], {"NextStep": "crm step"})
    portal.round()
    page = text(client.get(f"/deals/{deal['Id']}"))
    assert "in conflict" in status_of(page, latest_write(page))


def test_invalid_values_are_shown_on_their_fields_and_nothing_is_queued(portal: Portal) -> None:
    client = partner_client(portal)
    deal = open_deals(portal)[3]
    before = len(portal.mirror.as_partner(PARTNER_A).writes())
    answer = post(client, f"/deals/{deal['Id']}", edit(deal, Amount="-5", CloseDate="someday"))
    page = text(answer)
    assert answer.status_code == 200
    assert 'data-error-for="Amount"' in page and 'data-error-for="CloseDate"' in page
    answer = post(client, f"/deals/{deal['Id']}", edit(deal, NextStep="x" * 300))
    assert 'data-error-for="NextStep"' in text(answer)
    assert len(portal.mirror.as_partner(PARTNER_A).writes()) == before


def test_a_contact_created_in_the_portal_reaches_the_crm(portal: Portal) -> None:
    client = partner_client(portal)
    account = open_deals(portal)[4]["AccountId"]
    values = {"AccountId": account, "FirstName": "Ada", "LastName": "Portalby", "Email": "ada@x.io"}
    answer = post(client, "/contacts/new", values)
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/writes")
    page = text(client.get("/writes"))
    assert "create Contact" in page and "queued" in status_of(page, latest_write(page))
    portal.round()
    page = text(client.get("/writes"))
    assert "in the CRM" in status_of(page, latest_write(page))
    found = text(client.get("/contacts", query_string={"q": "Portalby"}))
    assert "Ada Portalby" in found
    crm_ids = [
        i
        for i in portal.box.ids("Contact")
        if portal.box.get("Contact", i)["LastName"] == "Portalby"
    ]
    assert len(crm_ids) == 1 and portal.box.get("Contact", crm_ids[0])["AccountId"] == account


def test_a_contact_needs_a_last_name_and_a_valid_email(portal: Portal) -> None:
    client = partner_client(portal)
    account = open_deals(portal)[4]["AccountId"]
    answer = post(client, "/contacts/new", {"AccountId": account, "Email": "not-an-email"})
    page = text(answer)
    assert 'data-error-for="LastName"' in page and 'data-error-for="Email"' in page
