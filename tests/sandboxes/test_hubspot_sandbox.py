"""The HubSpot sandbox speaks HubSpot's wire protocol: checked with hubspot-api-client and raw
HTTP for auth, objects, search (operators, limits, the 10,000-result cap), batches, 207s, 409s,
associations v4, properties, schemas, the recycle bin, merges, rate limits and the controls."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests
from hubspot import HubSpot

from sandboxes.dataset.generate import Dataset
from sandboxes.hubspot.sandbox import HubSpotSandbox
from tests.adapters.hubspot.fixtures import unthrottled


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubSpotSandbox]:
    path = tmp_path_factory.mktemp("hubspot-wire") / "hs.db"
    with HubSpotSandbox(path, size="tiny") as sandbox:
        yield unthrottled(sandbox)


@pytest.fixture(scope="module")
def api(box: HubSpotSandbox) -> HubSpot:
    return HubSpot(access_token=box.access_token, host=box.base_url)


class Http:
    """Raw HTTP against the sandbox with the portal's token."""

    def __init__(self, box: HubSpotSandbox) -> None:
        self.box = box
        self.session = requests.Session()
        self.session.trust_env = False

    def __call__(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.box.access_token}", **kwargs.pop("headers", {})}
        return self.session.request(method, self.box.base_url + path, headers=headers, **kwargs)


@pytest.fixture(scope="module")
def http(box: HubSpotSandbox) -> Http:
    return Http(box)


def search(http: Http, object_type: str, body: dict[str, Any]) -> requests.Response:
    return http("POST", f"/crm/v3/objects/{object_type}/search", json=body)


def ids_of(reply: requests.Response) -> list[str]:
    return [r["id"] for r in reply.json()["results"]]


# --- the dataset ------------------------------------------------------------------------------


def test_the_dataset_in_hubspot_shape(box):
    counts = Dataset(7, "tiny").counts
    assert box.count("deals") == counts.opportunities
    assert box.count("companies") >= counts.partners + counts.customers
    assert box.count("deal_registrations") == counts.deal_registrations
    partners = [c for c in box.ids("companies") if box.get("companies", c)["prm_is_partner"]]
    assert len(partners) == counts.partners
    attributed = sum(
        1
        for deal in box.ids("deals")
        if any(a["label"] == "Partner" for a in box.associations("deals", deal, "companies"))
    )
    dataset = Dataset(7, "tiny")
    expected = sum(
        1 for i in range(counts.opportunities) if dataset.opportunity_partner_key(i) is not None
    )
    assert attributed == expected
    contact = box.get("contacts", box.ids("contacts")[0])
    assert contact["associatedcompanyid"] == partners[0]
    assert contact["prm_portal_role"] == "admin"


# --- auth and errors --------------------------------------------------------------------------


def test_a_missing_or_wrong_token_is_401_invalid_authentication(box, http):
    for headers in ({"Authorization": "Bearer pat-na1-wrong"}, {"Authorization": ""}):
        reply = http("GET", "/crm/v3/objects/deals", headers=headers)
        assert reply.status_code == 401
        body = reply.json()
        assert body["status"] == "error" and body["category"] == "INVALID_AUTHENTICATION"
        assert body["correlationId"]


def test_a_rotated_token_stops_working(tmp_path):
    with HubSpotSandbox(tmp_path / "rotate.db", size=0) as sandbox:
        old = sandbox.access_token
        new = sandbox.rotate_token()
        client = Http(sandbox)
        assert client("GET", "/crm/v3/objects/deals").status_code == 200
        reply = client("GET", "/crm/v3/objects/deals", headers={"Authorization": f"Bearer {old}"})
        assert reply.status_code == 401 and new != old


def test_an_unknown_record_is_404_with_hubspots_body(http):
    reply = http("GET", "/crm/v3/objects/deals/999")
    assert reply.status_code == 404
    assert set(reply.json()) >= {"status", "message", "correlationId", "category"}


