"""Request-URL limits: each sandbox refuses what its CRM refuses, and every read and fetch of an
object too wide for one URL still works, over real HTTP with each CRM's SDK.

Salesforce refuses a URI over 16,384 bytes (414) and a URI plus headers over that (431), and a
SOQL statement over 100,000 characters; HubSpot answers 414 from about 16 KB of URL;
Dataverse refuses a URL over 32,768 characters (414), a path segment over 260 (400), and
inside ``$batch`` a URL over 65,536 (414).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from adapters.hubspot import client as hubspot_client
from adapters.salesforce import fetch as salesforce_fetch
from adapters.salesforce import soql as salesforce_soql
from mirror.errors import CrmError
from sandboxes.dynamics.sandbox import DynamicsSandbox
from sandboxes.hubspot.sandbox import HubSpotSandbox
from sandboxes.salesforce.sandbox import SalesforceSandbox
from tests.adapters.conftest import sandbox_adapter
from tests.adapters.contract import read_all
from tests.adapters.dynamics.fixtures import WebApi
from tests.adapters.dynamics.fixtures import sandbox_adapter as dynamics_adapter
from tests.adapters.hubspot.fixtures import hubspot_adapter, unthrottled
from tests.adapters.wide_fixtures import (
    DYNAMICS_WIDTH,
    HUBSPOT_WIDTH,
    SALESFORCE_WIDTH,
    dynamics_column,
    hubspot_property,
    salesforce_field,
    wide_values,
    widen_dynamics,
    widen_hubspot,
    widen_salesforce,
)

JETTY_414 = "<h1>Bad Message 414</h1><pre>reason: URI Too Long</pre>"
JETTY_431 = "<h1>Bad Message 431</h1><pre>reason: Request Header Fields Too Large</pre>"


# --- Salesforce -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SalesforceSandbox]:
    """A tiny Salesforce sandbox whose Opportunity has 450 more fields, some of them set."""
    path = Path(tmp_path_factory.mktemp("sf-wide")) / "sf.db"
    with SalesforceSandbox(path, size="tiny") as sandbox:
        widen_salesforce(sandbox, "Opportunity")
        for record_id in sandbox.ids("Opportunity")[:10]:
            values = wide_values(salesforce_field, record_id[-6:], 37, SALESFORCE_WIDTH)
            sandbox.update("Opportunity", record_id, values)
        yield sandbox


def soql_get(sandbox: SalesforceSandbox, soql: str, **headers: str) -> requests.Response:
    """A raw REST query with a valid session, through the adapter's own session."""
    client = sandbox_adapter(sandbox).connection.client()
    sent = {"Authorization": f"Bearer {client.session_id}", **headers}
    return client.session.get(f"{client.base_url}query/", params={"q": soql}, headers=sent)


def padded_soql(target_bytes: int) -> str:
    """A valid query whose encoded URI is about ``target_bytes`` long."""
    head = "SELECT Id FROM Account WHERE Name != '"
    return head + "x" * (target_bytes - 60 - len(head)) + "'"


def test_salesforce_refuses_a_uri_over_16384_bytes_with_414(sf: SalesforceSandbox) -> None:
    used = sf.org.budget.used
    answer = soql_get(sf, padded_soql(20_000))
    assert answer.status_code == 414
    assert answer.text == JETTY_414 and answer.headers["Content-Type"].startswith("text/html")
    assert sf.org.budget.used == used, "the front end refuses before the API counts a request"
    assert soql_get(sf, padded_soql(15_000)).status_code == 200


def test_salesforce_refuses_uri_and_headers_over_16384_bytes_with_431(sf) -> None:
    fits = soql_get(sf, padded_soql(14_000), **{"X-Padding": "p" * 1_000})
    assert fits.status_code == 200
    answer = soql_get(sf, padded_soql(14_000), **{"X-Padding": "p" * 3_000})
    assert answer.status_code == 431 and answer.text == JETTY_431


def test_salesforce_refuses_soql_over_100000_characters(sf: SalesforceSandbox) -> None:
    connection = sandbox_adapter(sf).connection
    with pytest.raises(CrmError) as caught:
        connection.query(padded_soql(100_100), action="querying")
    assert caught.value.code == "MALFORMED_QUERY"
    assert "can not be longer than 100000 characters" in str(caught.value)
    answer = connection.query(padded_soql(99_000), action="querying")
    assert answer["done"] is True


def test_a_query_too_long_for_a_uri_goes_through_composite_as_one_call(sf) -> None:
    connection = sandbox_adapter(sf).connection
    connection.client()
    soql = f"SELECT Id FROM Account WHERE Name IN ({', '.join(repr(str(n)) for n in range(3000))})"
    sf.reset_calls()
    answer = connection.query(soql, action="querying")
    assert answer["done"] is True and answer["totalSize"] == 0
    assert sf.calls == [("POST", "/services/data/v59.0/composite")]


