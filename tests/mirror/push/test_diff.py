"""Properties of the diff engine: field diffs, and the three-way merge (deterministic,
idempotent, commuting for non-conflicting edits, never losing a side silently)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from mirror.push.diff import (
    Outcome,
    PendingEdit,
    Policy,
    field_changes,
    merge_field,
    merge_record,
    remaining_edit,
)

FIELDS = ["A", "B", "C", "D"]
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
values = st.one_of(st.none(), st.integers(-3, 3), st.sampled_from(["x", "y", "z"]))
records = st.fixed_dictionaries({f: values for f in FIELDS})
policies = st.sampled_from(list(Policy))


@given(records, records)
def test_field_changes_are_exactly_the_differing_fields(old, new) -> None:
    changes = field_changes(old, new, FIELDS)
    assert set(changes) == {f for f in FIELDS if old[f] != new[f]}
    patched = {**old, **{f: after for f, (_, after) in changes.items()}}
    assert patched == new


def edits_from(base, portal, fields):
    return {f: PendingEdit(base[f], portal[f], T0) for f in fields}


@given(records, records, records, st.sets(st.sampled_from(FIELDS)), policies)
def test_merge_is_deterministic_and_applying_the_same_page_twice_is_a_no_op(
    base, portal, crm, edited, policy
) -> None:
    edits = edits_from(base, portal, edited)

    def merge(record, pending):
        return merge_record(
            record, pending, crm_version=T0, crm_changed_at=T0, policy_of=lambda f: policy
        )

    first_values, first = merge(crm, edits)
    assert merge(dict(reversed(list(crm.items()))), edits) == (first_values, first)
    left = {f: e for f, e in ((f, remaining_edit(edits[f], first[f], crm[f])) for f in first) if e}
    second_values, second = merge(crm, left)
    assert second_values == first_values
    assert not any(m.conflict for m in second.values())


@given(records, st.data())
def test_non_conflicting_edits_commute(base, data) -> None:
    portal_fields = data.draw(st.sets(st.sampled_from(FIELDS)))
    others = [f for f in FIELDS if f not in portal_fields]
    crm_fields = data.draw(st.sets(st.sampled_from(others))) if others else set()
    portal = {**base, **{f: data.draw(values) for f in portal_fields}}
    crm = {**base, **{f: data.draw(values) for f in crm_fields}}
    expected = {**base, **{f: crm[f] for f in crm_fields}, **{f: portal[f] for f in portal_fields}}
    policy = data.draw(policies)

    def merge(record, pending):
        return merge_record(
            record, pending, crm_version=T0, crm_changed_at=T0, policy_of=lambda f: policy
        )[0]

    portal_first = merge(crm, edits_from(base, portal, portal_fields))
    crm_first = merge(crm, edits_from(crm, portal, portal_fields))
    assert portal_first == crm_first == expected


@given(values, values, values, policies)
def test_a_conflict_is_never_resolved_silently_against_the_policy(base, portal, crm, policy):
    merged = merge_field(PendingEdit(base, portal, T0), crm, T0, T0, policy)
    if crm != portal and crm != base and portal != base:
        assert merged.conflict
        expected = {
            Policy.CRM_WINS: crm,
            Policy.PORTAL_WINS: portal,
            Policy.MANUAL: crm,
        }.get(policy, merged.value)
        assert merged.value == expected
        assert merged.still_pending == (merged.outcome is Outcome.CONFLICT_PORTAL)


def test_latest_wins_compares_the_crm_change_with_the_edit_time() -> None:
    edit = PendingEdit("old", "portal", T0)
    later = T0 + dt.timedelta(seconds=5)
    earlier = T0 - dt.timedelta(seconds=5)
    assert merge_field(edit, "crm", later, later, Policy.LATEST_WINS).value == "crm"
    assert merge_field(edit, "crm", earlier, earlier, Policy.LATEST_WINS).value == "portal"


def test_a_pushed_edit_ignores_stale_reads_and_confirms_on_its_echo() -> None:
    pushed = PendingEdit("old", "new", T0, pushed_version=T0 + dt.timedelta(seconds=10))
    stale = merge_field(pushed, "old", T0, T0, Policy.CRM_WINS)
    assert (stale.value, stale.still_pending) == ("new", True)
    echo = merge_field(pushed, "new", T0 + dt.timedelta(seconds=10), None, Policy.CRM_WINS)
    assert (echo.value, echo.outcome, echo.still_pending) == ("new", Outcome.AGREED, False)
    later = merge_field(pushed, "newer", T0 + dt.timedelta(seconds=20), None, Policy.MANUAL)
    assert (later.value, later.outcome) == ("newer", Outcome.CRM)


def test_latest_wins_gives_a_tie_to_the_portal() -> None:
    edit = PendingEdit("old", "portal", T0)
    tie = merge_field(edit, "crm", T0, T0, Policy.LATEST_WINS)
    assert (tie.value, tie.outcome, tie.still_pending) == ("portal", Outcome.CONFLICT_PORTAL, True)
    just_after = T0 + dt.timedelta(microseconds=1)
    later = merge_field(edit, "crm", just_after, just_after, Policy.LATEST_WINS)
    assert (later.value, later.outcome, later.still_pending) == ("crm", Outcome.CONFLICT_CRM, False)


def test_another_value_at_exactly_our_writes_version_waits_for_a_read_after_the_write() -> None:
    written = T0 + dt.timedelta(seconds=10)
    pushed = PendingEdit("old", "new", T0, pushed_version=written)
    same_second = merge_field(pushed, "crm", written, written, Policy.CRM_WINS)
    assert (same_second.value, same_second.outcome, same_second.still_pending) == (
        "new",
        Outcome.PORTAL,
        True,
    )
    assert not same_second.conflict
    just_after = written + dt.timedelta(microseconds=1)
    after = merge_field(pushed, "crm", just_after, just_after, Policy.PORTAL_WINS)
    assert (after.value, after.outcome, after.still_pending) == ("crm", Outcome.CRM, False)
    fresh = PendingEdit("old", "new", T0, pushed_version=written, read_after_write=True)
    settled = merge_field(fresh, "crm", written, written, Policy.PORTAL_WINS)
    assert (settled.value, settled.outcome, settled.still_pending) == ("crm", Outcome.CRM, False)
    echo = merge_field(fresh, "new", written, written, Policy.PORTAL_WINS)
    assert (echo.value, echo.outcome, echo.still_pending) == ("new", Outcome.AGREED, False)


offsets = st.integers(-3, 3).map(lambda s: dt.timedelta(seconds=s))


@settings(max_examples=200, deadline=None)
@given(values, values, values, offsets, st.booleans(), policies)
def test_a_pushed_edit_is_never_dropped_nor_a_crm_change_swallowed(
    base, portal, crm, offset, read_after_write, policy
) -> None:
    written = T0 + dt.timedelta(seconds=10)
    edit = PendingEdit(base, portal, T0, pushed_version=written, read_after_write=read_after_write)
    merged = merge_field(edit, crm, written + offset, written + offset, policy)
    assert not merged.conflict  # our write is in the CRM: nothing is concurrent with it
    if crm == portal:
        assert (merged.value, merged.outcome, merged.still_pending) == (crm, Outcome.AGREED, False)
    elif read_after_write or offset > dt.timedelta(0):
        assert (merged.value, merged.outcome, merged.still_pending) == (crm, Outcome.CRM, False)
    else:  # a read that cannot be placed after the write keeps the portal's value open
        assert (merged.value, merged.outcome, merged.still_pending) == (
            portal,
            Outcome.PORTAL,
            True,
        )
