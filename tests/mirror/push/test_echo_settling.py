"""Pushed edits a pull could not settle, settled by a read made after their write
(``mirror.push.echoes``), on a small SQLite mirror with a CRM that only answers fetches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from mirror.push.echoes import unconfirmed, verify_echoes
from mirror.store.tables import mirror_outbox
from mirror.types import Checkpoint, ObjectSpec, Record
from tests.mirror.pull.pull_bench import Bench, at, bench_at, deal, spec_of

WRITTEN = at(1000)


class Fetcher:
    """A CRM answering ``fetch`` with the records it holds (and any ``extra`` ones)."""

    def __init__(self, records: dict[str, Record], extra: Sequence[Record] = ()) -> None:
        self.records = records
        self.extra = list(extra)
        self.asked: list[list[str]] = []

    def fetch(self, spec: ObjectSpec, ids: Sequence[str]) -> list[Record]:
        """The held records among ``ids``."""
        assert (spec.source, spec.name) == ("fake", "Deal")
        self.asked.append(list(ids))
        return [dict(self.records[i]) for i in ids if i in self.records] + self.extra


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    yield from bench_at(tmp_path)


def pushed_unsettled(bench: Bench, record_id: str, value: str = "portal") -> int:
    """``record_id`` mirrored, its Name edited to ``value`` and pushed at second 20 (entry
    stamped at ``WRITTEN``), and a read at that second showing another value: unsettled."""
    bench.apply([deal(record_id, 10, Name="base")])
    seq = bench.edit(record_id, Name=value)
    bench.pushed(seq, at(20))
    bench.apply([deal(record_id, 20, Name="other")])
    assert bench.entry(seq).confirmed is False and bench.row(record_id)["Name"] == value
    bench.stamp(seq, WRITTEN)
    return seq


def settle(bench: Bench, crm: Any, written_before=WRITTEN) -> int:
    return verify_echoes(bench.store, crm, bench.mirrored, bench.context(), written_before)


def test_a_read_after_the_write_takes_the_crms_other_value(bench: Bench) -> None:
    seq = pushed_unsettled(bench, "d1")
    logged = len(bench.changes())
    crm = Fetcher({"d1": deal("d1", 20, Name="other")})
    assert settle(bench, crm) == 1
    assert crm.asked == [["d1"]]
    assert (bench.row("d1")["Name"], bench.row("d1")["_pending"]) == ("other", False)
    assert bench.entry(seq).confirmed is True
    assert [c.fields for c in bench.changes()[logged:]] == [{"Name": ["portal", "other"]}]
    assert settle(bench, crm) == 0 and len(crm.asked) == 1


def test_a_read_after_the_write_showing_the_portals_value_confirms_it(bench: Bench) -> None:
    seq = pushed_unsettled(bench, "d1")
    logged = len(bench.changes())
    crm = Fetcher({"d1": deal("d1", 20, Name="portal")})
    assert settle(bench, crm) == 1
    assert (bench.row("d1")["Name"], bench.entry(seq).confirmed) == ("portal", True)
    assert bench.changes()[logged:] == []


def test_the_page_keeps_the_saved_checkpoint(bench: Bench) -> None:
    pushed_unsettled(bench, "d1")
    saved = Checkpoint("2026-01-01T00:00:20+00:00", ("d1",), "incremental", {"k": 1})
    with bench.store.transaction() as conn:
        bench.store.save_checkpoint(conn, "fake", "Deal", saved)
    settle(bench, Fetcher({"d1": deal("d1", 20, Name="other")}))
    assert bench.store.load_checkpoint("fake", "Deal") == saved


def test_without_a_saved_checkpoint_none_is_saved(bench: Bench) -> None:
    pushed_unsettled(bench, "d1")
    bench.store.reset_checkpoint("fake", "Deal")
    assert settle(bench, Fetcher({"d1": deal("d1", 20, Name="other")})) == 1
    assert bench.store.load_checkpoint("fake", "Deal") is None


def test_a_polls_checkpoint_committed_while_the_echoes_are_settled_is_kept(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poll of the object that commits its page between the echo check's fetch and its
    transaction: the check must not put the checkpoint it saw before back."""
    pushed_unsettled(bench, "d1")
    before = Checkpoint("2026-01-01T00:00:20+00:00", ("d1",), "incremental", {})
    polled = Checkpoint("2026-01-01T00:00:30+00:00", ("d7",), "incremental", {})
    store = bench.store
    with store.transaction() as conn:
        store.save_checkpoint(conn, "fake", "Deal", before)
    transaction = store.transaction
    polls = [polled]

    @contextmanager
    def racing() -> Iterator[Any]:
        while polls:
            with transaction() as conn:
                store.save_checkpoint(conn, "fake", "Deal", polls.pop())
        with transaction() as conn:
            yield conn

    monkeypatch.setattr(store, "transaction", racing)
    assert settle(bench, Fetcher({"d1": deal("d1", 20, Name="other")})) == 1
    assert polls == []
    assert store.load_checkpoint("fake", "Deal") == polled


