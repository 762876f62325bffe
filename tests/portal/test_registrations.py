"""Deal registration from the partner's page: field-level errors, the verdict the partner may
see, its registrations and their status; the channel manager's approve and reject."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from tests.portal.conftest import (
    PARTNER_A,
    Portal,
    manager_client,
    partner_client,
    post,
    text,
)


def registration(**changes: Any) -> dict[str, Any]:
    values = {
        "company": "Globex Widgets",
        "domain": "globex-widgets.com",
        "country": "Germany",
        "contact_name": "Hank Scorpio",
        "contact_email": "hank@globex-widgets.com",
        "amount": "50000",
        "currency": "EUR",
        "close_date": (dt.date.today() + dt.timedelta(days=60)).isoformat(),
        "products": "",
        "notes": "Met at the trade fair",
    }
    values.update(changes)
    return values


def errors(page: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, message in re.findall(r'data-error-for="(\w+)">([^<]+)<', page):
        found.setdefault(name, []).append(message)
    return found


def test_invalid_registrations_show_each_problem_on_its_field(portal: Portal) -> None:
    client = partner_client(portal)
    before = len(portal.mirror.as_partner(PARTNER_A).my_registrations())
    page = text(
        post(
            client,
            "/registrations",
            registration(
                company="",
                domain="not a domain",
                contact_email="nobody",
                amount="-1",
                currency="euro",
                close_date="2001-01-01",
            ),
        )
    )
    assert set(errors(page)) == {
        "company", "domain", "contact_email", "amount", "currency", "close_date"
    }  # fmt: skip
    assert errors(page)["close_date"] == ["is in the past"]
    assert len(portal.mirror.as_partner(PARTNER_A).my_registrations()) == before


def test_a_registration_gets_its_verdict_and_is_listed(portal: Portal) -> None:
    client = partner_client(portal)
    page = text(post(client, "/registrations", registration()))
    verdict = re.search(r'data-verdict="(\w+)"', page)
    assert verdict and verdict.group(1) == "clear"
    assert "Globex Widgets" in page and "Submitted" in page


def test_a_customer_another_partner_sells_to_goes_to_review(portal: Portal) -> None:
    view = portal.mirror.as_partner("001Kj0000000003IAA")
    customer = view.get("Account", view.select("Opportunity", limit=1)[0]["AccountId"])
    client = partner_client(portal)
    page = text(post(client, "/registrations", registration(company=customer["Name"], domain="")))
    verdict = re.search(r'data-verdict="(\w+)"', page)
    assert verdict and verdict.group(1) == "review"
    # the partner is told no more than that: not whose deal, nor its details
    assert "001Kj0000000003IAA" not in page and "score" not in page.lower()


def test_the_manager_approves_a_registration_into_a_deal_of_the_partner(portal: Portal) -> None:
    partner = partner_client(portal)
    post(
        partner,
        "/registrations",
        registration(company="Initech Approvals", domain="initech-approvals.com"),
    )
    portal.round()
    manager = manager_client(portal)
    listing = text(manager.get("/manager/registrations"))
    found = re.search(
        r'href="/manager/registrations/(\w+)">\w+</a></td>\s*<td>[^<]*</td><td>Initech Approvals',
        listing,
    )
    assert found, "the registration is listed for the manager"
    reg_id = found.group(1)
    shown = text(manager.get(f"/manager/registrations/{reg_id}"))
    assert 'id="verdict"' in shown and 'id="matches"' in shown
    answer = post(
        manager,
        f"/manager/registrations/{reg_id}/approve",
        {},
        form_page=f"/manager/registrations/{reg_id}",
    )
    assert answer.status_code == 302
    assert "Approved: opportunity" in text(manager.get(f"/manager/registrations/{reg_id}"))
    portal.round()
    portal.round()
    mine = {r["Id"]: r for r in portal.mirror.as_partner(PARTNER_A).my_registrations()}
    deal_id = mine[reg_id]["Opportunity__c"]
    assert mine[reg_id]["Status__c"] == "Approved" and deal_id
    assert portal.box.get("Opportunity", deal_id)["PartnerAccountId"] == PARTNER_A
    assert partner.get(f"/deals/{deal_id}").status_code == 200


def test_the_manager_rejects_with_a_reason_the_partner_reads(portal: Portal) -> None:
    partner = partner_client(portal)
    post(
        partner,
        "/registrations",
        registration(company="Umbrella Rejects", domain="umbrella-rejects.com"),
    )
    portal.round()
    manager = manager_client(portal)
    rows = portal.mirror.registrations().recent()
    reg_id = next(r["id"] for r in rows if r["company"] == "Umbrella Rejects")
    page = f"/manager/registrations/{reg_id}"
    refused = post(manager, f"{page}/reject", {"reason": ""}, form_page=page)
    assert refused.status_code == 302
    assert "A reason" in text(manager.get(page))
    post(manager, f"{page}/reject", {"reason": "Already in our direct pipeline"}, form_page=page)
    portal.round()
    listed = text(partner.get("/registrations"))
    assert "Rejected" in listed and "Already in our direct pipeline" in listed


def test_the_engines_own_checks_land_on_their_fields_too(portal: Portal) -> None:
    client = partner_client(portal)
    page = text(post(client, "/registrations", registration(domain="acme.invalid-tld")))
    assert "domain" in errors(page) and 'data-verdict="' not in page
