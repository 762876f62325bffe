"""Sign-in and the partner's pages through the Flask test client: lists with search, filters,
sort and pages, the deal page with its line items and contacts, hidden fields never shown."""

from __future__ import annotations

import re
from typing import Any

from prm_portal import listing
from tests.portal.conftest import (
    EMAIL_A,
    MANAGER_PASSWORD,
    PARTNER_A,
    PASSWORD,
    Portal,
    first_deal,
    partner_client,
    post,
    text,
)


def test_a_partner_user_signs_in_with_its_email_and_the_password(portal: Portal) -> None:
    client = partner_client(portal)
    page = text(client.get("/deals"))
    assert "Dev Okafor (admin)" in page and "data-feed-cursor" in page


def test_a_wrong_password_or_an_unknown_user_is_refused_alike(portal: Portal) -> None:
    client = portal.app.test_client()
    for login, password in ((EMAIL_A, "nope"), ("nobody@example.com", PASSWORD), ("", "")):
        answer = post(client, "/login", {"login": login, "password": password})
        assert answer.status_code == 200 and "data-feed-cursor" not in text(answer)
    assert client.get("/deals").status_code == 302


def test_the_manager_signs_in_with_the_configured_password_only(portal: Portal) -> None:
    client = portal.app.test_client()
    refused = post(client, "/manager/login", {"login": "x", "password": PASSWORD})
    assert refused.status_code == 200 and "Sign-in refused" in text(refused)
    signed = post(client, "/manager/login", {"login": "Morgan", "password": MANAGER_PASSWORD})
    assert signed.headers["Location"].endswith("/manager/registrations")


def test_every_page_needs_a_session(portal: Portal) -> None:
    client = portal.app.test_client()
    for path in ("/deals", "/accounts", "/contacts", "/writes", "/registrations", "/events"):
        assert client.get(path).headers["Location"].startswith("/login")
    for path in ("/manager/registrations", "/manager/conflicts", "/manager/status"):
        assert client.get(path).headers["Location"].startswith("/manager/login")
    assert client.get("/").headers["Location"].endswith("/login")


def test_signing_out_ends_the_session(portal: Portal) -> None:
    client = partner_client(portal)
    assert post(client, "/logout", {}, form_page="/deals").status_code == 302
    assert client.get("/deals").status_code == 302


def test_the_lists_show_the_partners_slice(portal: Portal) -> None:
    client = partner_client(portal)
    view = portal.mirror.as_partner(PARTNER_A)
    for path, name in (
        ("/deals", "Opportunity"),
        ("/accounts", "Account"),
        ("/contacts", "Contact"),
    ):
        page = text(client.get(path))
        shown = set(re.findall(r'<tr data-record="(\w+)"', page))
        assert f"<small>{view.count(name)}</small>" in page
        assert shown and shown <= {r["Id"] for r in view.select(name, limit=1000)}


def test_search_filter_sort_and_pages(portal: Portal) -> None:
    client = partner_client(portal)
    view = portal.mirror.as_partner(PARTNER_A)
    deal = first_deal(portal)
    word = deal["Name"].split()[0]
    found = text(client.get("/deals", query_string={"q": word}))
    assert deal["Id"] in found
    assert all(word.lower() in n.lower() for n in re.findall(r'href="/deals/\w+">([^<]+)<', found))
    closed = text(client.get("/deals", query_string={"state": "closed", "page_size": 5}))
    ids = re.findall(r'<tr data-record="(\w+)"', closed)
    assert ids and all(view.get("Opportunity", i)["IsClosed"] for i in ids)
    by_amount = text(client.get("/deals", query_string={"sort": "-Amount", "min_amount": "1000"}))
    amounts = [float(a.replace(",", "")) for a in re.findall(r'"Amount">([\d,.]+)<', by_amount)]
    assert amounts == sorted(amounts, reverse=True) and min(amounts) >= 1000
    first, second = (
        re.findall(r'<tr data-record="(\w+)"', text(client.get("/contacts", query_string=q)))
        for q in ({"page": 1}, {"page": 2})
    )
    assert first and second and not set(first) & set(second)
    assert "Page 2 of" in text(client.get("/contacts", query_string={"page": 2}))


def test_a_list_counts_its_matches_up_to_the_cap(portal: Portal, monkeypatch: Any) -> None:
    client = partner_client(portal)
    view = portal.mirror.as_partner(PARTNER_A)
    matches = view.count("Contact", where={"Name": ("like", "%a%")})
    assert matches > 3
    monkeypatch.setattr(listing, "COUNT_CAP", 3)
    page = text(client.get("/contacts", query_string={"q": "a"}))
    assert "<small>3+</small>" in page and "Page 1 of 1+" in page
    monkeypatch.setattr(listing, "COUNT_CAP", matches + 1)
    assert f"<small>{matches}</small>" in text(client.get("/contacts", query_string={"q": "a"}))


def test_unknown_sorts_and_filters_are_ignored_and_bad_values_told(portal: Portal) -> None:
    client = partner_client(portal)
    assert client.get("/deals", query_string={"sort": "ExpectedRevenue"}).status_code == 200
    assert client.get("/deals", query_string={"Description": "x", "page": "x"}).status_code == 200
    assert client.get("/deals", query_string={"q": "%' OR 1=1 --"}).status_code == 200


def test_the_deal_page_shows_line_items_and_contacts_and_no_hidden_field(portal: Portal) -> None:
    client = partner_client(portal)
    view = portal.mirror.as_partner(PARTNER_A)
    deal = first_deal(portal, HasOpportunityLineItem=True)
    page = text(client.get(f"/deals/{deal['Id']}"))
    items = view.select("OpportunityLineItem", where={"OpportunityId": deal["Id"]})
    contacts = view.select("Contact", where={"AccountId": deal["AccountId"]})
    assert items and all(i["Id"] in page for i in items)
    assert all(c["Id"] in page for c in contacts)
    for hidden in ("ExpectedRevenue", "ForecastCategory", "Description", "Fiscal"):
        assert hidden not in page


def test_the_new_contact_form_offers_only_the_partners_accounts(portal: Portal) -> None:
    client = partner_client(portal)
    view = portal.mirror.as_partner(PARTNER_A)
    page = text(client.get("/contacts/new"))
    offered = set(re.findall(r'<option value="(\w+)"', page))
    assert offered == {a["Id"] for a in view.select("Account", limit=1000)}


def test_a_rep_sees_only_the_deals_it_owns(portal: Portal) -> None:
    rep_email = f"rep.{EMAIL_A}"
    client = partner_client(portal, rep_email)
    page = text(client.get("/deals"))
    assert "(rep)" in page
    admin = portal.mirror.as_partner(PARTNER_A)
    rep = admin.select("User", where={"Email": rep_email})[0]["Id"]
    owned = {d["Id"] for d in admin.select("Opportunity", where={"OwnerId": rep})}
    shown = set(re.findall(r'<tr data-record="(\w+)"', page))
    assert shown == owned and len(owned) == 3
    others = admin.select("Opportunity", where={"OwnerId": ("!=", rep)}, limit=1)
    assert client.get(f"/deals/{others[0]['Id']}").status_code == 404
    assert client.get(f"/deals/{sorted(owned)[0]}").status_code == 200
