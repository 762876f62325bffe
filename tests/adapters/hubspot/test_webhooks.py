"""The HubSpot adapter as a webhook receiver: the sandbox delivers to a real HTTP receiver that
hands each delivery to ``HubSpotAdapter.receive``; every kind of event, the signature checks and
the injected delivery faults."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hubspot.utils.signature import Signature

from adapters.hubspot.adapter import HubSpotAdapter
from adapters.hubspot.webhook_setup import mirror_subscriptions, register_webhooks
from mirror.adapter import WebhookReceiver
from mirror.errors import StreamSignatureError
from mirror.types import StreamEvent, StreamGap
from sandboxes.hubspot.sandbox import HubSpotSandbox
from tests.adapters.contract import read_all
from tests.adapters.hubspot.fixtures import hubspot_adapter, hubspot_sandbox, hubspot_settings
from tests.sandboxes.webhook_receiver import Receiver

__all__ = ["hubspot_sandbox"]

OBJECTS = ["contacts", "companies", "deals", "line_items"]
PROPERTIES = ["dealname", "amount", "name", "email", "firstname", "quantity"]


@pytest.fixture(scope="module")
def adapter(hubspot_sandbox: HubSpotSandbox) -> HubSpotAdapter:
    return hubspot_adapter(hubspot_sandbox)


@pytest.fixture
def receiver(hubspot_sandbox: HubSpotSandbox, adapter: HubSpotAdapter) -> Iterator[Receiver]:
    box = hubspot_sandbox
    box.clear_webhooks()
    box.set_webhook_timing(time_scale=1e-6, timeout=5.0, batch_window=0.02)
    receiver = Receiver(adapter.receive)
    box.subscribe_webhooks(receiver.url, objects=OBJECTS, properties=PROPERTIES)
    yield receiver
    box.clear_webhooks()
    receiver.close()


def told(box: HubSpotSandbox, receiver: Receiver, change: Callable[[], Any]) -> list[Any]:
    """What the adapter made of the deliveries ``change`` caused (StreamEvents, StreamGaps,
    or the error it raised)."""
    receiver.received.clear()
    change()
    assert box.webhook_wait(10)
    return [item for r in receiver.received if isinstance(r.result, list) for item in r.result]


def merged(items: list[Any]) -> dict[str, dict[str, Any]]:
    """Per object: the ids changed and deleted, and the merges, over every event."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        assert isinstance(item, StreamEvent), item
        entry = out.setdefault(item.object, {"changed": set(), "deleted": set(), "into": {}})
        entry["changed"] |= set(item.changed)
        entry["deleted"] |= set(item.deleted)
        entry["into"].update(item.merged_into)
    return out


def signed(box: HubSpotSandbox, url: str, body: bytes, age_ms: int = 0) -> dict[str, str]:
    """Headers a delivery of ``body`` to ``url`` would carry (signed by the SDK)."""
    stamp = str(int(time.time() * 1000) - age_ms)
    signature = Signature.get_signature(
        box.client_secret, body.decode(), "v3", http_uri=url, http_method="POST", timestamp=stamp
    )
    return {"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": stamp}


def test_the_adapter_is_a_webhook_receiver(adapter):
    assert isinstance(adapter, WebhookReceiver)


# --- each kind of event ------------------------------------------------------------------------


def test_a_creation_is_a_changed_record_committed_when_hubspot_says(hubspot_sandbox, receiver):
    box = hubspot_sandbox
    made: list[str] = []
    items = told(box, receiver, lambda: made.append(box.create("companies", {"name": "New Co"})))
    [event] = items
    assert (event.object, event.changed, event.deleted, event.position) == (
        "companies", (made[0],), (), None,
    )  # fmt: skip
    assert event.committed_at == box.get("companies", made[0])["hs_lastmodifieddate"]
    assert event.committed_at.tzinfo is not None and event.changed_fields == ()


def test_a_property_change_names_its_fields(hubspot_sandbox, receiver):
    box = hubspot_sandbox
    deal = box.ids("deals")[0]
    items = told(box, receiver, lambda: box.update("deals", deal, {"dealname": "R", "amount": 9}))
    assert [(e.object, e.changed, e.changed_fields) for e in items] == [
        ("deals", (deal,), ("amount", "dealname"))
    ]


def test_a_delete_then_a_restore(hubspot_sandbox, receiver):
    box = hubspot_sandbox
    contact = box.ids("contacts")[0]
    deleted = told(box, receiver, lambda: box.delete("contacts", contact))
    assert merged(deleted) == {"contacts": {"changed": set(), "deleted": {contact}, "into": {}}}
    restored = told(box, receiver, lambda: box.restore("contacts", contact))
    assert merged(restored) == {"contacts": {"changed": {contact}, "deleted": set(), "into": {}}}