# --- objects ----------------------------------------------------------------------------------


def test_list_pages_by_after_with_at_most_100(box, http):
    seen: list[str] = []
    after = None
    while True:
        params: dict[str, Any] = {"limit": 100, "properties": "dealname,amount"}
        if after:
            params["after"] = after
        reply = http("GET", "/crm/v3/objects/deals", params=params)
        assert reply.status_code == 200
        body = reply.json()
        seen += [r["id"] for r in body["results"]]
        after = body.get("paging", {}).get("next", {}).get("after")
        if not after:
            break
    assert seen == box.ids("deals")
    assert http("GET", "/crm/v3/objects/deals", params={"limit": 101}).status_code == 400


def test_values_are_strings_and_list_params_repeat_or_comma(api, box):
    page = api.crm.objects.basic_api.get_page(
        "deals", limit=3, properties=["amount", "hs_is_closed", "closedate", "nope"]
    )
    props = page.results[0].properties
    assert isinstance(props["amount"], str) and props["hs_is_closed"] in ("true", "false")
    assert props["closedate"].endswith("Z") and "nope" not in props
    assert page.results[0].created_at.tzinfo is not None


def test_unset_requested_properties_are_null_and_archived_is_parsed_python_style(http, box):
    reply = http("GET", "/crm/v3/objects/deals?limit=1&properties=description&archived=False")
    assert reply.json()["results"][0]["properties"] == {"description": None}


def test_a_merged_id_reads_as_its_survivor(box, http):
    survivor = box.create("companies", {"name": "Keep"})
    loser = box.create("companies", {"name": "Merge me"})
    reply = http(
        "POST",
        "/crm/v3/objects/companies/merge",
        json={"primaryObjectId": survivor, "objectIdToMerge": loser},
    )
    assert reply.status_code == 200
    assert reply.json()["properties"]["hs_merged_object_ids"] == loser
    moved = http("GET", f"/crm/v3/objects/companies/{loser}")
    assert moved.status_code == 200 and moved.json()["id"] == survivor


def test_archive_lists_in_the_recycle_bin_until_restored(box, http):
    victim = box.create("companies", {"name": "Bin me"})
    assert http("DELETE", f"/crm/v3/objects/companies/{victim}").status_code == 204
    assert http("GET", f"/crm/v3/objects/companies/{victim}").status_code == 404
    binned = http("GET", "/crm/v3/objects/companies?archived=true&limit=100").json()["results"]
    entry = next(r for r in binned if r["id"] == victim)
    assert entry["archived"] is True and entry["archivedAt"]
    box.restore("companies", victim)
    assert http("GET", f"/crm/v3/objects/companies/{victim}").status_code == 200
    box.delete("companies", victim)
    box.hard_delete("companies", victim)
    binned = http("GET", "/crm/v3/objects/companies?archived=true&limit=100").json()["results"]
    assert victim not in {r["id"] for r in binned}


# --- batches ----------------------------------------------------------------------------------


def test_batch_read_answers_207_naming_the_missing_ids(api, box):
    reply = api.crm.objects.batch_api.read(
        "deals", {"properties": ["dealname"], "inputs": [{"id": box.ids("deals")[0]}, {"id": "7"}]}
    )
    assert reply.num_errors == 1 and reply.errors[0].context == {"ids": ["7"]}
    assert len(reply.results) == 1


