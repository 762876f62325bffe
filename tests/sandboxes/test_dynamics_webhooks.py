"""Webhooks on the Dataverse sandbox over HTTP: registering ``serviceendpoints`` and
``sdkmessageprocessingsteps`` through the Web API (and what it refuses), and the posts: their
headers, the ``RemoteExecutionContext``, filtering attributes, disabled steps, change sets,
the admin path and registrations kept across a restart."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from sandboxes.dynamics.sandbox import DynamicsSandbox
from sandboxes.dynamics.webhook_registry import filter_id, message_id
from sandboxes.testing.admin import AdminClient
from tests.adapters.dynamics.fixtures import WebApi
from tests.adapters.dynamics.receiver import Receiver
from tests.sandboxes.test_dynamics_sandbox_writes import changeset, post_batch

KEY = "sandbox-webhook-key-0123456789"


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DynamicsSandbox]:
    path = Path(tmp_path_factory.mktemp("dv-webhooks")) / "org.db"
    with DynamicsSandbox(path, seed=5, size="tiny") as sandbox:
        yield sandbox


@pytest.fixture()
def api(box: DynamicsSandbox) -> WebApi:
    return WebApi(box)


@pytest.fixture()
def receiver(box: DynamicsSandbox) -> Iterator[Receiver]:
    found = Receiver(None)
    box.set_webhook_retries([0.05], timeout=10)
    yield found
    box.unregister_webhooks()
    box.clear_faults()
    assert box.wait_for_webhooks(10)
    found.close()


def created_id(answer: Any) -> str:
    return str(answer.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")"))


def endpoint(api: WebApi, target: str, **values: Any) -> Any:
    body = {"name": f"hook {uuid.uuid4().hex[:6]}", "contract": 8, "url": target, "authtype": 4,
            "authvalue": KEY, **values}  # fmt: skip
    return api.request("POST", "serviceendpoints", json=body)


def step(api: WebApi, endpoint_id: str, message: str, table: str, **values: Any) -> Any:
    body = {"name": f"{message} of {table}", "stage": 40, "mode": 1, "rank": 1,
            "sdkmessageid@odata.bind": f"/sdkmessages({message_id(message)})",
            "sdkmessagefilterid@odata.bind": f"/sdkmessagefilters({filter_id(message, table)})",
            "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({endpoint_id})",
            **values}  # fmt: skip
    return api.request("POST", "sdkmessageprocessingsteps", json=body)


def contexts(receiver: Receiver, count: int) -> list[dict[str, Any]]:
    arrived = receiver.wait_for(count)
    assert len(arrived) >= count
    return [orjson.loads(d.body) for d in arrived]


def test_registration_through_the_web_api(api: WebApi, receiver: Receiver) -> None:
    messages = api.get("sdkmessages?$filter=name eq 'Update'").json()["value"]
    assert [m["sdkmessageid"] for m in messages] == [message_id("Update")]
    filters = api.get(
        f"sdkmessagefilters?$filter=primaryobjecttypecode eq 'account' and "
        f"_sdkmessageid_value eq {message_id('Update')}"
    ).json()["value"]
    assert [f["sdkmessagefilterid"] for f in filters] == [filter_id("Update", "account")]
    answer = endpoint(api, receiver.url)
    assert answer.status_code == 204
    endpoint_id = created_id(answer)
    row = api.get(f"serviceendpoints({endpoint_id})").json()
    assert (row["contract"], row["authtype"], row["isauthvalueset"]) == (8, 4, True)
    assert "authvalue" not in row
    answer = step(api, endpoint_id, "Update", "account")
    assert answer.status_code == 204
    step_id = created_id(answer)
    listed = api.get(f"sdkmessageprocessingsteps?$filter=_eventhandler_value eq {endpoint_id}")
    assert [s["sdkmessageprocessingstepid"] for s in listed.json()["value"]] == [step_id]
    refused = api.request("DELETE", f"serviceendpoints({endpoint_id})")
    assert refused.status_code == 400 and "Delete the steps first" in refused.text
    assert api.request("DELETE", f"sdkmessageprocessingsteps({step_id})").status_code == 204
    assert api.request("DELETE", f"serviceendpoints({endpoint_id})").status_code == 204


@pytest.mark.parametrize(
    ("values", "status", "words"),
    [
        ({"contract": 1}, 501, "contract 1"),
        ({"authtype": 2}, 400, "authtype 4"),
        ({"url": "not a url"}, 400, "absolute http"),
        ({"authtype": 5, "authvalue": "plain"}, 400, "<settings>"),
        ({"saskey": "x"}, 400, "does not exist"),
    ],
)
def test_endpoints_dataverse_or_the_sandbox_refuses(
    api: WebApi, receiver: Receiver, values: dict[str, Any], status: int, words: str
) -> None:
    answer = endpoint(api, receiver.url, **values)
    assert answer.status_code == status
    assert words in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    ("values", "status", "words"),
    [
        ({"stage": 20}, 400, "PostOperation"),
        ({"stage": 20, "mode": 0}, 501, "stage 20"),
        ({"plugintypeid@odata.bind": "/plugintypes(6d81597f-0f9f-e711-8122-000d3aa2331c)"}, 501,
         "plugintypeid"),
        ({"sdkmessagefilterid@odata.bind": f"/sdkmessagefilters({filter_id('Create', 'account')})"},
         400, "does not belong"),
        ({"configuration": "x"}, 400, "configuration"),
    ],
)  # fmt: skip
def test_steps_dataverse_or_the_sandbox_refuses(
    api: WebApi, receiver: Receiver, values: dict[str, Any], status: int, words: str
) -> None:
    endpoint_id = created_id(endpoint(api, receiver.url))
    answer = step(api, endpoint_id, "Update", "account", **values)
    assert answer.status_code == status
    assert words in answer.json()["error"]["message"]


def test_the_post_carries_the_documented_headers_and_context(
    box: DynamicsSandbox, api: WebApi, receiver: Receiver
) -> None:
    endpoint_id = created_id(endpoint(api, receiver.url))
    step_id = created_id(step(api, endpoint_id, "Create", "account"))
    created = created_id(api.request("POST", "accounts", json={"name": "Headers", "revenue": 7}))
    (context,) = contexts(receiver, 1)
    delivery = receiver.deliveries[0]
    assert delivery.path == f"/dataverse/hook?code={KEY}"
    headers = {k.lower(): v for k, v in delivery.headers.items()}
    assert headers["content-type"] == "application/json"
    assert headers["x-ms-dynamics-entity-name"] == "account"
    assert headers["x-ms-dynamics-request-name"] == "Create"
    assert headers["x-ms-dynamics-organization"] == f"127.0.0.1:{box.port}"
    assert headers["x-ms-correlation-request-id"] == context["CorrelationId"]
    assert uuid.UUID(headers["x-request-id"])
    assert (context["MessageName"], context["Stage"], context["Mode"]) == ("Create", 40, 1)
    assert (context["PrimaryEntityName"], context["PrimaryEntityId"]) == ("account", created)
    assert context["OwningExtension"]["Id"] == step_id
    assert context["OutputParameters"] == [{"key": "id", "value": created}]
    target = context["InputParameters"][0]["value"]
    attributes = {a["key"]: a["value"] for a in target["Attributes"]}
    assert attributes["name"] == "Headers"
    assert attributes["revenue"]["Value"] == 7
    assert attributes["createdon"] == context["OperationCreatedOn"]
    assert context["OperationCreatedOn"] == f"/Date({int(box.now().timestamp()) * 1000})/"


def test_filtering_attributes_and_disabled_steps(
    box: DynamicsSandbox, api: WebApi, receiver: Receiver
) -> None:
    account = box.create("account", {"name": "Filtered"})
    endpoint_id = created_id(endpoint(api, receiver.url))
    step_id = created_id(
        step(api, endpoint_id, "Update", "account", filteringattributes="telephone1")
    )
    box.update("account", account, {"name": "Not posted"})
    box.update("account", account, {"telephone1": "555"})
    assert box.wait_for_webhooks(10)
    assert [c["InputParameters"][0]["value"]["Id"] for c in contexts(receiver, 1)] == [account]
    assert len(receiver.deliveries) == 1
    disabled = api.request("PATCH", f"sdkmessageprocessingsteps({step_id})", json={"statecode": 1})
    assert disabled.status_code == 204
    box.update("account", account, {"telephone1": "556"})
    assert box.wait_for_webhooks(10)
    assert len(receiver.deliveries) == 1


def test_change_sets_post_what_they_commit(
    box: DynamicsSandbox, api: WebApi, receiver: Receiver
) -> None:
    box.register_webhook(receiver.url, ["account"], KEY)
    broken = [
        ("POST", "accounts", '{"name": "Rolled back"}', "1"),
        ("POST", "accounts", '{"nope": 1}', "2"),
    ]
    assert post_batch(api, changeset(broken)).status_code == 400
    assert box.wait_for_webhooks(10)
    assert receiver.deliveries == []
    kept = [
        ("POST", "accounts", '{"name": "Kept one"}', "1"),
        ("POST", "accounts", '{"name": "Kept two"}', "2"),
    ]
    assert post_batch(api, changeset(kept)).status_code == 200
    names = sorted(
        {a["key"]: a["value"] for a in c["InputParameters"][0]["value"]["Attributes"]}["name"]
        for c in contexts(receiver, 2)
    )
    assert names == ["Kept one", "Kept two"]


def test_a_context_over_256_kb_is_cut(box: DynamicsSandbox, receiver: Receiver) -> None:
    box.add_column("account", "prm_bignotes", "Memo", max_length=1_000_000)
    box.register_webhook(receiver.url, ["account"], KEY)
    account = box.create("account", {"name": "Big", "prm_bignotes": "x" * 300_000})
    (context,) = contexts(receiver, 1)
    headers = {k.lower(): v for k, v in receiver.deliveries[0].headers.items()}
    assert headers["x-ms-dynamics-msg-size-exceeded"] == "true"
    assert context["InputParameters"] == [] and context["PrimaryEntityId"] == account


def test_the_admin_path_registers_and_injects(box: DynamicsSandbox, receiver: Receiver) -> None:
    admin = AdminClient(box.base_url, box.admin_token)
    try:
        registered = admin.admin("register_webhook", url=receiver.url, tables=["account"], key=KEY)
        assert len(registered["steps"]) == 3
        admin.admin("duplicate_webhooks", count=1)
        account = box.create("account", {"name": "Admin"})
        assert [orjson.loads(d.body)["PrimaryEntityId"] for d in receiver.wait_for(2)] == [
            account, account,
        ]  # fmt: skip
        assert admin.admin("wait_for_webhooks", timeout=5) is True
        assert [e["outcome"] for e in admin.admin("webhook_log")][-2:] == ["delivered"] * 2
    finally:
        admin.close()


def test_registrations_survive_a_restart(tmp_path: Path) -> None:
    receiver = Receiver(None)
    try:
        with DynamicsSandbox(tmp_path / "org.db", seed=5, size="tiny") as first:
            first.register_webhook(receiver.url, ["account"], KEY)
        with DynamicsSandbox(tmp_path / "org.db", seed=5, size="tiny") as again:
            account = again.create("account", {"name": "After restart"})
            assert [orjson.loads(d.body)["PrimaryEntityId"] for d in receiver.wait_for(1)] == [
                account
            ]
    finally:
        receiver.close()
