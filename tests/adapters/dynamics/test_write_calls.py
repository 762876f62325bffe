"""Write-back API calls on the Dataverse sandbox: versioned updates of distinct rows spend at
most 1.1x the minimum (one ``$batch`` of up to 1,000 requests per 1,000 rows)."""

from __future__ import annotations

import math

import pytest

from adapters.dynamics.settings import MAX_BATCH_REQUESTS
from mirror.types import Write, WriteOp
from sandboxes.dynamics.sandbox import DynamicsSandbox
from tests.adapters.contract import read_all
from tests.adapters.dynamics.fixtures import dynamics_sandbox, sandbox_adapter

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
