"""Dynamics writes against the Dataverse sandbox: idempotent creates, etag preconditions and a
412 on a concurrent edit, lookups through ``@odata.bind``, ``$batch`` chunks and failures."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from adapters.dynamics.write import BatchWriter, create_id
from mirror.types import ObjectSpec, Write, WriteOp
from sandboxes.dynamics.sandbox import DynamicsSandbox
from tests.adapters.dynamics.fixtures import dynamics_sandbox, sandbox_adapter  # noqa: F401


@pytest.fixture(scope="module")
def box(dynamics_sandbox: DynamicsSandbox) -> DynamicsSandbox:  # noqa: F811
    return dynamics_sandbox


@pytest.fixture(scope="module")
def opportunity(box: DynamicsSandbox) -> ObjectSpec:
    return sandbox_adapter(box).describe("opportunity")


def tag() -> str:
    return uuid.uuid4().hex[:10]


def create(name: str, key: str | None = None, **values: Any) -> Write:
    return Write(WriteOp.CREATE, "opportunity", {"name": name, **values}, idempotency_key=key)


def existing(box: DynamicsSandbox, position: int) -> tuple[str, str]:
    record_id = box.ids("opportunity")[position]
    record = box.get("opportunity", record_id)
    assert record is not None
    return record_id, record["modifiedon"].isoformat()


def test_a_create_gets_the_guid_of_its_idempotency_key_and_lands_once(box, opportunity) -> None:
    adapter, key = sandbox_adapter(box), tag()
    before = box.count("opportunity")
    [first] = adapter.write(opportunity, [create("Once", key)])
    [again] = adapter.write(opportunity, [create("Once", key)])
    assert first.record_id == again.record_id == create_id("opportunity", key)
    assert (first.created, again.created) == (True, False)
    assert first.version and again.version == first.version
    assert box.count("opportunity") == before + 1


def test_a_lost_batch_answer_is_retried_without_duplicates(box, opportunity) -> None:
    adapter = sandbox_adapter(box)
    adapter.connection.sleep = lambda _seconds: None
    target, version = existing(box, 1)
    name = f"Lost answer {tag()}"
    before = box.count("opportunity")
    box.drop_next_response(1, path_contains="$batch")
    results = adapter.write(opportunity, [
        create(name, tag()),
        Write(WriteOp.UPDATE, "opportunity", {"stepname": name}, record_id=target,
              expected_version=version),
    ])  # fmt: skip
    assert [r.ok for r in results] == [True, True], results
    assert box.count("opportunity") == before + 1
    assert box.get("opportunity", target)["stepname"] == name  # type: ignore[index]
    assert box.call_count("$batch") >= 2


def test_a_concurrent_edit_between_check_and_write_is_a_412(box, opportunity, monkeypatch) -> None:
    target, version = existing(box, 2)
    checked = BatchWriter._current

    def edited_meanwhile(self: BatchWriter, writes: Any) -> Any:
        versions = checked(self, writes)
        box.update("opportunity", target, {"stepname": "theirs"})
        return versions

    monkeypatch.setattr(BatchWriter, "_current", edited_meanwhile)
    [result] = sandbox_adapter(box).write(opportunity, [
        Write(WriteOp.UPDATE, "opportunity", {"stepname": "ours"}, record_id=target,
              expected_version=version)])  # fmt: skip
    assert not result.ok and result.precondition_failed
    assert result.error_code == "0x80060882"
    assert box.get("opportunity", target)["stepname"] == "theirs"  # type: ignore[index]


def test_stale_versions_fail_before_anything_is_sent(box, opportunity) -> None:
    target, version = existing(box, 3)
    box.advance_clock(1)
    box.update("opportunity", target, {"stepname": "changed in the CRM"})
    calls = box.call_count("$batch")
    results = sandbox_adapter(box).write(opportunity, [
        Write(WriteOp.UPDATE, "opportunity", {"stepname": "ours"}, record_id=target,
              expected_version=version),
        Write(WriteOp.DELETE, "opportunity", {}, record_id=target, expected_version=version),
    ])  # fmt: skip
    assert all(r.precondition_failed and not r.ok for r in results)
    assert results[0].version == box.get("opportunity", target)["modifiedon"].strftime(  # type: ignore[index]
        "%Y-%m-%dT%H:%M:%S.000Z"
    )
    assert box.call_count("$batch") == calls


def test_missing_rows_fail_updates_and_satisfy_deletes(box, opportunity) -> None:
    gone = box.create("opportunity", {"name": "Short-lived"})
    box.delete("opportunity", gone)
    results = sandbox_adapter(box).write(opportunity, [
        Write(WriteOp.UPDATE, "opportunity", {"stepname": "x"}, record_id=gone),
        Write(WriteOp.DELETE, "opportunity", {}, record_id=gone),
        Write(WriteOp.DELETE, "opportunity", {}, record_id=gone, expected_version="2020-01-01"),
    ])  # fmt: skip
    assert not results[0].ok and results[0].error_code == "0x80040217"
    assert not results[0].retryable and not results[0].precondition_failed
    assert results[1].ok and results[2].ok


def test_lookups_are_bound_including_polymorphic_and_cleared(box, opportunity) -> None:
    adapter = sandbox_adapter(box)
    contact = box.ids("contact")[0]
    account = box.ids("account")[0]
    [made] = adapter.write(opportunity, [create(
        "Bound", tag(), _customerid_value=contact, _parentaccountid_value=account,
        _prm_partneraccountid_value=account)])  # fmt: skip
    record = box.get("opportunity", str(made.record_id))
    assert record is not None and record["customeridtype"] == "contact"
    assert (record["_customerid_value"], record["_parentaccountid_value"]) == (contact, account)
    [cleared] = adapter.write(opportunity, [Write(
        WriteOp.UPDATE, "opportunity", {"_parentaccountid_value": None},
        record_id=made.record_id, expected_version=made.version)])  # fmt: skip
    assert cleared.ok, cleared
    assert box.get("opportunity", str(made.record_id))["_parentaccountid_value"] is None  # type: ignore[index]


def test_one_invalid_value_fails_alone(box, opportunity) -> None:
    target, _ = existing(box, 4)
    results = sandbox_adapter(box).write(opportunity, [
        create(f"Fine {tag()}", tag()),
        Write(WriteOp.UPDATE, "opportunity", {"estimatedvalue": -5.0}, record_id=target),
        Write(WriteOp.UPDATE, "opportunity", {"closeprobability": 50}, record_id=target),
    ])  # fmt: skip
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error_code == "0x80044331" and "estimatedvalue" in str(results[1].message)
    assert not results[1].retryable


def test_writes_go_in_batch_size_chunks(box, opportunity) -> None:
    adapter = sandbox_adapter(box, batch_size=10)
    calls = box.call_count("$batch")
    results = adapter.write(opportunity, [create(f"Bulk {n}", tag()) for n in range(25)])
    assert all(r.ok and r.created and r.version for r in results)
    assert box.call_count("$batch") == calls + 3


def test_a_failure_after_a_chunk_landed_fails_the_rest_as_retryable(
    box, opportunity, monkeypatch
) -> None:
    adapter = sandbox_adapter(box, batch_size=5, max_retries=1)
    adapter.connection.sleep = lambda _seconds: None
    answers: list[Any] = []
    post = BatchWriter._post

    def fail_later_chunks(self: BatchWriter, chunk: Any) -> Any:
        if answers:
            box.fail_next(2, status=503, path_contains="$batch")
        answers.append(chunk)
        return post(self, chunk)

    monkeypatch.setattr(BatchWriter, "_post", fail_later_chunks)
    results = adapter.write(opportunity, [create(f"Partial {n}", tag()) for n in range(10)])
    assert [r.ok for r in results] == [True] * 5 + [False] * 5
    assert all(r.retryable and r.error_code == "NOT_ATTEMPTED" for r in results[5:])


def test_throttled_batches_are_retried(box, opportunity) -> None:
    adapter = sandbox_adapter(box)
    waits: list[float] = []
    adapter.connection.sleep = waits.append
    box.throttle(2, retry_after=1, path_contains="$batch")
    results = adapter.write(opportunity, [create(f"Throttled {tag()}", tag())])
    assert results[0].ok and results[0].created
    assert len(waits) == 2 and min(waits) >= 1
