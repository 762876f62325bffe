"""The HubSpot sandbox's webhooks: the Webhooks API v3 through hubspot-api-client, and
deliveries to a real receiver over HTTP (batches, signatures, retries, concurrency, faults)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from hubspot import HubSpot
from hubspot.crm.contacts.exceptions import ApiException as ObjectsApiException
from hubspot.crm.deals import (
    BatchInputSimplePublicObjectBatchInput,
    BatchInputSimplePublicObjectId,
)
from hubspot.crm.objects import SimplePublicObjectInput
from hubspot.exceptions import InvalidSignatureTimestampError
from hubspot.utils.signature import Signature
from hubspot.webhooks import (
    SettingsChangeRequest,
    SubscriptionCreateRequest,
    SubscriptionPatchRequest,
    ThrottlingSettings,
)
from hubspot.webhooks.exceptions import ApiException as WebhooksApiException

from sandboxes.hubspot.sandbox import HubSpotSandbox
from sandboxes.testing.hubspot_webhooks import HubSpotWebhooks
from tests.adapters.hubspot.fixtures import unthrottled
from tests.sandboxes.webhook_receiver import Receiver

QUICK = 1e-6
"""Real seconds per HubSpot second: the whole 24-hour retry schedule in about 0.1 s."""


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubSpotSandbox]:
    path = tmp_path_factory.mktemp("hubspot-webhooks") / "hs.db"
    with HubSpotSandbox(path, size="tiny") as sandbox:
        yield unthrottled(sandbox)


@pytest.fixture
def receiver(box: HubSpotSandbox) -> Iterator[Receiver]:
    box.clear_webhooks()
    box.set_webhook_timing(time_scale=QUICK, timeout=5.0, batch_window=0.02, jitter=0.2)
    receiver = Receiver()
    yield receiver
    box.clear_webhooks()
    receiver.close()


def developer(box: HubSpotSandbox, key: str | None = None) -> HubSpot:
    return HubSpot(api_key=key or box.developer_api_key, host=box.base_url)


def crm(box: HubSpotSandbox) -> HubSpot:
    return HubSpot(access_token=box.access_token, host=box.base_url)


def valid(box: HubSpotSandbox, received, secret: str | None = None) -> bool:
    return Signature.is_valid(
        signature=received.headers["X-HubSpot-Signature-v3"],
        client_secret=secret or box.client_secret,
        request_body=received.body.decode(),
        http_uri=received.url,
        http_method="POST",
        signature_version="v3",
        timestamp=received.headers["X-HubSpot-Request-Timestamp"],
    )


# --- the Webhooks API -----------------------------------------------------------------------


def test_the_webhooks_api_takes_the_developer_key_as_hapikey(box, receiver):
    with pytest.raises(WebhooksApiException) as caught:
        developer(box, "not-the-key").webhooks.settings_api.get_all(box.app_id)
    assert caught.value.status == 401
    api = developer(box).webhooks
    request = SettingsChangeRequest(
        target_url=receiver.url, throttling=ThrottlingSettings(max_concurrent_requests=7)
    )
    answer = api.settings_api.configure(box.app_id, request)
    assert answer.target_url == receiver.url
    assert api.settings_api.get_all(box.app_id).throttling.max_concurrent_requests == 7
    with pytest.raises(WebhooksApiException) as caught:
        api.settings_api.get_all(box.app_id + 1)
    assert caught.value.status == 404


def test_settings_refuse_what_hubspot_refuses(box, receiver):
    api = developer(box).webhooks
    for url, limit in (("http://example.com/hook", 10), (receiver.url, 4)):
        request = SettingsChangeRequest(
            target_url=url, throttling=ThrottlingSettings(max_concurrent_requests=limit)
        )
        with pytest.raises(WebhooksApiException) as caught:
            api.settings_api.configure(box.app_id, request)
        assert caught.value.status == 400


def test_subscriptions_are_created_paused_then_resumed_and_deleted(box, receiver):
    api = developer(box).webhooks.subscriptions_api
    made = api.create(
        box.app_id,
        SubscriptionCreateRequest(event_type="deal.propertyChange", property_name="amount"),
    )
    assert made.active is False and made.property_name == "amount"
    resumed = api.update(made.id, box.app_id, SubscriptionPatchRequest(active=True))
    assert resumed.active is True
    assert [s.id for s in api.get_all(box.app_id).results] == [made.id]
    api.archive(made.id, box.app_id)
    with pytest.raises(WebhooksApiException) as caught:
        api.get_by_id(made.id, box.app_id)
    assert caught.value.status == 404


def test_a_property_change_subscription_needs_a_property_the_object_has(box, receiver):
    api = developer(box).webhooks.subscriptions_api
    for prop in (None, "no_such_property"):
        request = SubscriptionCreateRequest(event_type="deal.propertyChange", property_name=prop)
        with pytest.raises(WebhooksApiException) as caught:
            api.create(box.app_id, request)
        assert caught.value.status == 400


# --- events and deliveries ------------------------------------------------------------------


def test_an_api_write_is_delivered_signed_from_the_integration(box, receiver):
    box.subscribe_webhooks(receiver.url, objects=["deals"], properties=["dealname"])
    deal = box.ids("deals")[0]
    crm(box).crm.deals.basic_api.update(deal, SimplePublicObjectInput({"dealname": "Webhooked"}))
    assert box.webhook_wait(10)
    [delivery] = receiver.received
    [event] = delivery.events
    assert event["subscriptionType"] == "deal.propertyChange"
    assert (event["objectId"], event["propertyName"], event["propertyValue"]) == (
        int(deal), "dealname", "Webhooked",
    )  # fmt: skip
    assert event["changeSource"] == "INTEGRATION" and event["attemptNumber"] == 0
    assert event["portalId"] == box.portal_id and event["appId"] == box.app_id
    modified = box.get("deals", deal)["hs_lastmodifieddate"]
    assert event["occurredAt"] == int(modified.timestamp() * 1000)
    assert valid(box, delivery)
    assert not valid(box, delivery, secret="another-secret")


def test_batch_writes_make_one_event_per_record(box, receiver):
    box.subscribe_webhooks(receiver.url, objects=["deals"], properties=["dealname"])
    deals = box.ids("deals")[10:13]
    api = crm(box).crm.deals.batch_api
    api.update(
        BatchInputSimplePublicObjectBatchInput(
            inputs=[{"id": d, "properties": {"dealname": f"Batch {d}"}} for d in deals]
        )
    )
    api.archive(BatchInputSimplePublicObjectId(inputs=[{"id": deals[0]}]))
    assert box.webhook_wait(10)
    got = sorted((e["subscriptionType"], str(e["objectId"])) for e in receiver.events())
    assert got == sorted(
        [("deal.propertyChange", d) for d in deals] + [("deal.deletion", deals[0])]
    )
    assert {e["changeSource"] for e in receiver.events()} == {"INTEGRATION"}


def test_only_the_subscribed_property_makes_an_event(box, receiver):
    box.subscribe_webhooks(receiver.url, objects=["deals"], properties=["amount"])
    deal = box.ids("deals")[1]
    box.update("deals", deal, {"dealname": "Not subscribed"})
    box.update("deals", deal, {"amount": 42})
    assert box.webhook_wait(10)
    assert [(e["propertyName"], e["propertyValue"]) for e in receiver.events()] == [
        ("amount", "42")
    ]


def test_a_refused_write_makes_no_event(box, receiver):
    box.subscribe_webhooks(receiver.url, objects=["contacts"], kinds=["creation"])
    taken = box.get("contacts", box.ids("contacts")[0])["email"]
    with pytest.raises(ObjectsApiException) as caught:
        crm(box).crm.contacts.basic_api.create(SimplePublicObjectInput({"email": taken}))
    assert caught.value.status == 409
    box.create("contacts", {"email": "fresh.webhook@example.com"})
    assert box.webhook_wait(10)
    assert [e["subscriptionType"] for e in receiver.events()] == ["contact.creation"]


def test_deletes_restores_merges_and_associations_make_their_events(box, receiver):
    box.subscribe_webhooks(receiver.url, objects=["deals", "companies"], properties=[])
    deals = box.ids("deals")
    companies = box.ids("companies")
    box.delete("deals", deals[2])
    box.restore("deals", deals[2])
    box.merge("deals", deals[3], [deals[4]])
    box.associate("deals", deals[3], "companies", companies[0], label="Partner")
    box.dissociate("deals", deals[3], "companies", companies[0], label="Partner")
    assert box.webhook_wait(10)
    kinds = [(e["subscriptionType"], e.get("objectId")) for e in receiver.events()]
    assert ("deal.deletion", int(deals[2])) in kinds and ("deal.restore", int(deals[2])) in kinds
    [merge] = [e for e in receiver.events() if e["subscriptionType"] == "deal.merge"]
    assert merge["primaryObjectId"] == int(deals[3]) and merge["mergedObjectIds"] == [int(deals[4])]
    links = [e for e in receiver.events() if e["subscriptionType"].endswith("associationChange")]
    partner = box.portal.schema.association_types("deals", "companies")
    type_id = next(t.type_id for t in partner if t.label == "Partner")
    assert {
        (e["associationType"], e["fromObjectId"], e["associationRemoved"])
        for e in links
        if e.get("associationTypeId") == type_id
    } == {("DEAL_TO_COMPANY", int(deals[3]), False), ("DEAL_TO_COMPANY", int(deals[3]), True)}
    assert {e["associationType"] for e in links} == {"DEAL_TO_COMPANY", "COMPANY_TO_DEAL"}


def test_nothing_is_queued_without_a_target(box, receiver):
    box.create("companies", {"name": "Nobody listens"})
    assert box.webhook_pending() == 0 and box.webhook_deliveries() == []


def test_batches_hold_at_most_100_events(box, receiver):
    box.subscribe_webhooks(receiver.url, objects=["companies"], kinds=["creation"])
    made = box.create_many("companies", [{"name": f"Batch {n}"} for n in range(250)])
    assert box.webhook_wait(20)
    sizes = sorted(len(r.events) for r in receiver.received)
    assert max(sizes) <= 100 and len(sizes) >= 3
    assert sorted(e["objectId"] for e in receiver.events()) == sorted(int(i) for i in made)


def test_failures_are_retried_with_a_growing_attempt_number_until_answered(box, receiver):
    box.subscribe_webhooks(receiver.url, objects=["companies"], kinds=["creation"])
    receiver.statuses = [503, 500, 429, 502]
    company = box.create("companies", {"name": "Retried"})
    assert box.webhook_wait(20)
    answers = [(r.status, r.events[0]["attemptNumber"]) for r in receiver.received]
    assert answers == [(503, 0), (500, 1), (429, 2), (502, 3), (204, 4)]
    assert receiver.events()[0]["objectId"] == int(company)


def test_a_4xx_answer_is_not_retried(box, receiver):
    box.subscribe_webhooks(receiver.url, objects=["companies"], kinds=["creation"])
    receiver.statuses = [400]
    box.create("companies", {"name": "Refused"})
    assert box.webhook_wait(10)
    assert [r.status for r in receiver.received] == [400]
    assert [d["outcome"] for d in box.webhook_deliveries()] == ["refused"]


def test_hubspot_gives_up_after_ten_retries(box, receiver):
    box.subscribe_webhooks(receiver.url, objects=["companies"], kinds=["creation"])
    receiver.statuses = [503] * 30
    box.create("companies", {"name": "Never answered"})
    assert box.webhook_wait(20)
    assert [r.events[0]["attemptNumber"] for r in receiver.received] == list(range(11))
    assert box.webhook_deliveries()[-1]["outcome"] == "gave_up"


def test_an_unreachable_target_is_retried(box, receiver):
    closed = Receiver()
    url = closed.url
    closed.close()
    box.subscribe_webhooks(url, objects=["companies"], kinds=["creation"])
    box.create("companies", {"name": "Nobody home"})
    assert box.webhook_wait(20)
    log = box.webhook_deliveries()
    assert {d["status"] for d in log[:-1]} == {"connection_error"}
    assert [d["attempt"] for d in log[:-1]] == list(range(11))
    assert log[-1]["outcome"] == "gave_up"


def test_at_most_max_concurrent_requests_are_under_way(box, tmp_path):
    box.clear_webhooks()
    slow = Receiver(pause=0.3)
    try:
        box.subscribe_webhooks(
            slow.url, objects=["companies"], kinds=["creation"], max_concurrent_requests=5
        )
        box.create_many("companies", [{"name": f"Busy {n}"} for n in range(800)])
        assert box.webhook_wait(30)
        assert len(slow.received) >= 8 and len(slow.events()) == 800
        assert 2 <= slow.most_active <= 5
    finally:
        box.clear_webhooks()
        slow.close()


# --- injected faults --------------------------------------------------------------------------


def test_a_duplicated_delivery_arrives_twice(box, receiver):
    box.subscribe_webhooks(receiver.url, objects=["companies"], kinds=["creation"])
    box.webhook_fault("duplicate")
    box.create("companies", {"name": "Twice"})
    assert box.webhook_wait(10)
    first, second = receiver.received
    assert first.body == second.body


def test_a_lost_delivery_never_arrives_and_is_not_retried(box, receiver):
    box.subscribe_webhooks(receiver.url, objects=["companies"], kinds=["creation"])
    box.webhook_fault("lose")
    box.create("companies", {"name": "Lost"})
    assert box.webhook_wait(10)
    time.sleep(0.1)
    assert receiver.received == []
    assert [d["outcome"] for d in box.webhook_deliveries()] == ["lost"]


def test_a_reordered_delivery_arrives_after_the_next_one(box, receiver):
    box.subscribe_webhooks(receiver.url, objects=["companies"], kinds=["creation"])
    box.webhook_fault("reorder")
    first = box.create("companies", {"name": "First"})
    assert receiver.wait_for(lambda: box.webhook_deliveries() != [])
    second = box.create("companies", {"name": "Second"})
    assert box.webhook_wait(10)
    assert [r.events[0]["objectId"] for r in receiver.received] == [int(second), int(first)]


def test_a_delayed_delivery_arrives_late(box, receiver):
    box.subscribe_webhooks(receiver.url, objects=["companies"], kinds=["creation"])
    box.webhook_fault("delay", seconds=0.5)
    started = time.monotonic()
    box.create("companies", {"name": "Late"})
    assert box.webhook_wait(10)
    assert receiver.received[0].at - started >= 0.5


def test_a_bad_signature_and_a_stale_timestamp_fail_the_sdks_check(box, receiver):
    box.subscribe_webhooks(receiver.url, objects=["companies"], kinds=["creation"])
    box.webhook_fault("bad_signature")
    box.webhook_fault("stale_timestamp")
    box.create("companies", {"name": "Forged"})
    assert receiver.wait_for(lambda: len(receiver.received) == 1)
    box.create("companies", {"name": "Stale"})
    assert box.webhook_wait(10)
    forged, stale = receiver.received
    assert not valid(box, forged)
    with pytest.raises(InvalidSignatureTimestampError):
        valid(box, stale)


def test_an_answer_slower_than_the_timeout_is_retried(box):
    box.clear_webhooks()
    slow = Receiver(pause=0.4)
    try:
        box.set_webhook_timing(time_scale=1e-4, timeout=0.1)
        box.subscribe_webhooks(slow.url, objects=["companies"], kinds=["creation"])
        slow.statuses = [204, 204]
        box.create("companies", {"name": "Slow"})
        assert slow.wait_for(lambda: len(slow.received) >= 2)
        box.set_webhook_timing(timeout=5.0)
        assert box.webhook_wait(20)
        log = box.webhook_deliveries()
        assert [d["status"] for d in log[:2]] == ["timeout", "timeout"]
        assert log[-1]["outcome"] == "delivered" and log[-1]["attempt"] >= 2
    finally:
        box.clear_webhooks()
        box.set_webhook_timing(timeout=5.0)
        slow.close()


def test_the_controls_work_through_the_admin_path_and_the_app_survives_a_restart(tmp_path):
    path = tmp_path / "hs.db"
    receiver = Receiver()
    try:
        with HubSpotSandbox(path, size="tiny") as box:
            hooks = HubSpotWebhooks.remote(box.base_url, box.admin_token)
            subs = hooks.register(receiver.url, properties=["name"], objects=["companies"])
            hooks.timing(time_scale=QUICK)
            settings = hooks.adapter_settings()
            assert settings["client_secret"] == box.client_secret
            company = box.create("companies", {"name": "Remote"})
            assert hooks.wait(10) and hooks.pending() == 0
            assert [d["outcome"] for d in hooks.deliveries()] == ["delivered"]
            assert [e["objectId"] for e in receiver.events()] == [int(company)]
        with HubSpotSandbox(path) as again:
            assert HubSpotWebhooks.of(again).adapter_settings() == settings
            kept = developer(again).webhooks.subscriptions_api.get_all(again.app_id).results
            assert sorted(s.id for s in kept) == sorted(s["id"] for s in subs)
            assert again.portal.webhooks.target.url == receiver.url
    finally:
        receiver.close()
