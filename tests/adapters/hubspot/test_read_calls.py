"""Backfill read calls on the HubSpot sandbox against the minimum at HubSpot's maxima: list
pages of 100, one recycle-bin listing and one association ``batch/read`` per 1,000 records and
target type (``bench.crm_sources``)."""

from __future__ import annotations

import math

import pytest

from adapters.hubspot.assoc import Associations
from sandboxes.hubspot.sandbox import HubSpotSandbox
from tests.adapters.contract import read_all
from tests.adapters.hubspot.fixtures import hubspot_adapter, hubspot_sandbox

__all__ = ["hubspot_sandbox"]

ADDED = 2_100


@pytest.fixture(scope="module")
def deals(hubspot_sandbox: HubSpotSandbox) -> int:
    rows = [{"dealname": f"Read calls {n}"} for n in range(ADDED)]
    for start in range(0, ADDED, 100):
        hubspot_sandbox.create_many("deals", rows[start : start + 100])
    return hubspot_sandbox.count("deals")


def test_backfill_reads_associations_for_ten_list_pages_at_once(hubspot_sandbox, deals):
    adapter = hubspot_adapter(hubspot_sandbox, page_size=1_000)
    spec = adapter.describe("deals")
    targets = {f.target for f in Associations(adapter.connection, adapter.catalog, "deals").linked}
    assert targets, "deals have association fields to read"
    before = adapter.api_calls()
    replica, pages = read_all(adapter, spec, None)
    calls = adapter.api_calls() - before
    assert len(replica.rows) == deals
    minimum = math.ceil(deals / 100) + 1 + len(targets) * math.ceil(deals / 1_000)
    assert calls <= math.ceil(1.05 * minimum), f"{calls} calls, minimum {minimum}"
    assert max(len(page.records) for page in pages) == 1_000


def test_backfill_pages_stay_at_page_size_below_a_thousand(hubspot_sandbox, deals):
    adapter = hubspot_adapter(hubspot_sandbox, page_size=250)
    replica, pages = read_all(adapter, adapter.describe("deals"), None)
    assert len(replica.rows) == deals
    assert max(len(page.records) for page in pages) <= 250