def test_property_history_newest_first_with_its_sources(api, box, http):
    deal = box.ids("deals")[1]
    box.update("deals", deal, {"hs_next_step": "from a person"})
    reply = http(
        "PATCH", f"/crm/v3/objects/deals/{deal}", json={"properties": {"hs_next_step": "api"}}
    )
    written = reply.json()["updatedAt"]
    read = api.crm.objects.batch_api.read(
        "deals",
        {"properties": ["dealname"], "propertiesWithHistory": ["hs_next_step", "dealname", "nope"],
         "inputs": [{"id": deal}]},
    )  # fmt: skip
    history = read.results[0].properties_with_history
    assert set(history) == {"hs_next_step", "dealname"}
    newest, person = history["hs_next_step"][:2]
    assert (newest.value, newest.source_type, newest.source_id) == ("api", "INTEGRATION", "3141592")
    assert newest.timestamp == read.results[0].updated_at
    assert newest.timestamp == datetime.fromisoformat(written.replace("Z", "+00:00"))
    assert (person.value, person.source_type, person.updated_by_user_id) == (
        "from a person",
        "CRM_UI",
        9000001,
    )
    assert person.timestamp < newest.timestamp
    (generated,) = history["dealname"]
    assert (generated.value, generated.source_type) == (
        box.get("deals", deal)["dealname"],
        "IMPORT",
    )
    one = api.crm.deals.basic_api.get_by_id(deal, properties_with_history=["hs_next_step"])
    assert [v.value for v in one.properties_with_history["hs_next_step"]][:2] == [
        "api",
        "from a person",
    ]
    listed = http(
        "GET",
        "/crm/v3/objects/deals",
        params={"limit": 100, "propertiesWithHistory": "hs_next_step"},
    )
    assert len(listed.json()["results"]) == 50  # HubSpot's page limit with history


def test_batches_take_at_most_100_inputs(http):
    inputs = [{"properties": {"name": f"x{n}"}} for n in range(101)]
    reply = http("POST", "/crm/v3/objects/companies/batch/create", json={"inputs": inputs})
    assert reply.status_code == 400 and reply.json()["category"] == "VALIDATION_ERROR"


def test_an_invalid_value_fails_the_whole_create_batch(box, http):
    before = box.count("deals")
    inputs = [
        {"properties": {"dealname": "fine"}},
        {"properties": {"dealname": "bad", "dealstage": "nope", "hs_is_closed": "true"}},
    ]
    reply = http("POST", "/crm/v3/objects/deals/batch/create", json={"inputs": inputs})
    body = reply.json()
    assert reply.status_code == 400 and "Property values were not valid" in body["message"]
    assert {e["code"] for e in body["errors"]} == {"INVALID_OPTION", "READ_ONLY_VALUE"}
    assert box.count("deals") == before


def test_a_duplicate_contact_email_is_409_with_the_existing_id(api, box):
    first = box.ids("contacts")[0]
    email = box.get("contacts", first)["email"]
    with pytest.raises(Exception) as caught:
        api.crm.contacts.basic_api.create({"properties": {"email": email.upper()}})
    assert caught.value.status == 409
    assert f"Existing ID: {first}" in caught.value.body


def test_upsert_creates_then_updates_by_a_unique_property(http, box):
    entry = {"idProperty": "prm_mirror_key", "id": "k-1", "properties": {"name": "Upserted"}}
    body = {"inputs": [{**entry, "objectWriteTraceId": "0"}]}
    first = http("POST", "/crm/v3/objects/companies/batch/upsert", json=body).json()["results"][0]
    again = http("POST", "/crm/v3/objects/companies/batch/upsert", json=body).json()["results"][0]
    assert first["new"] is True and again["new"] is False and first["id"] == again["id"]
    assert first["objectWriteTraceId"] == "0"


def test_batch_update_applies_the_rest_when_some_ids_are_gone(http, box):
    live = box.ids("products")[0]
    inputs = [{"id": live, "properties": {"price": "12.5"}}, {"id": "404", "properties": {}}]
    reply = http("POST", "/crm/v3/objects/products/batch/update", json={"inputs": inputs})
    assert reply.status_code == 207 and reply.json()["errors"][0]["context"]["ids"] == ["404"]
    assert box.get("products", live)["price"] == 12.5


# --- search -----------------------------------------------------------------------------------


