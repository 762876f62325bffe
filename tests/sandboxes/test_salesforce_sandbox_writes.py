"""Writes against the Salesforce sandbox through simple-salesforce: sObject rows, field checks,
conditional requests, getUpdated/getDeleted, sObject collections, faults and schema drift."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceResourceNotFound,
)

from sandboxes.salesforce.sandbox import SalesforceSandbox
from tests.sandboxes.sf_fixtures import sandbox, sf

__all__ = ["sandbox", "sf"]


def _error_code(raised: pytest.ExceptionInfo) -> str:
    return raised.value.content[0]["errorCode"]


def _partner(sandbox: SalesforceSandbox) -> str:
    return next(i for i in sandbox.ids("Account") if sandbox.get("Account", i)["IsPartner"])


# -- sObject rows ---------------------------------------------------------------------------


def test_create_get_update_delete_round_trip(sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    created = sf.Account.create(
        {"Name": "Round Trip", "BillingCity": "Lyon", "NumberOfEmployees": 12}
    )
    assert created["success"] and created["errors"] == [] and created["id"].startswith("001")
    record = sf.Account.get(created["id"])
    assert record["attributes"] == {
        "type": "Account",
        "url": f"/services/data/v59.0/sobjects/Account/{created['id']}",
    }
    assert record["BillingAddress"]["city"] == "Lyon" and record["NumberOfEmployees"] == 12
    assert sf.Account.update(created["id"], {"Name": "Renamed", "Phone": None}) == 204
    assert sf.Account.get(created["id"], params={"fields": "Name,Phone"}) == {
        "attributes": record["attributes"],
        "Name": "Renamed",
        "Phone": None,
    }
    assert sf.Account.delete(created["id"]) == 204
    with pytest.raises(SalesforceResourceNotFound) as raised:
        sf.Account.get(created["id"])
    assert _error_code(raised) == "ENTITY_IS_DELETED"
    sandbox.undelete("Account", created["id"])
    assert sf.Account.get(created["id"])["IsDeleted"] is False


def test_get_with_fields_returns_only_those(sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    contact = sandbox.ids("Contact")[0]
    response = sf.Contact.get(contact, params={"fields": "LastName,Email"})
    assert list(response) == ["attributes", "LastName", "Email"]


@pytest.mark.parametrize(
    ("values", "code", "fields"),
    [
        ({"Nope__c": 1, "Name": "x"}, "INVALID_FIELD", None),
        ({"Name": "x", "CreatedDate": "2024-01-01T00:00:00Z"}, "INVALID_FIELD_FOR_INSERT_UPDATE",
         ["CreatedDate"]),
        ({"Phone": "1"}, "REQUIRED_FIELD_MISSING", ["Name"]),
        ({"Name": "x" * 256}, "STRING_TOO_LONG", ["Name"]),
        ({"Name": "x", "ParentId": "not-an-id"}, "MALFORMED_ID", ["ParentId"]),
        ({"Name": "x", "ParentId": "003Kj0000000001IAA"}, "FIELD_INTEGRITY_EXCEPTION",
         ["ParentId"]),
        ({"Name": "x", "NumberOfEmployees": "many"}, "JSON_PARSER_ERROR", None),
    ],
)  # fmt: skip
def test_account_field_checks(sf: Salesforce, values: dict, code: str, fields: list | None) -> None:
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Account.create(values)
    assert _error_code(raised) == code
    if fields is not None:
        assert raised.value.content[0]["fields"] == fields


def test_restricted_picklist_and_validation_rules(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    base = {"Partner_Account__c": _partner(sandbox), "Company_Name__c": "Initech"}
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Deal_Registration__c.create({**base, "Status__c": "Maybe"})
    assert _error_code(raised) == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Deal_Registration__c.create({**base, "Status__c": "Approved"})
    assert raised.value.content[0]["fields"] == ["Close_Date__c"]
    opportunity = sandbox.ids("Opportunity")[0]
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Opportunity.update(opportunity, {"Amount": -5})
    assert _error_code(raised) == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    created = sf.Deal_Registration__c.create(base)
    assert sandbox.get("Deal_Registration__c", created["id"])["Status__c"] == "Submitted"


def test_locked_rows_and_duplicate_external_ids(sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    lead = sandbox.ids("Lead")[0]
    sandbox.lock_rows([lead])
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Lead.update(lead, {"Title": "x"})
    assert _error_code(raised) == "UNABLE_TO_LOCK_ROW"
    sandbox.unlock_rows()
    assert sf.Lead.update(lead, {"Title": "x"}) == 204
    sf.Lead.create({"LastName": "A", "Company": "A", "Mirror_Key__c": "lead-key"})
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Lead.create({"LastName": "B", "Company": "B", "Mirror_Key__c": "LEAD-KEY"})
    assert _error_code(raised) == "DUPLICATE_VALUE"


def test_upsert_by_external_id_creates_then_updates(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    first = sf.Contact.upsert("Mirror_Key__c/portal-1", {"LastName": "Upsert"}, raw_response=True)
    assert first.status_code == 201 and first.json()["created"] is True
    second = sf.Contact.upsert("Mirror_Key__c/portal-1", {"Title": "CTO"}, raw_response=True)
    assert second.status_code == 200 and second.json() == {
        "id": first.json()["id"], "success": True, "errors": [], "created": False,
    }  # fmt: skip
    assert sf.Contact.get_by_custom_id("Mirror_Key__c", "portal-1")["Title"] == "CTO"


# -- conditional requests -------------------------------------------------------------------


def _http_date(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def test_if_unmodified_since_answers_412_when_modified_later(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    contact = sandbox.ids("Contact")[0]
    modified = sandbox.get("Contact", contact)["LastModifiedDate"]
    stale = {"If-Unmodified-Since": _http_date(modified - timedelta(seconds=1))}
    with pytest.raises(SalesforceGeneralError) as raised:
        sf.Contact.update(contact, {"Title": "Stale"}, headers=stale)
    assert raised.value.status == 412
    fresh = {"If-Unmodified-Since": _http_date(modified)}
    assert sf.Contact.update(contact, {"Title": "Fresh"}, headers=fresh) == 204
    with pytest.raises(SalesforceMalformedRequest):
        sf.Contact.update(contact, {"Title": "x"}, headers={"If-Unmodified-Since": "yesterday"})


def test_etags_guard_account_rows_only(sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    account = sandbox.ids("Account")[0]
    response = requests.get(
        f"{sandbox.base_url}/services/data/v59.0/sobjects/Account/{account}",
        headers={"Authorization": f"Bearer {sf.session_id}"},
        timeout=5,
    )
    etag = response.headers["ETag"]
    with pytest.raises(SalesforceGeneralError) as raised:
        sf.Account.update(account, {"Site": "x"}, headers={"If-Match": '"stale"'})
    assert raised.value.status == 412
    assert sf.Account.update(account, {"Site": "y"}, headers={"If-Match": etag}) == 204
    with pytest.raises(SalesforceGeneralError):
        sf.Account.update(account, {"Site": "z"}, headers={"If-Match": etag})
    contact = sandbox.ids("Contact")[0]
    assert sf.Contact.update(contact, {"Title": "t"}, headers={"If-Match": '"stale"'}) == 204
    assert sf.Account.delete(account, headers={"If-Match": '"stale"'}) == 204


# -- getUpdated / getDeleted ----------------------------------------------------------------


def test_get_updated_lists_changes_with_latest_date_covered(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    start = sandbox.advance_clock(120)
    changed = sandbox.ids("Opportunity")[:3]
    for record_id in changed:
        sandbox.update("Opportunity", record_id, {"NextStep": "call"})
    end = sandbox.advance_clock(120)
    result = sf.Opportunity.updated(start, end)
    assert set(result["ids"]) == set(changed)
    assert result["latestDateCovered"] == end.strftime("%Y-%m-%dT%H:%M:00.000+0000")
    with pytest.raises(SalesforceMalformedRequest):
        sf.Opportunity.updated(end - timedelta(days=31), end)


def test_naive_datetimes_are_rejected_as_malformed(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Account.updated(datetime(2026, 11, 1, 10), datetime(2026, 11, 2, 10))
    assert _error_code(raised) == "INVALID_REPLICATION_DATE"


def test_get_deleted_honours_the_window_and_ignores_hard_deletes(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    start = sandbox.now()
    old, recent, purged = sandbox.ids("Lead")[:3]
    sandbox.advance_clock(60)
    sandbox.delete("Lead", old)
    sandbox.advance_clock(3 * 86_400)
    sandbox.delete("Lead", recent)
    sandbox.delete("Lead", purged)
    sandbox.hard_delete("Lead", purged)
    end = sandbox.advance_clock(120)
    everything = sf.Lead.deleted(start, end)
    assert [r["id"] for r in everything["deletedRecords"]] == [old, recent]
    sandbox.set_deleted_window(1)
    windowed = sf.Lead.deleted(start, end)
    assert [r["id"] for r in windowed["deletedRecords"]] == [recent]
    earliest = datetime.strptime(windowed["earliestDateAvailable"], "%Y-%m-%dT%H:%M:%S.%f%z")
    assert earliest > start
    assert windowed["latestDateCovered"] <= end.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


# -- sObject collections --------------------------------------------------------------------


def test_collection_create_reports_partial_failure(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    records = [
        {"attributes": {"type": "Account"}, "Name": "Collected 1"},
        {"attributes": {"type": "Account"}, "Phone": "no name"},
        {"attributes": {"type": "Contact"}, "LastName": "Collected"},
    ]
    results = sf.restful("composite/sobjects", method="POST", json={"records": records})
    assert [r["success"] for r in results] == [True, False, True]
    assert results[1]["errors"] == [
        {"statusCode": "REQUIRED_FIELD_MISSING", "message": "Required fields are missing: [Name]",
         "fields": ["Name"]}
    ]  # fmt: skip
    assert sandbox.get("Contact", results[2]["id"])["LastName"] == "Collected"


def test_collection_all_or_none_rolls_everything_back(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    before = sandbox.count("Account")
    records = [
        {"attributes": {"type": "Account"}, "Name": "Kept?"},
        {"attributes": {"type": "Account"}, "Name": "x" * 300},
    ]
    results = sf.restful(
        "composite/sobjects", method="POST", json={"allOrNone": True, "records": records}
    )
    assert results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert results[1]["errors"][0]["statusCode"] == "STRING_TOO_LONG"
    assert sandbox.count("Account") == before


def test_collection_update_delete_retrieve_and_upsert(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    first, second = sandbox.ids("Contact")[:2]
    updates = [
        {"attributes": {"type": "Contact"}, "id": first, "Title": "One"},
        {"attributes": {"type": "Contact"}, "id": second, "Email": "not-an-email"},
    ]
    results = sf.restful("composite/sobjects", method="PATCH", json={"records": updates})
    assert results[0] == {"id": first, "success": True, "errors": []}
    assert results[1]["errors"][0]["statusCode"] == "INVALID_EMAIL_ADDRESS"
    fetched = sf.restful(
        "composite/sobjects/Contact",
        params={"ids": f"{first},003Kj000000zzzzIAA", "fields": "Id,Title"},
    )
    assert fetched[0]["Title"] == "One" and fetched[1] is None
    deleted = sf.restful("composite/sobjects", method="DELETE", params={"ids": f"{first},bad"})
    assert deleted[0]["success"] and deleted[1]["errors"][0]["statusCode"] == "MALFORMED_ID"
    upserts = [
        {"attributes": {"type": "Lead"}, "Mirror_Key__c": "l-1", "LastName": "U", "Company": "C"},
        {"attributes": {"type": "Lead"}, "Mirror_Key__c": "l-1", "Title": "again"},
    ]
    upserted = sf.restful(
        "composite/sobjects/Lead/Mirror_Key__c", method="PATCH", json={"records": upserts}
    )
    assert [r["created"] for r in upserted] == [True, False]
    assert upserted[0]["id"] == upserted[1]["id"]


# -- faults, derived values, schema drift ---------------------------------------------------


def test_injected_failures_and_dropped_responses(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    sandbox.fail_next(1, path_contains="/query")
    with pytest.raises(SalesforceGeneralError) as raised:
        sf.query("SELECT Id FROM Account LIMIT 1")
    assert raised.value.status == 503
    assert sf.query("SELECT Id FROM Account LIMIT 1")["totalSize"] == 1
    sandbox.drop_next_response(path_contains="/sobjects/Lead")
    with pytest.raises(requests.exceptions.ConnectionError):
        sf.Lead.create({"LastName": "Dropped", "Company": "Dropped Inc"})
    found = sf.query("SELECT Id FROM Lead WHERE LastName = 'Dropped'")
    assert found["totalSize"] == 1


def test_throttle_adds_latency(sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    sandbox.throttle(0.2)
    started = time.monotonic()
    sf.query("SELECT Id FROM Account LIMIT 1")
    assert time.monotonic() - started >= 0.2
    sandbox.throttle(0)


def test_line_items_roll_up_into_their_opportunity(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    opportunity = sf.Opportunity.create(
        {"Name": "Rollup", "StageName": "Prospecting", "CloseDate": "2026-12-31", "Amount": 5}
    )["id"]
    before = sandbox.get("Opportunity", opportunity)
    sandbox.advance_clock(5)
    product = sandbox.ids("Product2")[0]
    line = sf.OpportunityLineItem.create(
        {"OpportunityId": opportunity, "Product2Id": product, "Quantity": 3, "UnitPrice": 10}
    )["id"]
    after = sandbox.get("Opportunity", opportunity)
    assert sandbox.get("OpportunityLineItem", line)["TotalPrice"] == 30
    assert (after["Amount"], after["HasOpportunityLineItem"]) == (30, True)
    assert after["SystemModstamp"] > before["SystemModstamp"]
    assert (before["Probability"], before["ForecastCategoryName"]) == (10, "Pipeline")


def test_added_field_appears_in_describe_queries_and_writes(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    sandbox.add_field("Opportunity", "Region__c", "picklist", values=["EMEA", "APAC"])
    fields = {f["name"]: f for f in sf.Opportunity.describe()["fields"]}
    assert fields["Region__c"]["custom"] and fields["Region__c"]["type"] == "picklist"
    opportunity = sandbox.ids("Opportunity")[0]
    sf.Opportunity.update(opportunity, {"Region__c": "EMEA"})
    found = sf.query("SELECT Id, Region__c FROM Opportunity WHERE Region__c = 'EMEA'")
    assert [r["Id"] for r in found["records"]] == [opportunity]
