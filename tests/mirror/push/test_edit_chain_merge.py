"""One field edited more than once before the CRM confirmed the first edit, merged on a small
SQLite mirror (``mirror.pull.reconcile``): the base the chain of edits is weighed against, and what
a read from before or after a pushed edit makes of an edit on top of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mirror.push.diff import Policy
from tests.mirror.pull.pull_bench import Bench, at, bench_at, deal


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    yield from bench_at(tmp_path)


def chain(bench: Bench, first: str = "one", second: str = "two") -> tuple[int, int]:
    """Deal ``d1`` mirrored at second 10 with Name ``base``, then edited twice."""
    bench.apply([deal("d1", 10, Name="base", Stage="s0")])
    return bench.edit("d1", Name=first), bench.edit("d1", Name=second)


def test_two_edits_of_a_field_meet_an_untouched_crm_value_without_conflict(bench: Bench) -> None:
    first, second = chain(bench)
    bench.apply([deal("d1", 20, Name="base", Stage="s1")])
    assert bench.entry(first).status == "pending"
    assert bench.conflicts() == []
    row = bench.row("d1")
    assert (row["Name"], row["Stage"], row["_pending"]) == ("two", "s1", True)
    assert bench.entry(second).status == "pending"


def test_a_crm_value_one_edit_of_the_chain_set_is_no_conflict(bench: Bench) -> None:
    chain(bench, "one", "two")
    bench.edit("d1", Name="three")
    bench.apply([deal("d1", 20, Name="two", Stage="s0")])
    assert bench.conflicts() == []
    assert bench.row("d1")["Name"] == "three"


def test_a_crm_change_meets_the_chain_as_one_conflict_on_the_first_base(bench: Bench) -> None:
    chain(bench)
    bench.apply([deal("d1", 20, Name="crm", Stage="s0")])
    assert [(c.base, c.portal, c.crm) for c in bench.conflicts()] == [("base", "two", "crm")]


def on_top(bench: Bench) -> tuple[int, int]:
    """``one`` pushed (the CRM answered version 20), then ``two`` edited on top of it."""
    bench.apply([deal("d1", 10, Name="base", Stage="s0")])
    pushed = bench.edit("d1", Name="one")
    bench.pushed(pushed, at(20))
    return pushed, bench.edit("d1", Name="two")


def test_an_edit_on_top_of_a_pushed_one_meets_a_read_from_before_the_write(bench: Bench) -> None:
    pushed, top = on_top(bench)
    base_version = bench.entry(top).base_version
    bench.apply([deal("d1", 20, Name="other", Stage="s1")], ctx=bench.context(Policy.CRM_WINS))
    assert bench.conflicts() == []
    row = bench.row("d1")
    assert (row["Name"], row["Stage"], row["_pending"]) == ("two", "s1", True)
    entry = bench.entry(top)
    # the read may predate our write: the edit on top keeps the base it was made on
    assert (entry.status, entry.old_values, entry.base_version) == (
        "pending",
        {"Name": "one"},
        base_version,
    )
    assert bench.entry(pushed).confirmed is False


def test_an_edit_on_top_of_a_pushed_one_meets_a_crm_change_after_the_write(bench: Bench) -> None:
    _pushed, top = on_top(bench)
    later = deal("d1", 20.001, Name="crm", Stage="s0")
    bench.apply([later], ctx=bench.context(Policy.PORTAL_WINS))
    assert [(c.base, c.portal, c.crm) for c in bench.conflicts()] == [("one", "two", "crm")]
    entry = bench.entry(top)
    assert (entry.old_values, entry.base_version, entry.force) == (
        {"Name": "crm"},
        at(20.001).isoformat(),
        True,
    )


def test_a_read_made_after_the_write_decides_for_the_edit_on_top(bench: Bench) -> None:
    pushed, _top = on_top(bench)
    ctx = bench.context(Policy.CRM_WINS, fresh=frozenset({pushed}))
    bench.apply([deal("d1", 20, Name="crm", Stage="s0")], ctx=ctx)
    assert [(c.base, c.portal, c.crm) for c in bench.conflicts()] == [("one", "two", "crm")]
    assert bench.row("d1")["Name"] == "crm"


def test_the_pushed_value_read_back_is_no_conflict_for_the_edit_on_top(bench: Bench) -> None:
    _pushed, top = on_top(bench)
    bench.apply([deal("d1", 20, Name="one", Stage="s0")])
    assert bench.conflicts() == []
    assert (bench.row("d1")["Name"], bench.entry(top).status) == ("two", "pending")


def test_a_pushed_edit_without_a_version_is_decided_by_any_read(bench: Bench) -> None:
    bench.apply([deal("d1", 10, Name="base", Stage="s0")])
    pushed = bench.edit("d1", Name="one")
    bench.set_entry(pushed, status="done")
    bench.edit("d1", Name="two")
    bench.apply([deal("d1", 20, Name="crm", Stage="s0")], ctx=bench.context(Policy.CRM_WINS))
    assert [(c.base, c.portal, c.crm) for c in bench.conflicts()] == [("one", "two", "crm")]


def test_an_edit_on_top_of_two_pushed_ones_is_weighed_against_the_last(bench: Bench) -> None:
    bench.apply([deal("d1", 10, Name="base", Stage="s0")])
    first = bench.edit("d1", Name="one")
    bench.pushed(first, at(20))
    second = bench.edit("d1", Name="two")
    bench.pushed(second, at(30))
    bench.edit("d1", Name="three")
    bench.apply([deal("d1", 30.001, Name="crm", Stage="s0")], ctx=bench.context(Policy.CRM_WINS))
    assert [(c.base, c.portal, c.crm) for c in bench.conflicts()] == [("two", "three", "crm")]
    bench.apply([deal("d1", 31, Name="crm", Stage="s1")])
    assert len(bench.conflicts()) == 1


def test_the_crm_going_back_to_the_first_base_after_our_write_is_a_conflict(bench: Bench) -> None:
    on_top(bench)
    bench.apply([deal("d1", 21, Name="base", Stage="s0")], ctx=bench.context(Policy.CRM_WINS))
    assert [(c.base, c.portal, c.crm) for c in bench.conflicts()] == [("one", "two", "base")]


def test_a_value_an_earlier_rebased_edit_set_is_no_conflict(bench: Bench) -> None:
    bench.apply([deal("d1", 10, Closes=at(100), Stage="s0")])
    for when in (200, 300, 400):
        bench.edit("d1", Closes=at(when))
    bench.apply([deal("d1", 20, Closes=at(100), Stage="s1")])  # every entry rebased
    assert [e.old_values["Closes"] for e in bench.entries()] == [at(100).isoformat()] * 3
    bench.apply([deal("d1", 30, Closes=at(300), Stage="s1")])  # the second edit's value
    assert bench.conflicts() == []
    assert (bench.row("d1")["Closes"], bench.row("d1")["_pending"]) == (at(400), True)


def test_the_pushed_value_read_after_the_write_is_no_conflict(bench: Bench) -> None:
    bench.apply([deal("d1", 10, Closes=at(100), Stage="s0")])
    pushed = bench.edit("d1", Closes=at(200))
    bench.pushed(pushed, at(20))
    bench.edit("d1", Closes=at(300))
    bench.apply([deal("d1", 21, Closes=at(200), Stage="s0")], ctx=bench.context(Policy.CRM_WINS))
    assert bench.conflicts() == []
    assert bench.row("d1")["Closes"] == at(300)


def test_a_float_within_the_merges_tolerance_is_the_base_unchanged(bench: Bench) -> None:
    bench.apply([deal("d1", 10, Amount=1.0, Stage="s0")])
    bench.edit("d1", Amount=2.0)
    bench.edit("d1", Amount=3.0)
    bench.apply([deal("d1", 20, Amount=1.0 + 1e-12, Stage="s0")])
    assert bench.conflicts() == []
    assert bench.row("d1")["Amount"] == 3.0


def test_a_read_within_tolerance_of_the_pushed_value_rebases_the_edit_on_top(
    bench: Bench,
) -> None:
    bench.apply([deal("d1", 10, Amount=1.0, Stage="s0")])
    pushed = bench.edit("d1", Amount=2.0)
    bench.pushed(pushed, at(20))
    top = bench.edit("d1", Amount=3.0)
    bench.apply([deal("d1", 20, Amount=2.0 + 1e-12, Stage="s1")])
    entry = bench.entry(top)
    assert (entry.old_values, entry.base_version) == ({"Amount": 2.0 + 1e-12}, at(20).isoformat())
