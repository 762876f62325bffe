"""The Salesforce adapter's change stream (``StreamListener``) against the sandbox's Pub/Sub API:
what each kind of change becomes, replay across reconnects and restarts, gaps for retention,
overflow and gap events, faults passing through, sessions, stop and secrets.

A lost event (``cdc_lose_next``) is not detectable from the stream (replay ids are not
contiguous); the engine's incremental poll, kept as the backstop, brings that change, so
nothing is asserted about it here.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from adapters.salesforce.adapter import SalesforceAdapter
from mirror.adapter import StreamItem, StreamListener
from mirror.errors import ConfigError, TransientError
from mirror.types import ObjectSpec, StreamEvent, StreamGap
from tests.adapters.conftest import sandbox_adapter

WAIT = 10.0


class Listening:
    """``adapter.listen`` running in a thread, its items collected."""

    def __init__(self, adapter: SalesforceAdapter, specs: list[ObjectSpec],
                 position: str | None = None) -> None:  # fmt: skip
        self.stop = threading.Event()
        self.items: queue.Queue[StreamItem | BaseException] = queue.Queue()
        self.done = threading.Event()

        def run() -> None:
            try:
                for item in adapter.listen(specs, position, self.stop):
                    self.items.put(item)
            except BaseException as error:  # handed to the test thread
                self.items.put(error)
            finally:
                self.done.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        time.sleep(0.7)  # the subscriptions open

    def take(self, count: int, timeout: float = WAIT) -> list[StreamItem]:
        got: list[StreamItem] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            item = self.items.get(timeout=max(0.01, deadline - time.monotonic()))
            if isinstance(item, BaseException):
                raise item
            got.append(item)
        return got

    def until(self, done: Callable[[list[StreamItem]], bool]) -> list[StreamItem]:
        got: list[StreamItem] = []
        while not done(got):
            got += self.take(1)
        return got

    def quiet(self, seconds: float = 0.8) -> bool:
        try:
            self.items.get(timeout=seconds)
        except queue.Empty:
            return True
        return False

    def close(self) -> float:
        """Set stop; returns how long the iterator took to end."""
        started = time.monotonic()
        self.stop.set()
        self.done.wait(WAIT)
        return time.monotonic() - started


@pytest.fixture
def box(salesforce_sandbox: Any) -> Iterator[Any]:
    salesforce_sandbox.cdc_select(["Account", "Contact"])
    yield salesforce_sandbox
    salesforce_sandbox.clear_faults()
    salesforce_sandbox.cdc_configure(retention_hours=72, overflow_threshold=100_000)
    salesforce_sandbox.cdc_deselect(["Account", "Contact", "Lead"])


@pytest.fixture
def adapter(box: Any) -> SalesforceAdapter:
    return sandbox_adapter(box)


@pytest.fixture
def specs(adapter: SalesforceAdapter) -> list[ObjectSpec]:
    return [adapter.describe("Account"), adapter.describe("Contact")]


@pytest.fixture
def listening(adapter: SalesforceAdapter, specs: list[ObjectSpec]) -> Iterator[Listening]:
    stream = Listening(adapter, specs)
    yield stream
    stream.close()


def ids_of(items: list[StreamItem]) -> list[tuple[str, str, tuple[str, ...]]]:
    out = []
    for item in items:
        assert isinstance(item, StreamEvent), item
        kind = "deleted" if item.deleted else "changed"
        out.append((item.object, kind, item.deleted or item.changed))
    return out


def test_the_adapter_is_a_stream_listener(adapter: SalesforceAdapter) -> None:
    assert isinstance(adapter, StreamListener)


def test_each_change_kind_maps_to_an_event(box: Any, listening: Listening) -> None:
    account = box.create("Account", {"Name": "Stream me"})
    box.update("Account", account, {"Industry": "Energy"})
    box.delete("Account", account)
    box.undelete("Account", account)
    contact = box.create("Contact", {"LastName": "Other object"})
    got = listening.take(5)
    assert sorted(ids_of(got)) == sorted([
        ("Account", "changed", (account,)), ("Account", "changed", (account,)),
        ("Account", "deleted", (account,)), ("Account", "changed", (account,)),
        ("Contact", "changed", (contact,)),
    ])  # fmt: skip
    accounts = [item for item in got if isinstance(item, StreamEvent) and item.object == "Account"]
    assert "Industry" in accounts[1].changed_fields and accounts[0].changed_fields == ()
    assert all(item.committed_at is not None and item.position for item in accounts)
    assert abs((accounts[0].committed_at - box.now()).total_seconds()) < 60  # type: ignore[operator]


def test_a_position_resumes_without_losing_anything(
    box: Any, adapter: SalesforceAdapter, specs: list[ObjectSpec]
) -> None:
    first = Listening(adapter, specs)
    seen = box.create("Account", {"Name": "Before the restart"})
    (item,) = first.take(1)
    first.close()
    assert ids_of([item]) == [("Account", "changed", (seen,))]
    missed = [box.create("Account", {"Name": f"While away {n}"}) for n in range(3)]
    contact = box.create("Contact", {"LastName": "While away"})
    second = Listening(adapter, specs, item.position)
    try:
        got = second.take(4)
        assert sorted(i for _, _, ids in ids_of(got) for i in ids) == sorted([*missed, contact])
        assert second.quiet()
    finally:
        second.close()


def test_a_dropped_connection_is_resumed_from_the_last_replay_id(
    box: Any, listening: Listening
) -> None:
    before = box.create("Account", {"Name": "Before the drop"})
    listening.take(1)
    box.cdc_drop_subscriptions()
    after = [box.create("Account", {"Name": f"During the drop {n}"}) for n in range(3)]
    got = listening.take(3)
    assert [ids for _, _, ids in ids_of(got)] == [(i,) for i in after]
    assert before not in {i for _, _, ids in ids_of(got) for i in ids}


def test_a_position_past_retention_is_a_gap_then_the_stream_goes_on_from_now(
    box: Any, adapter: SalesforceAdapter, specs: list[ObjectSpec]
) -> None:
    first = Listening(adapter, specs)
    box.create("Account", {"Name": "Old"})
    (old,) = first.take(1)
    first.close()
    box.cdc_expire_events()
    second = Listening(adapter, specs, old.position)
    try:
        (gap,) = second.take(1)
        assert isinstance(gap, StreamGap) and gap.object is None
        assert "replayid.corrupted" in gap.reason
        fresh = box.create("Account", {"Name": "New"})
        assert ids_of(second.take(1)) == [("Account", "changed", (fresh,))]
    finally:
        second.close()


def test_an_overflowing_transaction_is_a_gap_of_its_object(
    box: Any, adapter: SalesforceAdapter, listening: Listening
) -> None:
    box.cdc_configure(overflow_threshold=1)
    records = [{"attributes": {"type": "Account"}, "Name": f"Mass {n}"} for n in range(3)]
    adapter.connection.rest(
        "mass create", "composite/sobjects", method="POST", json={"records": records}
    )
    got = listening.take(2)
    assert isinstance(got[0], StreamEvent) and len(got[0].changed) == 1
    assert isinstance(got[1], StreamGap) and got[1].object == "Account"
    assert "GAP_OVERFLOW" in got[1].reason and got[1].position


def test_a_gap_event_is_a_gap_of_its_object(box: Any, listening: Listening) -> None:
    account = box.create("Account", {"Name": "Gapped"})
    listening.take(1)
    box.cdc_inject_gap("Account", [account], "GAP_UPDATE")
    (gap,) = listening.take(1)
    assert gap == StreamGap("Account", "GAP_UPDATE event for 1 record(s)", gap.position)


def test_duplicates_and_reorders_pass_through(box: Any, listening: Listening) -> None:
    box.cdc_duplicate_next()
    twice = box.create("Account", {"Name": "Twice"})
    box.cdc_reorder_next()
    late = box.create("Account", {"Name": "Late"})
    early = box.create("Account", {"Name": "Early"})
    got = [ids for _, _, ids in ids_of(listening.take(4))]
    assert got == [(twice,), (twice,), (early,), (late,)]


def test_an_expired_session_is_renewed_and_the_stream_goes_on(
    box: Any, listening: Listening
) -> None:
    box.create("Account", {"Name": "Before expiry"})
    listening.take(1)
    box.expire_sessions()
    box.cdc_drop_subscriptions()
    account = box.create("Account", {"Name": "After renewal"})
    assert ids_of(listening.take(1)) == [("Account", "changed", (account,))]


def test_a_drop_before_the_first_event_is_a_gap(box: Any, listening: Listening) -> None:
    box.cdc_drop_subscriptions()
    (gap,) = listening.take(1)
    assert isinstance(gap, StreamGap) and gap.object is None and "first event" in gap.reason
    time.sleep(0.5)
    account = box.create("Account", {"Name": "After the gap"})
    assert ids_of(listening.take(1)) == [("Account", "changed", (account,))]


def test_an_unselected_object_is_a_config_error(box: Any, adapter: SalesforceAdapter) -> None:
    stream = Listening(adapter, [adapter.describe("Lead")])
    try:
        with pytest.raises(ConfigError, match="select Lead for Change Data Capture"):
            stream.take(1)
    finally:
        stream.close()


def test_a_stream_that_cannot_reconnect_raises_transient_error(box: Any) -> None:
    adapter = sandbox_adapter(box, max_retries=2)
    stream = Listening(adapter, [adapter.describe("Account")])
    try:
        box.cdc_fail_subscriptions(10)
        box.cdc_drop_subscriptions()
        before_error: list[StreamItem] = []
        with pytest.raises(TransientError, match="keeps failing"):
            while True:
                before_error += stream.take(1)
        # no event had given a replay id yet: one gap for the outage, however many retries
        assert len(before_error) == 1 and isinstance(before_error[0], StreamGap)
    finally:
        stream.close()
        box.clear_faults()


def test_an_unreachable_endpoint_is_a_transient_error(box: Any) -> None:
    adapter = sandbox_adapter(box, pubsub_endpoint="127.0.0.1:1")
    stream = Listening(adapter, [adapter.describe("Account")])
    try:
        with pytest.raises(TransientError, match="did not answer"):
            stream.take(1)
    finally:
        stream.close()


def test_stop_ends_the_stream_within_a_second(listening: Listening) -> None:
    assert listening.close() < 1.5
    assert listening.done.is_set()


def test_stream_requests_are_counted(
    box: Any, adapter: SalesforceAdapter, specs: list[ObjectSpec]
) -> None:
    before = adapter.api_calls()
    stream = Listening(adapter, specs)
    try:
        box.create("Account", {"Name": "Counted"})
        stream.take(1)
    finally:
        stream.close()
    # two Subscribe streams and one GetSchema, the login's REST requests aside
    assert adapter.api_calls() - before >= 3


def test_the_session_token_never_reaches_the_logs(
    box: Any, adapter: SalesforceAdapter, specs: list[ObjectSpec],
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    stream = Listening(adapter, specs)
    try:
        box.create("Account", {"Name": "Logged"})
        stream.take(1)
        box.expire_sessions()
        box.cdc_drop_subscriptions()
        box.create("Account", {"Name": "After renewal"})
        stream.take(1)
        box.cdc_expire_events()
        box.cdc_drop_subscriptions()
        stream.until(lambda got: any(isinstance(i, StreamGap) for i in got))
    finally:
        stream.close()
    token = adapter.connection.client().session_id
    assert "reconnecting" in caplog.text
    assert token not in caplog.text and token.split("!")[1] not in caplog.text
