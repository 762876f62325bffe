"""Write-back API calls on the Dataverse sandbox: versioned updates of distinct rows spend at
most 1.1x the minimum (one ``$batch`` of up to 1,000 requests per 1,000 rows)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from adapters.dynamics import write_versions
from adapters.dynamics.batch import BatchAnswer, parse
from adapters.dynamics.settings import MAX_BATCH_REQUESTS
from adapters.dynamics.write import BatchWriter
from mirror.types import Write, WriteOp
from sandboxes.dynamics.sandbox import DynamicsSandbox
from tests.adapters.contract import read_all
from tests.adapters.dynamics.fixtures import WebApi, dynamics_sandbox, sandbox_adapter

__all__ = ["dynamics_sandbox"]

COUNT = 2500


@pytest.fixture(scope="module")
def rows(dynamics_sandbox: DynamicsSandbox) -> list[str]:
    return [
        dynamics_sandbox.create("opportunity", {"name": f"Call count {n}", "stepname": "call"})
        for n in range(COUNT)
    ]


def test_versioned_updates_spend_at_most_a_tenth_over_the_minimum(dynamics_sandbox, rows):
    adapter = sandbox_adapter(dynamics_sandbox, batch_size=MAX_BATCH_REQUESTS, page_size=5000)
    spec = adapter.describe("opportunity")
    mirror, pages = read_all(adapter, spec, None)
    synced_through = pages[-1].checkpoint.cursor
    writes = [
        Write(
            WriteOp.UPDATE,
            "opportunity",
            {"stepname": f"portal {n}"},
            record_id=record_id,
            expected_version=mirror.rows[record_id][spec.cursor_field].isoformat(),
            expected_values={"stepname": mirror.rows[record_id]["stepname"]},
            synced_through=synced_through,
        )
        for n, record_id in enumerate(rows)
    ]
    before = adapter.api_calls()
    results = adapter.write(spec, writes)
    calls = adapter.api_calls() - before
    assert all(r.ok for r in results), [r for r in results if not r.ok][:3]
    minimum = math.ceil(COUNT / MAX_BATCH_REQUESTS)
    assert calls <= math.ceil(1.1 * minimum), f"{calls} calls for {COUNT} updates"


def test_stale_rows_among_many_fail_and_a_change_after_the_check_is_a_412(
    dynamics_sandbox, rows, monkeypatch
):
    box = dynamics_sandbox
    adapter = sandbox_adapter(box, batch_size=MAX_BATCH_REQUESTS)
    spec = adapter.describe("opportunity")
    targets = rows[:120]
    versions = {r: box.get("opportunity", r)["modifiedon"].isoformat() for r in targets}
    box.advance_clock(1)
    stale, raced = targets[7], targets[99]
    box.update("opportunity", stale, {"stepname": "changed before the check"})
    checked = BatchWriter._current

    def edited_meanwhile(self: BatchWriter, writes: Any) -> Any:
        found = checked(self, writes)
        box.update("opportunity", raced, {"stepname": "changed after the check"})
        return found

    monkeypatch.setattr(BatchWriter, "_current", edited_meanwhile)
    calls = adapter.api_calls()
    results = adapter.write(spec, [
        Write(WriteOp.UPDATE, "opportunity", {"stepname": "ours"}, record_id=r,
              expected_version=versions[r])
        for r in targets
    ])  # fmt: skip
    # one $batch of queries, one of updates, and the 412's read-back (did an earlier try land?)
    assert adapter.api_calls() - calls == 3
    failed = {r.record_id for r in results if not r.ok}
    assert failed == {stale, raced}
    assert all(r.precondition_failed for r in results if not r.ok)
    assert box.get("opportunity", stale)["stepname"] == "changed before the check"
    assert box.get("opportunity", raced)["stepname"] == "changed after the check"


def test_if_match_inside_a_change_set_is_a_412_per_request(dynamics_sandbox, rows):
    api = WebApi(dynamics_sandbox)
    target = rows[-1]
    body = api.get(f"opportunities({target})?$select=name").json()
    fresh, stale = body["@odata.etag"], 'W/"1"'
    dynamics_sandbox.update("opportunity", target, {"stepname": "moved on"})
    now = api.get(f"opportunities({target})?$select=name").json()["@odata.etag"]
    assert now != fresh

    def change_set(etag: str) -> bytes:
        lines = ["--cs", "Content-Type: application/http", "Content-Transfer-Encoding: binary",
                 "Content-ID: 1", "", f"PATCH {api.url(f'opportunities({target})')} HTTP/1.1",
                 "Content-Type: application/json", f"If-Match: {etag}", "",
                 '{"stepname": "ours"}', "--cs--"]  # fmt: skip
        return "\r\n".join(lines).encode()

    parts = [(b"--batch\r\nContent-Type: multipart/mixed; boundary=cs\r\n\r\n"
              + change_set(etag) + b"\r\n") for etag in (stale, fresh, now)]  # fmt: skip
    answer = api.request(
        "POST", "$batch", prefer="odata.continue-on-error",
        headers={"Content-Type": "multipart/mixed; boundary=batch"},
        data=b"".join(parts) + b"--batch--\r\n",
    )  # fmt: skip
    statuses = [a.status for a in parse(answer.headers["Content-Type"], answer.content)]
    assert statuses == [412, 412, 204]
    assert dynamics_sandbox.get("opportunity", target)["stepname"] == "ours"


def test_a_version_query_refused_inside_the_batch_is_read_again(
    dynamics_sandbox, rows, monkeypatch
):
    box = dynamics_sandbox
    adapter = sandbox_adapter(box, batch_size=MAX_BATCH_REQUESTS)
    adapter.connection.sleep = lambda _seconds: None
    spec = adapter.describe("opportunity")
    targets = rows[200:300]
    versions = {r: box.get("opportunity", r)["modifiedon"].isoformat() for r in targets}
    answers, refused = write_versions.batch.parse, []

    def first_refused(content_type: str, body: bytes) -> list[BatchAnswer]:
        parsed = answers(content_type, body)
        if refused:
            return parsed
        refused.append(parsed[0])
        busy = b'{"error": {"code": "0x80072321", "message": "Busy"}}'
        return [BatchAnswer(503, {}, busy), *parsed[1:]]

    monkeypatch.setattr(write_versions.batch, "parse", first_refused)
    calls = adapter.api_calls()
    results = adapter.write(spec, [
        Write(WriteOp.UPDATE, "opportunity", {"stepname": "after a refusal"}, record_id=r,
              expected_version=versions[r])
        for r in targets
    ])  # fmt: skip
    assert all(r.ok for r in results), [r for r in results if not r.ok][:2]
    # the $batch of two queries, the refused one again, the updates
    assert adapter.api_calls() - calls == 3
    assert all(box.get("opportunity", r)["stepname"] == "after a refusal" for r in targets)
