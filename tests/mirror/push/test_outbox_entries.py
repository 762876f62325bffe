"""The outbox's own operations (``mirror.push.outbox``) on a small SQLite mirror: what an entry
holds,
which entries are open, the typed values a write is checked against, failing the edits of a
deleted record, and releasing blocked entries."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert, update

from mirror.push.outbox import (
    base_values,
    enqueue,
    entry_by_key,
    fail_open_edits,
    is_local,
    new_local_id,
    open_entries,
    release_blocks,
    set_entry,
    stale_blocks,
    still_pending,
)
from mirror.store.database import utcnow
from mirror.store.records import field_value
from mirror.store.tables import mirror_outbox, mirror_runs
from mirror.types import ObjectSpec
from tests.mirror.pull.pull_bench import Bench, at, bench_at, spec_of


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    yield from bench_at(tmp_path)


def queue(bench: Bench, record_id: str, op: str = "update", **kw) -> int:
    """One entry queued as a portal write queues it (``Name`` edited from ``a`` to ``b``)."""
    args = {
        "record_id": record_id,
        "op": op,
        "values": {"Name": "b"},
        "before": {"Name": "a"},
        "base_version": None,
        "partner_id": "p1",
        "author": "u1",
        **kw,
    }
    with bench.store.transaction() as conn:
        return enqueue(conn, args.pop("spec", bench.spec), **args)


def queue_many(bench: Bench, ids: list[str]) -> list[int]:
    """One ``Name`` edit queued for each of ``ids``, in one transaction."""
    with bench.store.transaction() as conn:
        return [
            enqueue(
                conn,
                bench.spec,
                record_id=record_id,
                op="update",
                values={"Name": "b"},
                before={"Name": "a"},
                base_version=None,
                partner_id=None,
                author=None,
                feed=False,
            )
            for record_id in ids
        ]


@contextmanager
def statements(bench: Bench) -> Iterator[list[tuple[str, Any]]]:
    """The statements the store executes meanwhile, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def record(_conn, _cursor, statement, parameters, _context, _many) -> None:
        seen.append((statement, parameters))

    event.listen(bench.store.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(bench.store.engine, "before_cursor_execute", record)


def chunks_of(seen: list[tuple[str, Any]], wanted: set[Any]) -> list[int]:
    """How many of ``wanted`` each statement that names any of them names: the chunks of a
    chunked statement, each value in exactly one chunk per pass."""
    sizes = []
    for _statement, parameters in seen:
        values = parameters.values() if isinstance(parameters, dict) else parameters
        named = [v for v in values if isinstance(v, str | int) and v in wanted]
        if named:
            sizes.append(len(named))
    return sizes


def lead() -> ObjectSpec:
    """A second object of the ``fake`` source."""
    return dataclasses.replace(spec_of(), name="Lead")


def test_a_local_id_is_recognised_and_nothing_else_is() -> None:
    made = new_local_id()
    assert re.fullmatch(r"local-[0-9a-f]{20}", made)
    assert made != new_local_id()
    assert is_local(made) and is_local("local-")
    assert not is_local("d1") and not is_local("xlocal-1") and not is_local(None)
    assert not is_local(12)


def test_an_entry_holds_the_write_and_its_change_feed_entry(bench: Bench) -> None:
    before = utcnow()
    seq = queue(bench, "d1", values={"Name": "b", "Closes": at(5)}, base_version="v1")
    entry = bench.entry(seq)
    assert (entry.source, entry.object, entry.record_id, entry.op) == (
        "fake",
        "Deal",
        "d1",
        "update",
    )
    assert entry.new_values == {"Name": "b", "Closes": at(5).isoformat()}
    assert (entry.old_values, entry.base_version) == ({"Name": "a"}, "v1")
    assert (entry.partner_id, entry.author, entry.status, entry.attempts) == (
        "p1",
        "u1",
        "pending",
        0,
    )
    assert (entry.force, entry.confirmed, entry.crm_id, entry.pushed_version) == (
        False,
        False,
        None,
        None,
    )
    assert re.fullmatch(r"[0-9a-f]{32}", entry.idempotency_key)
    assert before <= entry.created_at == entry.updated_at == entry.next_attempt_at <= utcnow()
    (change,) = bench.changes("portal", inserts=True)
    assert (change.record_id, change.op, change.author, change.at) == (
        "d1",
        "update",
        "u1",
        entry.created_at,
    )
    assert (change.source, change.object) == ("fake", "Deal")
    assert change.fields == {"Name": ["a", "b"], "Closes": [None, at(5).isoformat()]}
    assert queue(bench, "d2") == seq + 1


def test_an_entry_keeps_a_given_key_and_may_stay_out_of_the_feed(bench: Bench) -> None:
    seq = queue(bench, "d1", op="create", idempotency_key="k-1", feed=False)
    assert bench.entry(seq).idempotency_key == "k-1"
    assert bench.changes("portal", inserts=True) == []
    other = queue(bench, "d2")
    assert bench.entry(other).idempotency_key not in ("k-1", bench.entry(seq).idempotency_key)


def test_a_delete_is_fed_without_fields(bench: Bench) -> None:
    queue(bench, "d1", op="delete", values={}, before={})
    (change,) = bench.changes("portal", inserts=True)
    assert (change.op, change.fields) == ("delete", None)


def test_open_entries_are_the_unsettled_ones_per_record_oldest_first(bench: Bench) -> None:
    statuses = {
        "pending": True,
        "sending": True,
        "blocked": True,
        "failed": False,
        "superseded": False,
        "conflict": False,
    }
    seqs = {}
    for status in statuses:
        seqs[status] = queue(bench, "d1")
        bench.set_entry(seqs[status], status=status)
    done = queue(bench, "d1")
    bench.pushed(done, at(1))
    confirmed = queue(bench, "d1")
    bench.pushed(confirmed, at(1), confirmed=True)
    elsewhere = queue(bench, "d2")
    queue(bench, "d1", spec=spec_of("other"))
    with bench.store.engine.connect() as conn:
        found = open_entries(conn, "fake", "Deal", ["d1", "d2", "d3"])
        assert open_entries(conn, "fake", "Other", ["d1"]) == {}
    expected = [seqs[s] for s, is_open in statuses.items() if is_open] + [done]
    assert [e.seq for e in found["d1"]] == expected
    assert [e.seq for e in found["d2"]] == [elsewhere]
    assert set(found) == {"d1", "d2"}


def test_open_entries_are_asked_for_in_chunks_without_gaps_or_repeats(bench: Bench) -> None:
    ids = [f"r{n:04}" for n in range(1003)]
    wanted = [ids[n] for n in (0, 498, 499, 500, 501, 999, 1000, 1002)]
    for record_id in wanted:
        queue(bench, record_id)
    with statements(bench) as seen, bench.store.engine.connect() as conn:
        found = open_entries(conn, "fake", "Deal", iter(ids))
    assert chunks_of(seen, set(ids)) == [500, 500, 3]
    assert sorted(found) == wanted
    assert all(len(rows) == 1 for rows in found.values())


def test_a_stored_value_is_typed_back_by_its_field(bench: Bench) -> None:
    spec = bench.spec
    assert field_value(spec, "Closes", at(5).isoformat()) == at(5)
    assert field_value(spec, "Amount", "10") == 10.0 and isinstance(
        field_value(spec, "Amount", "10"), float
    )
    assert field_value(spec, "Closes", None) is None
    assert field_value(spec, "Gone", "2026-01-01T00:00:05+00:00") == "2026-01-01T00:00:05+00:00"


def test_the_base_of_a_write_is_its_written_fields_old_values_typed(bench: Bench) -> None:
    seq = queue(
        bench,
        "d1",
        values={"Name": "b", "Closes": at(9), "Stage": "s", "Ext": "local-1", "Score": 1},
        before={"Name": "a", "Closes": at(5), "Ext": "local-2", "Score": "local-9", "Amount": 3},
    )
    entry = bench.entry(seq)
    assert base_values(bench.spec, entry, {"local-2": "d7"}) == {
        "Name": "a",
        "Closes": at(5),
        "Ext": "d7",
    }
    assert base_values(bench.spec, entry, {"local-9": "9"}) == {
        "Name": "a",
        "Closes": at(5),
        "Score": 9,
    }


def test_setting_an_entry_changes_it_alone_and_stamps_it(bench: Bench) -> None:
    seq, other = queue(bench, "d1"), queue(bench, "d2")
    stamped = bench.entry(seq).updated_at
    with bench.store.transaction() as conn:
        set_entry(conn, seq, status="failed", attempts=3)
    entry = bench.entry(seq)
    assert (entry.status, entry.attempts) == ("failed", 3)
    assert entry.updated_at > stamped
    assert (bench.entry(other).status, bench.entry(other).updated_at) == (
        "pending",
        bench.entry(other).created_at,
    )


def test_a_record_is_pending_while_any_entry_of_it_is_open(bench: Bench) -> None:
    seq = queue(bench, "d1")
    queue(bench, "d2", spec=spec_of("other"))
    queue(bench, "d2", spec=lead())

    def pending(record_id: str) -> bool:
        with bench.store.engine.connect() as conn:
            return still_pending(conn, "fake", "Deal", record_id)

    assert pending("d1") and not pending("d2")
    bench.pushed(seq, at(1))
    assert pending("d1")
    bench.set_entry(seq, confirmed=True)
    assert not pending("d1")


def test_a_deleted_records_edits_fail_and_its_pushed_ones_close(bench: Bench) -> None:
    ids = [f"r{n:04}" for n in range(1002)]
    opened = {i: queue(bench, i) for i in (ids[0], ids[500], ids[501], ids[1001])}
    pushed = queue(bench, ids[499])
    bench.pushed(pushed, at(1))
    confirmed = queue(bench, ids[1])
    bench.pushed(confirmed, at(1), confirmed=True)
    bench.stamp(confirmed, at(5))
    kept = queue(bench, "d1")
    bench.pushed(kept, at(1))
    superseded = queue(bench, ids[0])
    bench.set_entry(superseded, status="superseded")
    decoys = []
    for spec in (spec_of("other"), lead()):
        decoys += [queue(bench, ids[2], spec=spec), queue(bench, ids[3], spec=spec)]
        bench.pushed(decoys[-1], at(1))
    before = utcnow()
    with statements(bench) as seen, bench.store.transaction() as conn:
        fail_open_edits(conn, "fake", "Deal", ids, "GONE", "deleted")
    for seq in opened.values():
        entry = bench.entry(seq)
        assert (entry.status, entry.error_code, entry.error_message) == (
            "failed",
            "GONE",
            "deleted",
        )
        assert entry.updated_at > entry.created_at and entry.confirmed is False
    entry = bench.entry(pushed)
    assert (entry.status, entry.confirmed, entry.error_code) == ("done", True, None)
    assert entry.updated_at >= before
    assert (bench.entry(confirmed).confirmed, bench.entry(confirmed).updated_at) == (True, at(5))
    assert (bench.entry(kept).status, bench.entry(kept).confirmed) == ("done", False)
    assert bench.entry(superseded).status == "superseded"
    assert [(bench.entry(s).status, bench.entry(s).confirmed) for s in decoys] == [
        ("pending", False),
        ("done", False),
    ] * 2
    assert chunks_of(seen, set(ids)) == [500, 500, 500, 500, 2, 2]


def test_an_entry_is_found_by_its_key_within_its_source(bench: Bench) -> None:
    seq = queue(bench, "d1", idempotency_key="k-1")
    with bench.store.engine.connect() as conn:
        assert entry_by_key(conn, "fake", "k-1").seq == seq
        assert entry_by_key(conn, "other", "k-1") is None
        assert entry_by_key(conn, "fake", "k-2") is None


def run_started(bench: Bench, source: str, name: str, when: dt.datetime, status: str) -> None:
    with bench.store.transaction() as conn:
        conn.execute(
            insert(mirror_runs).values(
                source=source, object=name, kind="incremental", status=status, started_at=when
            )
        )


def test_a_block_a_completed_sync_begun_after_it_did_not_release_is_stale(bench: Bench) -> None:
    deal, other = queue(bench, "d1"), queue(bench, "d2", spec=lead())
    foreign = queue(bench, "d3", spec=spec_of("other"))
    for seq in (deal, other, foreign):
        bench.set_entry(seq, status="blocked")
    blocked_at = bench.entry(other).updated_at
    unblocked = queue(bench, "d4")
    with bench.store.engine.connect() as conn:
        assert stale_blocks(conn, "fake") == []
    run_started(bench, "fake", "Deal", blocked_at - dt.timedelta(seconds=1), "ok")
    run_started(bench, "fake", "Lead", blocked_at + dt.timedelta(seconds=1), "failed")
    run_started(bench, "other", "Deal", blocked_at + dt.timedelta(seconds=1), "ok")
    with bench.store.engine.connect() as conn:
        assert stale_blocks(conn, "fake") == []
        assert stale_blocks(conn, "none") == []
    run_started(bench, "fake", "Deal", bench.entry(deal).updated_at, "ok")
    with bench.store.engine.connect() as conn:
        assert stale_blocks(conn, "fake") == []  # begun at the very moment: not after
    run_started(bench, "fake", "Deal", blocked_at + dt.timedelta(seconds=1), "ok")
    run_started(bench, "fake", "Lead", blocked_at + dt.timedelta(seconds=2), "ok")
    with bench.store.engine.connect() as conn:
        assert stale_blocks(conn, "fake") == [deal, other]
    assert bench.entry(unblocked).status == "pending"


def test_released_blocks_are_due_again_and_nothing_else_moves(bench: Bench) -> None:
    seqs = queue_many(bench, [f"r{n}" for n in range(1001)])
    with bench.store.transaction() as conn:
        conn.execute(update(mirror_outbox).values(status="blocked", next_attempt_at=at(0)))
    bench.set_entry(seqs[1], status="failed")
    before = utcnow()
    chosen = [seqs[n] for n in (0, 1, 499, 500, 501)]
    with statements(bench) as seen, bench.store.transaction() as conn:
        release_blocks(conn, chosen)
        release_blocks(conn, seqs[:1001])
    assert chunks_of(seen, set(seqs)) == [5, 500, 500, 1]
    for seq in chosen:
        entry = bench.entry(seq)
        if seq == seqs[1]:
            assert (entry.status, entry.next_attempt_at) == ("failed", at(0))
            continue
        assert entry.status == "pending"
        assert before <= entry.next_attempt_at == entry.updated_at <= utcnow()
    assert bench.entry(seqs[502]).status == "pending"  # among the first 1001 released
