"""The Dynamics adapter's webhook receiver against the Dataverse sandbox's webhook posts, over
real HTTP: a receiver serving the registered URL calls ``DynamicsAdapter.receive``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import requests

from adapters.dynamics.adapter import DynamicsAdapter
from mirror.adapter import WebhookReceiver
from mirror.errors import StreamSignatureError
from mirror.types import StreamEvent, StreamGap, Write
from sandboxes.dynamics.sandbox import DynamicsSandbox
from tests.adapters.dynamics.fixtures import (  # noqa: F401
    WebApi,
    dynamics_sandbox,
    sandbox_adapter,
    sandbox_settings,
)
from tests.adapters.dynamics.receiver import Receiver

KEY = "k3y-for-the-webhook-0123456789"
QUICK = [0.05, 0.05, 0.05]


@pytest.fixture(scope="module")
def adapter(dynamics_sandbox: DynamicsSandbox) -> DynamicsAdapter:  # noqa: F811
    found = sandbox_adapter(dynamics_sandbox, webhook_key=KEY)
    found.describe("account")
    return found


@pytest.fixture()
def receiver(
    dynamics_sandbox: DynamicsSandbox,  # noqa: F811
    adapter: DynamicsAdapter,
) -> Iterator[Receiver]:
    found = Receiver(adapter.receive)
    dynamics_sandbox.set_webhook_retries(QUICK, timeout=10)
    yield found
    dynamics_sandbox.unregister_webhooks()
    dynamics_sandbox.clear_faults()
    assert dynamics_sandbox.wait_for_webhooks(10)
    found.close()


def events(receiver: Receiver, count: int) -> list[StreamEvent | StreamGap]:
    """The items of the first ``count`` deliveries, in arrival order."""
    arrived = receiver.wait_for(count)
    assert len(arrived) >= count, arrived
    return [item for delivery in arrived[:count] for item in (delivery.items or [])]


def test_the_adapter_is_a_webhook_receiver(adapter: DynamicsAdapter) -> None:
    assert isinstance(adapter, WebhookReceiver)


def test_register_webhook_through_the_web_api_is_idempotent(
    dynamics_sandbox: DynamicsSandbox,  # noqa: F811
    adapter: DynamicsAdapter,
    receiver: Receiver,
) -> None:
    first = adapter.register_webhook(receiver.url, ["account", "contact"])
    assert len(first["steps"]) == 8
    again = adapter.register_webhook(receiver.url, ["account", "contact"])
    assert again == {"serviceendpointid": first["serviceendpointid"], "steps": []}
    api = WebApi(dynamics_sandbox)
    rows = api.get("serviceendpoints?$filter=contract eq 8").json()["value"]
    assert [(r["name"], r["authtype"], r["isauthvalueset"]) for r in rows] == [
        ("prm-mirror", 4, True)
    ]
    assert "authvalue" not in rows[0]
    account = dynamics_sandbox.create("account", {"name": "Registered"})
    assert events(receiver, 1) == [
        StreamEvent("account", changed=(account,), committed_at=events(receiver, 1)[0].committed_at)
    ]


def test_each_message_maps_to_its_event(
    dynamics_sandbox: DynamicsSandbox,  # noqa: F811
    receiver: Receiver,
) -> None:
    dynamics_sandbox.register_webhook(
        receiver.url, ["account"], KEY, messages=["Create", "Update", "Delete", "Merge"]
    )
    survivor = dynamics_sandbox.create("account", {"name": "Survivor"})
    loser = dynamics_sandbox.create("account", {"name": "Loser"})
    assert dynamics_sandbox.wait_for_webhooks(10)
    dynamics_sandbox.update("account", survivor, {"name": "Survivor 2", "telephone1": "1"})
    assert dynamics_sandbox.wait_for_webhooks(10)
    dynamics_sandbox.merge("account", survivor, loser)
    assert dynamics_sandbox.wait_for_webhooks(10)
    dynamics_sandbox.delete("account", survivor)
    got = events(receiver, 5)
    assert [type(item) for item in got] == [StreamEvent] * 5
    created, created_too, updated, merged, deleted = got
    assert (created.changed, created_too.changed) == ((survivor,), (loser,))
    assert updated.changed == (survivor,)
    assert updated.changed_fields == ("name", "telephone1")
    # the merged row is deactivated, not deleted: the poll reads it live, so the stream does too
    assert (merged.changed, merged.deleted, dict(merged.merged_into)) == (
        (survivor, loser), (), {},
    )  # fmt: skip
    assert (deleted.changed, deleted.deleted) == ((), (survivor,))
    now = dynamics_sandbox.now()
    for item in got:
        assert item.committed_at is not None
        assert abs(item.committed_at - now) < timedelta(seconds=5)
        assert item.position is None


def test_web_api_writes_and_batch_changesets_are_posted(
    dynamics_sandbox: DynamicsSandbox,  # noqa: F811
    adapter: DynamicsAdapter,
    receiver: Receiver,
) -> None:
    dynamics_sandbox.register_webhook(receiver.url, ["account"], KEY)
    api = WebApi(dynamics_sandbox)
    response = api.request("POST", "accounts", json={"name": "Through the Web API"})
    assert response.status_code == 204
    created = response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    assert events(receiver, 1)[0] == StreamEvent(
        "account", changed=(created,), committed_at=events(receiver, 1)[0].committed_at
    )
    spec = adapter.describe("account")
    results = adapter.write(spec, [Write("update", "account", {"name": "Batched"}, created)])
    assert [r.ok for r in results] == [True]
    assert events(receiver, 2)[1].changed == (created,)


def test_tables_not_mirrored_are_ignored(
    dynamics_sandbox: DynamicsSandbox,  # noqa: F811
    receiver: Receiver,
) -> None:
    dynamics_sandbox.register_webhook(receiver.url, ["contact"], KEY)
    dynamics_sandbox.create("contact", {"lastname": "Not Mirrored"})
    arrived = receiver.wait_for(1)
    assert [(d.status, d.items) for d in arrived] == [(200, [])]


def test_a_wrong_or_missing_key_is_refused(
    dynamics_sandbox: DynamicsSandbox,  # noqa: F811
    adapter: DynamicsAdapter,
    receiver: Receiver,
) -> None:
    dynamics_sandbox.register_webhook(receiver.url, ["account"], KEY)
    dynamics_sandbox.set_webhook_retries([0.05])
    dynamics_sandbox.wrong_webhook_key(1)
    dynamics_sandbox.create("account", {"name": "Wrong key"})
    assert dynamics_sandbox.wait_for_webhooks(10)
    arrived = receiver.wait_for(2)
    assert [(d.status, type(d.error)) for d in arrived] == [(401, StreamSignatureError)] * 2
    job = dynamics_sandbox.webhook_log()[-1]["job"]
    assert dynamics_sandbox.webhook_jobs()[job] == 31
    with pytest.raises(StreamSignatureError):
        adapter.receive("POST", receiver.url, {}, b"{}")
    with pytest.raises(StreamSignatureError):
        adapter.receive("POST", receiver.url + "?code=", {}, b"{}")
    keyless = sandbox_adapter(dynamics_sandbox)
    with pytest.raises(StreamSignatureError):
        keyless.receive("POST", receiver.url + f"?code={KEY}", {}, b"{}")


@pytest.mark.parametrize("auth_type", ["HttpHeader", "HttpQueryString"])
def test_header_and_query_string_keys(
    dynamics_sandbox: DynamicsSandbox,  # noqa: F811
    auth_type: str,
) -> None:
    adapter = sandbox_adapter(dynamics_sandbox, webhook_key=KEY, webhook_auth=auth_type,
                              webhook_key_name="x-mirror-key")  # fmt: skip
    adapter.describe("account")
    receiver = Receiver(adapter.receive)
    try:
        dynamics_sandbox.register_webhook(receiver.url, ["account"], KEY, auth_type=auth_type,
                                          key_name="x-mirror-key")  # fmt: skip
        account = dynamics_sandbox.create("account", {"name": auth_type})
        arrived = receiver.wait_for(1)
        assert [(d.status, [i.changed for i in d.items or []]) for d in arrived] == [
            (200, [(account,)])
        ]
        assert ("code=" in arrived[0].path) is False
    finally:
        dynamics_sandbox.unregister_webhooks()
        receiver.close()


def test_async_posts_are_retried_until_2xx(
    dynamics_sandbox: DynamicsSandbox,  # noqa: F811
    receiver: Receiver,
) -> None:
    dynamics_sandbox.register_webhook(receiver.url, ["account"], KEY)
    receiver.fail_next(2, 500)
    account = dynamics_sandbox.create("account", {"name": "Retried"})
    assert dynamics_sandbox.wait_for_webhooks(10)
    arrived = receiver.wait_for(3)
    assert [d.status for d in arrived] == [500, 500, 200]
    assert arrived[2].items == [
        StreamEvent("account", changed=(account,), committed_at=arrived[2].items[0].committed_at)
    ]
    assert dynamics_sandbox.webhook_jobs()[dynamics_sandbox.webhook_log()[-1]["job"]] == 30


def test_a_gateway_error_gets_one_more_attempt_at_once(
    dynamics_sandbox: DynamicsSandbox,  # noqa: F811
    receiver: Receiver,
) -> None:
    dynamics_sandbox.register_webhook(receiver.url, ["account"], KEY)
    dynamics_sandbox.set_webhook_retries([])
    receiver.fail_next(1, 503)
    dynamics_sandbox.create("account", {"name": "Gateway"})
    assert dynamics_sandbox.wait_for_webhooks(10)
    assert [d.status for d in receiver.wait_for(2)] == [503, 200]
    assert [e["attempt"] for e in dynamics_sandbox.webhook_log()][-2:] == [0, 0]


def test_a_failed_sync_post_fails_the_write_and_is_not_retried(
    dynamics_sandbox: DynamicsSandbox,  # noqa: F811
    receiver: Receiver,
) -> None:
    account = dynamics_sandbox.create("account", {"name": "Before sync"})
    dynamics_sandbox.register_webhook(receiver.url, ["account"], KEY, mode=0)
    receiver.fail_next(1, 500)
    api = WebApi(dynamics_sandbox)
    response = api.request("PATCH", f"accounts({account})", json={"name": "Refused"},
                           headers={"If-Match": "*"})  # fmt: skip
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "0x80040266"
    assert dynamics_sandbox.get("account", account)["name"] == "Before sync"
    assert [d.status for d in receiver.wait_for(1, timeout=0.5)] == [500]
    response = api.request("PATCH", f"accounts({account})", json={"name": "Taken"},
                           headers={"If-Match": "*"})  # fmt: skip
    assert response.status_code == 204
    arrived = receiver.wait_for(2)
    assert [d.status for d in arrived] == [500, 200]
    assert arrived[1].items and arrived[1].items[0].changed == (account,)


def test_injected_faults(
    dynamics_sandbox: DynamicsSandbox,  # noqa: F811
    receiver: Receiver,
) -> None:
    dynamics_sandbox.register_webhook(receiver.url, ["account"], KEY)
    dynamics_sandbox.duplicate_webhooks(1)
    first = dynamics_sandbox.create("account", {"name": "Twice"})
    assert [d.items[0].changed for d in receiver.wait_for(2) if d.items] == [(first,), (first,)]
    assert dynamics_sandbox.wait_for_webhooks(10)
    receiver.clear()
    dynamics_sandbox.lose_webhooks(1)
    dynamics_sandbox.create("account", {"name": "Lost"})
    assert dynamics_sandbox.wait_for_webhooks(10)
    assert receiver.wait_for(1, timeout=0.3) == []
    assert dynamics_sandbox.webhook_log()[-1]["outcome"] == "lost"
    dynamics_sandbox.reorder_webhooks(2)
    earlier = dynamics_sandbox.create("account", {"name": "Earlier"})
    later = dynamics_sandbox.create("account", {"name": "Later"})
    got = [d.items[0].changed for d in receiver.wait_for(2) if d.items]
    assert got == [(later,), (earlier,)]
    receiver.clear()
    dynamics_sandbox.delay_webhooks(0.5)
    dynamics_sandbox.update("account", first, {"name": "Delayed"})
    assert receiver.wait_for(1, timeout=0.2) == []
    assert [d.items[0].changed for d in receiver.wait_for(1) if d.items] == [(first,)]


def test_unreadable_bodies_are_gaps(
    adapter: DynamicsAdapter,
    receiver: Receiver,
) -> None:
    url = receiver.url + f"?code={KEY}"
    for body, reason in ((b"not json", "not JSON"), (b"[1]", "not an execution context")):
        answer = requests.post(url, data=body, timeout=10)
        assert answer.status_code == 200
        (item,) = receiver.deliveries[-1].items or []
        assert isinstance(item, StreamGap) and item.object is None and reason in item.reason
    broken = b'{"PrimaryEntityName": "account", "MessageName": "Update", "PrimaryEntityId": "x"}'
    assert adapter.receive("POST", url, {}, broken) == [
        StreamGap("account", "a Dataverse Update context without a PrimaryEntityId")
    ]
    odd = b'{"PrimaryEntityName": "account", "MessageName": "Associate", "PrimaryEntityId": ' \
          b'"6d81597f-0f9f-e711-8122-000d3aa2331c"}'  # fmt: skip
    (gap,) = adapter.receive("POST", url, {}, odd)
    assert isinstance(gap, StreamGap) and gap.object == "account" and "Associate" in gap.reason
    cut = (
        b'{"PrimaryEntityName": "account", "MessageName": "Merge", '
        b'"PrimaryEntityId": "6d81597f-0f9f-e711-8122-000d3aa2331c", "InputParameters": []}'
    )
    changed, gap = adapter.receive("POST", url, {"x-ms-dynamics-msg-size-exceeded": "true"}, cut)
    assert isinstance(changed, StreamEvent) and changed.changed == (
        "6d81597f-0f9f-e711-8122-000d3aa2331c",
    )
    assert isinstance(gap, StreamGap) and "256 KB" in gap.reason


def test_a_lost_delivery_is_covered_by_the_poll_backstop(
    dynamics_sandbox: DynamicsSandbox,  # noqa: F811
    adapter: DynamicsAdapter,
    receiver: Receiver,
) -> None:
    spec = adapter.describe("account")
    checkpoint = None
    for page in adapter.read(spec, None):
        checkpoint = page.checkpoint
    dynamics_sandbox.register_webhook(receiver.url, ["account"], KEY)
    dynamics_sandbox.lose_webhooks(1)
    dynamics_sandbox.advance_clock(1)
    lost = dynamics_sandbox.create("account", {"name": "Only the poll sees me"})
    assert dynamics_sandbox.wait_for_webhooks(10)
    assert receiver.wait_for(1, timeout=0.3) == []
    polled = [r[spec.key] for page in adapter.read(spec, checkpoint) for r in page.records]
    assert lost in polled


def test_webhook_settings_are_checked_and_the_key_stays_hidden(
    dynamics_sandbox: DynamicsSandbox,  # noqa: F811
) -> None:
    settings = sandbox_adapter(dynamics_sandbox, webhook_key=KEY).settings
    assert KEY not in repr(settings) and settings.problems() == []
    bad = sandbox_settings(dynamics_sandbox, webhook_key="short", webhook_auth="Basic")
    assert bad.problems() == [
        "dynamics.webhook_auth must be one of WebhookKey, HttpHeader, HttpQueryString: got 'Basic'",
        "dynamics.webhook_key must be at least 16 characters (a random key)",
    ]