def test_search_filters_groups_operators_and_one_sort(box, http):
    deals = [box.get("deals", i) for i in box.ids("deals")]
    big = {str(d["hs_object_id"]) for d in deals if d["amount"] > 200_000 and not d["hs_is_closed"]}
    reply = search(http, "deals", {
        "filterGroups": [{"filters": [
            {"propertyName": "amount", "operator": "GT", "value": "200000"},
            {"propertyName": "hs_is_closed", "operator": "EQ", "value": "false"},
        ]}],
        "sorts": [{"propertyName": "amount", "direction": "DESCENDING"}],
        "properties": ["amount"], "limit": 200,
    })  # fmt: skip
    amounts = [float(r["properties"]["amount"]) for r in reply.json()["results"]]
    assert set(ids_of(reply)) == big and amounts == sorted(amounts, reverse=True)
    stages = search(http, "deals", {"filterGroups": [
        {"filters": [{"propertyName": "dealstage", "operator": "EQ", "value": "CLOSEDWON"}]},
        {"filters": [{"propertyName": "dealstage", "operator": "IN",
                      "values": ["closedlost"]}]},
    ], "properties": ["dealstage"], "limit": 200})  # fmt: skip
    assert {r["properties"]["dealstage"] for r in stages.json()["results"]} == {
        "closedwon",
        "closedlost",
    }
    two_sorts = [{"propertyName": "amount"}, {"propertyName": "createdate"}]
    assert search(http, "deals", {"sorts": two_sorts}).status_code == 400
    assert search(http, "deals", {"limit": 201}).status_code == 400
    six = [{"filters": [{"propertyName": "amount", "operator": "HAS_PROPERTY"}]}] * 6
    assert search(http, "deals", {"filterGroups": six}).status_code == 400


def test_search_on_datetimes_ids_tokens_and_missing_values(box, http):
    contact = box.get("contacts", box.ids("contacts")[3])
    modified = contact["lastmodifieddate"]
    millis = str(int(modified.timestamp() * 1000))
    exact = search(http, "contacts", {"filterGroups": [{"filters": [
        {"propertyName": "lastmodifieddate", "operator": "EQ", "value": millis},
        {"propertyName": "hs_object_id", "operator": "EQ", "value": str(contact["hs_object_id"])},
    ]}]})  # fmt: skip
    assert ids_of(exact) == [str(contact["hs_object_id"])]
    token = contact["email"].split("@")[1].split(".")[0]
    found = search(http, "contacts", {"filterGroups": [{"filters": [
        {"propertyName": "email", "operator": "CONTAINS_TOKEN", "value": f"{token}*"}]}],
        "limit": 200})  # fmt: skip
    assert str(contact["hs_object_id"]) in ids_of(found)
    missing = {"propertyName": "description", "operator": "NOT_HAS_PROPERTY"}
    unset = search(http, "deals", {"filterGroups": [{"filters": [missing]}], "limit": 1})
    assert unset.json()["total"] == box.count("deals")


def test_search_never_finds_archived_records(box, http):
    victim = box.create("products", {"name": "Findable"})
    assert search(http, "products", {"query": "Findable"}).json()["total"] == 1
    box.delete("products", victim)
    assert search(http, "products", {"query": "Findable"}).json()["total"] == 0


def test_paging_a_search_past_10000_results_is_400(box, http):
    box.create_many("line_items", [{"name": f"Bulk {n}", "quantity": 1} for n in range(10_050)])
    body: dict[str, Any] = {
        "filterGroups": [{"filters": [{"propertyName": "name", "operator": "CONTAINS_TOKEN",
                                       "value": "Bulk"}]}],
        "properties": ["name"], "limit": 200,
    }  # fmt: skip
    seen = 0
    after: str | None = None
    while True:
        reply = search(http, "line_items", {**body, "after": after} if after else body)
        if reply.status_code != 200:
            break
        seen += len(reply.json()["results"])
        assert reply.json()["total"] == 10_050
        after = reply.json().get("paging", {}).get("next", {}).get("after")
        assert after, "more results are offered up to the cap"
    assert seen == 10_000 and after == "10000"
    assert reply.status_code == 400 and reply.json()["category"] == "VALIDATION_ERROR"


