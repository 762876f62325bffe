"""The Dataverse sandbox over HTTP: Entra ID, metadata, queries and paging, change tracking,
service protection, faults and the admin path."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msal
import pytest
import requests

from adapters._kit.loopback import RedirectToLocal
from sandboxes.dynamics.sandbox import DynamicsSandbox
from tests.adapters.dynamics.fixtures import WebApi

ANCHOR = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DynamicsSandbox]:
    path = Path(tmp_path_factory.mktemp("dv-sandbox")) / "org.db"
    with DynamicsSandbox(path, seed=7, size="small", anchor=ANCHOR) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def api(box: DynamicsSandbox) -> WebApi:
    return WebApi(box)


def redirected(box: DynamicsSandbox) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.mount(f"https://127.0.0.1:{box.port}", RedirectToLocal(box.base_url))
    return session


def every_page(api: WebApi, path: str, prefer: str) -> tuple[list[dict], list[dict]]:
    """The rows of every page and the pages' bodies."""
    bodies = [api.get(path, prefer=prefer).json()]
    while "@odata.nextLink" in bodies[-1]:
        bodies.append(api.get(bodies[-1]["@odata.nextLink"], prefer=prefer).json())
    return [row for body in bodies for row in body["value"]], bodies


# --- Entra ID -------------------------------------------------------------------------------


def test_discovery_advertises_https_endpoints_for_plain_http(box) -> None:
    document = requests.get(
        f"{box.base_url}/{box.tenant_id}/v2.0/.well-known/openid-configuration", timeout=10
    ).json()
    assert document["token_endpoint"] == (
        f"https://127.0.0.1:{box.port}/{box.tenant_id}/oauth2/v2.0/token"
    )
    assert document["authorization_endpoint"].startswith("https://")


def test_msal_gets_a_token_with_a_secret_and_serves_it_from_its_cache(box) -> None:
    app = msal.ConfidentialClientApplication(
        box.client_id, client_credential=box.client_secret,
        authority=f"https://127.0.0.1:{box.port}/{box.tenant_id}",
        instance_discovery=False, http_client=redirected(box),
    )  # fmt: skip
    scope = [f"https://127.0.0.1:{box.port}/.default"]
    first = app.acquire_token_for_client(scopes=scope)
    assert first["token_type"] == "Bearer" and first["expires_in"] > 3000
    assert app.acquire_token_for_client(scopes=scope)["token_source"] == "cache"


@pytest.mark.parametrize(
    ("form", "status", "error", "code"),
    [
        ({"client_secret": "wrong"}, 401, "invalid_client", 7000215),
        ({"client_id": "someone-else"}, 400, "unauthorized_client", 700016),
        ({"scope": "https://elsewhere.crm.dynamics.com/.default"}, 400, "invalid_resource",
         500011),
        ({"scope": "https://127.0.0.1/user.read"}, 400, "invalid_scope", 1002012),
        ({"grant_type": "password"}, 400, "unsupported_grant_type", 70003),
    ],
)  # fmt: skip
def test_token_errors_have_the_aad_shape(box, form, status, error, code) -> None:
    sent = {"grant_type": "client_credentials", "client_id": box.client_id,
            "client_secret": box.client_secret,
            "scope": f"https://127.0.0.1:{box.port}/.default", **form}  # fmt: skip
    answer = requests.post(
        f"{box.base_url}/{box.tenant_id}/oauth2/v2.0/token", data=sent, timeout=10
    )
    body = answer.json()
    assert answer.status_code == status and body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}:")
    assert {"timestamp", "trace_id", "correlation_id"} <= set(body)


def test_the_web_api_wants_a_live_token(box, api) -> None:
    answer = requests.get(f"{box.base_url}/api/data/v9.2/accounts", timeout=10)
    assert answer.status_code == 401
    assert "authorization_uri=" in answer.headers["WWW-Authenticate"]
    assert api.get("WhoAmI").json()["UserId"]
    box.advance_clock(3600)
    assert api.get("WhoAmI").status_code == 401
    api.token = box.issue_token()


# --- metadata -------------------------------------------------------------------------------


def test_entity_definitions_collection_filter_and_select(api) -> None:
    body = api.get(
        "EntityDefinitions?$select=LogicalName,EntitySetName,ChangeTrackingEnabled"
        "&$filter=ChangeTrackingEnabled eq true and IsCustomEntity eq false"
    ).json()
    names = {d["LogicalName"]: d["EntitySetName"] for d in body["value"]}
    assert names == {"account": "accounts", "contact": "contacts", "lead": "leads",
                     "opportunity": "opportunities"}  # fmt: skip
    assert set(body["value"][0]) == {"MetadataId", "LogicalName", "EntitySetName",
                                     "ChangeTrackingEnabled"}  # fmt: skip


