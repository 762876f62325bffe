"""Pull-side reconciliation (``mirror.pull.reconcile``) entry by entry, on a small SQLite mirror:
what
a page makes of each open outbox entry of a record it brings back, the conflicts it records and
the mirror row it leaves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mirror.push.diff import Policy
from mirror.push.outbox import enqueue
from tests.mirror.pull.pull_bench import Bench, at, bench_at, deal


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    yield from bench_at(tmp_path)


def edited(bench: Bench, **values) -> int:
    """Deal ``d1`` mirrored at second 10 (Name ``base``, Stage ``s0``), then edited."""
    bench.apply([deal("d1", 10, Name="base", Stage="s0", Amount=1.0)])
    return bench.edit("d1", **values)


def test_a_record_without_open_edits_is_written_as_read(bench: Bench) -> None:
    bench.apply([deal("d1", 10, Name="base")])
    bench.apply([deal("d1", 20, Name="crm")])
    row = bench.row("d1")
    assert (row["Name"], row["_pending"]) == ("crm", False)
    assert bench.conflicts() == []


def test_an_edit_the_crm_has_not_touched_is_rebased_and_stays_pending(bench: Bench) -> None:
    seq = edited(bench, Name="portal")
    outcome = bench.apply([deal("d1", 20, Name="base", Stage="s1", Amount=1.0)])
    row = bench.row("d1")
    assert (row["Name"], row["Stage"], row["_pending"]) == ("portal", "s1", True)
    entry = bench.entry(seq)
    assert (entry.status, entry.force, entry.confirmed) == ("pending", False, False)
    assert (entry.new_values, entry.old_values) == ({"Name": "portal"}, {"Name": "base"})
    assert entry.base_version == at(20).isoformat()
    assert outcome.changed_fields["d1"] == frozenset({"Stage", "Modstamp"})
    assert [set(c.fields) for c in bench.changes()] == [{"Stage", "Modstamp"}]
    assert bench.conflicts() == []


def test_a_crm_value_equal_to_the_edit_supersedes_it_without_a_change(bench: Bench) -> None:
    seq = edited(bench, Name="portal")
    bench.apply([deal("d1", 20, Name="portal", Stage="s0", Amount=1.0, Score=3)])
    row = bench.row("d1")
    assert (row["Name"], row["Score"], row["_pending"]) == ("portal", 3, False)
    assert bench.entry(seq).status == "superseded"
    # a change of a system field alone rides along with the echo of our edit
    assert bench.changes() == []


def test_a_crm_change_next_to_an_agreed_field_is_logged(bench: Bench) -> None:
    edited(bench, Name="portal")
    bench.apply([deal("d1", 20, Name="portal", Stage="s1", Amount=1.0)])
    assert [c.fields["Stage"] for c in bench.changes()] == [["s0", "s1"]]


@pytest.mark.parametrize(
    ("policy", "value", "status", "pending", "resolution"),
    [
        (Policy.CRM_WINS, "crm", "superseded", False, "conflict_crm"),
        (Policy.PORTAL_WINS, "portal", "pending", True, "conflict_portal"),
    ],
)
def test_a_conflict_resolved_by_policy_is_recorded_as_resolved(
    bench: Bench, policy, value, status, pending, resolution
) -> None:
    seq = edited(bench, Name="portal")
    bench.apply([deal("d1", 20, Name="crm", Stage="s0", Amount=1.0)], ctx=bench.context(policy))
    row = bench.row("d1")
    assert (row["Name"], row["_pending"]) == (value, pending)
    entry = bench.entry(seq)
    assert entry.status == status
    assert entry.force is pending  # the portal's win overrides the CRM's version
    if pending:
        assert (entry.new_values, entry.old_values) == ({"Name": "portal"}, {"Name": "crm"})
    (conflict,) = bench.conflicts()
    assert (conflict.source, conflict.object, conflict.record_id, conflict.field) == (
        "fake",
        "Deal",
        "d1",
        "Name",
    )
    assert (conflict.base, conflict.portal, conflict.crm) == ("base", "portal", "crm")
    assert (conflict.outbox_seq, conflict.policy, conflict.status) == (
        seq,
        policy.value,
        "resolved",
    )
    assert (conflict.resolution, conflict.resolved_value, conflict.resolved_by) == (
        resolution,
        value,
        "policy",
    )
    assert conflict.resolved_at == conflict.detected_at is not None


def test_a_manual_conflict_is_parked_open_with_the_crms_value(bench: Bench) -> None:
    seq = edited(bench, Name="portal")
    bench.apply([deal("d1", 20, Name="crm", Stage="s0", Amount=1.0)])
    assert (bench.row("d1")["Name"], bench.row("d1")["_pending"]) == ("crm", False)
    assert bench.entry(seq).status == "superseded"
    (conflict,) = bench.conflicts()
    assert (conflict.policy, conflict.status, conflict.resolution) == ("manual", "open", None)
    assert (conflict.resolved_value, conflict.resolved_at, conflict.resolved_by) == (
        None,
        None,
        None,
    )
    assert conflict.detected_at is not None
    assert (conflict.base, conflict.portal, conflict.crm) == ("base", "portal", "crm")


def test_a_forced_entry_stays_forced_and_a_blocked_one_is_released(bench: Bench) -> None:
    seq = edited(bench, Name="portal", Stage="mine")
    bench.set_entry(seq, force=True, status="blocked")
    bench.apply([deal("d1", 20, Name="base", Stage="mine", Amount=2.0)])
    entry = bench.entry(seq)
    assert (entry.status, entry.force) == ("pending", True)
    assert entry.new_values == {"Name": "portal"}
    assert (entry.old_values["Name"], entry.base_version) == ("base", at(20).isoformat())
    row = bench.row("d1")
    assert (row["Name"], row["Stage"], row["Amount"], row["_pending"]) == (
        "portal",
        "mine",
        2.0,
        True,
    )


def test_an_entry_being_sent_keeps_its_status(bench: Bench) -> None:
    seq = edited(bench, Name="portal")
    bench.set_entry(seq, status="sending")
    bench.apply([deal("d1", 20, Name="base", Stage="s0", Amount=1.0)])
    assert (bench.entry(seq).status, bench.entry(seq).force) == ("sending", False)


def test_every_open_edit_of_a_record_is_merged(bench: Bench) -> None:
    first = edited(bench, Name="portal")
    second = bench.edit("d1", Stage="mine")
    bench.apply([deal("d1", 20, Name="base", Stage="crm", Amount=1.0)])
    row = bench.row("d1")
    assert (row["Name"], row["Stage"], row["_pending"]) == ("portal", "crm", True)
    assert [c.field for c in bench.conflicts()] == ["Stage"]
    assert (bench.entry(first).status, bench.entry(second).status) == ("pending", "superseded")
    assert bench.entry(first).old_values == {"Name": "base"}


def test_the_crm_taking_the_latest_edit_of_a_field_settles_every_edit_of_it(bench: Bench) -> None:
    first = edited(bench, Name="one")
    second = bench.edit("d1", Name="two")
    bench.apply([deal("d1", 20, Name="two", Stage="s0", Amount=1.0)])
    assert (bench.row("d1")["Name"], bench.row("d1")["_pending"]) == ("two", False)
    assert bench.conflicts() == []
    assert (bench.entry(first).status, bench.entry(second).status) == ("superseded", "superseded")


def test_a_queued_delete_takes_no_part_in_the_merge(bench: Bench) -> None:
    bench.apply([deal("d1", 10, Name="base", Stage="s0", Amount=1.0)])
    with bench.store.transaction() as conn:
        seq = enqueue(
            conn,
            bench.spec,
            record_id="d1",
            op="delete",
            values={},
            before={},
            base_version=None,
            partner_id=None,
            author=None,
        )
    update = bench.edit("d1", Name="portal")
    bench.apply([deal("d1", 20, Name="crm", Stage="s0", Amount=1.0)])
    assert bench.entry(seq).status == "pending"
    assert bench.entry(update).status == "superseded"
    assert [c.field for c in bench.conflicts()] == ["Name"]


def test_a_pushed_create_meets_its_echo_like_an_update(bench: Bench) -> None:
    local = bench.create(Name="new")
    (entry,) = bench.entries()
    bench.settle(entry, "d9", at(30))
    bench.apply([deal("d9", 20, Name="stale")])
    assert (bench.entry(entry.seq).confirmed, bench.row("d9")["Name"]) == (False, "new")
    assert bench.row("d9")["_pending"] is True
    bench.apply([deal("d9", 30, Name="new", Stage="x")])
    assert bench.entry(entry.seq).confirmed is True
    assert bench.row("d9")["_pending"] is False
    assert local not in bench.rows()


# -- pushed edits: the echo, a stale read, a read after the write ----------------------------


def pushed(bench: Bench, version: str | None) -> int:
    seq = edited(bench, Name="portal")
    bench.set_entry(seq, status="done", pushed_version=version)
    return seq


@pytest.mark.parametrize("version", ["2026-01-01T00:00:20Z", "2026-01-01T00:00:20"])
def test_another_value_at_the_writes_own_version_waits(bench: Bench, version: str) -> None:
    seq = pushed(bench, version)
    bench.apply([deal("d1", 20, Name="other", Stage="s0", Amount=1.0)])
    assert (bench.row("d1")["Name"], bench.row("d1")["_pending"]) == ("portal", True)
    assert bench.entry(seq).confirmed is False
    assert bench.conflicts() == []


@pytest.mark.parametrize("version", ["2026-01-01T00:00:20Z", "2026-01-01T00:00:20"])
def test_another_value_after_the_writes_version_is_the_crms(bench: Bench, version: str) -> None:
    seq = pushed(bench, version)
    bench.apply([deal("d1", 20.001, Name="other", Stage="s0", Amount=1.0)])
    assert (bench.row("d1")["Name"], bench.row("d1")["_pending"]) == ("other", False)
    assert bench.entry(seq).confirmed is True
    assert [c.fields["Name"] for c in bench.changes()] == [["portal", "other"]]


def test_a_read_after_the_write_settles_another_value_at_its_version(bench: Bench) -> None:
    seq = pushed(bench, at(20).isoformat())
    ctx = bench.context(fresh=frozenset({seq}))
    bench.apply([deal("d1", 20, Name="other", Stage="s0", Amount=1.0)], ctx=ctx)
    assert (bench.row("d1")["Name"], bench.entry(seq).confirmed) == ("other", True)
    assert bench.conflicts() == []  # a change made after our write: nothing concurrent


def test_fresh_says_nothing_of_an_entry_not_pushed_yet(bench: Bench) -> None:
    seq = edited(bench, Name="portal")
    bench.set_entry(seq, pushed_version=at(20).isoformat())  # still pending: not written
    ctx = bench.context(Policy.PORTAL_WINS, fresh=frozenset({seq}))
    bench.apply([deal("d1", 20, Name="other", Stage="s0", Amount=1.0)], ctx=ctx)
    assert bench.row("d1")["Name"] == "portal"
    assert [c.resolution for c in bench.conflicts()] == ["conflict_portal"]


def test_a_pushed_entry_without_a_version_merges_as_an_edit(bench: Bench) -> None:
    seq = pushed(bench, None)
    bench.apply(
        [deal("d1", 20, Name="other", Stage="s0", Amount=1.0)],
        ctx=bench.context(Policy.CRM_WINS),
    )
    assert [c.resolution for c in bench.conflicts()] == ["conflict_crm"]
    assert bench.entry(seq).confirmed is True


def test_the_echo_of_a_pushed_edit_confirms_it_and_logs_nothing(bench: Bench) -> None:
    seq = pushed(bench, at(20).isoformat())
    bench.apply([deal("d1", 20, Name="portal", Stage="s0", Amount=1.0, Score=5)])
    assert bench.entry(seq).confirmed is True
    assert bench.row("d1")["_pending"] is False
    assert bench.changes() == []


def test_a_pushed_entry_waits_while_one_of_its_fields_waits(bench: Bench) -> None:
    seq = edited(bench, Name="portal", Stage="mine")
    bench.set_entry(seq, status="done", pushed_version=at(20).isoformat())
    bench.apply([deal("d1", 20, Name="portal", Stage="s0", Amount=1.0)])
    assert bench.entry(seq).confirmed is False
    assert (bench.row("d1")["Stage"], bench.row("d1")["_pending"]) == ("mine", True)


# -- latest wins: the CRM's change time -------------------------------------------------------


def test_latest_wins_reads_the_crms_change_time_before_its_version(bench: Bench) -> None:
    edited(bench, Name="portal")  # edited now, long after T0
    changed = deal("d1", 10**9, Name="crm", Stage="s0", Amount=1.0, LastModifiedDate=at(0))
    bench.apply([changed], ctx=bench.context(Policy.LATEST_WINS))
    assert [c.resolution for c in bench.conflicts()] == ["conflict_portal"]


def test_latest_wins_falls_back_on_the_version(bench: Bench) -> None:
    edited(bench, Name="portal")
    bench.apply(
        [deal("d1", 10**9, Name="crm", Stage="s0", Amount=1.0)],
        ctx=bench.context(Policy.LATEST_WINS),
    )
    assert [c.resolution for c in bench.conflicts()] == ["conflict_crm"]


def test_each_field_is_merged_under_its_own_objects_policy(bench: Bench) -> None:
    policies = {("Deal", "Name"): Policy.PORTAL_WINS, ("Deal", "Stage"): Policy.CRM_WINS}

    def policy_of(name: str, field: str) -> Policy:
        return policies.get((name, field), Policy.MANUAL)

    edited(bench, Name="portal", Stage="mine", Amount=9.0)
    changed = deal("d1", 20, Name="crm", Stage="crm", Amount=2.0)
    bench.apply([changed], ctx=bench.context(policy_of=policy_of))
    row = bench.row("d1")
    assert (row["Name"], row["Stage"], row["Amount"]) == ("portal", "crm", 2.0)
    found = {c.field: (c.policy, c.status, c.resolution) for c in bench.conflicts()}
    assert found == {
        "Amount": ("manual", "open", None),
        "Name": ("portal_wins", "resolved", "conflict_portal"),
        "Stage": ("crm_wins", "resolved", "conflict_crm"),
    }


def test_a_typed_field_untouched_by_the_crm_is_no_conflict(bench: Bench) -> None:
    bench.apply([deal("d1", 10, Closes=at(100), Amount=1.0)])
    seq = bench.edit("d1", Closes=at(200), Amount=2.0)
    bench.apply([deal("d1", 20, Closes=at(100), Amount=1.0, Stage="s")])
    assert bench.conflicts() == []
    row = bench.row("d1")
    assert (row["Closes"], row["Amount"], row["_pending"]) == (at(200), 2.0, True)
    assert bench.entry(seq).status == "pending"


def test_a_record_without_a_version_rebases_the_entry_without_one(bench: Bench) -> None:
    seq = edited(bench, Name="portal")
    unversioned = deal("d1", 0, Name="base", Stage="s1", Amount=1.0)
    unversioned["Modstamp"] = None
    bench.apply([unversioned])
    entry = bench.entry(seq)
    assert (entry.status, entry.base_version) == ("pending", None)


def test_every_entry_of_the_record_is_updated_after_a_confirmed_one(bench: Bench) -> None:
    first = pushed(bench, at(20).isoformat())
    second = bench.edit("d1", Stage="mine")
    bench.apply([deal("d1", 20, Name="portal", Stage="s0", Amount=1.0)])
    assert bench.entry(first).confirmed is True
    entry = bench.entry(second)
    assert (entry.status, entry.base_version, entry.old_values) == (
        "pending",
        at(20).isoformat(),
        {"Stage": "s0"},
    )


def test_an_offset_in_the_writes_version_is_kept(bench: Bench) -> None:
    seq = pushed(bench, "2026-01-01T00:00:20-02:00")  # 02:00:20 UTC
    bench.apply([deal("d1", 3600, Name="other", Stage="s0", Amount=1.0)])
    assert (bench.row("d1")["Name"], bench.entry(seq).confirmed) == ("portal", False)
    bench.apply([deal("d1", 7221, Name="other", Stage="s0", Amount=1.0)])
    assert (bench.row("d1")["Name"], bench.entry(seq).confirmed) == ("other", True)
