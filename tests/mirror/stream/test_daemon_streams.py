"""The daemon's streams end to end, on TinyCRM: a listener's changes reach the mirror within a
second or two, gaps, lost deliveries and dropped connections are polled, webhook deliveries
over real HTTP are answered 200 only once stored (500 and redelivered when they cannot be,
401 and polled for a bad signature), and a portal edit is pushed within the wake-up window."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from mirror.daemon import Daemon
from mirror.errors import TransientError
from mirror.stream import inbox
from mirror.stream.inbox import requested_polls
from mirror.types import StreamEvent
from tests.mirror.stream.world import World, world

LABELS = {"source": "tiny", "object": "deals"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def eventually(
    check: Callable[[], Any], timeout: float = 10.0, state: Callable[[], Any] = lambda: None
) -> float:
    """Wait until ``check()`` is true; returns the seconds it took (``state()`` is shown
    when it times out)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"timed out: {state()}"
        time.sleep(0.01)
    return time.monotonic() - started


@contextmanager
def running(w: World) -> Iterator[Daemon]:
    """The daemon's streams and push wake-up running on ``w`` (no schedule)."""
    daemon = Daemon(w.mirror, worker_id="w1")
    daemon.start_streams()
    try:
        yield daemon
    finally:
        daemon.close_streams()


def test_a_listened_change_reaches_the_mirror_at_once(db_url: str) -> None:
    with world(db_url, "listen") as w, running(w) as daemon:
        deal = w.deal()
        eventually(lambda: w.mirror.stream_status()[0].state == "connecting")
        w.crm.update("deals", deal, {"name": "streamed"})
        took = eventually(lambda: w.row("deals", deal)["name"] == "streamed")
        assert took < 2.0
        assert [c.fields["name"][1] for c in w.feed()] == ["streamed"]
        eventually(lambda: w.mirror.stream_status()[0].applied == 1)
        [status] = w.mirror.stream_status()
        assert status.state == "live" and status.position is not None
        assert status.lag_seconds is not None
        sample = daemon.metrics.registry.get_sample_value
        eventually(lambda: sample("prm_stream_records_applied_total", LABELS) == 1)
        assert sample("prm_stream_events_received_total", {"source": "tiny"}) == 1


def test_a_gap_and_a_lost_delivery_are_polled_at_once(db_url: str) -> None:
    with world(db_url, "listen") as w, running(w) as daemon:
        deal = w.deal()
        eventually(lambda: w.mirror.stream_status()[0].state == "connecting")
        w.stream.lose_next()
        w.crm.update("deals", deal, {"name": "lost"})
        w.stream.gap("deals")
        eventually(lambda: w.row("deals", deal)["name"] == "lost")
        eventually(lambda: requested_polls(w.mirror.store) == [])
        fallbacks = daemon.metrics.registry.get_sample_value
        assert fallbacks("prm_stream_fallbacks_total", {"source": "tiny"}) == 1


def test_a_dropped_connection_resumes_from_its_position_and_polls(db_url: str) -> None:
    with world(db_url, "listen") as w, running(w):
        first, second = w.deal(0), w.deal(1)
        eventually(lambda: w.mirror.stream_status()[0].state == "connecting")
        w.crm.update("deals", first, {"name": "before"})
        eventually(lambda: w.row("deals", first)["name"] == "before")
        w.stream.break_connections()
        eventually(lambda: w.mirror.stream_status()[0].gaps == 1)
        w.crm.update("deals", second, {"name": "while down"})
        eventually(lambda: w.row("deals", second)["name"] == "while down")
        eventually(lambda: w.mirror.stream_status()[0].received == 2)
        [status] = w.mirror.stream_status()
        assert status.last_gap_reason is not None
        assert "listener failed" in status.last_gap_reason
        assert status.position == "2"
        eventually(lambda: requested_polls(w.mirror.store) == [])


def test_a_position_past_retention_is_a_gap_and_the_stream_goes_on(db_url: str) -> None:
    with world(db_url, "listen") as w:
        deal = w.deal()
        w.crm.update("deals", deal, {"name": "forgotten"})
        inbox.record(w.mirror.store, "tiny", [], ["deals"])
        with w.mirror.store.transaction() as conn:
            conn.exec_driver_sql("UPDATE mirror_stream_positions SET position = '0'")
        w.stream.forget_retained()
        with running(w):
            eventually(lambda: w.row("deals", deal)["name"] == "forgotten")
            eventually(lambda: requested_polls(w.mirror.store) == [])
            reason = w.mirror.stream_status()[0].last_gap_reason
            assert reason == "replay position past the retention window"


def test_stopping_ends_the_listener(db_url: str) -> None:
    with world(db_url, "listen") as w:
        daemon = Daemon(w.mirror, worker_id="w1")
        daemon.start_streams()
        eventually(lambda: w.mirror.stream_status()[0].state == "connecting")
        assert daemon.streams is not None
        threads = list(daemon.streams._threads)
        daemon.stop()
        daemon.close_streams()
        assert not any(thread.is_alive() for thread in threads)
        assert w.mirror.stream_status()[0].state == "stopped"


def hooks(db_url: str) -> Any:
    return world(db_url, "webhook", webhook_port=free_port())


