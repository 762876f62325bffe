"""The Salesforce sandbox's Change Data Capture over the Pub/Sub API, spoken to with grpcio and
the messages generated from Salesforce's own pubsub_api.proto: the events every kind of
committed change makes, their headers, replay and retention, overflow, flow control, the
selected entities and the injectable faults."""

from __future__ import annotations

import io
import json
import queue
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import fastavro
import grpc
import pytest
from simple_salesforce import Salesforce

from adapters.salesforce import pubsub_api_pb2 as pb
from adapters.salesforce.stream_events import bitmap_fields
from sandboxes.salesforce.sandbox import SalesforceSandbox
from sandboxes.testing.admin import AdminClient
from tests.sandboxes.sf_fixtures import client, sandbox  # noqa: F401

WAIT = 10.0


class Subscriber:
    """A raw Pub/Sub API client of one topic: FetchRequests in, decoded events out."""

    def __init__(self, box: SalesforceSandbox, token: str | None = None) -> None:
        self.box = box
        self.channel = grpc.insecure_channel(box.pubsub_endpoint())
        self.metadata = (
            ("accesstoken", token or box.issue_session()),
            ("instanceurl", box.base_url),
            ("tenantid", box.org_id),
        )
        self.requests: queue.Queue[pb.FetchRequest | None] = queue.Queue()
        self.responses: queue.Queue[Any] = queue.Queue()
        self.schemas: dict[str, dict[str, Any]] = {}
        self.call: Any = None

    def _requests(self) -> Iterator[pb.FetchRequest]:
        while (request := self.requests.get()) is not None:
            yield request

    def subscribe(self, topic: str, n: int = 100, replay: bytes | None = None,
                  earliest: bool = False) -> Subscriber:  # fmt: skip
        preset = pb.CUSTOM if replay else (pb.EARLIEST if earliest else pb.LATEST)
        self.requests.put(pb.FetchRequest(topic_name=topic, replay_preset=preset,
                                          replay_id=replay or b"", num_requested=n))  # fmt: skip
        stub = self.channel.stream_stream(
            "/eventbus.v1.PubSub/Subscribe",
            request_serializer=pb.FetchRequest.SerializeToString,
            response_deserializer=pb.FetchResponse.FromString,
        )
        self.call = stub(self._requests(), metadata=self.metadata)

        def pump() -> None:
            try:
                for response in self.call:
                    self.responses.put(response)
            except grpc.RpcError as error:
                self.responses.put(error)

        threading.Thread(target=pump, daemon=True).start()
        return self

    def ask(self, n: int) -> None:
        self.requests.put(pb.FetchRequest(num_requested=n))

    def events(self, count: int, timeout: float = WAIT) -> list[tuple[bytes, dict[str, Any]]]:
        """The next ``count`` events as ``(replay id, decoded record)``."""
        found: list[tuple[bytes, dict[str, Any]]] = []
        while len(found) < count:
            response = self.responses.get(timeout=timeout)
            if isinstance(response, grpc.RpcError):
                raise response
            found += [(e.replay_id, self.decode(e.event)) for e in response.events]
        return found

    def error(self, timeout: float = WAIT) -> grpc.RpcError:
        while True:
            response = self.responses.get(timeout=timeout)
            if isinstance(response, grpc.RpcError):
                return response

    def quiet(self, seconds: float = 0.8) -> bool:
        try:
            response = self.responses.get(timeout=seconds)
        except queue.Empty:
            return True
        return not isinstance(response, grpc.RpcError) and not response.events

    def decode(self, event: Any) -> dict[str, Any]:
        if event.schema_id not in self.schemas:
            get = self.channel.unary_unary(
                "/eventbus.v1.PubSub/GetSchema",
                request_serializer=pb.SchemaRequest.SerializeToString,
                response_deserializer=pb.SchemaInfo.FromString,
            )
            info = get(pb.SchemaRequest(schema_id=event.schema_id), metadata=self.metadata)
            self.schemas[event.schema_id] = json.loads(info.schema_json)
        schema = self.schemas[event.schema_id]
        record = fastavro.schemaless_reader(
            io.BytesIO(event.payload), fastavro.parse_schema(schema), None
        )
        assert isinstance(record, dict)
        header = record["ChangeEventHeader"]
        header["changedFields"] = bitmap_fields(header["changedFields"], schema["fields"])
        header["nulledFields"] = bitmap_fields(header["nulledFields"], schema["fields"])
        return record

    def close(self) -> None:
        self.requests.put(None)
        if self.call is not None:
            self.call.cancel()
        self.channel.close()


