"""Bulk API 2.0 query jobs on the Salesforce sandbox, through simple-salesforce's bulk2."""

from __future__ import annotations

import csv
import io

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from sandboxes.salesforce.sandbox import SalesforceSandbox
from tests.sandboxes.sf_fixtures import sandbox, sf

__all__ = ["sandbox", "sf"]


def _jobs_url(sandbox: SalesforceSandbox) -> str:
    return f"{sandbox.base_url}/services/data/v59.0/jobs/query"


def _headers(sf: Salesforce, accept: str = "application/json") -> dict[str, str]:
    return {"Authorization": f"Bearer {sf.session_id}", "Accept": accept}


def test_bulk_query_pages_quoted_csv_with_locators(
    sandbox: SalesforceSandbox, sf: Salesforce
) -> None:
    pages = list(
        sf.bulk2.Contact.query(
            "SELECT Id, LastName, Account.Name FROM Contact", max_records=40, wait=0
        )
    )
    total = sandbox.count("Contact")
    assert len(pages) == -(-total // 40)
    rows = [row for page in pages for row in csv.DictReader(io.StringIO(page))]
    assert len(rows) == total == len({row["Id"] for row in rows})
    assert pages[0].splitlines()[0] == '"Id","LastName","Account.Name"'
    assert all(line.startswith('"') and line.endswith('"') for line in pages[0].splitlines())


def test_bulk_job_states_headers_and_snapshot(sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    created = requests.post(
        _jobs_url(sandbox),
        json={"operation": "query", "query": "SELECT Id, Name FROM Lead", "lineEnding": "LF"},
        headers=_headers(sf, accept="text/csv"),
        timeout=5,
    )
    job = created.json()
    assert (created.status_code, job["state"], job["object"]) == (200, "UploadComplete", "Lead")
    early = requests.get(
        f"{_jobs_url(sandbox)}/{job['id']}/results", headers=_headers(sf), timeout=5
    )
    assert early.status_code == 412
    states = [
        requests.get(f"{_jobs_url(sandbox)}/{job['id']}", headers=_headers(sf), timeout=5).json()
        for _ in range(3)
    ]
    assert [s["state"] for s in states] == ["InProgress", "JobComplete", "JobComplete"]
    assert states[-1]["numberRecordsProcessed"] == sandbox.count("Lead")
    sandbox.create("Lead", {"LastName": "After", "Company": "Late Ltd"})
    first_lead = sandbox.ids("Lead")[0]
    sandbox.update("Lead", first_lead, {"LastName": "Renamed"})
    url = f"{_jobs_url(sandbox)}/{job['id']}/results"
    first = requests.get(url, params={"maxRecords": 5}, headers=_headers(sf), timeout=5)
    assert first.headers["Sforce-NumberOfRecords"] == "5"
    assert first.headers["Content-Type"].startswith("text/csv")
    locator, names = first.headers["Sforce-Locator"], []
    names += [row["Name"] for row in csv.DictReader(io.StringIO(first.text))]
    while locator != "null":
        page = requests.get(
            url, params={"maxRecords": 5, "locator": locator}, headers=_headers(sf), timeout=5
        )
        names += [row["Name"] for row in csv.DictReader(io.StringIO(page.text))]
        locator = page.headers["Sforce-Locator"]
    assert len(names) == states[-1]["numberRecordsProcessed"]
    assert "After" not in names and any(name.endswith("Renamed") for name in names)


def test_bulk_query_all_includes_deleted_rows(sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    deleted = sandbox.ids("Opportunity")[0]
    sandbox.delete("Opportunity", deleted)
    soql = f"SELECT Id, IsDeleted FROM Opportunity WHERE Id = '{deleted}'"
    assert list(sf.bulk2.Opportunity.query(soql, wait=0)) == ['"Id","IsDeleted"\n']
    rows = "".join(sf.bulk2.Opportunity.query_all(soql, wait=0)).splitlines()
    assert rows[1] == f'"{deleted}","true"'


def test_bulk_refuses_compound_fields(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as raised:
        list(sf.bulk2.Account.query("SELECT Id, BillingAddress FROM Account", wait=0))
    assert "compound data not supported" in raised.value.content[0]["message"]


def test_bulk_jobs_can_be_aborted_and_deleted(sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    job = sf.bulk2.Account._client.create_job("query", "SELECT Id FROM Account")
    aborted = sf.bulk2.Account._client.abort_job(job["id"], True)
    assert aborted["state"] == "Aborted"
    listed = requests.get(_jobs_url(sandbox), headers=_headers(sf), timeout=5).json()
    assert [j["id"] for j in listed["records"]] == [job["id"]]
    deleted = requests.delete(f"{_jobs_url(sandbox)}/{job['id']}", headers=_headers(sf), timeout=5)
    assert deleted.status_code == 204
    gone = requests.get(f"{_jobs_url(sandbox)}/{job['id']}", headers=_headers(sf), timeout=5)
    assert gone.status_code == 404