def test_a_webhook_delivery_is_stored_before_it_is_answered(db_url: str) -> None:
    with hooks(db_url) as w, running(w):
        answered: list[int] = []
        receive = w.mirror.receive_webhook

        def checked(*args: Any) -> tuple[int, str]:
            status, text = receive(*args)
            if status == 200:
                answered.append(w.mirror.stream_status()[0].received)
            return status, text

        w.mirror.receive_webhook = checked  # type: ignore[method-assign]
        port = w.mirror.config.daemon.webhook_port
        w.stream.post_to(f"http://127.0.0.1:{port}/hooks/tiny")
        deal = w.deal()
        w.crm.update("deals", deal, {"name": "posted"})
        w.crm.update("deals", w.deal(1), {"name": "posted too"})
        took = eventually(lambda: w.row("deals", w.deal(1))["name"] == "posted too")
        assert took < 2.0
        w.stream.drain()
        assert answered == [1, 2]
        assert [status for status, _ in w.stream.delivered] == [200, 200]


def test_a_delivery_that_cannot_be_stored_is_answered_500_and_delivered_again(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with hooks(db_url) as w, running(w):
        record = inbox.record
        failures = [RuntimeError("the store is down")]

        def failing(*args: Any, **kw: Any) -> Any:
            if failures:
                raise failures.pop()
            return record(*args, **kw)

        monkeypatch.setattr(inbox, "record", failing)
        w.stream.post_to(f"http://127.0.0.1:{w.mirror.config.daemon.webhook_port}/hooks/tiny")
        deal = w.deal()
        w.crm.update("deals", deal, {"name": "second try"})
        eventually(lambda: w.row("deals", deal)["name"] == "second try")
        w.stream.drain()
        assert [status for status, _ in w.stream.delivered] == [500, 200]


def test_a_bad_signature_is_refused_and_polled(db_url: str) -> None:
    with hooks(db_url) as w, running(w):
        w.stream.post_to(f"http://127.0.0.1:{w.mirror.config.daemon.webhook_port}/hooks/tiny")
        deal = w.deal()
        w.stream.sign_badly_next()
        w.crm.update("deals", deal, {"name": "forged?"})
        w.stream.drain()
        assert [status for status, _ in w.stream.delivered] == [401]
        eventually(lambda: w.row("deals", deal)["name"] == "forged?")
        eventually(lambda: requested_polls(w.mirror.store) == [])
        assert w.mirror.stream_status()[0].received == 0


def test_an_unknown_hook_is_not_found(db_url: str) -> None:
    with hooks(db_url) as w:
        assert w.mirror.receive_webhook("other", "POST", "/", {}, b"")[0] == 404


def test_a_portal_edit_is_pushed_within_the_window(db_url: str) -> None:
    with world(db_url, "listen", push_wake_window=0.2) as w, running(w) as daemon:
        partner = w.mirror.partners()[0]["id"]
        view = w.mirror.as_partner(partner)
        deal = view.select("deals", limit=1)[0]["id"]
        started = time.monotonic()
        view.update("deals", deal, {"amount": 777.0})
        eventually(lambda: w.crm.records["deals"][deal]["amount"] == 777.0)
        took = time.monotonic() - started
        assert 0.2 <= took < 1.0
        wakeups = daemon.metrics.registry.get_sample_value(
            "prm_push_wakeups_total", {"source": "tiny"}
        )
        assert wakeups == 1
        eventually(lambda: all(e.confirmed for e in w.outbox()))
        assert w.feed() == []


def test_a_second_edit_after_the_echo_goes_out_at_once(db_url: str) -> None:
    """The stream brings the first edit's echo within a second, so the next edit of the
    record is made on the version our write produced and is pushed at once."""
    with world(db_url, "listen", push_wake_window=0.05) as w, running(w):
        partner = w.mirror.partners()[0]["id"]
        view = w.mirror.as_partner(partner)
        deal = view.select("deals", limit=1)[0]["id"]
        view.update("deals", deal, {"amount": 1.0})
        eventually(lambda: all(e.confirmed for e in w.outbox()), timeout=3.0)
        started = time.monotonic()
        view.update("deals", deal, {"name": "after the echo"})
        eventually(
            lambda: w.crm.records["deals"][deal]["name"] == "after the echo",
            timeout=3.0,
            state=lambda: [(e.status, e.error_code, e.new_values) for e in w.outbox()],
        )
        assert time.monotonic() - started < 1.0
        eventually(lambda: all(e.confirmed for e in w.outbox()))
        assert w.feed() == []


def test_records_the_crm_will_not_fetch_are_handed_to_a_poll(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with world(db_url, "listen") as w:
        adapter = w.mirror.adapter("tiny")
        fetch = adapter.fetch

        def refusing(spec: Any, ids: Any) -> Any:
            if "not-an-id" in ids:
                raise TransientError("tinycrm: the server refuses that id")
            return fetch(spec, ids)

        monkeypatch.setattr(adapter, "fetch", refusing)
        deal = w.deal()
        w.crm.update("deals", deal, {"name": "behind a bad id"})
        w.mirror.record_stream("tiny", [StreamEvent("deals", changed=("not-an-id", deal))])
        with running(w):
            eventually(lambda: w.row("deals", deal)["name"] == "behind a bad id")
            eventually(lambda: requested_polls(w.mirror.store) == [])
            assert w.mirror.stream_waiting() == {}
            reason = w.mirror.stream_status()[0].last_gap_reason
            assert reason is not None and reason.startswith("apply failed: ")