def test_a_414_despite_the_budget_is_retried_through_composite(sf, monkeypatch) -> None:
    monkeypatch.setattr(salesforce_soql, "DIRECT_URL_BUDGET", 1_000_000)
    connection = sandbox_adapter(sf).connection
    connection.client()
    sf.reset_calls()
    sent = connection.log.count
    answer = connection.query(padded_soql(20_000), action="querying")
    assert answer["totalSize"] == sf.count("Account")
    assert connection.log.count == sent + 2, "the refused GET, then the Composite POST"
    assert sf.calls == [("POST", "/services/data/v59.0/composite")]


def test_a_wide_salesforce_object_is_read_and_fetched_whole(sf: SalesforceSandbox) -> None:
    adapter = sandbox_adapter(sf)
    spec = adapter.describe("Opportunity")
    assert len(spec.field_names) > SALESFORCE_WIDTH
    sf.reset_calls()
    replica, _ = read_all(adapter, spec, None)
    assert set(replica.rows) == set(sf.ids("Opportunity"))
    assert sf.call_count("/composite") >= 1
    fetched = {r["Id"]: r for r in adapter.fetch(spec, sf.ids("Opportunity"))}
    assert fetched == replica.rows
    for record_id in sf.ids("Opportunity")[:10]:
        stored = sf.get("Opportunity", record_id)
        assert stored is not None
        assert {n: fetched[record_id][n] for n in stored if n.startswith("Partner_")} == {
            n: v for n, v in stored.items() if n.startswith("Partner_")
        }


def test_fields_beyond_the_statement_limit_are_fetched_in_parts(sf, monkeypatch) -> None:
    adapter = sandbox_adapter(sf)
    spec = adapter.describe("Opportunity")
    ids = sf.ids("Opportunity")
    whole = {r["Id"]: r for r in adapter.fetch(spec, ids)}
    monkeypatch.setattr(salesforce_fetch, "SOQL_LIMIT", 6_000)
    sf.reset_calls()
    parts = {r["Id"]: r for r in adapter.fetch(spec, ids)}
    assert parts == whole
    field_parts = len(salesforce_fetch.fetch_shape(spec).plan(ids, spec.field_names, ["Id"]))
    assert sf.call_count("/query") == field_parts > 2


# --- HubSpot -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubSpotSandbox]:
    """A tiny HubSpot sandbox whose companies have 400 more properties, some of them set."""
    path = Path(tmp_path_factory.mktemp("hs-wide")) / "hs.db"
    with HubSpotSandbox(path, size="tiny") as sandbox:
        unthrottled(sandbox)
        widen_hubspot(sandbox, "companies")
        missing = 120 - sandbox.count("companies")
        sandbox.create_many("companies", [{"name": f"Filler {n}"} for n in range(missing)])
        for record_id in sandbox.ids("companies")[:10]:
            values = wide_values(hubspot_property, record_id, 29, HUBSPOT_WIDTH)
            sandbox.update("companies", record_id, values)
        yield sandbox


def test_hubspot_refuses_a_url_over_16_kb_with_414(hs: HubSpotSandbox) -> None:
    url = f"{hs.base_url}/crm/v3/objects/companies"
    headers = {"Authorization": f"Bearer {hs.access_token}"}
    names = [hubspot_property(n) for n in range(HUBSPOT_WIDTH)]
    answer = requests.get(url, params={"properties": names}, headers=headers, timeout=30)
    assert len(answer.request.url or "") > 16_384
    assert answer.status_code == 414 and "414 Request-URI Too Large" in answer.text
    answer = requests.get(url, params={"properties": names[:300]}, headers=headers, timeout=30)
    assert answer.status_code == 200


def test_a_wide_hubspot_object_is_listed_through_batch_reads(hs: HubSpotSandbox) -> None:
    adapter = hubspot_adapter(hs, page_size=50)
    spec = adapter.describe("companies")
    hs.reset_calls()
    replica, pages = read_all(adapter, spec, None)
    assert set(replica.rows) == set(hs.ids("companies"))
    assert len(pages) >= 3 and hs.call_count("/companies/batch/read") == len(pages)
    fetched = {r[spec.key]: r for r in adapter.fetch(spec, hs.ids("companies"))}
    assert fetched == replica.rows
    for record_id in hs.ids("companies")[:10]:
        stored = hs.get("companies", record_id) or {}
        wide = {n: v for n, v in stored.items() if n.startswith("partner_") and v}
        assert wide and {n: fetched[record_id][n] for n in wide} == wide


def test_a_hubspot_414_despite_the_budget_falls_back_on_batch_reads(hs, monkeypatch) -> None:
    monkeypatch.setattr(hubspot_client, "DIRECT_URL_BUDGET", 1_000_000)
    adapter = hubspot_adapter(hs, page_size=50)
    spec = adapter.describe("companies")
    sent = adapter.api_calls()
    hs.reset_calls()
    replica, pages = read_all(adapter, spec, None)
    assert set(replica.rows) == set(hs.ids("companies"))
    assert hs.call_count("/companies/batch/read") == len(pages)
    answered = len(hs.calls)
    assert adapter.api_calls() - sent == answered + len(pages), "one refused GET a page"


