"""A partner's session cannot read, edit or be told about another partner's records through
any route, query parameter, form field or the event stream; every form needs its CSRF token."""

from __future__ import annotations

import re

from tests.portal.conftest import (
    DEAL_B,
    EMAIL_A,
    EMAIL_B,
    PARTNER_A,
    PARTNER_B,
    PASSWORD,
    Portal,
    open_deals,
    partner_client,
    post,
    text,
)


def b_account(portal: Portal) -> str:
    """An end customer of partner B's that partner A does not sell to."""
    mine = {a["Id"] for a in portal.mirror.as_partner(PARTNER_A).select("Account", limit=1000)}
    theirs = portal.mirror.as_partner(PARTNER_B).select("Account", limit=1000)
    account: str = next(a["Id"] for a in theirs if a["Id"] not in mine and a["Id"] != PARTNER_B)
    return account


def without_token(page: str) -> str:
    return re.sub(r'name="csrf_token" type="hidden" value="[^"]+"', "", page)


def test_another_partners_deal_is_the_same_404_as_no_deal(portal: Portal) -> None:
    client = partner_client(portal)
    theirs = client.get(f"/deals/{DEAL_B}")
    missing = client.get("/deals/006Kj00000000ZZIAA")
    assert theirs.status_code == missing.status_code == 404
    assert without_token(text(theirs)) == without_token(text(missing))


def test_another_partners_deal_cannot_be_edited(portal: Portal) -> None:
    client = partner_client(portal)
    before = portal.box.get("Opportunity", DEAL_B)
    mine = open_deals(portal)[10]
    data = {
        "csrf_token": re.search(
            r'value="([^"]+)"',
            text(client.get(f"/deals/{mine['Id']}")).split('name="csrf_token"')[1],
        ).group(1),
        "StageName": "Closed Lost",
        "Amount": "1",
        "CloseDate": "2030-01-01",
        "NextStep": "hijack",
    }
    assert client.post(f"/deals/{DEAL_B}", data=data).status_code == 404
    portal.round()
    assert portal.box.get("Opportunity", DEAL_B)["NextStep"] == before["NextStep"]
    assert all(w["record_id"] != DEAL_B for w in portal.mirror.outbox(limit=1000))


def test_query_parameters_reach_only_the_partners_slice(portal: Portal) -> None:
    client = partner_client(portal)
    account = b_account(portal)
    assert DEAL_B not in text(client.get("/deals", query_string={"q": ""}))
    page = text(client.get("/contacts", query_string={"account": account}))
    contacts_b = portal.mirror.as_partner(PARTNER_B).select("Contact", where={"AccountId": account})
    assert contacts_b and not any(c["Id"] in page for c in contacts_b)
    for name in ("PartnerAccountId", "OwnerId", "Id"):
        page = text(client.get("/deals", query_string={name: PARTNER_B, "sort": name}))
        assert DEAL_B not in page and PARTNER_B not in page


def test_a_contact_cannot_be_created_at_another_partners_account(portal: Portal) -> None:
    client = partner_client(portal)
    account = b_account(portal)
    before = portal.mirror.as_partner(PARTNER_B).count("Contact")
    answer = post(client, "/contacts/new", {"AccountId": account, "LastName": "Intruder"})
    assert answer.status_code == 200 and 'data-error-for="AccountId"' in text(answer)
    assert portal.mirror.as_partner(PARTNER_B).count("Contact") == before
    assert all(
        (w["new_values"] or {}).get("LastName") != "Intruder"
        for w in portal.mirror.outbox(limit=1000)
    )


def test_the_write_list_and_registrations_are_the_partners_own(portal: Portal) -> None:
    client_b = partner_client(portal, EMAIL_B)
    b_deal = portal.mirror.as_partner(PARTNER_B).select("Opportunity", limit=1)[0]
    portal.mirror.as_partner(PARTNER_B).update("Opportunity", b_deal["Id"], {"NextStep": "B only"})
    client = partner_client(portal)
    assert b_deal["Id"] not in text(client.get("/writes"))
    assert b_deal["Id"] in text(client_b.get("/writes"))
    regs_b = {r["Id"] for r in portal.mirror.as_partner(PARTNER_B).my_registrations()}
    page = text(client.get("/registrations"))
    assert regs_b and not any(r in page for r in regs_b)


def test_the_session_cannot_be_pointed_at_another_partner(portal: Portal) -> None:
    client = partner_client(portal)
    with client.session_transaction() as session:
        session["partner_id"] = PARTNER_B  # the user stays partner A's
    assert client.get("/deals").headers["Location"].startswith("/login")
    assert client.get("/events").headers["Location"].startswith("/login")


def test_a_forged_cookie_is_not_a_session(portal: Portal) -> None:
    client = portal.app.test_client()
    client.set_cookie("session", "eyJraW5kIjoibWFuYWdlciJ9.forged.signature")
    assert client.get("/manager/conflicts").status_code == 302
    assert client.get("/deals").status_code == 302


def test_a_partner_never_reaches_the_managers_pages(portal: Portal) -> None:
    client = partner_client(portal)
    for path in (
        "/manager/registrations",
        "/manager/conflicts",
        "/manager/status",
        "/manager/failed",
        f"/manager/registrations/{DEAL_B}",
    ):
        assert client.get(path).status_code == 403
    assert client.post("/manager/conflicts/1", data={"take": "crm"}).status_code in (400, 403)


def test_every_form_needs_its_csrf_token(portal: Portal) -> None:
    client = partner_client(portal)
    deal = open_deals(portal)[11]
    refused = [
        client.post("/login", data={"login": EMAIL_A, "password": PASSWORD}),
        client.post(
            f"/deals/{deal['Id']}", data={"NextStep": "no token", "StageName": "Prospecting"}
        ),
        client.post("/contacts/new", data={"LastName": "No Token"}),
        client.post("/registrations", data={"company": "No Token Inc", "amount": "1"}),
        client.post("/logout"),
        client.post(f"/deals/{deal['Id']}", data={"csrf_token": "forged", "NextStep": "x"}),
    ]
    assert all(r.status_code == 400 for r in refused)
    manager = portal.app.test_client()
    assert manager.post("/manager/login", data={"login": "m", "password": "x"}).status_code == 400
    assert portal.box.get("Opportunity", deal["Id"])["NextStep"] != "no token"
    assert client.get("/deals").status_code == 200


def test_a_token_from_another_session_is_refused(portal: Portal) -> None:
    other = partner_client(portal, EMAIL_B)
    stolen = re.search(
        r'name="csrf_token" type="hidden" value="([^"]+)"', text(other.get("/contacts/new"))
    )
    assert stolen
    client = partner_client(portal)
    account = open_deals(portal)[0]["AccountId"]
    answer = client.post(
        "/contacts/new", data={"csrf_token": stolen.group(1), "AccountId": account, "LastName": "X"}
    )
    assert answer.status_code == 400
    assert PARTNER_A  # the partner whose session it is
