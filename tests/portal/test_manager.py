"""The channel manager's pages: open conflicts resolved by taking the CRM's value, the
portal's or another; sync status per object; the writes the CRM refused."""

from __future__ import annotations

from typing import Any

from tests.portal.conftest import (
    PARTNER_A,
    Portal,
    manager_client,
    open_deals,
    post,
    text,
)


def conflict_on(portal: Portal, deal: dict[str, Any], portal_value: str, crm_value: str) -> int:
    portal.mirror.as_partner(PARTNER_A).update(
        "Opportunity", deal["Id"], {"NextStep": portal_value}
    )
    portal.box.update("Opportunity", deal["Id"], {"NextStep": crm_value})
    portal.round()
    found = [c for c in portal.mirror.conflicts("open") if c["record_id"] == deal["Id"]]
    assert len(found) == 1
    conflict_id: int = found[0]["id"]
    return conflict_id


def test_open_conflicts_are_listed_and_resolved_each_way(portal: Portal) -> None:
    manager = manager_client(portal)
    deals = open_deals(portal)[12:15]
    ids = [conflict_on(portal, d, f"portal {i}", f"crm {i}") for i, d in enumerate(deals)]
    page = text(manager.get("/manager/conflicts"))
    assert all(f'data-conflict="{i}"' in page for i in ids) and "portal 1" in page
    for conflict_id, take, value in zip(
        ids, ("crm", "portal", "value"), ("", "", "agreed 2"), strict=True
    ):
        answer = post(
            manager,
            f"/manager/conflicts/{conflict_id}",
            {"take": take, "value": value},
            form_page="/manager/conflicts",
        )
        assert answer.status_code == 302
    assert not any(f'data-conflict="{i}"' in text(manager.get("/manager/conflicts")) for i in ids)
    portal.round()
    crm = [portal.box.get("Opportunity", d["Id"])["NextStep"] for d in deals]
    assert crm == ["crm 0", "portal 1", "agreed 2"]


def test_a_resolve_with_a_bad_choice_changes_nothing(portal: Portal) -> None:
    manager = manager_client(portal)
    deal = open_deals(portal)[15]
    conflict_id = conflict_on(portal, deal, "portal x", "crm x")
    post(manager, f"/manager/conflicts/{conflict_id}", {"take": "both"}, "/manager/conflicts")
    assert "Choose crm, portal or value" in text(manager.get("/manager/conflicts"))
    assert any(c["id"] == conflict_id for c in portal.mirror.conflicts("open"))
    post(manager, "/manager/conflicts/999999", {"take": "crm"}, "/manager/conflicts")
    assert "no open conflict 999999" in text(manager.get("/manager/conflicts"))


def test_the_status_page_shows_each_object_and_the_outbox(portal: Portal) -> None:
    manager = manager_client(portal)
    page = text(manager.get("/manager/status"))
    for name in ("Account", "Contact", "Opportunity", "Deal_Registration__c"):
        assert f'data-object="{name}"' in page
    assert 'id="queue"' in page and "conflicts" in page


def test_the_failed_writes_page_shows_the_crms_message(portal: Portal) -> None:
    manager = manager_client(portal)
    deal = open_deals(portal)[16]
    portal.mirror.as_partner(PARTNER_A).update("Opportunity", deal["Id"], {"NextStep": "fails"})
    portal.box.fail_next(
        5, status=400, error_code="INVALID_FIELD", message="No such step",
        path_contains="composite/sobjects",
    )  # fmt: skip
    try:
        portal.mirror.push()
    finally:
        portal.box.clear_faults()
    page = text(manager.get("/manager/failed"))
    assert "No such step" in page and deal["Id"] in page


def test_the_registrations_list_filters_by_status(portal: Portal) -> None:
    manager = manager_client(portal)
    page = text(manager.get("/manager/registrations", query_string={"status": "Approved"}))
    assert "<td>Submitted</td>" not in page
    assert manager.get("/manager/registrations", query_string={"status": "x"}).status_code == 200
    assert manager.get("/manager/registrations/a05Kj00000000ZZIAA").status_code == 404