# --- Dynamics 365 --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DynamicsSandbox]:
    """A tiny Dataverse sandbox whose account table has 800 more columns, some of them set."""
    path = Path(tmp_path_factory.mktemp("dv-wide")) / "dv.db"
    with DynamicsSandbox(path, size="tiny") as sandbox:
        widen_dynamics(sandbox, "account")
        for record_id in sandbox.ids("account")[:10]:
            values = wide_values(dynamics_column, record_id[:6], 53, DYNAMICS_WIDTH)
            sandbox.update("account", record_id, values)
        yield sandbox


HTTP_SYS_414 = (
    "<h2>Request URL Too Long</h2>\r\n<hr><p>HTTP Error 414. The request URL is too long."
)


def api_calls(sandbox: DynamicsSandbox) -> list[tuple[str, str]]:
    """The Web API requests the sandbox answered (token requests left out)."""
    return [(verb, path) for verb, path in sandbox.calls if path.startswith("/api/data")]


def test_dataverse_refuses_a_url_over_32768_characters_with_414(dv: DynamicsSandbox) -> None:
    api = WebApi(dv)
    columns = ",".join(dynamics_column(n) for n in range(DYNAMICS_WIDTH))
    answer = api.get(f"accounts?$select={columns}")
    assert len(answer.request.url or "") > 32_768
    assert answer.status_code == 414 and HTTP_SYS_414 in answer.text
    assert api.get(f"accounts?$select={columns[:30_000].rpartition(',')[0]}").status_code == 200


def test_dataverse_refuses_a_path_segment_over_260_characters(dv: DynamicsSandbox) -> None:
    answer = WebApi(dv).get(f"accounts(name='{'n' * 260}')")
    assert answer.status_code == 400 and "Bad Request - Invalid URL" in answer.text


def test_dataverse_takes_twice_as_long_a_url_inside_batch(dv: DynamicsSandbox) -> None:
    adapter = dynamics_adapter(dv)
    connection = adapter.connection
    columns = [dynamics_column(n) for n in range(DYNAMICS_WIDTH)]
    dv.reset_calls()
    body = connection.get_json(f"accounts?$select={','.join(columns)}", action="reading")
    assert len(body["value"]) == dv.count("account")
    assert api_calls(dv) == [("POST", "/api/data/v9.2/$batch")]
    too_long = f"accounts?$select={','.join(columns * 2)}&$filter={'x' * 1_000}"
    with pytest.raises(Exception, match="65,536"):
        connection.get_json(too_long, action="reading")


def test_a_batched_url_over_65536_characters_is_refused_inside_the_batch(dv) -> None:
    from adapters.dynamics import batch

    api = WebApi(dv)
    url = f"{dv.base_url}/api/data/v9.2/accounts?$select={'a,' * 33_000}name"
    content_type, payload = batch.build([batch.BatchRequest("GET", url)])
    answer = api.request("POST", "$batch", data=payload, headers={"Content-Type": content_type},
                         prefer="odata.continue-on-error")  # fmt: skip
    [inner] = batch.parse(answer.headers["Content-Type"], answer.content)
    assert answer.status_code == 200 and inner.status == 414
    assert HTTP_SYS_414 in inner.body.decode()


@pytest.mark.parametrize("tracking", [True, False])
def test_a_wide_dataverse_table_is_read_and_fetched_whole(dv, tracking: bool) -> None:
    dv.set_change_tracking("account", tracking)
    try:
        adapter = dynamics_adapter(dv, page_size=20)
        spec = adapter.describe("account")
        assert len(spec.field_names) > DYNAMICS_WIDTH
        dv.reset_calls()
        replica, pages = read_all(adapter, spec, None)
        assert set(replica.rows) == set(dv.ids("account")) and len(pages) >= 2
        assert {call for call in api_calls(dv)} == {("POST", "/api/data/v9.2/$batch")}
        fetched = {r[spec.key]: r for r in adapter.fetch(spec, dv.ids("account"))}
        assert fetched == replica.rows
        for record_id in dv.ids("account")[:10]:
            stored = dv.get("account", record_id) or {}
            wide = {n: v for n, v in stored.items() if n.startswith("prm_partner") and v}
            assert wide and {n: fetched[record_id][n] for n in wide} == wide
    finally:
        dv.set_change_tracking("account", True)


def test_errors_inside_the_batch_are_retried_and_mapped_like_direct_ones(dv) -> None:
    adapter = dynamics_adapter(dv, page_size=20)
    spec = adapter.describe("account")
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        dv.set_rate_limit(1_000_000)

    adapter.connection.sleep = wait
    dv.set_rate_limit(1, window_seconds=1.0)
    try:
        replica, pages = read_all(adapter, spec, None)
    finally:
        dv.set_rate_limit(1_000_000)
    assert waits and set(replica.rows) == set(dv.ids("account"))
    dv.expire_delta_tokens()
    resynced, later = read_all(adapter, spec, pages[-1].checkpoint)
    assert later[0].needs_sweep and set(resynced.rows) == set(dv.ids("account"))
