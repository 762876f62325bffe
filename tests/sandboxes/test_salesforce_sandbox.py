"""The Salesforce sandbox driven by the real simple-salesforce client: login, sessions, limits,
describe, query paging with snapshot semantics, and the test controls."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from adapters._kit.loopback import local_session
from sandboxes.salesforce.sandbox import SalesforceSandbox
from sandboxes.salesforce.schema import SPEC_DIR
from tests.sandboxes.sf_fixtures import ANCHOR, client, sandbox, sf, shared_sandbox

__all__ = ["sandbox", "sf", "shared_sandbox"]

WIRE_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.000\+0000$")


# -- authentication and sessions --------------------------------------------------------------


def test_soap_login_with_security_token_reaches_the_sandbox(sandbox: SalesforceSandbox) -> None:
    sf = Salesforce(
        username=sandbox.username,
        password=sandbox.password,
        security_token=sandbox.security_token,
        session=local_session(sandbox.base_url),
    )
    assert sf.sf_instance == f"127.0.0.1:{sandbox.port}"
    assert sf.query("SELECT COUNT() FROM Opportunity")["totalSize"] == 50


def test_soap_login_with_a_wrong_password_is_invalid_login(sandbox: SalesforceSandbox) -> None:
    with pytest.raises(SalesforceAuthenticationFailed) as raised:
        Salesforce(
            username=sandbox.username,
            password="wrong",
            security_token=sandbox.security_token,
            session=local_session(sandbox.base_url),
        )
    assert raised.value.code == "INVALID_LOGIN"


def test_oauth_password_grant_returns_the_sandbox_as_instance(sandbox: SalesforceSandbox) -> None:
    sf = Salesforce(
        username=sandbox.username,
        password=sandbox.password,
        consumer_key=sandbox.consumer_key,
        consumer_secret=sandbox.consumer_secret,
        session=local_session(sandbox.base_url),
    )
    assert sf.sf_instance == f"127.0.0.1:{sandbox.port}"
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] > 0


def test_oauth_errors_become_authentication_failures(sandbox: SalesforceSandbox) -> None:
    with pytest.raises(SalesforceAuthenticationFailed) as raised:
        Salesforce(
            username=sandbox.username,
            password=sandbox.password,
            consumer_key=sandbox.consumer_key,
            consumer_secret="nope",
            session=local_session(sandbox.base_url),
        )
    assert raised.value.code == "invalid_client"


def test_client_credentials_grant_on_a_my_domain_host(sandbox: SalesforceSandbox) -> None:
    session = local_session(sandbox.base_url, extra_prefixes=["https://acme.my.salesforce.com"])
    sf = Salesforce(
        consumer_key=sandbox.consumer_key,
        consumer_secret=sandbox.consumer_secret,
        domain="acme.my",
        session=session,
    )
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] > 0


def test_expired_session_raises_for_a_token_client(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    sandbox.expire_sessions()
    with pytest.raises(SalesforceExpiredSession) as raised:
        sf.query("SELECT Id FROM Account LIMIT 1")
    assert raised.value.content == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]


def test_a_login_client_logs_in_again_after_expiry(sandbox: SalesforceSandbox) -> None:
    sf = Salesforce(
        username=sandbox.username,
        password=sandbox.password,
        security_token=sandbox.security_token,
        session=local_session(sandbox.base_url),
    )
    first_session = sf.session_id
    sandbox.expire_sessions()
    assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] > 0
    assert sf.session_id != first_session


def test_requests_without_a_bearer_token_get_401_json_list(sandbox: SalesforceSandbox) -> None:
    response = requests.get(f"{sandbox.base_url}/services/data/v59.0/sobjects", timeout=5)
    assert response.status_code == 401
    assert response.json()[0]["errorCode"] == "INVALID_SESSION_ID"
    assert response.headers["Sforce-Limit-Info"].startswith("api-usage=")


def test_limit_info_is_parsed_and_the_daily_budget_ends_in_403(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    sf.query("SELECT Id FROM Account LIMIT 1")
    used = sf.api_usage["api-usage"].used
    assert used == sandbox.api_usage
    sandbox.set_daily_limit(used + 1)
    sf.query("SELECT Id FROM Account LIMIT 1")
    with pytest.raises(SalesforceRefusedRequest) as raised:
        sf.query("SELECT Id FROM Account LIMIT 1")
    assert raised.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    assert sf.limits is not None


def test_limits_report_the_remaining_daily_requests(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    sandbox.set_daily_limit(1000)
    limits = sf.limits()
    assert limits["DailyApiRequests"] == {"Max": 1000, "Remaining": 1000 - sandbox.api_usage}


def test_versions_are_listed_and_out_of_range_versions_are_not_found(
    shared_sandbox: SalesforceSandbox,
) -> None:
    versions = requests.get(f"{shared_sandbox.base_url}/services/data/", timeout=5).json()
    assert versions[0]["version"] == "50.0"
    assert versions[-1]["version"] == "62.0"
    with pytest.raises(SalesforceResourceNotFound):
        client(shared_sandbox, version="49.0").query("SELECT Id FROM Account LIMIT 1")
    records = client(shared_sandbox, version="62.0").query("SELECT Id FROM Account LIMIT 1")
    assert records["records"][0]["attributes"]["url"].startswith("/services/data/v62.0/")


# -- describe -------------------------------------------------------------------------------


def _recorded_field_keys() -> set[str]:
    import json

    recorded = json.loads((SPEC_DIR / "describe-Account.json").read_text())
    return set(recorded["fields"][0])


def test_describe_global_lists_the_org_objects(shared_sandbox: SalesforceSandbox) -> None:
    described = client(shared_sandbox).describe()
    by_name = {entry["name"]: entry for entry in described["sobjects"]}
    assert described["maxBatchSize"] == 200
    assert {"Account", "Opportunity", "OpportunityLineItem", "Deal_Registration__c"} <= set(by_name)
    assert by_name["Opportunity"]["keyPrefix"] == "006"
    assert (
        by_name["Account"]["urls"]["describe"] == "/services/data/v59.0/sobjects/Account/describe"
    )


def test_recorded_describe_keeps_real_keys_and_gains_the_org_fields(
    shared_sandbox: SalesforceSandbox,
) -> None:
    sf = client(shared_sandbox)
    account = sf.Account.describe()
    fields = {f["name"]: f for f in account["fields"]}
    assert set(fields["Name"]) == _recorded_field_keys()
    assert fields["BillingAddress"]["type"] == "address"
    assert fields["Mirror_Key__c"]["externalId"] and fields["Mirror_Key__c"]["unique"]
    assert "History__c" not in fields
    partner = {f["name"]: f for f in sf.Opportunity.describe()["fields"]}["PartnerAccountId"]
    assert (partner["referenceTo"], partner["relationshipName"]) == (["Account"], "PartnerAccount")
    assert account["urls"]["sobject"] == "/services/data/v59.0/sobjects/Account"


def test_synthesized_describes_have_the_recorded_shape(shared_sandbox: SalesforceSandbox) -> None:
    sf = client(shared_sandbox)
    deal = sf.Deal_Registration__c.describe()
    fields = {f["name"]: f for f in deal["fields"]}
    assert deal["custom"] and deal["keyPrefix"] == "a05"
    assert all(set(f) == _recorded_field_keys() for f in deal["fields"])
    assert fields["Status__c"]["restrictedPicklist"]
    assert [p["value"] for p in fields["Status__c"]["picklistValues"]] == [
        "Submitted", "Approved", "Rejected", "Expired",
    ]  # fmt: skip
    line = {f["name"]: f for f in sf.OpportunityLineItem.describe()["fields"]}
    assert line["OpportunityId"]["relationshipName"] == "Opportunity"
    assert sf.Product2.metadata()["objectDescribe"]["keyPrefix"] == "01t"


def test_unknown_object_is_not_found(shared_sandbox: SalesforceSandbox) -> None:
    with pytest.raises(SalesforceResourceNotFound):
        client(shared_sandbox).Nope__c.describe()


# -- query ----------------------------------------------------------------------------------


def test_query_pages_with_root_relative_locators_and_total_size(
    shared_sandbox: SalesforceSandbox,
) -> None:
    sf = client(shared_sandbox)
    sf.headers["Sforce-Query-Options"] = "batchSize=200"
    first = sf.query("SELECT Id, Name FROM Opportunity")
    assert (first["totalSize"], len(first["records"]), first["done"]) == (500, 200, False)
    assert re.fullmatch(r"/services/data/v59\.0/query/01g\w{15}-200", first["nextRecordsUrl"])
    second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert second["totalSize"] == 500 and second["nextRecordsUrl"].endswith("-400")
    everything = sf.query_all("SELECT Id FROM Opportunity")
    ids = [r["Id"] for r in everything["records"]]
    assert len(ids) == len(set(ids)) == 500


def test_query_locator_is_a_snapshot_under_concurrent_updates(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    sf.headers["Sforce-Query-Options"] = "batchSize=200"
    for index in range(300):
        sandbox.create("Account", {"Name": f"Paging {index:03d}"})
    soql = (
        "SELECT Id, Name, SystemModstamp FROM Account WHERE Name LIKE 'Paging%'"
        " ORDER BY SystemModstamp, Id"
    )
    first = sf.query(soql)
    snapshot_order = [r["Id"] for r in first["records"]]
    sandbox.advance_clock(60)
    moved = [r["Id"] for r in sf.query_all(soql)["records"]][150:250]
    for record_id in moved:
        sandbox.update("Account", record_id, {"Name": "Paging moved"})
    rest = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    snapshot_order += [r["Id"] for r in rest["records"]]
    assert rest["done"] and len(snapshot_order) == len(set(snapshot_order)) == 300
    renamed = [r for r in rest["records"] if r["Id"] in set(moved)]
    assert renamed and all(r["Name"] == "Paging moved" for r in renamed)


def test_query_locator_expires_after_15_idle_minutes(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    sf.headers["Sforce-Query-Options"] = "batchSize=200"
    for index in range(250):
        sandbox.create("Contact", {"LastName": f"Idle {index}"})
    first = sf.query("SELECT Id FROM Contact")
    sandbox.advance_clock(15 * 60 + 1)
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert raised.value.content[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_records_nest_parents_with_attributes_or_null(shared_sandbox: SalesforceSandbox) -> None:
    sf = client(shared_sandbox)
    records = sf.query_all(
        "SELECT Id, PartnerAccount.Name, Account.Owner.Name, SystemModstamp FROM Opportunity"
    )["records"]
    direct = [r for r in records if r["PartnerAccount"] is None]
    attributed = [r for r in records if r["PartnerAccount"] is not None]
    assert direct and attributed
    partner = attributed[0]["PartnerAccount"]
    assert partner["attributes"]["type"] == "Account" and partner["Name"]
    owner = attributed[0]["Account"]["Owner"]
    assert owner["attributes"]["url"].startswith("/services/data/v59.0/sobjects/User/005")
    assert list(attributed[0]) == [
        "attributes",
        "Id",
        "PartnerAccount",
        "Account",
        "SystemModstamp",
    ]
    assert all(WIRE_DATETIME.match(r["SystemModstamp"]) for r in records)


def test_count_query_answers_total_size_only(shared_sandbox: SalesforceSandbox) -> None:
    result = client(shared_sandbox).query("SELECT COUNT() FROM Account WHERE IsPartner = true")
    assert result == {"totalSize": 10, "done": True, "records": []}


def test_soql_errors_come_back_as_the_sdk_raises_them(shared_sandbox: SalesforceSandbox) -> None:
    sf = client(shared_sandbox)
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.query("SELECT Idd FROM Account")
    assert raised.value.content[0]["errorCode"] == "INVALID_FIELD"
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.query("SELECT Id FROM Account WHERE")
    assert raised.value.content[0]["errorCode"] == "MALFORMED_QUERY"
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.query("SELECT Id FROM Nope")
    assert raised.value.content[0]["errorCode"] == "INVALID_TYPE"


def test_query_all_includes_deleted_and_merged_records(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    opportunity = sandbox.ids("Opportunity")[0]
    sandbox.delete("Opportunity", opportunity)
    assert opportunity not in {
        r["Id"] for r in sf.query_all("SELECT Id FROM Opportunity")["records"]
    }
    deleted = sf.query_all("SELECT Id, IsDeleted FROM Opportunity", include_deleted=True)
    assert {"Id": opportunity, "IsDeleted": True} in [
        {k: r[k] for k in ("Id", "IsDeleted")} for r in deleted["records"]
    ]
    master, loser = sandbox.ids("Account")[-2:]
    sandbox.merge("Account", master, [loser])
    merged = sf.query_all(
        f"SELECT Id, IsDeleted, MasterRecordId FROM Account WHERE Id = '{loser}'",
        include_deleted=True,
    )["records"]
    assert (merged[0]["IsDeleted"], merged[0]["MasterRecordId"]) == (True, master)


def test_corrupt_values_are_served_as_they_are(sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    opportunity = sandbox.ids("Opportunity")[0]
    sandbox.corrupt("Opportunity", opportunity, "CloseDate", "not-a-date")
    record = sf.query(f"SELECT CloseDate FROM Opportunity WHERE Id = '{opportunity}'")["records"][0]
    assert record["CloseDate"] == "not-a-date"


# -- controls -------------------------------------------------------------------------------


def test_clock_is_whole_seconds_and_monotonic(sandbox: SalesforceSandbox) -> None:
    now = sandbox.now()
    assert now.microsecond == 0 and now.tzinfo is not None
    later = sandbox.advance_clock(3600)
    assert later >= now + timedelta(seconds=3600)
    with pytest.raises(ValueError):
        sandbox.set_clock(now)
    target = later + timedelta(days=2)
    assert sandbox.set_clock(target) == target


def test_a_frozen_clock_moves_only_when_told_and_runs_on_when_thawed(
    sandbox: SalesforceSandbox,
) -> None:
    frozen = sandbox.freeze_clock()
    try:
        lead = sandbox.create("Lead", {"LastName": "Frozen", "Company": "Frozen Ltd"})
        answer = requests.get(f"{sandbox.base_url}/services/data/v59.0/", timeout=5)
        assert parsedate_to_datetime(answer.headers["Date"]) == frozen
        assert sandbox.advance_clock(1) == frozen + timedelta(seconds=1)
        sandbox.update("Lead", lead, {"Title": "Still"})
        stamped = sandbox.get("Lead", lead)
        assert stamped and stamped["SystemModstamp"] == frozen + timedelta(seconds=1)
    finally:
        thawed = sandbox.thaw_clock()
    assert thawed == frozen + timedelta(seconds=1) and sandbox.now() >= thawed


def test_writes_stamp_the_sandbox_clock(sandbox: SalesforceSandbox) -> None:
    when = sandbox.set_clock(sandbox.now() + timedelta(days=1))
    record_id = sandbox.create("Lead", {"LastName": "Stamp", "Company": "Stamp Ltd"})
    created = sandbox.get("Lead", record_id)
    assert created and created["SystemModstamp"] == created["LastModifiedDate"] >= when
    sandbox.advance_clock(10)
    sandbox.update("Lead", record_id, {"Title": "Boss"}, system_only=True)
    bumped = sandbox.get("Lead", record_id)
    assert bumped and bumped["SystemModstamp"] > bumped["LastModifiedDate"]
    assert bumped["LastModifiedDate"] == created["LastModifiedDate"]
    assert bumped["Name"] == "Stamp" and bumped["IsConverted"] is False


def test_set_modstamp_puts_many_records_on_one_instant(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    ids = sandbox.ids("Contact")[:30]
    instant = datetime(2026, 10, 30, 12, 0, tzinfo=UTC)
    sandbox.set_modstamp("Contact", ids, instant)
    found = sf.query_all("SELECT Id FROM Contact WHERE SystemModstamp = 2026-10-30T12:00:00Z")[
        "records"
    ]
    assert {r["Id"] for r in found} == set(ids)


def test_hard_deleted_records_vanish_from_query_all(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    lead = sandbox.ids("Lead")[0]
    before = sandbox.count("Lead", include_deleted=True)
    sandbox.hard_delete("Lead", lead)
    assert sandbox.count("Lead", include_deleted=True) == before - 1
    found = sf.query_all(f"SELECT Id FROM Lead WHERE Id = '{lead}'", include_deleted=True)
    assert found["totalSize"] == 0 and sandbox.get("Lead", lead, include_deleted=True) is None


def test_admin_path_needs_the_admin_token(sandbox: SalesforceSandbox) -> None:
    url = f"{sandbox.base_url}/__sandbox/advance_clock"
    denied = requests.post(url, json={"seconds": 60}, timeout=5)
    assert denied.status_code == 403
    before = sandbox.now()
    allowed = requests.post(
        url, json={"seconds": 3600}, headers={"X-Sandbox-Admin": sandbox.admin_token}, timeout=5
    )
    assert allowed.status_code == 200
    assert datetime.fromisoformat(allowed.json()["result"]) >= before + timedelta(hours=1)
    usage = requests.post(
        f"{sandbox.base_url}/__sandbox/api_usage",
        headers={"X-Sandbox-Admin": sandbox.admin_token},
        timeout=5,
    )
    assert usage.json() == {"result": sandbox.api_usage}
    assert sandbox.call_count("/__sandbox/") == 0


def test_calls_are_logged_and_counted(sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    sandbox.reset_calls()
    sf.query("SELECT Id FROM Account LIMIT 1")
    sf.Account.describe()
    assert sandbox.calls == [
        ("GET", "/services/data/v59.0/query/"),
        ("GET", "/services/data/v59.0/sobjects/Account/describe"),
    ]
    assert sandbox.call_count("/query") == 1


def test_same_seed_same_data_and_another_seed_other_data(tmp_path) -> None:
    soql = "SELECT Id, Name, Amount, PartnerAccountId, SystemModstamp FROM Opportunity"

    def records(seed: int, name: str) -> list[dict]:
        with SalesforceSandbox(tmp_path / name, seed=seed, size="tiny", anchor=ANCHOR) as sb:
            return client(sb).query_all(soql)["records"]

    assert records(11, "a.db") == records(11, "b.db")
    assert records(11, "a.db") != records(12, "c.db")