def test_attribute_metadata_needs_a_cast_for_derived_properties(api) -> None:
    base = "EntityDefinitions(LogicalName='opportunity')/Attributes"
    refused = api.get(f"{base}?$select=LogicalName,Targets")
    assert refused.status_code == 400 and "'Targets'" in refused.json()["error"]["message"]
    lookups = api.get(
        f"{base}/Microsoft.Dynamics.CRM.LookupAttributeMetadata?$select=LogicalName,Targets"
    ).json()["value"]
    assert {a["LogicalName"]: a["Targets"] for a in lookups}["customerid"] == [
        "account", "contact"]  # fmt: skip
    picklists = api.get(
        f"{base}/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName"
        "&$expand=OptionSet"
    ).json()["value"]
    stage = next(p for p in picklists if p["LogicalName"] == "salesstage")
    labels = [o["Label"]["UserLocalizedLabel"]["Label"] for o in stage["OptionSet"]["Options"]]
    assert labels == ["Qualify", "Develop", "Propose", "Close"]
    typed = api.get(
        f"{base}?$select=LogicalName&$filter=AttributeType eq "
        "Microsoft.Dynamics.CRM.AttributeTypeCode'Customer'"
    ).json()["value"]
    assert [a["LogicalName"] for a in typed] == ["customerid"]


def test_relationships_name_the_navigation_properties(api) -> None:
    values = api.get(
        "EntityDefinitions(LogicalName='opportunity')/ManyToOneRelationships"
        "?$select=ReferencingAttribute,ReferencedEntity,ReferencingEntityNavigationPropertyName"
    ).json()["value"]
    navs = {(v["ReferencingAttribute"], v["ReferencedEntity"]):
            v["ReferencingEntityNavigationPropertyName"] for v in values}  # fmt: skip
    assert navs[("prm_partneraccountid", "account")] == "prm_PartnerAccountId"
    assert navs[("customerid", "contact")] == "customerid_contact"
    assert navs[("ownerid", "systemuser")] == "ownerid"
    missing = api.get("EntityDefinitions(LogicalName='nope')")
    assert missing.status_code == 404


# --- queries and paging ---------------------------------------------------------------------