@pytest.fixture
def box(sandbox: SalesforceSandbox) -> SalesforceSandbox:  # noqa: F811
    sandbox.cdc_select(["Account", "Contact"])
    return sandbox


@pytest.fixture
def subscriber(box: SalesforceSandbox) -> Iterator[Subscriber]:
    sub = Subscriber(box)
    yield sub
    sub.close()


def headers(events: list[tuple[bytes, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [record["ChangeEventHeader"] for _, record in events]


def settle(sub: Subscriber) -> None:
    """Wait until the subscription is open (its first keepalive or a quiet moment)."""
    sub.quiet(0.6)


def test_rest_changes_make_events_with_salesforce_headers(
    box: SalesforceSandbox, subscriber: Subscriber
) -> None:
    subscriber.subscribe("/data/AccountChangeEvent")
    settle(subscriber)
    sf: Salesforce = client(box)
    created = sf.Account.create({"Name": "Streamed", "Industry": "Energy"})["id"]
    sf.Account.update(created, {"Industry": None, "NumberOfEmployees": 12})
    sf.Account.delete(created)
    box.undelete("Account", created)
    got = subscriber.events(4)
    kinds = [h["changeType"] for h in headers(got)]
    assert kinds == ["CREATE", "UPDATE", "DELETE", "UNDELETE"]
    create, update, delete, undelete = headers(got)
    assert all(h["entityName"] == "Account" and h["recordIds"] == [created] for h in headers(got))
    assert create["changeOrigin"] == "com/salesforce/api/rest/59.0;client="
    assert undelete["changeOrigin"] == ""  # made in the CRM, not through the API
    assert {"Industry", "NumberOfEmployees"} <= set(update["changedFields"])
    assert update["nulledFields"] == ["Industry"]
    assert got[0][1]["Name"] == "Streamed" and got[1][1]["NumberOfEmployees"] == 12
    numbers = [h["commitNumber"] for h in headers(got)]
    assert numbers == sorted(numbers) and len(set(numbers)) == 4
    assert all(h["sequenceNumber"] == 1 and h["commitUser"].startswith("005") for h in [create])
    replay_ids = [int.from_bytes(r, "big") for r, _ in got]
    assert replay_ids == sorted(replay_ids)
    assert delete["commitTimestamp"] >= create["commitTimestamp"] > 0


def test_one_composite_call_is_one_transaction(
    box: SalesforceSandbox, subscriber: Subscriber
) -> None:
    subscriber.subscribe("/data/AccountChangeEvent")
    settle(subscriber)
    sf = client(box)
    records = [{"attributes": {"type": "Account"}, "Name": f"Batch {n}"} for n in range(3)]
    sf.restful("composite/sobjects", method="POST",
               json={"allOrNone": True, "records": records})  # fmt: skip
    got = headers(subscriber.events(3))
    assert len({h["transactionKey"] for h in got}) == 1
    assert [h["sequenceNumber"] for h in got] == [1, 2, 3]


def test_a_rolled_back_transaction_makes_no_event(
    box: SalesforceSandbox, subscriber: Subscriber
) -> None:
    subscriber.subscribe("/data/AccountChangeEvent")
    settle(subscriber)
    records = [
        {"attributes": {"type": "Account"}, "Name": "Kept only if all are"},
        {"attributes": {"type": "Account"}, "NoSuchField__c": 1},
    ]
    client(box).restful("composite/sobjects", method="POST",
                        json={"allOrNone": True, "records": records})  # fmt: skip
    assert subscriber.quiet(1.0)
    assert box.cdc_events() == []


def test_merge_deletes_the_losers_and_updates_the_master(
    box: SalesforceSandbox, subscriber: Subscriber
) -> None:
    master = box.create("Account", {"Name": "Master"})
    loser = box.create("Account", {"Name": "Loser"})
    subscriber.subscribe("/data/AccountChangeEvent")
    settle(subscriber)
    box.merge("Account", master, [loser])
    got = headers(subscriber.events(2))
    assert {(h["changeType"], h["recordIds"][0]) for h in got} == {
        ("DELETE", loser), ("UPDATE", master)
    }  # fmt: skip
    assert len({h["transactionKey"] for h in got}) == 1


def test_an_unselected_entity_emits_nothing_and_its_channel_is_refused(
    box: SalesforceSandbox, subscriber: Subscriber
) -> None:
    box.create("Lead", {"LastName": "Nobody", "Company": "Unselected"})
    assert all(e["header"]["entityName"] != "Lead" for e in box.cdc_events())
    error = subscriber.subscribe("/data/LeadChangeEvent").error()
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert ("error-code", "sfdc.platform.eventbus.grpc.subscription.topic.not.found") in list(
        error.trailing_metadata() or ()
    )


def test_a_call_without_a_valid_session_is_unauthenticated(box: SalesforceSandbox) -> None:
    sub = Subscriber(box, token="00DKj0000000001!forged")
    try:
        error = sub.subscribe("/data/AccountChangeEvent").error()
        assert error.code() is grpc.StatusCode.UNAUTHENTICATED
        assert "auth.error" in dict(error.trailing_metadata() or ())["error-code"]
    finally:
        sub.close()


def test_replay_resumes_after_an_id_and_refuses_one_past_retention(
    box: SalesforceSandbox,
) -> None:
    first = box.create("Account", {"Name": "One"})
    second = box.create("Account", {"Name": "Two"})
    replay = box.cdc_events()[0]["replay_id"].to_bytes(8, "big")
    resumed = Subscriber(box).subscribe("/data/AccountChangeEvent", replay=replay)
    try:
        assert [h["recordIds"] for h in headers(resumed.events(1))] == [[second]]
    finally:
        resumed.close()
    earliest = Subscriber(box).subscribe("/data/AccountChangeEvent", earliest=True)
    try:
        assert [h["recordIds"] for h in headers(earliest.events(2))] == [[first], [second]]
    finally:
        earliest.close()
    box.cdc_configure(retention_hours=1)
    box.advance_clock(timedelta(hours=2).total_seconds())
    late = Subscriber(box).subscribe("/data/AccountChangeEvent", replay=replay)
    try:
        error = late.error()
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        code = dict(error.trailing_metadata() or ())["error-code"]
        assert code == "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted"
    finally:
        late.close()


def test_a_replay_id_never_issued_is_refused(box: SalesforceSandbox) -> None:
    sub = Subscriber(box).subscribe("/data/AccountChangeEvent", replay=(999).to_bytes(8, "big"))
    try:
        assert sub.error().code() is grpc.StatusCode.INVALID_ARGUMENT
    finally:
        sub.close()


def test_a_transaction_over_the_threshold_overflows(
    box: SalesforceSandbox, subscriber: Subscriber
) -> None:
    box.cdc_configure(overflow_threshold=2)
    subscriber.subscribe("/data/AccountChangeEvent")
    settle(subscriber)
    records = [{"attributes": {"type": "Account"}, "Name": f"Bulk {n}"} for n in range(4)]
    client(box).restful("composite/sobjects", method="POST", json={"records": records})
    got = headers(subscriber.events(3))
    assert [h["changeType"] for h in got] == ["CREATE", "CREATE", "GAP_OVERFLOW"]
    assert got[2]["recordIds"] == []


def test_flow_control_sends_no_more_than_requested(
    box: SalesforceSandbox, subscriber: Subscriber
) -> None:
    subscriber.subscribe("/data/AccountChangeEvent", n=1)
    settle(subscriber)
    for n in range(3):
        box.create("Account", {"Name": f"Paced {n}"})
    assert len(subscriber.events(1)) == 1
    assert subscriber.quiet(0.8)
    subscriber.ask(5)
    assert len(subscriber.events(2)) == 2


def test_injected_faults_change_what_is_delivered(
    box: SalesforceSandbox, subscriber: Subscriber
) -> None:
    subscriber.subscribe("/data/AccountChangeEvent")
    settle(subscriber)
    box.cdc_duplicate_next()
    a = box.create("Account", {"Name": "Twice"})
    box.cdc_reorder_next()
    b = box.create("Account", {"Name": "Late"})
    c = box.create("Account", {"Name": "Early"})
    box.cdc_lose_next()
    box.create("Account", {"Name": "Lost"})
    gap = box.cdc_inject_gap("Account", [a], "GAP_UPDATE")
    got = subscriber.events(5)
    assert [h["recordIds"] for h in headers(got)] == [[a], [a], [c], [b], [a]]
    assert headers(got)[-1]["changeType"] == "GAP_UPDATE"
    assert int.from_bytes(got[-1][0], "big") == gap
    box.cdc_drop_subscriptions()
    assert subscriber.error().code() is grpc.StatusCode.UNAVAILABLE


def test_publishing_to_a_change_channel_is_refused(box: SalesforceSandbox) -> None:
    sub = Subscriber(box)
    try:
        publish = sub.channel.unary_unary(
            "/eventbus.v1.PubSub/Publish",
            request_serializer=pb.PublishRequest.SerializeToString,
            response_deserializer=pb.PublishResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as raised:
            publish(pb.PublishRequest(topic_name="/data/AccountChangeEvent"),
                    metadata=sub.metadata)  # fmt: skip
        assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED
    finally:
        sub.close()


def test_the_controls_work_over_the_admin_path(sandbox: SalesforceSandbox) -> None:  # noqa: F811
    admin = AdminClient(sandbox.base_url, sandbox.admin_token)
    try:
        assert admin.admin("cdc_select", entities=["Opportunity"]) == ["Opportunity"]
        settings = admin.admin("cdc_configure", overflow_threshold=5, retention_hours=1)
        assert settings["overflow_threshold"] == 5 and settings["retention_hours"] == 1
        assert admin.admin("pubsub_endpoint") == sandbox.pubsub_endpoint()
        replay = admin.admin("cdc_inject_gap", sobject="Opportunity", change_type="GAP_OVERFLOW")
        assert [e["replay_id"] for e in admin.admin("cdc_events")] == [replay]
    finally:
        admin.close()


def test_the_standard_channel_carries_every_selected_entity(
    box: SalesforceSandbox, subscriber: Subscriber
) -> None:
    subscriber.subscribe("/data/ChangeEvents")
    settle(subscriber)
    account = box.create("Account", {"Name": "On the standard channel"})
    box.create("Lead", {"LastName": "Unselected", "Company": "Nowhere"})
    contact = box.create("Contact", {"LastName": "Also there"})
    got = headers(subscriber.events(2))
    assert [(h["entityName"], h["recordIds"]) for h in got] == [
        ("Account", [account]), ("Contact", [contact])
    ]  # fmt: skip
    assert subscriber.quiet()


def test_a_partly_failed_collection_publishes_only_what_it_committed(
    box: SalesforceSandbox, subscriber: Subscriber
) -> None:
    subscriber.subscribe("/data/AccountChangeEvent")
    settle(subscriber)
    records = [
        {"attributes": {"type": "Account"}, "Name": "Committed"},
        {"attributes": {"type": "Account"}, "NoSuchField__c": 1},
    ]
    results = client(box).restful("composite/sobjects", method="POST",
                                  json={"allOrNone": False, "records": records})  # fmt: skip
    assert [r["success"] for r in results] == [True, False]
    got = headers(subscriber.events(1))
    assert [(h["changeType"], h["recordIds"]) for h in got] == [("CREATE", [results[0]["id"]])]
    assert subscriber.quiet()


def test_changes_of_a_rolled_back_savepoint_are_not_published(box: SalesforceSandbox) -> None:
    store, bus = box.org.store, box.org.cdc
    with store.transaction():
        bus.stage("Account", "UPDATE", "001Kept", {"Name": "kept"}, ["Name"])
        with pytest.raises(RuntimeError), store.savepoint():
            bus.stage("Account", "UPDATE", "001Undone", {"Name": "undone"}, ["Name"])
            raise RuntimeError("the subrequest fails")
    assert [e["header"]["recordIds"] for e in box.cdc_events()] == [["001Kept"]]


def test_a_quiet_subscription_gets_keepalives_with_the_latest_replay_id(
    box: SalesforceSandbox, subscriber: Subscriber
) -> None:
    box.cdc_configure(keepalive_seconds=0.5)
    box.create("Lead", {"LastName": "Unselected", "Company": "Elsewhere"})
    box.create("Contact", {"LastName": "Other channel"})
    latest = box.cdc_events()[-1]["replay_id"]
    subscriber.subscribe("/data/AccountChangeEvent", earliest=True)
    response = subscriber.responses.get(timeout=WAIT)
    assert list(response.events) == []
    assert int.from_bytes(response.latest_replay_id, "big") == latest
    assert response.pending_num_requested == 100


def test_a_serving_sandbox_prints_its_pubsub_endpoint_in_its_config(
    box: SalesforceSandbox,
) -> None:
    from sandboxes.kit.configs import source_settings

    assert source_settings("salesforce", box)["pubsub_endpoint"] == box.pubsub_endpoint()
