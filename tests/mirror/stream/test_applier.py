"""The inbox and the applier (``mirror.stream``), on each backend: an event brings the CRM's
current version through the page path without moving the checkpoint; duplicated, reordered and
late events and stale poll pages never put an older version back; deletes, gaps and our own
echoed writes are handled as the design says (docs/streams.md)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from mirror import Mirror
from mirror.config import parse_config
from mirror.daemon import Daemon
from mirror.errors import ConfigError
from mirror.leases import Leases
from mirror.store.database import utcnow
from mirror.stream import inbox
from mirror.stream.inbox import requested_polls
from mirror.stream.ops import sync_job
from mirror.types import StreamEvent, StreamGap
from tests.adapters.fourth.crm import seeded
from tests.mirror.stream.world import config_for, deliver, registered, world


def test_an_event_brings_the_current_version_and_leaves_the_checkpoint(db_url: str) -> None:
    with world(db_url) as w:
        deal = w.deal()
        before = w.mirror.store.load_checkpoint("tiny", "deals")
        w.crm.update("deals", deal, {"name": "first"})
        w.crm.update("deals", deal, {"name": "second"})
        assert deliver(w) == 2
        assert w.mirror.stream_waiting() == {("tiny", "deals"): 1}
        calls = w.mirror.adapter("tiny").api_calls()
        [applied] = w.mirror.apply_stream("tiny")
        assert (applied.taken, applied.written) == (1, 1)
        assert w.mirror.adapter("tiny").api_calls() - calls == 1
        assert w.row("deals", deal)["name"] == "second"
        assert w.mirror.store.load_checkpoint("tiny", "deals") == before
        assert [c.fields["name"] for c in w.feed()] == [["Deal 0-0", "second"]]
        assert w.mirror.stream_waiting() == {}
        [status] = w.mirror.stream_status()
        assert (status.state, status.received, status.applied, status.position) == (
            "live",
            2,
            1,
            "2",
        )
        assert status.last_event_at == w.crm.records["deals"][deal]["updated_at"]


def test_duplicated_reordered_and_late_events_never_regress_a_record(db_url: str) -> None:
    with world(db_url) as w:
        first, second = w.deal(0), w.deal(1)
        w.stream.duplicate_next()
        w.crm.update("deals", first, {"name": "v1"})
        w.stream.reorder_next()
        w.crm.update("deals", second, {"name": "v1"})
        w.crm.update("deals", first, {"name": "v2"})
        items = deliver(w)
        assert items == 4
        w.mirror.apply_stream("tiny")
        assert (w.row("deals", first)["name"], w.row("deals", second)["name"]) == ("v2", "v1")
        late = StreamEvent("deals", changed=(first, second), committed_at=None)
        w.mirror.record_stream("tiny", [late, late])
        assert w.mirror.stream_waiting() == {("tiny", "deals"): 2}
        w.mirror.apply_stream("tiny")
        assert (w.row("deals", first)["name"], w.row("deals", second)["name"]) == ("v2", "v1")
        assert sorted((c.record_id, c.fields["name"][1]) for c in w.feed()) == [
            (first, "v2"),
            (second, "v1"),
        ]
        assert w.matches_crm()


def test_a_page_read_before_an_event_and_applied_after_it_keeps_the_newer_version(
    db_url: str,
) -> None:
    with world(db_url) as w:
        deal = w.deal()
        w.crm.update("deals", deal, {"name": "old"})
        adapter = w.mirror.adapter("tiny")
        spec = w.mirror.spec("tiny", "deals")
        stale = list(adapter.read(spec, w.mirror.store.load_checkpoint("tiny", "deals")))
        w.crm.update("deals", deal, {"name": "new"})
        deliver(w)
        w.mirror.apply_stream("tiny")
        assert w.row("deals", deal)["name"] == "new"
        read = adapter.read
        adapter.read = lambda _spec, _since: iter(stale)  # type: ignore[method-assign]
        try:
            [result] = w.mirror.sync(["deals"])
        finally:
            adapter.read = read  # type: ignore[method-assign]
        assert (result.totals.updated, result.totals.unchanged) == (0, 1)
        assert w.row("deals", deal)["name"] == "new"
        assert [c.fields["name"][1] for c in w.feed()] == ["new"]
        w.mirror.sync(["deals"])
        assert w.row("deals", deal)["name"] == "new" and w.matches_crm()


def test_equal_stamps_are_applied(db_url: str) -> None:
    """Stamps of one-second resolution cannot order two versions of one second: the later
    application wins, and the next poll (reading from that second) settles it."""
    with world(db_url) as w:
        deal = w.deal()
        stamp = w.row("deals", deal)["updated_at"]
        w.crm.records["deals"][deal]["name"] = "same second"
        deliver(w)
        w.mirror.record_stream("tiny", [StreamEvent("deals", changed=(deal,))])
        w.mirror.apply_stream("tiny")
        assert w.row("deals", deal)["name"] == "same second"
        assert w.row("deals", deal)["updated_at"] == stamp


def test_a_delete_event_tombstones_and_a_stale_page_does_not_bring_it_back(db_url: str) -> None:
    with world(db_url) as w:
        deal = w.deal()
        adapter = w.mirror.adapter("tiny")
        spec = w.mirror.spec("tiny", "deals")
        w.crm.update("deals", deal, {"name": "last words"})
        stale = list(adapter.read(spec, w.mirror.store.load_checkpoint("tiny", "deals")))
        w.crm.delete("deals", deal)
        deliver(w)
        w.mirror.apply_stream("tiny")
        assert w.row("deals", deal)["_deleted"] is True
        assert [c.op for c in w.feed()] == ["delete"]
        read = adapter.read
        adapter.read = lambda _spec, _since: iter(stale)  # type: ignore[method-assign]
        try:
            w.mirror.sync(["deals"])
        finally:
            adapter.read = read  # type: ignore[method-assign]
        assert w.row("deals", deal)["_deleted"] is True
        assert [c.op for c in w.feed()] == ["delete"]
        w.mirror.sync(["deals"])
        assert w.matches_crm()


def test_a_record_the_fetch_does_not_return_is_left_to_polling(db_url: str) -> None:
    with world(db_url) as w:
        deal = w.deal()
        w.crm.purge("deals", deal)
        w.mirror.record_stream("tiny", [StreamEvent("deals", changed=(deal,))])
        [applied] = w.mirror.apply_stream("tiny")
        assert (applied.taken, applied.fetched, applied.deleted) == (1, 0, 0)
        assert w.row("deals", deal)["_deleted"] is False
        assert w.mirror.stream_waiting() == {}
        w.mirror.sweep(["deals"])
        assert w.row("deals", deal)["_deleted"] is True


def test_a_merge_event_records_the_survivor(db_url: str) -> None:
    with world(db_url) as w:
        loser, survivor = w.deal(0), w.deal(1)
        w.crm.purge("deals", loser)
        merged = StreamEvent("deals", deleted=(loser,), merged_into={loser: survivor})
        w.mirror.record_stream("tiny", [merged])
        w.mirror.apply_stream("tiny")
        [delete] = w.feed()
        assert (delete.op, delete.record_id, delete.fields) == (
            "delete",
            loser,
            {"merged_into": [None, survivor]},
        )


def test_a_gap_or_a_lost_delivery_is_covered_by_the_poll_it_asks_for(db_url: str) -> None:
    with world(db_url) as w:
        lost, other = w.deal(0), w.deal(1)
        w.stream.lose_next()
        w.crm.update("deals", lost, {"name": "never told"})
        w.stream.gap("deals")
        w.crm.update("deals", other, {"name": "told"})
        deliver(w)
        assert requested_polls(w.mirror.store) == [
            ("tiny", "deals", "overflow: too many changes at once")
        ]
        [status] = w.mirror.stream_status()
        assert (status.gaps, status.polls_requested, status.state) == (1, ("deals",), "gap")
        w.mirror.apply_stream("tiny")
        assert w.row("deals", lost)["name"] != "never told"
        [run] = w.mirror.poll_gaps()
        assert (run.object, run.kind) == ("deals", "incremental")
        assert w.row("deals", lost)["name"] == "never told"
        assert requested_polls(w.mirror.store) == []
        assert w.mirror.poll_gaps() == []


def test_a_gap_of_every_object_asks_for_a_poll_of_each(db_url: str) -> None:
    with world(db_url) as w:
        w.mirror.record_stream("tiny", [StreamGap(None, "replay position past retention")])
        assert {o for _s, o, _r in requested_polls(w.mirror.store)} == {"partners", "deals"}
        began = w.mirror.store.load_checkpoint("tiny", "partners")
        assert began is not None
        assert sorted(r.object for r in w.mirror.poll_gaps()) == ["deals", "partners"]
        assert requested_polls(w.mirror.store) == []


def test_a_poll_that_began_before_the_gap_does_not_answer_it(db_url: str) -> None:
    with world(db_url) as w:
        began = utcnow() - timedelta(seconds=1)
        w.mirror.stream_gap("tiny", "overflow", "deals")
        inbox.polled(w.mirror.store, "tiny", "deals", began)
        assert [o for _s, o, _r in requested_polls(w.mirror.store)] == ["deals"]


def test_our_own_write_echoed_by_the_stream_is_recognised(db_url: str) -> None:
    with world(db_url) as w:
        partner = w.mirror.partners()[0]["id"]
        view = w.mirror.as_partner(partner)
        deal = view.select("deals", limit=1)[0]["id"]
        view.update("deals", deal, {"amount": 4321.0})
        assert w.mirror.push()["tiny"].failed == 0
        assert w.crm.records["deals"][deal]["amount"] == 4321.0
        deliver(w)
        w.mirror.apply_stream("tiny")
        [entry] = w.outbox()
        assert (entry.status, entry.confirmed) == ("done", True)
        assert w.feed() == []
        assert w.row("deals", deal)["_pending"] is False
        assert w.row("deals", deal)["updated_at"] == w.crm.records["deals"][deal]["updated_at"]


def test_a_crm_edit_after_our_write_is_a_crm_change(db_url: str) -> None:
    with world(db_url) as w:
        partner = w.mirror.partners()[0]["id"]
        view = w.mirror.as_partner(partner)
        deal = view.select("deals", limit=1)[0]["id"]
        view.update("deals", deal, {"amount": 4321.0})
        w.mirror.push()
        w.crm.update("deals", deal, {"name": "renamed in the CRM"})
        deliver(w)
        w.mirror.apply_stream("tiny")
        [change] = w.feed()
        assert change.fields["name"][1] == "renamed in the CRM"
        assert w.row("deals", deal)["amount"] == 4321.0
        [entry] = w.outbox()
        assert entry.status == "done"


def test_events_of_an_object_not_mirrored_yet_are_left_to_its_backfill(db_url: str) -> None:
    with world(db_url) as w:
        w.mirror.store.reset_checkpoint("tiny", "deals")
        w.mirror.record_stream("tiny", [StreamEvent("elsewhere", changed=("x1",))])
        assert w.mirror.stream_waiting() == {}
        assert w.mirror.stream_status()[0].received == 1


def test_a_stream_where_the_adapter_has_none_is_a_config_problem(tmp_path) -> None:
    crm = seeded(partners=1, deals_each=1)
    try:
        with registered():
            plain = config_for(f"sqlite:///{tmp_path}/a.db", crm, "")
            forced = plain.model_copy(
                update={
                    "sources": {"tiny": plain.sources["tiny"].model_copy(update={"stream": True})}
                }
            )
            with Mirror(forced) as mirror:
                [problem] = mirror.stream_problems()
                assert problem.startswith("sources.tiny.stream: the tinycrm adapter has no")
            hooks = config_for(f"sqlite:///{tmp_path}/b.db", crm, "webhook", webhook_port=0)
            with Mirror(hooks) as mirror:
                [problem] = mirror.stream_problems()
                assert problem.startswith("daemon.webhook_port: 0, but sources.tiny")
            with Mirror(config_for(f"sqlite:///{tmp_path}/c.db", crm, "listen")) as mirror:
                assert mirror.stream_problems() == []
            with Mirror(forced) as mirror, pytest.raises(ConfigError):
                Daemon(mirror).run()
    finally:
        crm.stop()


def test_the_stream_config_keys_are_checked() -> None:
    with registered(), pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "daemon": {"webhook_port": 70000, "push_wake_window": -1},
                "sources": {"tiny": {"crm": "tinycrm", "stream": "yes please"}},
            }
        )
    problems = "\n".join(caught.value.problems)
    for key in ("daemon.webhook_port", "daemon.push_wake_window", "sources.tiny.stream"):
        assert key in problems


def test_deliveries_stored_at_once_are_all_counted(db_url: str) -> None:
    """A webhook endpoint stores several deliveries at once: none is lost, and the counters
    and the requested polls take every one (no counter is written from a stale read)."""
    with world(db_url) as w:
        deals = sorted(w.crm.records["deals"])
        start = threading.Barrier(6)
        failures: list[BaseException] = []

        def deliveries(number: int) -> None:
            try:
                start.wait()
                for deal in deals:
                    event = StreamEvent("deals", changed=(deal,))
                    w.mirror.record_stream("tiny", [event, StreamGap("deals", f"g{number}")])
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=deliveries, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        [status] = w.mirror.stream_status()
        assert (status.received, status.gaps) == (6 * len(deals), 6 * len(deals))
        assert w.mirror.stream_waiting() == {("tiny", "deals"): len(deals)}
        assert [o for _s, o, _r in requested_polls(w.mirror.store)] == ["deals"]


def test_an_apply_waits_for_the_objects_sync_here_and_in_another_worker(db_url: str) -> None:
    """A stream apply never runs beside a poll of the same object: the object's lock in this
    process, its lease across workers. Its records wait in the inbox meanwhile."""
    with world(db_url) as w:
        deal = w.deal()
        w.crm.update("deals", deal, {"name": "waits"})
        deliver(w)
        job = sync_job("tiny", "deals")
        held = threading.Event()
        release = threading.Event()

        def polling() -> None:
            with w.mirror.work_lock(job):
                held.set()
                release.wait()

        thread = threading.Thread(target=polling)
        thread.start()
        held.wait()
        try:
            assert w.mirror.apply_stream("tiny") == []
        finally:
            release.set()
            thread.join()
        other = Leases(w.mirror.store, "another-worker")
        mine = Leases(w.mirror.store, "this-worker")
        assert other.acquire(job)
        assert w.mirror.apply_stream("tiny", leases=mine) == []
        assert w.mirror.stream_waiting() == {("tiny", "deals"): 1}
        other.release(job)
        [applied] = w.mirror.apply_stream("tiny", leases=mine)
        assert applied.written == 1 and w.row("deals", deal)["name"] == "waits"
        assert other.acquire(job)