def test_a_record_not_returned_or_deleted_stays_as_it_is(bench: Bench) -> None:
    gone = pushed_unsettled(bench, "d1")
    deleted = pushed_unsettled(bench, "d2")
    stranger = deal("d3", 20, Name="x")
    crm = Fetcher({"d2": {**deal("d2", 20, Name="other"), "IsDeleted": True}}, [stranger])
    assert settle(bench, crm) == 0
    assert crm.asked == [["d1", "d2"]]
    assert (bench.entry(gone).confirmed, bench.entry(deleted).confirmed) == (False, False)
    assert bench.row("d2")["Name"] == "portal" and "d3" not in bench.rows()


def test_only_records_returned_live_are_merged(bench: Bench) -> None:
    kept = pushed_unsettled(bench, "d1")
    settled = pushed_unsettled(bench, "d2")
    crm = Fetcher({"d1": {**deal("d1", 20, Name="other"), "IsDeleted": True}})
    crm.records["d2"] = {**deal("d2", 20, Name="other"), "IsDeleted": False}
    assert settle(bench, crm) == 1
    assert (bench.entry(kept).confirmed, bench.entry(settled).confirmed) == (False, True)


def test_the_fetch_asks_for_at_most_two_hundred_ids_at_a_time(bench: Bench) -> None:
    ids = [f"d{n:03}" for n in range(401)]
    bench.apply([deal(i, 10, Name="base") for i in ids])
    bench.edit_many(ids, Name="portal")
    with bench.store.transaction() as conn:
        conn.execute(
            update(mirror_outbox).values(
                status="done", pushed_version=at(20).isoformat(), updated_at=WRITTEN
            )
        )
    crm = Fetcher({i: deal(i, 20, Name="portal") for i in ids})
    assert settle(bench, crm) == 401
    assert [len(chunk) for chunk in crm.asked] == [200, 200, 1]
    assert [i for chunk in crm.asked for i in chunk] == ids
    assert all(entry.confirmed for entry in bench.entries())


def test_the_unconfirmed_entries_are_the_pushed_edits_written_before_the_sync(
    bench: Bench,
) -> None:
    early = pushed_unsettled(bench, "d1")
    exact = pushed_unsettled(bench, "d2")
    late = pushed_unsettled(bench, "d3")
    second = bench.edit("d1", Stage="s")
    bench.pushed(second, at(20))
    bench.stamp(early, at(999))
    bench.stamp(second, at(998))
    bench.stamp(late, at(1001))
    bench.apply([deal("d4", 10, Name="base")])
    pending = bench.edit("d4", Name="portal")
    bench.stamp(pending, at(1))
    confirmed = pushed_unsettled(bench, "d5")
    bench.set_entry(confirmed, confirmed=True)
    bench.stamp(confirmed, at(1))
    deleted = pushed_unsettled(bench, "d6")
    table = bench.mirrored.table
    with bench.store.transaction() as conn:
        conn.execute(update(table).where(table.c.Id == "d6").values(_deleted=True))
    found = unconfirmed(bench.store, bench.mirrored, WRITTEN)
    assert found == {"d1": [early, second], "d2": [exact]}
    assert list(found) == ["d1", "d2"]
    assert deleted not in found.get("d6", [])


def test_a_create_and_no_delete_waits_for_its_echo_and_a_local_id_is_not_asked_for(
    tmp_path: Path,
) -> None:
    for bench in bench_at(tmp_path):
        local = bench.create(Name="new")
        (create,) = bench.entries()
        bench.set_entry(create.seq, status="done", pushed_version=at(20).isoformat())
        bench.stamp(create.seq, at(1))
        assert unconfirmed(bench.store, bench.mirrored, WRITTEN) == {}
        bench.settle(create, "d9", at(20))
        bench.stamp(create.seq, at(1))
        assert local not in bench.rows()
        assert unconfirmed(bench.store, bench.mirrored, WRITTEN) == {"d9": [create.seq]}
        bench.set_entry(create.seq, op="delete")
        bench.stamp(create.seq, at(1))
        assert unconfirmed(bench.store, bench.mirrored, WRITTEN) == {}


def test_another_objects_entries_are_not_its(tmp_path: Path) -> None:
    for bench in bench_at(tmp_path):
        seq = pushed_unsettled(bench, "d1")
        other = bench.store.prepare_object(spec_of("other"))
        assert unconfirmed(bench.store, other, WRITTEN) == {}
        bench.set_entry(seq, object="Lead")
        bench.stamp(seq, at(1))
        assert unconfirmed(bench.store, bench.mirrored, WRITTEN) == {}
        bench.set_entry(seq, object="Deal", source="other")
        bench.stamp(seq, at(1))
        assert unconfirmed(bench.store, bench.mirrored, WRITTEN) == {}
        bench.set_entry(seq, source="fake")
        bench.stamp(seq, at(1))
        assert unconfirmed(bench.store, bench.mirrored, WRITTEN) == {"d1": [seq]}


def test_a_row_not_marked_pending_is_merged_with_its_entry_all_the_same(bench: Bench) -> None:
    seq = pushed_unsettled(bench, "d1")
    table = bench.mirrored.table
    with bench.store.transaction() as conn:
        conn.execute(update(table).where(table.c.Id == "d1").values(_pending=False))
    assert settle(bench, Fetcher({"d1": deal("d1", 20, Name="other")})) == 1
    assert (bench.row("d1")["Name"], bench.entry(seq).confirmed) == ("other", True)
