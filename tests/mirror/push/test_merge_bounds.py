"""The three-way merge's boundaries (``mirror.push.diff``): which values differ, the order of its
checks for pushed and unpushed edits, and the times compared at, before and after a tie."""

from __future__ import annotations

import datetime as dt

import pytest

from mirror.push.diff import (
    FieldMerge,
    Outcome,
    PendingEdit,
    Policy,
    field_changes,
    merge_field,
    merge_record,
    remaining_edit,
)

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
TICK = dt.timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("before", "after", "differ"),
    [
        (1.0, 1.0 + 1e-12, False),
        (1e12, 1e12 + 1.0, False),
        (1.0, 1.0 + 1e-6, True),
        (0.0, 1e-12, True),
        (-1.0, -1.0 - 1e-12, False),
        (-1.0, 1.0, True),
        (1, 1.0000001, True),
        ([1, 2], [2, 1], True),
        ({"a": [1]}, {"a": [1, 2]}, True),
        ({"a": 1}, None, True),
        (None, [1], True),
        ("1", 1, True),
        (None, 0, True),
        ([1], [1], False),
    ],
)
def test_which_values_differ(before, after, differ) -> None:
    changes = field_changes({"f": before}, {"f": after}, ["f", "g"])
    assert changes == ({"f": (before, after)} if differ else {})


def test_only_the_fields_asked_for_are_compared() -> None:
    assert field_changes({"a": 1, "b": 1}, {"a": 2, "b": 2}, ["b"]) == {"b": (1, 2)}
    assert field_changes({}, {"a": 1}, ["a"]) == {"a": (None, 1)}


def test_a_conflict_is_any_outcome_where_both_sides_changed() -> None:
    conflicts = {o for o in Outcome if FieldMerge(None, o, False).conflict}
    assert conflicts == {Outcome.CONFLICT_CRM, Outcome.CONFLICT_PORTAL, Outcome.PARKED}


@pytest.mark.parametrize("policy", list(Policy))
def test_an_unpushed_edit_the_crm_did_not_touch_stays_pending(policy) -> None:
    merged = merge_field(PendingEdit("old", "new", T0), "old", T0, T0, policy)
    assert merged == FieldMerge("new", Outcome.PORTAL, True)
    agreed = merge_field(PendingEdit("old", "new", T0), "new", T0, T0, policy)
    assert agreed == FieldMerge("new", Outcome.AGREED, False)


def test_each_policy_resolves_a_conflict_its_own_way() -> None:
    edit = PendingEdit("old", "new", T0)
    assert merge_field(edit, "crm", T0, T0, Policy.CRM_WINS) == FieldMerge(
        "crm", Outcome.CONFLICT_CRM, False
    )
    assert merge_field(edit, "crm", T0, T0, Policy.PORTAL_WINS) == FieldMerge(
        "new", Outcome.CONFLICT_PORTAL, True
    )
    assert merge_field(edit, "crm", T0, T0, Policy.MANUAL) == FieldMerge(
        "crm", Outcome.PARKED, False
    )


def test_latest_wins_compares_the_change_time_strictly_and_not_the_version() -> None:
    edit = PendingEdit("old", "new", T0)
    tie = merge_field(edit, "crm", T0 + 9 * TICK, T0, Policy.LATEST_WINS)
    assert tie == FieldMerge("new", Outcome.CONFLICT_PORTAL, True)
    after = merge_field(edit, "crm", T0 - TICK, T0 + TICK, Policy.LATEST_WINS)
    assert after == FieldMerge("crm", Outcome.CONFLICT_CRM, False)
    unknown = merge_field(edit, "crm", T0 + TICK, None, Policy.LATEST_WINS)
    assert unknown == FieldMerge("new", Outcome.CONFLICT_PORTAL, True)


def test_a_pushed_edit_is_settled_only_by_a_later_version_or_a_later_read() -> None:
    edit = PendingEdit("old", "new", T0, pushed_version=T0 + dt.timedelta(seconds=5))
    at_write = merge_field(edit, "crm", edit.pushed_version, None, Policy.CRM_WINS)
    assert at_write == FieldMerge("new", Outcome.PORTAL, True)
    after = merge_field(edit, "crm", edit.pushed_version + TICK, None, Policy.MANUAL)
    assert after == FieldMerge("crm", Outcome.CRM, False)
    unknown = merge_field(edit, "crm", None, T0 + dt.timedelta(days=1), Policy.CRM_WINS)
    assert unknown == FieldMerge("new", Outcome.PORTAL, True)
    # the base does not matter once the write is in the CRM: a stale read is not agreement
    stale = merge_field(edit, "old", T0, T0, Policy.CRM_WINS)
    assert stale == FieldMerge("new", Outcome.PORTAL, True)
    echo = merge_field(edit, "new", None, None, Policy.MANUAL)
    assert echo == FieldMerge("new", Outcome.AGREED, False)


def test_a_read_after_the_write_settles_whatever_the_versions() -> None:
    edit = PendingEdit("old", "new", T0, pushed_version=T0, read_after_write=True)
    assert merge_field(edit, "crm", None, None, Policy.PORTAL_WINS) == FieldMerge(
        "crm", Outcome.CRM, False
    )
    assert merge_field(edit, "new", None, None, Policy.PORTAL_WINS) == FieldMerge(
        "new", Outcome.AGREED, False
    )
    unpushed = PendingEdit("old", "new", T0, read_after_write=True)
    assert merge_field(unpushed, "crm", None, None, Policy.PORTAL_WINS) == FieldMerge(
        "new", Outcome.CONFLICT_PORTAL, True
    )


def test_merging_a_record_leaves_unedited_and_absent_fields_alone() -> None:
    asked: list[str] = []

    def policy_of(name: str) -> Policy:
        asked.append(name)
        return Policy.CRM_WINS if name == "b" else Policy.PORTAL_WINS

    edits = {
        "b": PendingEdit(0, 1, T0),
        "a": PendingEdit(0, 1, T0),
        "_gone": PendingEdit(0, 1, T0),  # sorted first: a field the CRM record lacks
    }
    values, merges = merge_record(
        {"a": 5, "b": 5, "c": 5}, edits, crm_version=T0, crm_changed_at=T0, policy_of=policy_of
    )
    assert values == {"a": 1, "b": 5, "c": 5}
    assert list(merges) == ["a", "b"] and asked == ["a", "b"]
    assert merges["a"].outcome is Outcome.CONFLICT_PORTAL
    assert merges["b"].outcome is Outcome.CONFLICT_CRM


def test_the_edit_left_after_a_merge() -> None:
    edit = PendingEdit("old", "new", T0)
    assert remaining_edit(edit, FieldMerge("crm", Outcome.CONFLICT_CRM, False), "crm") is None
    rebased = remaining_edit(edit, FieldMerge("new", Outcome.CONFLICT_PORTAL, True), "crm")
    assert rebased == PendingEdit("crm", "new", T0, None, False)
    pushed = PendingEdit("old", "new", T0, pushed_version=T0, read_after_write=False)
    assert remaining_edit(pushed, FieldMerge("new", Outcome.PORTAL, True), "crm") is pushed