def test_a_merge_deletes_the_merged_into_the_survivor(hubspot_sandbox, receiver):
    box = hubspot_sandbox
    primary, loser = box.ids("companies")[1:3]
    items = told(box, receiver, lambda: box.merge("companies", primary, [loser]))
    assert merged(items) == {
        "companies": {"changed": {primary}, "deleted": {loser}, "into": {loser: primary}}
    }


def test_a_deal_company_association_changes_the_deal_and_its_edge(hubspot_sandbox, receiver):
    box = hubspot_sandbox
    deal, company = box.ids("deals")[5], box.ids("companies")[5]
    added = told(
        box, receiver, lambda: box.associate("deals", deal, "companies", company, "Partner")
    )
    partner = next(
        a for a in box.associations("deals", deal, "companies") if a["label"] == "Partner"
    )
    edge = f"{deal}:{company}:{partner['type_id']}"
    outcome = merged(added)
    assert outcome["deals"]["changed"] == {deal}
    assert edge in outcome["deal_company_associations"]["changed"]
    assert "companies" not in outcome
    removed = told(
        box, receiver, lambda: box.dissociate("deals", deal, "companies", company, "Partner")
    )
    assert merged(removed)["deal_company_associations"]["deleted"] == {edge}


def test_line_item_and_contact_associations_change_the_side_holding_the_field(
    hubspot_sandbox, receiver
):
    box = hubspot_sandbox
    item, deal = box.ids("line_items")[0], box.ids("deals")[6]
    contact, company = box.ids("contacts")[3], box.ids("companies")[6]
    items = told(
        box,
        receiver,
        lambda: (
            box.associate("line_items", item, "deals", deal),
            box.associate("contacts", contact, "companies", company),
        ),
    )
    outcome = merged(items)
    assert outcome["line_items"]["changed"] == {item}
    assert contact in outcome["contacts"]["changed"]
    assert "deals" not in outcome and "companies" not in outcome


def test_events_of_objects_not_mirrored_are_ignored(hubspot_sandbox, adapter):
    body = orjson.dumps([
        {"eventId": 1, "subscriptionType": "ticket.creation", "objectId": 7, "occurredAt": 1},
        {"eventId": 2, "subscriptionType": "conversation.creation", "objectId": 8},
        {"eventId": 3, "subscriptionType": "deal.associationChange", "fromObjectId": 1,
         "toObjectId": 2, "associationType": "DEAL_TO_TICKET", "associationRemoved": False},
    ])  # fmt: skip
    url = "https://mirror.example.com/hooks/hubspot"
    assert adapter.receive("POST", url, signed(hubspot_sandbox, url, body), body) == []


def test_a_custom_object_event_names_the_custom_object(hubspot_sandbox, adapter):
    type_id = hubspot_sandbox.portal.schema.types["deal_registrations"].object_type_id
    body = orjson.dumps([{"subscriptionType": "object.creation", "objectTypeId": type_id,
                          "objectId": 12, "occurredAt": 1_700_000_000_000}])  # fmt: skip
    url = "https://mirror.example.com/hooks/hubspot"
    [event] = adapter.receive("POST", url, signed(hubspot_sandbox, url, body), body)
    assert (event.object, event.changed) == ("deal_registrations", ("12",))
    assert event.committed_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


# --- what cannot be read ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"not json", [StreamGap(None, "")]),
        (b'{"objectId": 1}', [StreamGap(None, "")]),
        (b'[{"subscriptionType": "deal.creation", "objectId": "x1"}]', [StreamGap("deals", "")]),
        (b'[{"subscriptionType": "deal.merge", "objectId": 1}]', [StreamGap("deals", "")]),
        (b"[7]", [StreamGap(None, "")]),
    ],
)
def test_a_malformed_delivery_is_a_gap_not_an_error(hubspot_sandbox, adapter, payload, expected):
    url = "https://mirror.example.com/hooks/hubspot"
    items = adapter.receive("POST", url, signed(hubspot_sandbox, url, payload), payload)
    assert [(type(i), i.object) for i in items] == [(type(e), e.object) for e in expected]
    assert all(i.reason for i in items)


def test_an_association_event_without_its_type_is_a_gap_for_the_edges(hubspot_sandbox, adapter):
    body = orjson.dumps([{"subscriptionType": "deal.associationChange", "fromObjectId": 1,
                          "toObjectId": 2, "associationType": "DEAL_TO_COMPANY"}])  # fmt: skip
    url = "https://mirror.example.com/hooks/hubspot"
    items = adapter.receive("POST", url, signed(hubspot_sandbox, url, body), body)
    assert [(type(i).__name__, i.object) for i in items] == [
        ("StreamEvent", "deals"), ("StreamGap", "deal_company_associations"),
    ]  # fmt: skip


# --- signatures ------------------------------------------------------------------------------


