"""Applying one page (``mirror.pull.pages``) on a small SQLite mirror: what it counts, writes, logs,
rejects and deletes, and what it hands the page hooks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mirror.pull import pages
from mirror.pull.pages import PageOutcome
from mirror.store.tables import mirror_idmap, mirror_rejects
from mirror.types import Checkpoint, Reject, Tombstone
from tests.mirror.pull.pull_bench import Bench, at, bench_at, deal


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    yield from bench_at(tmp_path)


def rejects(bench: Bench) -> list[Any]:
    with bench.store.engine.connect() as conn:
        return list(conn.execute(select(mirror_rejects).order_by(mirror_rejects.c.id)))


def test_outcomes_add_up_their_counts_and_not_their_ids() -> None:
    total = PageOutcome(1, 2, 3, 4, 5, written_ids=["a"])
    total.add(PageOutcome(10, 20, 30, 40, 50, written_ids=["b"], deleted_ids=["c"]))
    assert (total.inserted, total.updated, total.unchanged, total.deleted, total.rejected) == (
        11,
        22,
        33,
        44,
        55,
    )
    assert (total.written_ids, total.deleted_ids) == (["a"], [])


def test_inserts_updates_and_unchanged_records_are_counted_and_logged(bench: Bench) -> None:
    first = bench.apply([deal("b", 1, Name="B"), deal("a", 1, Name="A")])
    assert (first.inserted, first.updated, first.unchanged) == (2, 0, 0)
    assert first.written_ids == ["a", "b"]
    assert not first.initial and not first.backfill_done
    second = bench.apply([deal("a", 1, Name="A"), deal("b", 2, Name="B2"), deal("c", 2)])
    assert (second.inserted, second.updated, second.unchanged) == (1, 1, 1)
    third = bench.apply([deal("a", 3), deal("b", 3), deal("c", 2), deal("d", 2), deal("e", 2)])
    assert (third.inserted, third.updated, third.unchanged) == (2, 2, 1)
    fourth = bench.apply([deal("a", 3), deal("b", 3), deal("c", 4)])
    assert (fourth.inserted, fourth.updated, fourth.unchanged) == (0, 1, 2)
    assert second.written_ids == ["b", "c"]
    assert second.changed_fields == {"b": frozenset({"Name", "Modstamp"})}
    assert second.previous == {"b": {"Name": "B", "Modstamp": at(1)}}
    feed = bench.changes(inserts=True)[:4]
    assert [(c.record_id, c.op, c.run_id, c.origin, c.author) for c in feed] == [
        ("a", "insert", 7, "crm", None),
        ("b", "insert", 7, "crm", None),
        ("b", "update", 7, "crm", None),
        ("c", "insert", 7, "crm", None),
    ]
    assert [c.fields for c in feed][:2] == [None, None]
    assert feed[2].fields == {
        "Name": ["B", "B2"],
        "Modstamp": [at(1).isoformat(), at(2).isoformat()],
    }
    assert (feed[2].source, feed[2].object) == ("fake", "Deal")
    row = bench.row("b")
    assert (row["Name"], row["_modstamp"], row["_deleted"], row["_pending"]) == (
        None,
        at(3),
        False,
        False,
    )
    assert row["_hash"] == bench.mirrored.checker.content_hash(deal("b", 3))
    assert bench.row("c")["_synced_at"] > row["_synced_at"] == bench.row("a")["_synced_at"]


def test_an_unchanged_record_is_not_rewritten(bench: Bench) -> None:
    bench.apply([deal("a", 1, Name="A")])
    synced = bench.row("a")["_synced_at"]
    again = bench.apply([deal("a", 1, Name="A")])
    assert (again.unchanged, again.written_ids, bench.row("a")["_synced_at"]) == (1, [], synced)


def test_a_first_backfill_logs_no_inserts_and_builds_indexes_at_its_end(
    bench: Bench, monkeypatch
) -> None:
    built: list[str] = []
    monkeypatch.setattr(bench.store, "build_indexes", lambda conn, m: built.append(m.spec.name))
    ctx = pages.PageContext(None, log_inserts=False)
    outcome = bench.apply([deal("a", 1)], ctx=ctx, checkpoint=Checkpoint("x", (), "backfill"))
    assert (outcome.initial, outcome.backfill_done, built) == (True, False, [])
    done = bench.apply([deal("b", 1)], ctx=ctx, checkpoint=Checkpoint("y", (), "incremental"))
    assert (done.initial, done.backfill_done, built) == (True, True, ["Deal"])
    assert bench.changes(inserts=True) == []
    bench.apply([deal("c", 1)], checkpoint=Checkpoint("z", (), "incremental"))
    assert built == ["Deal"]
    assert [c.record_id for c in bench.changes(inserts=True)] == ["c"]


def test_the_checkpoint_is_saved_and_the_hooks_see_the_outcome(bench: Bench) -> None:
    seen: list[tuple[str, list[str]]] = []

    def hook(conn, mirrored, outcome) -> None:
        # in the page's transaction: it sees the page's rows
        ids = conn.execute(select(mirrored.table.c.Id)).scalars().all()
        seen.append((mirrored.spec.name, [i for i in outcome.written_ids if i in ids]))

    ctx = bench.context(hooks=(hook, hook))
    saved = Checkpoint("c1", ("a",), "incremental", {"k": 1})
    bench.apply([deal("a", 1)], ctx=ctx, checkpoint=saved)
    assert seen == [("Deal", ["a"]), ("Deal", ["a"])]
    assert bench.store.load_checkpoint("fake", "Deal") == saved


def test_a_record_repeated_in_a_page_is_written_once_as_its_last_copy(bench: Bench) -> None:
    outcome = bench.apply([deal("a", 1, Name="one"), deal("b", 1), deal("a", 2, Name="two")])
    assert (outcome.inserted, outcome.written_ids) == (2, ["a", "b"])
    assert bench.row("a")["Name"] == "two"


def test_records_are_written_in_key_order_in_chunks(bench: Bench, monkeypatch) -> None:
    monkeypatch.setattr(pages, "WRITE_CHUNK", 2)
    ids = ["e", "c", "a", "d", "b"]
    outcome = bench.apply([deal(i, 1) for i in ids])
    assert (outcome.inserted, outcome.written_ids) == (5, ["a", "b", "c", "d", "e"])
    assert sorted(bench.rows()) == sorted(ids)


def test_chunks_hold_at_most_the_write_chunk_in_key_order() -> None:
    records = [{"Id": i} for i in ("c", "a", "b")] + [{"Id": None}, {"Id": "a", "n": 2}]
    chunks = list(pages._chunks(records, "Id"))
    assert chunks == [[{"Id": "a", "n": 2}, {"Id": "b"}, {"Id": "c"}, {"Id": None}]]
    many = [{"Id": f"r{n:05}"} for n in range(pages.WRITE_CHUNK * 2 + 1)]
    sizes = [len(c) for c in pages._chunks(list(reversed(many)), "Id")]
    assert sizes == [pages.WRITE_CHUNK, pages.WRITE_CHUNK, 1]
    assert pages.WRITE_CHUNK == 2000


def test_keys_are_ordered_as_text() -> None:
    chunks = list(pages._chunks([{"Id": 9}, {"Id": 10}, {"Id": 100}], "Id"))
    assert chunks == [[{"Id": 10}, {"Id": 100}, {"Id": 9}]]


def test_malformed_records_and_the_adapters_rejects_are_kept_once(
    bench: Bench, monkeypatch
) -> None:
    monkeypatch.setattr(pages, "WRITE_CHUNK", 1)
    page = pages.Page(
        [deal("a", 1), deal("b", 1, Amount="lots"), deal("c", 1), {"Name": "no id"}],
        Checkpoint(),
        rejects=[Reject("x", "unreadable", {"Id": "x", "at": at(1)})],
    )
    with bench.store.transaction() as conn:
        outcome = pages.apply_page(bench.store, conn, bench.mirrored, page, bench.context())
    assert (outcome.inserted, outcome.rejected) == (2, 3)
    kept = rejects(bench)
    assert [(r.record_id, r.source, r.object, r.run_id) for r in kept] == [
        ("x", "fake", "Deal", 7),
        ("b", "fake", "Deal", 7),
        (None, "fake", "Deal", 7),
    ]
    assert kept[0].reason == "unreadable" and kept[0].payload == {
        "Id": "x",
        "at": at(1).isoformat(),
    }
    assert "Amount" in kept[1].reason and kept[1].payload["Amount"] == "lots"
    assert kept[2].reason == "the record has no Id" and kept[2].payload["Name"] == "no id"


def test_a_page_of_rejects_alone_keeps_them(bench: Bench) -> None:
    page = pages.Page([], Checkpoint(), rejects=[Reject("x", "bad", {})])
    with bench.store.transaction() as conn:
        outcome = pages.apply_page(bench.store, conn, bench.mirrored, page, bench.context())
    assert outcome.rejected == 1
    assert [(r.record_id, r.reason, r.payload) for r in rejects(bench)] == [("x", "bad", {})]


def test_a_deleted_record_coming_back_is_an_undelete_not_a_field_change(bench: Bench) -> None:
    bench.apply([deal("a", 1, Name="A")])
    bench.apply(tombstones=[Tombstone("a", at(2))])
    outcome = bench.apply([deal("a", 3, Name="A")])
    assert (outcome.updated, outcome.changed_fields, outcome.previous) == (1, {}, {})
    assert bench.row("a")["_deleted"] is False
    assert [c.op for c in bench.changes()] == ["delete", "undelete"]
    assert bench.changes()[1].fields == {"Modstamp": [at(1).isoformat(), at(3).isoformat()]}


def test_tombstones_delete_live_rows_once_and_record_merges(bench: Bench) -> None:
    bench.apply([deal("a", 1), deal("b", 1), deal("c", 1)])
    bench.apply(tombstones=[Tombstone("c", at(1))])
    synced = bench.row("c")["_synced_at"]
    outcome = bench.apply(
        tombstones=[
            Tombstone("b", at(2), merged_into="a"),
            Tombstone("c", at(2)),
            Tombstone("z", at(2)),
        ]
    )
    assert (outcome.deleted, outcome.deleted_ids) == (1, ["b"])
    rows = bench.rows()
    assert (rows["a"]["_deleted"], rows["b"]["_deleted"], rows["c"]["_deleted"]) == (
        False,
        True,
        True,
    )
    assert rows["c"]["_synced_at"] == synced and rows["b"]["_synced_at"] > synced
    deletes = bench.changes()
    assert [(c.record_id, c.op, c.fields, c.run_id) for c in deletes] == [
        ("c", "delete", None, 7),
        ("b", "delete", {"merged_into": [None, "a"]}, 7),
    ]
    with bench.store.engine.connect() as conn:
        merges = list(conn.execute(select(mirror_idmap)))
    assert [(m.source, m.object, m.old_id, m.new_id, m.kind) for m in merges] == [
        ("fake", "Deal", "b", "a", "merge")
    ]


def test_a_tombstone_fails_the_records_open_edits(bench: Bench) -> None:
    bench.apply([deal("a", 1, Name="A"), deal("b", 1, Name="B")])
    seq = bench.edit("a", Name="portal")
    other = bench.edit("b", Name="portal")
    bench.apply(tombstones=[Tombstone("a", at(2))])
    entry = bench.entry(seq)
    assert (entry.status, entry.error_code) == ("failed", "ENTITY_IS_DELETED")
    assert entry.error_message == "the record was deleted in the CRM before this edit reached it"
    assert bench.entry(other).status == "pending"


def test_a_pending_rows_merge_reaches_the_row_and_the_feed(bench: Bench) -> None:
    bench.apply([deal("a", 1, Name="A", Stage="s0")])
    bench.edit("a", Name="portal")
    outcome = bench.apply([deal("a", 2, Name="A", Stage="s1")])
    row = bench.row("a")
    assert (row["Name"], row["Stage"], row["_pending"]) == ("portal", "s1", True)
    assert outcome.changed_fields == {"a": frozenset({"Stage", "Modstamp"})}
    assert outcome.previous["a"] == {"Stage": "s0", "Modstamp": at(1)}


def test_the_echo_of_our_write_is_not_logged_and_the_records_after_it_are(bench: Bench) -> None:
    bench.apply([deal("a", 1, Name="A"), deal("b", 1, Name="B")])
    seq = bench.edit("a", Name="portal")
    bench.pushed(seq, at(5))
    outcome = bench.apply([deal("a", 5, Name="portal", Score=1), deal("b", 5, Name="B2")])
    assert (outcome.updated, bench.row("b")["Name"]) == (2, "B2")
    assert [c.record_id for c in bench.changes()] == ["b"]


def test_an_echo_with_a_create_only_field_changed_is_logged(bench: Bench) -> None:
    bench.apply([deal("a", 1, Name="A")])
    seq = bench.edit("a", Name="portal")
    bench.pushed(seq, at(5))
    bench.apply([deal("a", 5, Name="portal", Ext="x")])
    assert bench.entry(seq).confirmed is True
    assert [set(c.fields) for c in bench.changes()] == [{"Ext", "Modstamp"}]


def test_a_pending_row_whose_entries_closed_is_written_as_read(bench: Bench) -> None:
    bench.apply([deal("a", 1, Name="A"), deal("b", 1, Name="B")])
    closed = bench.edit("a", Name="gone")
    bench.set_entry(closed, status="failed")
    bench.edit("b", Name="portal")
    bench.apply([deal("a", 2, Name="A2"), deal("b", 2, Name="B")])
    rows = bench.rows()
    assert (rows["a"]["Name"], rows["a"]["_pending"]) == ("A2", False)
    assert (rows["b"]["Name"], rows["b"]["_pending"]) == ("portal", True)
