"""A pull meeting a portal create whose answer was lost (``mirror.push.lost_creates``), on a small
SQLite mirror: which creates a pulled record can be, how it is recognised (by the key in the
external-id field, or by the id the CRM derives from the key), and what is queued again."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from mirror.push.diff import Policy
from mirror.push.lost_creates import pending_creates
from mirror.push.outbox import enqueue
from mirror.types import ObjectSpec
from tests.mirror.pull.pull_bench import Bench, at, bench_at, deal, spec_of


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    yield from bench_at(tmp_path, spec_of(external_id="Ext"))


@pytest.fixture
def keyless(tmp_path: Path) -> Iterator[Bench]:
    yield from bench_at(tmp_path)


def derived(spec: ObjectSpec, key: str) -> str | None:
    """The id a CRM that lets the client choose it gives the create with ``key``."""
    assert (spec.source, spec.name) == ("fake", "Deal")
    return None if key.startswith("nokey") else f"ID-{key}"


def test_the_creates_a_pulled_record_may_be_are_the_unsettled_ones_of_its_object(
    bench: Bench,
) -> None:
    made = [bench.create(f"k{n}", Name=f"n{n}") for n in range(6)]
    seqs = [e.seq for e in bench.entries()]
    bench.set_entry(seqs[1], status="sending")
    bench.set_entry(seqs[2], status="failed")
    bench.set_entry(seqs[3], status="done")
    bench.set_entry(seqs[4], status="superseded")
    bench.set_entry(seqs[5], record_id="d5")
    bench.edit(made[0], Name="changed")  # an update of a local row is no create
    with bench.store.engine.connect() as conn:
        found = pending_creates(conn, bench.spec)
        assert pending_creates(conn, spec_of("other")) == []
        assert pending_creates(conn, ObjectSpec("fake", "Lead", "Id", "Modstamp", ())) == []
    assert [e.seq for e in found] == seqs[:3]


def test_a_record_carrying_a_creates_key_takes_over_its_local_row(bench: Bench) -> None:
    local = bench.create("k1", Name="new", Amount=5.0, Stage="s")
    (entry,) = bench.entries()
    outcome = bench.apply([deal("d1", 30, Name="new", Amount=None, Stage="s", Ext="k1")])
    rows = bench.rows()
    assert local not in rows and rows["d1"]["Name"] == "new"
    assert (outcome.inserted, outcome.updated) == (0, 1)
    settled, requeued = bench.entries()
    assert (settled.seq, settled.status, settled.crm_id, settled.confirmed) == (
        entry.seq,
        "done",
        "d1",
        True,
    )
    assert (settled.record_id, settled.pushed_version) == ("d1", at(30).isoformat())
    # the value the CRM does not hold goes out again, against an empty base
    assert (requeued.record_id, requeued.op, requeued.status) == ("d1", "update", "pending")
    assert (requeued.new_values, requeued.old_values) == ({"Amount": 5.0}, {"Amount": None})
    assert (requeued.partner_id, requeued.author) == ("p1", "u1")
    assert requeued.base_version == at(30).isoformat()  # rebased by the page's merge
    assert [c.op for c in bench.changes("portal", inserts=True)] == ["create"]


def test_a_record_holding_every_value_sent_queues_nothing_again(bench: Bench) -> None:
    bench.create("k1", Name="new")
    bench.apply([deal("d1", 30, Name="new", Ext="k1")])
    assert [e.status for e in bench.entries()] == ["done"]


def test_values_missing_join_the_first_queued_update_unless_it_edits_them(bench: Bench) -> None:
    local = bench.create("k1", Name="new", Amount=5.0, Stage="s")
    first = bench.edit(local, Name="newer")
    second = bench.edit(local, Amount=7.0)
    bench.apply([deal("d1", 30, Name="new", Ext="k1")], ctx=bench.context(Policy.PORTAL_WINS))
    assert len(bench.entries()) == 3
    assert bench.entry(first).new_values == {"Stage": "s", "Name": "newer"}
    assert bench.entry(first).old_values == {"Stage": None, "Name": "new"}
    assert bench.entry(second).new_values == {"Amount": 7.0}
    assert bench.row("d1")["Amount"] == 7.0


def test_a_blocked_update_takes_the_missing_values_a_sent_one_does_not(bench: Bench) -> None:
    local = bench.create("k1", Name="new", Amount=5.0)
    sent = bench.edit(local, Stage="s1")
    blocked = bench.edit(local, Closes=at(3))
    bench.set_entry(sent, status="sending")
    bench.set_entry(blocked, status="blocked")
    bench.apply([deal("d1", 30, Ext="k1")])
    assert bench.entry(sent).new_values == {"Stage": "s1"}
    assert bench.entry(blocked).new_values == {
        "Name": "new",
        "Amount": 5.0,
        "Closes": at(3).isoformat(),
    }


def test_a_create_already_settled_by_a_push_is_not_taken_twice(bench: Bench) -> None:
    local = bench.create("k1", Name="new")
    (entry,) = bench.entries()
    with bench.store.engine.connect() as conn:
        (seen,) = pending_creates(conn, bench.spec)
    bench.settle(entry, "d1", at(20))
    from mirror.push import lost_creates

    with bench.store.transaction() as conn:
        assert not lost_creates._locked(conn, seen)
    bench.set_entry(entry.seq, status="pending", record_id=local)
    with bench.store.transaction() as conn:
        assert lost_creates._locked(conn, seen)
        lost_creates.set_entry(conn, entry.seq, status="done")
        assert not lost_creates._locked(conn, seen)  # settled since, under its local id still
        lost_creates.set_entry(conn, entry.seq, status="sending", record_id="d2")
        assert not lost_creates._locked(conn, seen)
        lost_creates.set_entry(conn, entry.seq, record_id=local)
        assert lost_creates._locked(conn, seen)


def test_a_record_with_another_key_or_a_local_id_takes_no_create(bench: Bench) -> None:
    local = bench.create("k1", Name="new")
    outcome = bench.apply([deal("d1", 30, Ext="k2"), deal("d2", 30, Ext=None)])
    assert outcome.inserted == 2
    assert bench.entries()[0].status == "pending" and local in bench.rows()


def test_two_records_with_one_key_take_the_create_once(bench: Bench) -> None:
    local = bench.create("k1", Name="new")
    outcome = bench.apply([deal("d1", 30, Ext="k1"), deal("d2", 30, Ext="k1")])
    assert (outcome.inserted, outcome.updated) == (1, 1)
    rows = bench.rows()
    assert local not in rows and {"d1", "d2"} <= set(rows)
    assert bench.entries()[0].crm_id == "d1"


def test_a_crm_deriving_ids_from_keys_is_matched_by_id_in_any_case(keyless: Bench) -> None:
    local = keyless.create("abc", Name="new")
    keyless.create("nokey1", Name="other")
    ctx = keyless.context(created_id=derived)
    outcome = keyless.apply([deal("id-ABC", 30, Name="new"), deal("ID-nokey1", 30)], ctx=ctx)
    assert (outcome.inserted, outcome.updated) == (1, 1)
    assert local not in keyless.rows()
    assert [(e.status, e.crm_id) for e in keyless.entries()] == [
        ("done", "id-ABC"),
        ("pending", None),
    ]


def test_without_an_external_id_or_derived_ids_nothing_is_matched(keyless: Bench) -> None:
    keyless.create("abc", Name="new")
    outcome = keyless.apply([deal("ID-abc", 30, Ext="abc")])
    assert outcome.inserted == 1
    assert keyless.entries()[0].status == "pending"


def test_the_external_id_match_comes_before_the_derived_id(tmp_path: Path) -> None:
    for bench in bench_at(tmp_path, spec_of(external_id="Ext")):
        first = bench.create("k1", Name="one")
        bench.create("k2", Name="two")
        ctx = bench.context(created_id=derived)
        # ID-k2 carries k1's key: it is k1's create; k2's own record comes separately
        bench.apply([deal("ID-k2", 30, Name="one", Ext="k1")], ctx=ctx)
        assert first not in bench.rows()
        assert [(e.status, e.crm_id) for e in bench.entries()] == [
            ("done", "ID-k2"),
            ("pending", None),
        ]


def test_a_pulled_record_under_a_local_id_takes_no_create(bench: Bench) -> None:
    local = bench.create("k1", Name="new")
    outcome = bench.apply([deal("local-0000", 30, Ext="k1")])
    assert outcome.inserted == 1
    assert bench.entries()[0].status == "pending" and local in bench.rows()


def test_a_typed_value_the_crm_holds_is_not_queued_again(bench: Bench) -> None:
    bench.create("k1", Closes=at(3), Amount=5.0)
    bench.apply([deal("d1", 30, Closes=at(3), Amount=5, Ext="k1")])
    assert [e.status for e in bench.entries()] == ["done"]


def test_missing_values_join_only_the_records_own_queued_update(bench: Bench) -> None:
    bench.apply([deal("d0", 1, Name="zero")])
    other = bench.edit("d0", Name="edited")
    local = bench.create("k1", Name="new", Amount=5.0)
    with bench.store.transaction() as conn:
        decoys = [
            enqueue(
                conn,
                spec,
                record_id=record_id,
                op=op,
                values=values,
                before={},
                base_version=None,
                partner_id=None,
                author=None,
            )
            for spec, record_id, op, values in (
                # the CRM id of another object or source, and the record's own delete
                (spec_of("other"), "d1", "update", {"Stage": "x"}),
                (dataclasses.replace(spec_of(), name="Lead"), "d1", "update", {"Stage": "x"}),
                (bench.spec, local, "delete", {}),
            )
        ]
    bench.apply([deal("d1", 30, Name="new", Ext="k1")])
    assert bench.entry(other).new_values == {"Name": "edited"}
    assert [bench.entry(seq).new_values for seq in decoys] == [{"Stage": "x"}, {"Stage": "x"}, {}]
    requeued = bench.entries()[-1]
    assert (requeued.record_id, requeued.op, requeued.new_values) == (
        "d1",
        "update",
        {"Amount": 5.0},
    )
    assert requeued.seq > max(decoys)


def test_a_record_read_without_a_version_settles_the_create_without_one(bench: Bench) -> None:
    bench.create("k1", Name="new")
    unversioned = deal("d1", 0, Name="new", Ext="k1")
    unversioned["Modstamp"] = None
    bench.apply([unversioned])
    (entry,) = bench.entries()
    assert (entry.status, entry.crm_id, entry.pushed_version) == ("done", "d1", None)
