"""Reconciliation over random sequences of portal edits, CRM changes, pushes (some of whose
answers are lost after the CRM committed the write) and syncs, on both stores.

The CRM is the in-memory adapter with conditional writes (the version and the values the edit
was made against, as the real adapters check them). Once the edits stop and the mirror is
brought to rest: nothing is left open, the mirror equals the CRM, a field the CRM never
changed holds the portal's last value there and never saw a conflict, and a conflict is only
ever recorded on a field the CRM did change.

10 examples a run keep it within the suite's time; ``PRM_MIRROR_HYPOTHESIS_EXAMPLES=500``
searches longer.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from mirror.portal.writes import apply_update
from mirror.pull.sync import Puller
from mirror.push.diff import Policy
from mirror.push.outbox import open_entry_filter
from mirror.push.preconditions import changed_fields
from mirror.push.writeback import Pusher
from mirror.store.database import Store
from mirror.store.tables import mirror_conflicts, mirror_outbox
from mirror.types import ObjectSpec, Write, WriteResult
from tests.mirror.fakes import BASE_FIELDS, FakeCrm, at

FIELDS = ("Name", "Amount")
VALUES = {"Name": ("n0", "n1", "n2", "n3"), "Amount": (0.0, 1.0, 2.0, 3.0)}
RECORD = "d1"
OBJECTS = itertools.count()


class WritableCrm(FakeCrm):
    """An in-memory CRM of one object taking conditional updates, each stamped one second
    after the last change; ``lose_answers`` makes writes land but answer with a retryable
    error."""

    def __init__(self, name: str) -> None:
        super().__init__(page_size=2, objects={name: BASE_FIELDS})
        self.name = name
        self.clock = 10
        self.lose_answers = False
        self.changed: set[str] = set()

    def record(self) -> dict[str, Any]:
        """The edited record as the CRM holds it."""
        return self.stores[self.name][RECORD]

    def change(self, **values: Any) -> None:
        """A change made in the CRM itself."""
        self.clock += 1
        self.put(RECORD, self.clock, self.name, **values)
        self.changed.update(values)

    def write(self, spec: ObjectSpec, writes: Sequence[Write]) -> list[WriteResult]:
        """Updates checked against the version and the values their edit was made against."""
        return [self._write_one(spec, write) for write in writes]

    def _write_one(self, spec: ObjectSpec, write: Write) -> WriteResult:
        record = self.record()
        if write.expected_version and (
            dt.datetime.fromisoformat(write.expected_version) != record["Modstamp"]
            or changed_fields(spec, write.expected_values, record)
        ):
            return WriteResult(ok=False, precondition_failed=True, message="changed")
        self.clock += 1
        self.put(RECORD, self.clock, self.name, **write.values)
        if self.lose_answers:
            return WriteResult(ok=False, retryable=True, message="connection reset")
        return WriteResult(ok=True, record_id=RECORD, version=at(self.clock).isoformat())


class Run:
    """A CRM of one object of its own and the engine's pull and push between it and
    ``store``."""

    def __init__(self, store: Store, name: str) -> None:
        self.name = name
        self.crm = WritableCrm(name)
        self.crm.put(RECORD, 1, name, Name="n0", Amount=0.0)
        self.crm.put("d2", 2, name, Name="other", Amount=5.0)
        self.store = store
        self.puller = Puller(self.store, self.crm, policy_of=lambda _o, _f: Policy.MANUAL)
        self.spec = self.crm.describe(name)
        self.portal: dict[str, Any] = {}
        self.sync()
        self.pusher = Pusher(
            self.store,
            self.crm,
            "fake",
            lambda name: self.store.mirrored("fake", name).spec,
            base_delay=0,
            max_attempts=100,
        )

    def sync(self) -> None:
        self.puller.sync_object(self.spec)

    def push(self, lose: bool = False) -> None:
        self.crm.lose_answers = lose
        try:
            self.pusher.push()
        finally:
            self.crm.lose_answers = False

    def edit(self, name: str, value: Any) -> None:
        mirrored = self.store.mirrored("fake", self.name)
        with self.store.transaction() as conn:
            if apply_update(conn, mirrored, RECORD, {name: value}, None, "rep"):
                self.portal[name] = value

    def open_entries(self) -> list[Any]:
        with self.store.engine.connect() as conn:
            query = select(mirror_outbox).where(
                mirror_outbox.c.object == self.name, open_entry_filter()
            )
            return list(conn.execute(query))

    def settle(self) -> None:
        for _ in range(8):
            self.push()
            self.sync()
            if not self.open_entries():
                return

    def row(self) -> dict[str, Any]:
        table = self.store.mirrored("fake", self.name).table
        with self.store.engine.connect() as conn:
            return dict(conn.execute(select(table).where(table.c.Id == RECORD)).one()._mapping)

    def conflicts(self) -> list[Any]:
        with self.store.engine.connect() as conn:
            query = select(mirror_conflicts).where(mirror_conflicts.c.object == self.name)
            return list(conn.execute(query))


steps = st.lists(
    st.one_of(
        st.sampled_from(FIELDS).flatmap(
            lambda f: st.tuples(st.just("portal"), st.just(f), st.sampled_from(VALUES[f]))
        ),
        st.sampled_from(FIELDS).flatmap(
            lambda f: st.tuples(st.just("crm"), st.just(f), st.sampled_from(VALUES[f]))
        ),
        st.tuples(st.sampled_from(("push", "push_lost", "sync"))),
    ),
    max_size=14,
)


def play(store: Store, plan: list[tuple[Any, ...]]) -> None:
    """Run ``plan`` against a CRM object of its own, bring the mirror to rest and check it."""
    run = Run(store, f"Deal{next(OBJECTS)}")
    for step in plan:
        if step[0] == "portal":
            run.edit(step[1], step[2])
        elif step[0] == "crm":
            run.crm.change(**{step[1]: step[2]})
        elif step[0] == "sync":
            run.sync()
        else:
            run.push(lose=step[0] == "push_lost")
    run.settle()
    assert run.open_entries() == []
    crm, row = run.crm.record(), run.row()
    assert {f: row[f] for f in FIELDS} == {f: crm[f] for f in FIELDS}
    assert {c.field for c in run.conflicts()} <= run.crm.changed
    for name, value in run.portal.items():
        if name not in run.crm.changed:
            assert crm[name] == value, (name, crm[name], value)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = Store(db_url)
    yield store
    store.close()


@settings(
    max_examples=int(os.environ.get("PRM_MIRROR_HYPOTHESIS_EXAMPLES", 10)),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(plan=steps)
@example(
    plan=[
        ("portal", "Name", "n1"),
        ("portal", "Name", "n2"),
        ("crm", "Amount", 0.0),
        ("sync",),
        ("push_lost",),
    ]
)
def test_edits_and_crm_changes_in_any_order_settle_to_one_state(
    store: Store, plan: list[tuple[Any, ...]]
) -> None:
    play(store, plan)


def test_two_portal_edits_of_a_field_meet_a_crm_change_of_another(store: Store) -> None:
    play(
        store,
        [("portal", "Name", "n1"), ("portal", "Name", "n2"), ("crm", "Amount", 1.0), ("sync",)],
    )
