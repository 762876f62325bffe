"""Writes on the Dataverse sandbox over HTTP: create, upsert, etags, delete, binds, payload
errors and ``$batch`` with change sets."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.dynamics import batch
from sandboxes.dynamics.sandbox import DynamicsSandbox
from tests.adapters.dynamics.fixtures import WebApi


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DynamicsSandbox]:
    path = Path(tmp_path_factory.mktemp("dv-writes")) / "org.db"
    with DynamicsSandbox(path, seed=3, size="tiny") as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def api(box: DynamicsSandbox) -> WebApi:
    return WebApi(box)


def new_id() -> str:
    return str(uuid.uuid4())


def test_create_answers_204_with_the_entity_id(box, api) -> None:
    answer = api.request("POST", "accounts", json={"name": "Fourth Coffee", "revenue": 5.0})
    assert answer.status_code == 204 and not answer.content
    entity_id = answer.headers["OData-EntityId"]
    assert entity_id.startswith(f"{box.base_url}/api/data/v9.2/accounts(")
    record = box.get("account", entity_id.rsplit("(", 1)[1].rstrip(")"))
    assert record is not None and record["name"] == "Fourth Coffee"
    assert record["_ownerid_value"] and record["statecode"] == 0


def test_return_representation_gives_201_and_the_selected_row(api) -> None:
    answer = api.request("POST", "contacts?$select=fullname,createdon",
                         json={"firstname": "Yvonne", "lastname": "McKay"},
                         prefer="return=representation")  # fmt: skip
    body = answer.json()
    assert answer.status_code == 201
    assert body["fullname"] == "Yvonne McKay" and body["createdon"].endswith("Z")
    assert body["@odata.etag"] == answer.headers["ETag"]


def test_patch_is_an_upsert_with_conditions(box, api) -> None:
    record_id = new_id()
    created = api.request("PATCH", f"accounts({record_id})", json={"name": "Upserted"})
    assert created.status_code == 204 and box.get("account", record_id) is not None
    again = api.request("PATCH", f"accounts({record_id})", json={"name": "Again"},
                        headers={"If-None-Match": "*"})  # fmt: skip
    assert again.status_code == 412 and "already exists" in again.json()["error"]["message"]
    missing = api.request("PATCH", f"accounts({new_id()})", json={"name": "x"},
                          headers={"If-Match": "*"})  # fmt: skip
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "0x80040217"


def test_if_match_etags_guard_updates_and_deletes(box, api) -> None:
    record_id = box.ids("account")[0]
    etag = api.get(f"accounts({record_id})?$select=name").json()["@odata.etag"]
    assert api.get(f"accounts({record_id})?$select=name",
                   headers={"If-None-Match": etag}).status_code == 304  # fmt: skip
    fresh = api.request("PATCH", f"accounts({record_id})", json={"telephone1": "1"},
                        headers={"If-Match": etag})  # fmt: skip
    assert fresh.status_code == 204
    stale = api.request("PATCH", f"accounts({record_id})", json={"telephone1": "2"},
                        headers={"If-Match": etag})  # fmt: skip
    assert stale.status_code == 412 and stale.json()["error"]["message"].startswith(
        "The version of the existing record doesn't match"
    )
    assert api.request("DELETE", f"accounts({record_id})",
                       headers={"If-Match": etag}).status_code == 412  # fmt: skip
    assert box.get("account", record_id)["telephone1"] == "1"  # type: ignore[index]


def test_delete_then_404(box, api) -> None:
    record_id = box.create("lead", {"lastname": "Gone"})
    assert api.request("DELETE", f"leads({record_id})").status_code == 204
    missing = api.request("DELETE", f"leads({record_id})")
    assert missing.status_code == 404 and record_id in missing.json()["error"]["message"]


def test_lookups_are_written_through_binds(box, api) -> None:
    account, contact = box.ids("account")[1], box.ids("contact")[1]
    answer = api.request("POST", "opportunities", json={
        "name": "Bound", "parentaccountid@odata.bind": f"/accounts({account})",
        "customerid_contact@odata.bind": f"contacts({contact})",
        "prm_PartnerAccountId@odata.bind": f"{box.base_url}/api/data/v9.2/accounts({account})",
    })  # fmt: skip
    assert answer.status_code == 204, answer.text
    record_id = answer.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    record = box.get("opportunity", record_id)
    assert record is not None and record["customeridtype"] == "contact"
    assert record["_prm_partneraccountid_value"] == account
    cleared = api.request("DELETE", f"opportunities({record_id})/parentaccountid/$ref")
    assert cleared.status_code == 204
    assert box.get("opportunity", record_id)["_parentaccountid_value"] is None  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        ({"_parentaccountid_value": "x"}, 400, "0x80048d19", "Use Navigation properties"),
        ({"nope": 1}, 400, "0x80060888", "The property 'nope' does not exist"),
        ({"customerid@odata.bind": "/accounts(x)"}, 400, "0x80060888", "undeclared property"),
        ({"parentaccountid@odata.bind": "/contacts(6f1d2c9e-3b7a-4c55-9e2d-7d1f0c3a9b10)"},
         400, "0x80060888", "does not match"),
        ({"parentaccountid@odata.bind": "/accounts(6f1d2c9e-3b7a-4c55-9e2d-7d1f0c3a9b10)"},
         404, "0x80040217", "Does Not Exist"),
        ({"name": "x" * 301}, 400, "0x80044331", "maximum allowed length of '300'"),
        ({"closeprobability": 101}, 400, "0x80044331", "outside the valid range"),
        ({"salesstage": 9}, 400, "0x80044331", "outside the valid range"),
        ({"estimatedvalue": "lots"}, 400, "0x80060891", "Cannot convert the literal"),
    ],
)  # fmt: skip
def test_payload_errors(api, body, status, code, message) -> None:
    answer = api.request("POST", "opportunities", json={"name": "Checked", **body})
    error = answer.json()["error"]
    assert (answer.status_code, error["code"]) == (status, code)
    assert message in error["message"]


def test_a_batch_runs_each_request_and_continues_on_error(box, api) -> None:
    good = new_id()
    content_type, body = batch.build([
        batch.BatchRequest("PATCH", f"/api/data/v9.2/accounts({good})", {}, {"name": "In batch"}),
        batch.BatchRequest("POST", "/api/data/v9.2/accounts", {}, {"nope": 1}),
        batch.BatchRequest("GET", f"/api/data/v9.2/accounts({good})?$select=name"),
    ])  # fmt: skip
    answer = api.request("POST", "$batch", data=body, headers={"Content-Type": content_type},
                         prefer="odata.continue-on-error")  # fmt: skip
    assert answer.status_code == 200
    answers = batch.parse(answer.headers["Content-Type"], answer.content)
    assert [a.status for a in answers] == [204, 400, 200]
    assert answers[2].json()["name"] == "In batch"
    stopped = api.request("POST", "$batch", data=body, headers={"Content-Type": content_type})
    assert stopped.status_code == 400
    assert [a.status for a in batch.parse(stopped.headers["Content-Type"], stopped.content)] == [
        204, 400]  # fmt: skip


def test_a_change_set_is_atomic_and_can_refer_to_earlier_requests(box, api) -> None:
    before = box.count("account")
    name = f"Changeset {uuid.uuid4().hex[:6]}"
    bind = '"parentcustomerid_account@odata.bind": "$1"'
    parts = [
        ("POST", "accounts", f'{{"name": "{name}"}}', "1"),
        ("POST", "contacts", f'{{"lastname": "Ref", {bind}}}', "2"),
    ]
    answer = post_batch(api, changeset(parts))
    statuses = [a.status for a in batch.parse(answer.headers["Content-Type"], answer.content)]
    assert statuses == [204, 204] and box.count("account") == before + 1
    broken = [
        ("POST", "accounts", '{"name": "Rolled back"}', "1"),
        ("POST", "accounts", '{"nope": 1}', "2"),
    ]
    answer = post_batch(api, changeset(broken))
    assert answer.status_code == 400 and box.count("account") == before + 1


def post_batch(api: WebApi, body: bytes):
    return api.request(
        "POST", "$batch", data=body, headers={"Content-Type": 'multipart/mixed; boundary="batch_x"'}
    )


def changeset(parts: list[tuple[str, str, str, str]]) -> bytes:
    inner = "".join(
        "--changeset_y\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary"
        f"\r\nContent-ID: {content_id}\r\n\r\n{method} /api/data/v9.2/{path} HTTP/1.1\r\n"
        f"Content-Type: application/json\r\n\r\n{body}\r\n"
        for method, path, body, content_id in parts
    )
    return (
        "--batch_x\r\nContent-Type: multipart/mixed; boundary=changeset_y\r\n\r\n"
        f"{inner}--changeset_y--\r\n--batch_x--\r\n"
    ).encode()
