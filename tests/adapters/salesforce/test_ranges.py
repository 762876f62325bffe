"""Split backfills on Salesforce: id arithmetic, cuts found with COUNT(), range reads against
the sandbox, and the hand-over to the incremental phase at the watermark."""

from __future__ import annotations

import bisect
import random
from itertools import pairwise
from typing import Any

import pytest

from adapters.salesforce.adapter import SalesforceAdapter
from adapters.salesforce.range_read import MAX_PROBES, id_at, id_number, split_ids
from mirror.adapter import RangePlan
from mirror.types import Checkpoint, ObjectSpec
from sandboxes.salesforce.ids import make_id
from tests.adapters.conftest import sandbox_adapter
from tests.adapters.contract import Replica, read_all
from tests.adapters.salesforce.test_adapter import top_up

SUBJECT = "Account"
RECORDS = 1200


@pytest.fixture(scope="module")
def sandbox(salesforce_sandbox: Any) -> Any:
    top_up(salesforce_sandbox, SUBJECT, RECORDS)
    return salesforce_sandbox


@pytest.fixture
def adapter(sandbox: Any) -> SalesforceAdapter:
    return sandbox_adapter(sandbox, page_size=200)


def read_range(
    adapter: SalesforceAdapter,
    spec: ObjectSpec,
    plan: RangePlan,
    index: int,
    since: Checkpoint | None = None,
    replica: Replica | None = None,
) -> tuple[Replica, list[Checkpoint]]:
    replica = replica or Replica(spec.key)
    checkpoints = []
    for page in adapter.read_range(spec, plan, index, since):
        replica.apply(page)
        checkpoints.append(page.checkpoint)
    return replica, checkpoints


def test_an_id_is_its_prefix_and_a_base62_number_in_creation_order() -> None:
    ids = [make_id("006", n) for n in (0, 1, 61, 62, 3843, 10**9)]
    assert [id_at("006", id_number(i)) for i in ids] == ids
    assert sorted(ids) == ids
    assert [id_number(i) for i in ids] == sorted(id_number(i) for i in ids)


def test_cuts_found_by_bisection_split_sparse_ids_evenly_in_few_counts() -> None:
    numbers = sorted(random.Random(7).sample(range(10**7), 5000))
    ids = [make_id("001", n) for n in numbers]
    probes: list[str] = []

    def count_below(record_id: str) -> int:
        probes.append(record_id)
        return bisect.bisect_left(ids, record_id)

    cuts = split_ids(count_below, ids[0], ids[-1], len(ids), 4)
    edges = [0, *map(count_below, cuts), len(ids)]
    sizes = [b - a for a, b in pairwise(edges)]
    assert len(cuts) == 3 and cuts == sorted(cuts)
    assert all(abs(size - 1250) <= 1250 * 0.1 for size in sizes), sizes
    assert len(probes) - 6 <= 3 * 20 < 3 * MAX_PROBES


def test_a_small_object_is_backfilled_whole(adapter: SalesforceAdapter) -> None:
    spec = adapter.describe(SUBJECT)
    assert adapter.plan_ranges(spec, 4, min_records=RECORDS * 10) is None
    assert adapter.plan_ranges(spec, 1, min_records=0) is None


def test_ranges_read_every_record_once_and_resume_from_a_page(
    adapter: SalesforceAdapter, sandbox: Any
) -> None:
    spec = adapter.describe(SUBJECT)
    plan = adapter.plan_ranges(spec, 3, min_records=0)
    assert plan is not None and len(plan.bounds) == 3
    assert plan.bounds[0][0] is None and plan.bounds[-1][1] is None
    assert plan.after.phase == "incremental" and plan.after.cursor == plan.state["watermark"]
    replica = Replica(spec.key)
    sizes = []
    for index in range(3):
        before = len(replica.deliveries)
        _, checkpoints = read_range(adapter, spec, plan, index, replica=replica)
        sizes.append(len(replica.deliveries) - before)
        assert [c.phase for c in checkpoints][-1] == "done"
        assert {c.phase for c in checkpoints[:-1]} <= {"backfill"}
    assert sorted(replica.deliveries) == sandbox.ids(SUBJECT)
    assert min(sizes) > RECORDS / 3 * 0.8, sizes

    first, checkpoints = read_range(adapter, spec, plan, 1)
    resumed, _ = read_range(adapter, spec, plan, 1, since=checkpoints[0])
    assert resumed.deliveries == first.deliveries[200:]


def test_changes_made_during_a_split_backfill_reach_the_incremental_phase(
    adapter: SalesforceAdapter, sandbox: Any
) -> None:
    spec = adapter.describe(SUBJECT)
    plan = adapter.plan_ranges(spec, 3, min_records=0)
    assert plan is not None
    replica, _ = read_range(adapter, spec, plan, 0)
    read_ids = sorted(replica.rows)
    late_ids = sandbox.ids(SUBJECT)[-5:]
    sandbox.update(SUBJECT, read_ids[0], {"Name": "same second as the watermark"})
    sandbox.advance_clock(1)
    sandbox.update(SUBJECT, read_ids[1], {"Name": "changed after its range was read"})
    sandbox.update(SUBJECT, late_ids[0], {"Name": "changed before its range was read"})
    created = sandbox.create(SUBJECT, {"Name": "created during the backfill"})
    sandbox.delete(SUBJECT, read_ids[2])
    for index in (1, 2):
        read_range(adapter, spec, plan, index, replica=replica)
    assert created not in replica.rows and late_ids[0] not in replica.rows
    read_all(adapter, spec, plan.after, replica)
    live = {i: sandbox.get(SUBJECT, i)["Name"] for i in sandbox.ids(SUBJECT)}
    assert {i: r["Name"] for i, r in replica.rows.items()} == live
    assert live[read_ids[0]] == "same second as the watermark"