def test_select_filter_orderby_count_and_annotations(box, api) -> None:
    answer = api.get(
        "accounts?$select=name,prm_partnertier,_ownerid_value&$filter=prm_ispartner eq true"
        "&$orderby=name desc&$count=true",
        prefer='odata.include-annotations="*"',
    )
    body = answer.json()
    assert answer.headers["OData-Version"] == "4.0"
    assert body["@odata.count"] == 10 and len(body["value"]) == 10
    names = [row["name"] for row in body["value"]]
    assert names == sorted(names, key=str.lower, reverse=True)
    first = body["value"][0]
    assert first["@odata.etag"].startswith('W/"') and "accountid" in first
    assert first["prm_partnertier@OData.Community.Display.V1.FormattedValue"] in (
        "Registered", "Silver", "Gold", "Platinum")  # fmt: skip
    assert first["_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "systemuser"
    assert first["_ownerid_value@OData.Community.Display.V1.FormattedValue"]


def test_top_without_a_page_size_and_no_skip(api) -> None:
    assert len(api.get("contacts?$select=fullname&$top=7").json()["value"]) == 7
    refused = api.get("contacts?$skip=10")
    assert refused.status_code == 400 and "$skip" in refused.json()["error"]["message"]


def test_next_links_are_absolute_and_keep_their_place_while_rows_change(box, api) -> None:
    prefer = "odata.maxpagesize=40"
    first = api.get("contacts?$select=fullname&$orderby=fullname asc", prefer=prefer).json()
    link = first["@odata.nextLink"]
    assert link.startswith(f"{box.base_url}/api/data/v9.2/contacts?")
    assert "$skiptoken" in parse_qs(urlsplit(link).query)
    seen = [row["contactid"] for row in first["value"]]
    box.update("contact", seen[0], {"lastname": "Zz-moved-to-the-end"})
    rest, bodies = every_page(api, link, prefer)
    ids = seen + [row["contactid"] for row in rest]
    assert len(ids) == len(set(ids)) and set(box.ids("contact")) - set(ids) == set()
    assert all(len(b["value"]) <= 40 for b in bodies)


def test_page_size_is_capped_at_5000_and_top_ignored_with_it(api) -> None:
    answer = api.get("opportunities?$select=name&$top=3", prefer="odata.maxpagesize=20000")
    assert len(answer.json()["value"]) == 500
    assert "odata.maxpagesize=5000" in answer.headers["Preference-Applied"]


# --- change tracking ------------------------------------------------------------------------


def test_change_tracking_deltas_tombstones_and_expiry(box, api) -> None:
    prefer = "odata.track-changes,odata.maxpagesize=100"
    rows, bodies = every_page(api, "leads?$select=fullname,statuscode", prefer)
    assert len(rows) == box.count("lead") and len(bodies) == 2
    assert "@odata.deltaLink" not in bodies[0] and "@odata.deltaLink" in bodies[-1]
    delta = bodies[-1]["@odata.deltaLink"]
    assert "$deltatoken=" in delta and delta.startswith(box.base_url)
    changed, deleted = box.ids("lead")[:2]
    box.update("lead", changed, {"firstname": "Delta"})
    created = box.create("lead", {"lastname": "Fleeting"})
    box.delete("lead", created)
    box.delete("lead", deleted)
    body = api.get(delta, prefer="odata.track-changes").json()
    assert body["@odata.context"].endswith("/$delta")
    values = body["value"]
    assert [v["leadid"] for v in values if "leadid" in v] == [changed]
    assert values[0]["fullname"].startswith("Delta ")
    tombstones = [v for v in values if v.get("reason") == "deleted"]
    assert {t["id"] for t in tombstones} == {created, deleted}
    assert all(t["@odata.context"].endswith("/$deletedEntity") for t in tombstones)
    quiet = api.get(body["@odata.deltaLink"], prefer="odata.track-changes").json()
    assert quiet["value"] == []
    box.advance_clock(8 * 86_400)
    api.token = box.issue_token()
    expired = api.get(quiet["@odata.deltaLink"], prefer="odata.track-changes")
    assert expired.status_code == 400 and expired.json()["error"]["code"] == "0x80044352"


def test_change_tracking_refuses_filters_and_untracked_tables(api) -> None:
    refused = api.get("accounts?$filter=name eq 'x'", prefer="odata.track-changes")
    assert refused.status_code == 400
    assert refused.json()["error"]["message"] == (
        'The "$filter" query parameter isn\'t supported when Change Tracking is enabled.'
    )
    untracked = api.get("systemusers?$select=fullname", prefer="odata.track-changes")
    assert untracked.status_code == 400 and "not enabled" in untracked.json()["error"]["message"]


# --- limits, faults, admin ------------------------------------------------------------------


def test_throttle_bursts_answer_429_with_retry_after(box, api) -> None:
    box.throttle(2, retry_after=7, path_contains="accounts")
    answers = [api.get("accounts?$select=name&$top=1") for _ in range(3)]
    assert [a.status_code for a in answers] == [429, 429, 200]
    assert answers[0].headers["Retry-After"] == "7"
    assert answers[0].json()["error"]["code"] == "0x80072322"
    assert int(answers[2].headers["x-ms-ratelimit-burst-remaining-xrm-requests"]) > 0


def test_the_sliding_window_limit(box, api) -> None:
    box.set_rate_limit(2, window_seconds=60)
    try:
        statuses = [api.get("WhoAmI").status_code for _ in range(3)]
        retry_after = api.get("WhoAmI").headers.get("Retry-After")
    finally:
        box.set_rate_limit(6000)
    assert statuses == [200, 200, 429] and int(str(retry_after)) >= 1


def test_the_admin_path_needs_its_token(box) -> None:
    url = f"{box.base_url}/__sandbox/count"
    refused = requests.post(url, json={"table": "account"}, timeout=10)
    assert refused.status_code == 403
    allowed = requests.post(url, json={"table": "account"}, timeout=10,
                            headers={"X-Sandbox-Admin": box.admin_token})  # fmt: skip
    assert allowed.json() == {"result": box.count("account")}


def test_the_dataset_in_dataverse_shape(box) -> None:
    partner = box.get("account", box.record_id("partner-0"))
    assert partner is not None and partner["prm_ispartner"] is True
    opportunities = [box.get("opportunity", i) for i in box.ids("opportunity")]
    attributed = [o for o in opportunities if o and o["_prm_partneraccountid_value"]]
    assert 0.6 < len(attributed) / len(opportunities) < 0.95
    partner_users = [u for u in map(lambda i: box.get("systemuser", i), box.ids("systemuser"))
                     if u and u["_prm_partneraccountid_value"]]  # fmt: skip
    assert len(partner_users) == 10 and all(u["prm_portalrole"] == 100000000 for u in partner_users)
    registrations: Any = box.get("prm_dealregistration", box.ids("prm_dealregistration")[0])
    assert registrations["prm_status"] in ("Submitted", "Approved", "Rejected", "Expired")