# --- associations -----------------------------------------------------------------------------


def test_association_labels_and_batch_read_with_207(api, box):
    labels = api.crm.associations.v4.schema.definitions_api.get_all("deals", "companies")
    assert {(t.label, t.category) for t in labels.results} >= {
        ("Partner", "USER_DEFINED"),
        ("Primary", "HUBSPOT_DEFINED"),
        (None, "HUBSPOT_DEFINED"),
    }
    deal = box.ids("deals")[0]
    reply = api.crm.associations.v4.batch_api.get_page(
        "deals", "companies", {"inputs": [{"id": deal}, {"id": "12"}]}
    )
    assert reply.num_errors == 1
    types = {t.type_id for entry in reply.results[0].to for t in entry.association_types}
    assert {5, 341} <= types


def test_association_batch_reads_take_at_most_1000_ids(http):
    inputs = [{"id": str(n)} for n in range(1001)]
    path = "/crm/v4/associations/deals/companies/batch/read"
    assert http("POST", path, json={"inputs": inputs}).status_code == 400


def test_a_per_record_list_pages_past_500(box, http):
    company = box.create("companies", {"name": "Popular"})
    for contact in box.create_many("contacts", [{"firstname": f"Fan {n}"} for n in range(505)]):
        box.associate("contacts", contact, "companies", company)
    path = f"/crm/v4/objects/companies/{company}/associations/contacts"
    first = http("GET", path).json()
    assert len(first["results"]) == 500
    rest = http("GET", path, params={"after": first["paging"]["next"]["after"]}).json()
    assert len(rest["results"]) == 5 and "paging" not in rest


def test_a_label_implies_the_unlabeled_type_and_a_new_primary_replaces_the_old(box, http):
    deal = box.ids("deals")[1]
    before = box.get("deals", deal)["hs_lastmodifieddate"]
    company = box.create("companies", {"name": "New primary"})
    body = {"inputs": [{"from": {"id": deal}, "to": {"id": company},
                        "types": [{"associationCategory": "HUBSPOT_DEFINED",
                                   "associationTypeId": 5}]}]}  # fmt: skip
    reply = http("POST", "/crm/v4/associations/deals/companies/batch/create", json=body)
    assert reply.status_code == 201
    links = box.associations("deals", deal, "companies")
    assert [a["id"] for a in links if a["label"] == "Primary"] == [company]
    assert {a["type_id"] for a in links if a["id"] == company} == {5, 341}
    assert box.get("deals", deal)["hs_lastmodifieddate"] == before


def test_a_contacts_primary_company_is_a_property_change(box):
    contact = box.ids("contacts")[4]
    before = box.get("contacts", contact)["lastmodifieddate"]
    company = box.create("companies", {"name": "Employer"})
    box.associate("contacts", contact, "companies", company, label="Primary")
    after = box.get("contacts", contact)
    assert after["associatedcompanyid"] == company and after["lastmodifieddate"] > before


# --- metadata ---------------------------------------------------------------------------------


def test_properties_list_types_options_and_create(api, box, http):
    props = {p.name: p for p in api.crm.properties.core_api.get_all("deals").results}
    assert props["amount"].type == "number" and props["closedate"].type == "datetime"
    assert {o.value for o in props["dealstage"].options} >= {"closedwon", "closedlost"}
    assert props["hs_is_closed"].calculated and props["prm_mirror_key"].has_unique_value
    body = {"name": "prm_region", "label": "Region", "type": "string", "fieldType": "text",
            "groupName": "dealinformation"}  # fmt: skip
    assert http("POST", "/crm/v3/properties/deals", json=body).status_code == 201
    assert http("POST", "/crm/v3/properties/deals", json=body).status_code == 409
    assert http("GET", "/crm/v3/properties/deals/prm_region").json()["type"] == "string"


