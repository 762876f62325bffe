"""The contract every CRM adapter passes, run against that CRM's local sandbox.

A test module subclasses ``CrmAdapterContract`` and provides a ``contract_subject`` fixture
returning a ``ContractSubject``: a way to make adapters, the sandbox's ``SandboxControls``, and
the object (with enough records to span several pages) the checks read and write. The checks
are CRM-neutral: they only use the ``CrmAdapter`` port, the controls, and the object's
``ObjectSpec`` (key and cursor field names come from it).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from mirror.adapter import CrmAdapter
from mirror.types import Checkpoint, FieldType, ObjectSpec, Page, Write, WriteOp


class SandboxControls(Protocol):
    """What the contract needs from a sandbox besides the adapter under test.

    Every mutation moves the record's change cursor past any value a reader has seen.
    """

    def create(self, object_name: str, values: Mapping[str, Any]) -> str:
        """Create a record behind the adapter's back; its id."""
        ...

    def update(self, object_name: str, record_id: str, values: Mapping[str, Any]) -> None:
        """Change a record behind the adapter's back."""
        ...

    def delete(self, object_name: str, record_id: str) -> None:
        """Delete a record (the CRM still reports the delete)."""
        ...

    def hard_delete(self, object_name: str, record_id: str) -> None:
        """Delete a record so that the CRM no longer reports it at all."""
        ...

    def set_same_modstamp(self, object_name: str, ids: Iterable[str]) -> None:
        """Give all ``ids`` one and the same new change-cursor value."""
        ...

    def advance_clock(self, seconds: float) -> None:
        """Move the CRM's clock forward by ``seconds``."""
        ...

    def expire_sessions(self) -> None:
        """Make every issued session or token invalid."""
        ...

    def fail_next(self, count: int, status: int) -> None:
        """Answer the next ``count`` CRM requests with ``status``."""
        ...

    def count(self, object_name: str) -> int:
        """How many live records the object has."""
        ...

    def ids(self, object_name: str) -> list[str]:
        """The ids of the object's live records."""
        ...

    def get(self, object_name: str, record_id: str) -> Mapping[str, Any] | None:
        """A live record's stored values, or ``None``."""
        ...


@dataclass
class ContractSubject:
    """What one CRM's contract run works with."""

    make_adapter: Callable[[], CrmAdapter]
    controls: SandboxControls
    object_name: str
    new_values: Callable[[str], dict[str, Any]]
    changed_values: Callable[[str], dict[str, Any]]
    page_size: int
    _spec: ObjectSpec | None = field(default=None, repr=False)

    def spec(self) -> ObjectSpec:
        """The object's spec, described once."""
        if self._spec is None:
            self._spec = self.make_adapter().describe(self.object_name)
        return self._spec


@dataclass
class Replica:
    """A toy mirror: pages applied in order, as the engine would."""

    key: str
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    deliveries: list[str] = field(default_factory=list)
    tombstones: list[str] = field(default_factory=list)

    def apply(self, page: Page) -> None:
        """Upsert the page's records and drop its tombstones."""
        for record in page.records:
            self.rows[record[self.key]] = record
            self.deliveries.append(record[self.key])
        for tombstone in page.tombstones:
            self.rows.pop(tombstone.id, None)
            self.tombstones.append(tombstone.id)


def read_all(
    adapter: CrmAdapter, spec: ObjectSpec, since: Checkpoint | None, replica: Replica | None = None
) -> tuple[Replica, list[Page]]:
    """Apply every page of one read to ``replica`` (a new one by default)."""
    replica = replica or Replica(spec.key)
    pages = []
    for page in adapter.read(spec, since):
        replica.apply(page)
        pages.append(page)
    assert pages, "a read yields at least one page"
    return replica, pages


def backfill(subject: ContractSubject) -> tuple[Replica, list[Page]]:
    """A full backfill with a fresh adapter."""
    return read_all(subject.make_adapter(), subject.spec(), None)


def _as_time(cursor: str) -> datetime | str:
    try:
        return datetime.fromisoformat(cursor)
    except ValueError:
        return cursor


def _cursors_never_go_back(pages: Iterator[Page] | list[Page]) -> None:
    seen: Any = None
    for page in pages:
        if page.checkpoint.cursor is None:
            continue
        value = _as_time(page.checkpoint.cursor)
        assert seen is None or value >= seen, "checkpoint cursors must never go backwards"
        seen = value


def _tag() -> str:
    return uuid.uuid4().hex[:12]


# past every adapter's fence: its stamp resolution, a request's time and any index lag
SETTLE_SECONDS = 10


