"""Write-back API calls on the HubSpot sandbox: versioned updates of distinct records against
the goal of at most 1.1x the minimum (one ``batch/update`` per 100 records).

HubSpot has no conditional writes: each batch of versioned updates is checked by a batch read
before it and its properties' history is read after it (a change that landed between the two
is given back), three calls per 100 records. The goal is recorded here as a strict expected
failure until a check as safe and cheaper exists (``docs/hubspot.md``, "Write-back API calls").
"""

from __future__ import annotations

import math

import pytest

from mirror.types import Write, WriteOp
from sandboxes.hubspot.sandbox import HubSpotSandbox
from tests.adapters.contract import read_all
from tests.adapters.hubspot.fixtures import hubspot_adapter, hubspot_sandbox

__all__ = ["hubspot_sandbox"]

BATCH = 100
COUNT = 1000


@pytest.fixture(scope="module")
def deals(hubspot_sandbox: HubSpotSandbox) -> list[str]:
    rows = [{"dealname": f"Call count {n}", "hs_next_step": "call"} for n in range(COUNT)]
    return hubspot_sandbox.create_many("deals", rows)


@pytest.mark.xfail(
    strict=True,
    reason="a read before and a history read after each batch/update: 3x the minimum",
)
def test_versioned_updates_spend_at_most_a_tenth_over_the_minimum(hubspot_sandbox, deals):
    adapter = hubspot_adapter(hubspot_sandbox)
    spec = adapter.describe("deals")
    mirror, pages = read_all(adapter, spec, None)
    synced_through = pages[-1].checkpoint.cursor
    writes = [
        Write(
            WriteOp.UPDATE,
            "deals",
            {"hs_next_step": f"portal {n}"},
            record_id=record_id,
            expected_version=mirror.rows[record_id][spec.cursor_field].isoformat(),
            expected_values={"hs_next_step": mirror.rows[record_id]["hs_next_step"]},
            synced_through=synced_through,
        )
        for n, record_id in enumerate(deals)
    ]
    before = adapter.api_calls()
    results = adapter.write(spec, writes)
    calls = adapter.api_calls() - before
    assert all(r.ok for r in results), [r for r in results if not r.ok][:3]
    minimum = math.ceil(COUNT / BATCH)
    assert calls <= math.ceil(1.1 * minimum), f"{calls} calls for {COUNT} updates"