def test_custom_object_schemas(api, box):
    [schema] = api.crm.schemas.core_api.get_all().results
    assert schema.name == "deal_registrations" and schema.object_type_id.startswith("2-")
    page = api.crm.objects.basic_api.get_page(schema.object_type_id, limit=1)
    assert page.results[0].id == box.ids("deal_registrations")[0]


# --- rate limits ------------------------------------------------------------------------------


def test_rate_limit_headers_and_429_bodies(box, http):
    reply = http("GET", "/crm/v3/objects/deals?limit=1")
    assert int(reply.headers["X-HubSpot-RateLimit-Max"]) > 0
    assert "X-HubSpot-RateLimit-Daily-Remaining" in reply.headers
    assert "X-HubSpot-RateLimit-Max" not in search(http, "deals", {}).headers
    box.set_rate_limits(burst=2, interval_ms=60_000)
    try:
        statuses = [http("GET", "/crm/v3/objects/deals?limit=1").status_code for _ in range(3)]
        refused = http("GET", "/crm/v3/objects/deals?limit=1")
        assert "Retry-After" not in refused.headers
        box.set_rate_limits(retry_after=2)
        with_hint = http("GET", "/crm/v3/objects/deals?limit=1")
    finally:
        box.set_rate_limits(burst=1_000_000, interval_ms=10_000)
    assert statuses[-1] == 429 and refused.status_code == 429
    body = refused.json()
    assert body["errorType"] == "RATE_LIMIT" and body["policyName"] == "TEN_SECONDLY_ROLLING"
    assert with_hint.headers["Retry-After"] == "2"


def test_the_search_limit_is_separate_and_slower(box, http):
    box.set_rate_limits(search_per_second=2)
    try:
        statuses = [search(http, "products", {}).status_code for _ in range(4)]
        listing = http("GET", "/crm/v3/objects/products?limit=1").status_code
    finally:
        box.set_rate_limits(search_per_second=1_000_000)
    assert statuses.count(429) >= 1 and listing == 200


# --- controls ---------------------------------------------------------------------------------


def test_controls_over_the_admin_path_need_the_admin_token(box):
    session = requests.Session()
    session.trust_env = False
    url = f"{box.base_url}/__sandbox/count"
    assert session.post(url, json={"object_type": "deals"}).status_code == 403
    reply = session.post(
        url, json={"object_type": "deals"}, headers={"X-Sandbox-Admin": box.admin_token}
    )
    assert reply.json()["result"] == box.count("deals")


def test_faults_and_the_call_log(box, http):
    box.fail_next(1, status=502, path_contains="/crm/v3/objects/products")
    assert http("GET", "/crm/v3/objects/products").status_code == 502
    assert http("GET", "/crm/v3/objects/products").status_code == 200
    assert box.call_count("/crm/v3/objects/products", method="GET") >= 2


def test_answers_are_dated_by_the_portal_clock_which_can_stand_still(box, http):
    from email.utils import parsedate_to_datetime

    frozen = box.freeze_clock()
    try:
        box.advance_clock(7200)
        first, second = http("GET", "/crm/v3/objects/deals?limit=1"), box.now()
        assert second == frozen + timedelta(hours=2)
        assert parsedate_to_datetime(first.headers["Date"]) == second.replace(microsecond=0)
        deal = box.ids("deals")[0]
        box.update("deals", deal, {"dealname": "frozen"})
        box.update("deals", deal, {"dealname": "still frozen"})
        stamp = round(box.get("deals", deal)["hs_lastmodifieddate"].timestamp() * 1000)
        assert stamp == round(second.timestamp() * 1000) + 1  # a millisecond of its own each
    finally:
        box.thaw_clock()
    assert box.now() >= second