def test_a_bad_signature_is_refused_and_hubspot_does_not_retry(hubspot_sandbox, receiver):
    box = hubspot_sandbox
    box.webhook_fault("bad_signature")
    items = told(box, receiver, lambda: box.create("companies", {"name": "Forged"}))
    [refused] = receiver.received
    assert isinstance(refused.result, StreamSignatureError) and refused.status == 401
    assert items == [] and [d["outcome"] for d in box.webhook_deliveries()] == ["refused"]


def test_a_stale_timestamp_is_refused(hubspot_sandbox, receiver):
    box = hubspot_sandbox
    box.webhook_fault("stale_timestamp")
    told(box, receiver, lambda: box.create("companies", {"name": "Replayed"}))
    [refused] = receiver.received
    assert isinstance(refused.result, StreamSignatureError)
    assert "five minutes" in str(refused.result)


def test_signature_checks_cover_method_url_body_and_key(hubspot_sandbox, adapter):
    url = "https://mirror.example.com/hooks/hubspot?source=hubspot"
    body = b'[{"subscriptionType": "deal.creation", "objectId": 1}]'
    headers = signed(hubspot_sandbox, url, body)
    assert adapter.receive("POST", url, headers, body)[0].changed == ("1",)
    for method, where, content, given in (
        ("PUT", url, body, headers),
        ("POST", url + "&x=1", body, headers),
        ("POST", url, body.replace(b"1}", b"2}"), headers),
        ("POST", url, body, {}),
        ("POST", url, body, {k.lower(): v + "x" for k, v in headers.items()}),
    ):
        with pytest.raises(StreamSignatureError):
            adapter.receive(method, where, given, content)
    unsigned = HubSpotAdapter(hubspot_settings(hubspot_sandbox, client_secret=None))
    with pytest.raises(StreamSignatureError, match="client_secret"):
        unsigned.receive("POST", url, headers, body)


def test_escaped_characters_of_the_url_are_decoded_before_checking(hubspot_sandbox, adapter):
    box = hubspot_sandbox
    box.clear_webhooks()
    receiver = Receiver(adapter.receive)
    try:
        url = receiver.url + "&label=a%3Ab%2Cc"
        box.subscribe_webhooks(url, objects=["companies"], kinds=["creation"])
        items = told(box, receiver, lambda: box.create("companies", {"name": "Escaped"}))
        assert [e.object for e in items] == ["companies"]
    finally:
        box.clear_webhooks()
        receiver.close()


# --- delivery faults -------------------------------------------------------------------------


def test_duplicates_and_reorders_pass_through(hubspot_sandbox, receiver):
    box = hubspot_sandbox
    box.webhook_fault("duplicate")
    company = []
    items = told(box, receiver, lambda: company.append(box.create("companies", {"name": "Dup"})))
    assert [e.changed for e in items] == [(company[0],), (company[0],)]
    box.webhook_fault("reorder")
    receiver.received.clear()
    logged = len(box.webhook_deliveries())
    first = box.create("companies", {"name": "Early"})
    assert receiver.wait_for(lambda: len(box.webhook_deliveries()) > logged)
    second = box.create("companies", {"name": "Later"})
    assert box.webhook_wait(10)
    order = [item.changed for r in receiver.received for item in r.result]
    assert order[-2:] == [(second,), (first,)]


def test_a_lost_delivery_is_covered_by_the_poll_backstop(hubspot_sandbox, receiver, adapter):
    box = hubspot_sandbox
    spec = adapter.describe("companies")
    checkpoint = read_all(adapter, spec, None)[1][-1].checkpoint
    company = box.ids("companies")[8]
    box.webhook_fault("lose")
    assert told(box, receiver, lambda: box.update("companies", company, {"name": "Lost"})) == []
    replica, _ = read_all(adapter, spec, checkpoint)
    assert replica.rows[company]["name"] == "Lost"


# --- registration with the SDK ---------------------------------------------------------------


def test_register_webhooks_sets_the_target_and_creates_what_is_missing(hubspot_sandbox):
    box = hubspot_sandbox
    box.clear_webhooks()
    settings = hubspot_settings(box)
    wanted = mirror_subscriptions(
        {"deals": ["dealname"], "deal_registrations": ["name"]},
        {"deal_registrations": box.portal.schema.types["deal_registrations"].object_type_id},
    )
    receiver = Receiver()
    try:
        ids = register_webhooks(settings, receiver.url, wanted, max_concurrent_requests=6)
        assert len(ids) == len(set(ids)) == len(wanted) == 12
        assert register_webhooks(settings, receiver.url, wanted) == ids
        subs = {s["id"]: s for s in box.portal.webhooks.subscriptions.values() and
                [s.to_json() for s in box.portal.webhooks.subscriptions.values()]}  # fmt: skip
        assert all(subs[i]["active"] for i in ids)
        assert {subs[i]["eventType"] for i in ids} >= {"deal.merge", "object.propertyChange"}
        assert box.portal.webhooks.target.url == receiver.url
    finally:
        box.clear_webhooks()
        receiver.close()
