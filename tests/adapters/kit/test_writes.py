"""Write batching shared by the adapters (``adapters._kit.writes``): results in the caller's
order, a call stopped after something was applied fails the rest as retryable, lost answers
and whole-batch refusals fail each write, creates by key look up what may have landed."""

from __future__ import annotations

import pytest

from adapters._kit.errors import OutcomeUnknown
from adapters._kit.writes import (
    Item,
    Staleness,
    create_by_key,
    creates,
    runs,
    send_batches,
    settle_batch,
    vanished,
)
from mirror.errors import CrmError, TransientError
from mirror.types import Write, WriteOp, WriteResult

CREATE = Write(WriteOp.CREATE, "Account", {})
UPDATE = Write(WriteOp.UPDATE, "Account", {}, record_id="a1")


def test_runs_cut_at_each_change_of_op_and_at_the_batch_size() -> None:
    writes = [CREATE] * 5 + [UPDATE] + [CREATE]
    assert [len(batch) for batch in runs(writes, 2)] == [2, 2, 1, 1, 1]
    assert [item.index for batch in runs(writes, 2) for item in batch] == list(range(7))


def test_a_failure_before_anything_was_applied_is_raised() -> None:
    def send(batch: list[Item]) -> list[WriteResult]:
        raise TransientError("down")

    with pytest.raises(TransientError):
        send_batches(runs([CREATE] * 3, 2), send, [None] * 3)


def test_a_failure_after_a_batch_was_applied_fails_the_rest_as_not_attempted() -> None:
    sent: list[int] = []

    def send(batch: list[Item]) -> list[WriteResult]:
        if sent:
            raise TransientError("down")
        sent.append(len(batch))
        return [WriteResult(ok=True, record_id=str(item.index)) for item in batch]

    results: list[WriteResult | None] = [None] * 5
    send_batches(runs([CREATE] * 5, 2), send, results)
    assert [r.ok for r in results if r] == [True, True, False, False, False]
    assert all(r.retryable and r.error_code == "NOT_ATTEMPTED" for r in results[2:] if r)


def test_answers_are_settled_per_item() -> None:
    results: list[WriteResult | None] = [None] * 2
    send_batches(
        runs([CREATE] * 2, 5),
        lambda batch: [f"answer {item.index}" for item in batch],
        results,
        lambda item, answer: WriteResult(ok=True, message=answer),
    )
    assert [r.message for r in results if r] == ["answer 0", "answer 1"]


def test_a_lost_answer_fails_the_batch_retryable_only_for_updates() -> None:
    def lost() -> list[WriteResult]:
        raise OutcomeUnknown("dropped")

    update = settle_batch(WriteOp.UPDATE, 2, lost)
    create = settle_batch(WriteOp.CREATE, 1, lost)
    assert [r.error_code for r in update + create] == ["OUTCOME_UNKNOWN"] * 3
    assert [r.retryable for r in update + create] == [True, True, False]


def test_a_refused_batch_fails_each_write_with_the_crm_code() -> None:
    def refused() -> list[WriteResult]:
        raise CrmError("no", status=400, code="INVALID")

    assert [r.error_code for r in settle_batch(WriteOp.DELETE, 2, refused)] == ["INVALID"] * 2


def test_creates_by_key_look_up_those_in_doubt_and_upsert_the_rest() -> None:
    keyed = Write(WriteOp.CREATE, "Account", {}, idempotency_key="k1")
    doubtful = Write(WriteOp.CREATE, "Account", {}, idempotency_key="k2", in_doubt=True)
    batch = [Item(0, keyed), Item(1, doubtful), Item(2, CREATE)]
    found = {1: WriteResult(ok=True, record_id="made")}

    def upsert(items: list[Item]) -> dict[int, WriteResult]:
        assert [i.index for i in items] == [0]
        return {0: WriteResult(ok=True, record_id="new", created=True)}

    results = creates(
        batch,
        "Key__c",
        lambda items, key: create_by_key(items, lambda _: found, upsert),
        lambda items: {i.index: WriteResult(ok=True, record_id="plain") for i in items},
    )
    assert {i: r.record_id for i, r in results.items()} == {0: "new", 1: "made", 2: "plain"}


def test_an_upsert_whose_answer_is_lost_is_looked_up_next_time() -> None:
    def lost(items: list[Item]) -> dict[int, WriteResult]:
        raise OutcomeUnknown("dropped")

    keyed = Write(WriteOp.CREATE, "Account", {}, idempotency_key="k1")
    [result] = create_by_key([Item(0, keyed)], lambda _: {}, lost).values()
    assert result.retryable and result.message == "dropped; looked up next time"


def test_a_vanished_record_is_done_for_a_delete_and_a_failure_otherwise() -> None:
    delete = Write(WriteOp.DELETE, "Account", {}, record_id="a1")
    assert vanished(delete, "a1", "GONE", "the CRM").ok
    failure = vanished(UPDATE, "a1", "GONE", "the CRM")
    assert (failure.error_code, failure.message) == (
        "GONE",
        "the record no longer exists in the CRM",
    )


def test_a_refusal_names_the_version_or_the_fields_changed_in_its_instant() -> None:
    stale = Staleness("the CRM", "stamp", "that second")
    moved = stale.refusal("a1", "v2")
    assert moved.precondition_failed and moved.version == "v2"
    assert moved.message == "the record changed in the CRM at v2, after the version that was edited"
    fields = stale.refusal("a1", "v1", ["Name", "Stage"])
    assert fields.message == (
        "Name, Stage changed in the CRM without a later stamp than the one edited (v1): "
        "a change made in that second"
    )