class CrmAdapterContract:
    """The shared checks; subclass with a ``contract_subject`` fixture in scope."""

    def test_describe_has_key_cursor_and_typed_fields(self, contract_subject: ContractSubject):
        spec = contract_subject.spec()
        assert spec.name == contract_subject.object_name
        assert spec.key in spec.field_names
        assert spec.cursor_field in spec.field_names
        assert spec.field(spec.cursor_field).type in (FieldType.DATETIME, FieldType.INTEGER)
        assert all(isinstance(f.type, FieldType) for f in spec.fields)
        assert len(set(spec.field_names)) == len(spec.fields)

    def test_backfill_returns_every_live_record_once(self, contract_subject: ContractSubject):
        live = set(contract_subject.controls.ids(contract_subject.object_name))
        assert len(live) > contract_subject.page_size, "the subject must span several pages"
        replica, pages = backfill(contract_subject)
        assert len(replica.deliveries) == len(set(replica.deliveries)) == len(live)
        assert set(replica.rows) == live
        assert len(pages) >= 2
        assert [p.checkpoint.phase for p in pages[:-1]] == ["backfill"] * (len(pages) - 1)
        assert pages[-1].checkpoint.phase == "incremental"
        _cursors_never_go_back(pages)

    def test_records_carry_typed_values(self, contract_subject: ContractSubject):
        spec = contract_subject.spec()
        replica, _ = backfill(contract_subject)
        record = next(iter(replica.rows.values()))
        assert isinstance(record[spec.key], str)
        cursor = record[spec.cursor_field]
        assert isinstance(cursor, datetime) and cursor.utcoffset() is not None

    def test_incremental_after_a_change_returns_it(self, contract_subject: ContractSubject):
        subject = contract_subject
        _, pages = backfill(subject)
        target = subject.controls.ids(subject.object_name)[0]
        change = subject.changed_values(_tag())
        subject.controls.update(subject.object_name, target, change)
        replica, later = read_all(subject.make_adapter(), subject.spec(), pages[-1].checkpoint)
        assert target in replica.rows
        assert {k: replica.rows[target][k] for k in change} == change
        assert later[-1].checkpoint.phase == "incremental"
        _cursors_never_go_back([pages[-1], *later])

    def test_an_idle_incremental_delivers_nothing_but_a_checkpoint(self, contract_subject):
        subject = contract_subject
        spec = subject.spec()
        full, pages = backfill(subject)
        subject.controls.advance_clock(SETTLE_SECONDS)
        # records stamped at or after the backfill's fence (changed just before it began, or
        # while it ran) are read once more, and only those
        caught, settled = read_all(subject.make_adapter(), spec, pages[-1].checkpoint)
        assert len(caught.deliveries) < len(full.deliveries)
        start = pages[-1].checkpoint.cursor
        if start is not None:
            assert all(row[spec.cursor_field] >= _as_time(start) for row in caught.rows.values())
        replica, idle = read_all(subject.make_adapter(), spec, settled[-1].checkpoint)
        assert replica.deliveries == [] and replica.tombstones == []
        assert idle[-1].checkpoint.phase == "incremental"
        assert idle[-1].checkpoint.cursor == settled[-1].checkpoint.cursor
        assert idle[-1].checkpoint.ids_at_cursor == settled[-1].checkpoint.ids_at_cursor

    def test_equal_cursor_values_straddling_pages_survive_every_resume(
        self, contract_subject: ContractSubject
    ):
        subject = contract_subject
        _, pages = backfill(subject)
        tied = subject.controls.ids(subject.object_name)[: subject.page_size + 50]
        subject.controls.set_same_modstamp(subject.object_name, tied)
        # the tie is older than the read's fence, so its ids are what the checkpoints carry
        subject.controls.advance_clock(SETTLE_SECONDS)
        spec = subject.spec()
        replica, later = read_all(subject.make_adapter(), spec, pages[-1].checkpoint)
        assert set(tied) <= set(replica.rows)
        assert len(later) >= 2, "the tied records must straddle a page boundary"
        straddling = [set(p.checkpoint.ids_at_cursor) & set(tied) for p in later[:-1]]
        assert any(0 < len(ids) < len(tied) for ids in straddling), "no page ends inside the tie"
        for position, page in enumerate(later[:-1]):
            resumed = Replica(spec.key)
            for earlier in later[: position + 1]:
                resumed.apply(earlier)
            read_all(subject.make_adapter(), spec, page.checkpoint, resumed)
            assert set(tied) <= set(resumed.rows), (
                f"lost tied records resuming after page {position}"
            )

    def test_deletes_come_as_tombstones(self, contract_subject: ContractSubject):
        subject = contract_subject
        _, pages = backfill(subject)
        victim = subject.controls.create(subject.object_name, subject.new_values(_tag()))
        seen, after_create = read_all(subject.make_adapter(), subject.spec(), pages[-1].checkpoint)
        assert victim in seen.rows
        subject.controls.delete(subject.object_name, victim)
        replica, _ = read_all(subject.make_adapter(), subject.spec(), after_create[-1].checkpoint)
        assert victim in replica.tombstones
        assert victim not in replica.rows

    def test_resume_from_any_page_gives_the_same_final_set(self, contract_subject):
        subject = contract_subject
        spec = subject.spec()
        full, pages = backfill(subject)
        for position, page in enumerate(pages[:-1]):
            resumed = Replica(spec.key)
            for earlier in pages[: position + 1]:
                resumed.apply(earlier)
            read_all(subject.make_adapter(), spec, page.checkpoint, resumed)
            assert set(resumed.rows) == set(full.rows), f"resume after page {position} differs"

    def test_read_ids_equals_the_live_set(self, contract_subject: ContractSubject):
        subject = contract_subject
        batches = list(subject.make_adapter().read_ids(subject.spec()))
        ids = [record_id for batch in batches for record_id in batch]
        assert len(ids) == len(set(ids))
        assert set(ids) == set(subject.controls.ids(subject.object_name))

    def test_read_ids_leave_out_hard_deleted_records(self, contract_subject: ContractSubject):
        subject = contract_subject
        gone = subject.controls.create(subject.object_name, subject.new_values(_tag()))
        subject.controls.hard_delete(subject.object_name, gone)
        ids = {i for batch in subject.make_adapter().read_ids(subject.spec()) for i in batch}
        assert gone not in ids
        assert ids == set(subject.controls.ids(subject.object_name))

    def test_session_expiry_mid_read_is_survived(self, contract_subject: ContractSubject):
        subject = contract_subject
        adapter = subject.make_adapter()
        replica = Replica(subject.spec().key)
        pages = adapter.read(subject.spec(), None)
        replica.apply(next(pages))
        subject.controls.expire_sessions()
        for page in pages:
            replica.apply(page)
        assert set(replica.rows) == set(subject.controls.ids(subject.object_name))

    def test_server_errors_are_retried(self, contract_subject: ContractSubject):
        subject = contract_subject
        adapter = subject.make_adapter()
        adapter.check()
        calls_before = adapter.api_calls()
        subject.controls.fail_next(2, 503)
        replica, _ = read_all(adapter, subject.spec(), None)
        assert set(replica.rows) == set(subject.controls.ids(subject.object_name))
        assert adapter.api_calls() >= calls_before + 3

    def test_write_create_update_delete_round_trip(self, contract_subject: ContractSubject):
        subject = contract_subject
        adapter, spec, name = subject.make_adapter(), subject.spec(), subject.object_name
        values = subject.new_values(_tag())
        [created] = adapter.write(
            spec, [Write(WriteOp.CREATE, name, values, idempotency_key=_tag())]
        )
        assert created.ok and created.record_id and created.created, created
        stored = subject.controls.get(name, created.record_id)
        assert stored is not None and {k: stored[k] for k in values} == values
        change = subject.changed_values(_tag())
        [updated] = adapter.write(
            spec,
            [
                Write(
                    WriteOp.UPDATE,
                    name,
                    change,
                    record_id=created.record_id,
                    expected_version=created.version,
                )
            ],
        )
        assert updated.ok, updated
        stored = subject.controls.get(name, created.record_id)
        assert stored is not None and {k: stored[k] for k in change} == change
        [deleted] = adapter.write(
            spec, [Write(WriteOp.DELETE, name, {}, record_id=created.record_id)]
        )
        assert deleted.ok, deleted
        assert subject.controls.get(name, created.record_id) is None

    def test_a_retried_create_does_not_duplicate(self, contract_subject: ContractSubject):
        subject = contract_subject
        adapter, spec, name = subject.make_adapter(), subject.spec(), subject.object_name
        key = _tag()
        before = subject.controls.count(name)
        write = Write(WriteOp.CREATE, name, subject.new_values(key), idempotency_key=key)
        [first] = adapter.write(spec, [write])
        [again] = adapter.write(spec, [write])
        assert first.ok and again.ok
        assert first.record_id == again.record_id
        assert subject.controls.count(name) == before + 1

    def test_a_stale_expected_version_fails_the_precondition(self, contract_subject):
        subject = contract_subject
        adapter, spec, name = subject.make_adapter(), subject.spec(), subject.object_name
        [created] = adapter.write(
            spec, [Write(WriteOp.CREATE, name, subject.new_values(_tag()), idempotency_key=_tag())]
        )
        assert created.ok and created.version
        theirs = subject.changed_values(_tag())
        subject.controls.update(name, str(created.record_id), theirs)
        ours = subject.changed_values(_tag())
        [result] = adapter.write(
            spec,
            [
                Write(
                    WriteOp.UPDATE,
                    name,
                    ours,
                    record_id=created.record_id,
                    expected_version=created.version,
                )
            ],
        )
        assert not result.ok and result.precondition_failed
        stored = subject.controls.get(name, str(created.record_id))
        assert stored is not None and {k: stored[k] for k in theirs} == theirs

    def test_one_bad_write_does_not_block_the_rest(self, contract_subject: ContractSubject):
        subject = contract_subject
        adapter, spec, name = subject.make_adapter(), subject.spec(), subject.object_name
        gone = subject.controls.create(name, subject.new_values(_tag()))
        subject.controls.delete(name, gone)
        writes = [
            Write(WriteOp.CREATE, name, subject.new_values(_tag()), idempotency_key=_tag()),
            Write(WriteOp.UPDATE, name, subject.changed_values(_tag()), record_id=gone),
            Write(WriteOp.CREATE, name, subject.new_values(_tag()), idempotency_key=_tag()),
        ]
        results = adapter.write(spec, writes)
        assert [r.ok for r in results] == [True, False, True]
        assert results[1].error_code and results[1].message and not results[1].retryable
