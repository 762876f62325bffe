"""The pull path end to end: Mirror -> Salesforce adapter (simple-salesforce over HTTP) ->
sandbox, on both stores, through the hard cases: timestamp boundaries, changes during a
backfill, deletes, merges, hard deletes, session expiry, the API budget, schema drift and
malformed records."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mirror import Mirror, QuotaExceeded, TransientError
from mirror.config import parse_config
from mirror.store.tables import mirror_access_pending, mirror_idmap, mirror_rejects
from sandboxes.salesforce.sandbox import SalesforceSandbox
from tests.adapters.conftest import sandbox_adapter

OBJECTS = ["User", "Account", "Contact", "Opportunity", "OpportunityLineItem"]


@pytest.fixture
def box(tmp_path: Path) -> Iterator[SalesforceSandbox]:
    with SalesforceSandbox(tmp_path / "sf.db", size="small") as sandbox:
        yield sandbox


def make_mirror(url: str, box: SalesforceSandbox, page_size: int = 200, **sync: Any) -> Mirror:
    config = parse_config(
        {
            "store": {"database": url},
            "sync": sync,
            "sources": {
                "salesforce": {
                    "crm": "salesforce",
                    "username": "u",
                    "password": "p",
                    "objects": OBJECTS,
                }
            },
        }
    )
    return Mirror(config, adapters={"salesforce": sandbox_adapter(box, page_size=page_size)})


@pytest.fixture
def mirror(db_url: str, box: SalesforceSandbox) -> Iterator[Mirror]:
    mirror = make_mirror(db_url, box)
    yield mirror
    mirror.close()


def live_ids(mirror: Mirror, name: str) -> set[str]:
    table = mirror.store.mirrored("salesforce", name).table
    with mirror.store.engine.connect() as conn:
        rows = conn.execute(select(table.c.Id).where(table.c._deleted.is_(False)))
        return set(rows.scalars())


def row(mirror: Mirror, name: str, record_id: str) -> dict[str, Any]:
    table = mirror.store.mirrored("salesforce", name).table
    with mirror.store.engine.connect() as conn:
        return dict(conn.execute(select(table).where(table.c.Id == record_id)).one()._mapping)


def assert_mirrors(mirror: Mirror, box: SalesforceSandbox) -> None:
    for name in OBJECTS:
        assert live_ids(mirror, name) == set(box.ids(name)), name


def test_backfill_mirrors_every_record_and_incremental_follows(mirror, box) -> None:
    results = mirror.sync()
    assert_mirrors(mirror, box)
    opportunities = next(r for r in results if r.object == "Opportunity")
    assert opportunities.pages >= 3 and opportunities.totals.inserted == 500
    box.advance_clock(5)
    changed = box.ids("Opportunity")[7]
    box.update("Opportunity", changed, {"NextStep": "incremental"})
    again = {r.object: r for r in mirror.sync()}
    assert again["Opportunity"].totals.updated == 1
    assert row(mirror, "Opportunity", changed)["NextStep"] == "incremental"


def test_equal_modstamps_straddling_pages_survive_an_interrupted_sync(db_url, box) -> None:
    mirror = make_mirror(db_url, box, prefetch_pages=0)
    mirror.sync()
    box.advance_clock(60)
    contacts = box.ids("Contact")[:150]
    opportunities = box.ids("Opportunity")[:450]
    stamp = box.now().replace(microsecond=0)
    box.set_modstamp("Opportunity", opportunities, stamp)
    box.set_modstamp("Contact", contacts, stamp)
    # the tie is older than the sync's fence: pages that end inside it carry its ids
    box.advance_clock(5)
    armed: list[bool] = []

    def fail_after_first_page(name: str, _outcome: Any, _page: Any) -> None:
        if name == "Opportunity" and not armed:
            box.fail_next(5, status=503, error_code="SERVER_UNAVAILABLE", path_contains="query")
            armed.append(True)

    with pytest.raises(TransientError):
        mirror.sync(["Opportunity"], progress=fail_after_first_page)
    checkpoint = mirror.store.load_checkpoint("salesforce", "Opportunity")
    assert checkpoint is not None and checkpoint.cursor is not None
    assert 0 < len(checkpoint.ids_at_cursor) < len(opportunities)
    mirror.sync(["Opportunity", "Contact"])
    for record_id in opportunities:
        assert row(mirror, "Opportunity", record_id)["_modstamp"] == stamp
    assert_mirrors(mirror, box)
    mirror.close()


def test_a_change_made_during_the_backfill_is_not_lost(mirror, box) -> None:
    target = box.ids("Opportunity")[0]
    done: list[str] = []

    def edit_midway(name: str, _outcome: Any, _page: Any) -> None:
        if name == "Opportunity" and not done:
            box.advance_clock(2)
            box.update("Opportunity", target, {"NextStep": "edited during backfill"})
            done.append(target)

    mirror.sync(progress=edit_midway)
    mirror.sync(["Opportunity"])
    assert done and row(mirror, "Opportunity", target)["NextStep"] == "edited during backfill"


# --- changes while a backfill pages through its snapshot ---------------------------------------

PAGE = 200


@pytest.fixture
def paged_box(tmp_path: Path) -> Iterator[SalesforceSandbox]:
    """An org whose Opportunity backfill takes five pages."""
    with SalesforceSandbox(tmp_path / "sf.db", size=5 * PAGE) as sandbox:
        yield sandbox


def backfill_pages(box: SalesforceSandbox) -> list[list[str]]:
    """The Opportunity ids of each page of a backfill, in the order the snapshot holds them."""
    adapter = sandbox_adapter(box, page_size=PAGE)
    spec = adapter.describe("Opportunity")
    return [[record["Id"] for record in page.records] for page in adapter.read(spec, None)]


def assert_newest(mirror: Mirror, box: SalesforceSandbox) -> None:
    """Every Opportunity is in the mirror with the values and stamp the org holds now."""
    table = mirror.store.mirrored("salesforce", "Opportunity").table
    with mirror.store.engine.connect() as conn:
        query = select(table.c.Id, table.c.NextStep, table.c._modstamp)
        mirrored = {r.Id: (r.NextStep, r._modstamp) for r in conn.execute(query)}
    org = {}
    for record_id in box.ids("Opportunity"):
        record = box.get("Opportunity", record_id)
        assert record is not None
        org[record_id] = (record["NextStep"], record["SystemModstamp"])
    assert mirrored == org


@pytest.mark.parametrize("boundary", [1, 2, 3])
def test_a_backfill_resumed_after_changes_made_while_it_paged_loses_nothing(
    db_url, paged_box, boundary
) -> None:
    box = paged_box
    order = backfill_pages(box)
    assert len(order) == 5
    mirror = make_mirror(db_url, box, page_size=PAGE, prefetch_pages=0)
    applied, done = order[boundary - 1][-1], order[boundary][0]
    ahead, further = order[boundary][1], order[boundary + 1][0]
    box.freeze_clock()  # the query's first answer is dated in the second the changes below get
    pages: list[int] = []

    def edit_then_fail(name: str, _outcome: Any, _page: Any) -> None:
        pages.append(len(pages) + 1)
        if len(pages) == boundary:
            box.update("Opportunity", applied, {"NextStep": "first second, delivered"})
            box.update("Opportunity", done, {"NextStep": "first second, next page"})
            box.advance_clock(1)
            box.update("Opportunity", ahead, {"NextStep": "second after, next page"})
            box.update("Opportunity", further, {"NextStep": "second after, a later page"})
        if len(pages) == boundary + 1:
            # the page after fails past the retry budget: the sync stops at this checkpoint
            box.fail_next(5, status=503, error_code="SERVER_UNAVAILABLE", path_contains="query")

    with pytest.raises(TransientError):
        mirror.sync(["Opportunity"], progress=edit_then_fail)
    assert len(pages) == boundary + 1
    box.thaw_clock()
    box.advance_clock(5)
    mirror.sync(["Opportunity"])
    mirror.sync(["Opportunity"])
    assert_newest(mirror, box)
    mirror.close()


def test_an_update_in_the_first_answers_second_is_read_by_a_later_sync(db_url, paged_box) -> None:
    box = paged_box
    order = backfill_pages(box)
    mirror = make_mirror(db_url, box, page_size=PAGE, prefetch_pages=0)
    delivered, later = order[0][0], order[1][0]
    box.freeze_clock()
    edited: list[bool] = []

    def edit_after_the_first_page(name: str, _outcome: Any, _page: Any) -> None:
        if not edited:
            box.update("Opportunity", delivered, {"NextStep": "updated in the first second"})
            box.advance_clock(1)
            box.update("Opportunity", later, {"NextStep": "updated a second later"})
            edited.append(True)

    mirror.sync(["Opportunity"], progress=edit_after_the_first_page)
    box.thaw_clock()
    box.advance_clock(5)
    mirror.sync(["Opportunity"])
    mirror.sync(["Opportunity"])
    assert row(mirror, "Opportunity", delivered)["NextStep"] == "updated in the first second"
    assert_newest(mirror, box)
    mirror.close()


def test_deletes_undeletes_and_merges(mirror, box) -> None:
    mirror.sync()
    opp = box.ids("Opportunity")[3]
    master, loser = [a for a in box.ids("Account") if not box.get("Account", a)["IsPartner"]][:2]
    box.advance_clock(2)
    box.delete("Opportunity", opp)
    box.merge("Account", master, [loser])
    mirror.sync()
    assert opp not in live_ids(mirror, "Opportunity") and loser not in live_ids(mirror, "Account")
    with mirror.store.engine.connect() as conn:
        merge = conn.execute(select(mirror_idmap).where(mirror_idmap.c.old_id == loser)).one()
    assert merge.new_id == master
    box.advance_clock(2)
    box.undelete("Opportunity", opp)
    mirror.sync(["Opportunity"])
    assert opp in live_ids(mirror, "Opportunity")
    assert_mirrors(mirror, box)


def test_a_hard_delete_is_found_by_the_sweep(mirror, box) -> None:
    mirror.sync()
    gone = box.ids("Contact")[5]
    box.advance_clock(2)
    box.hard_delete("Contact", gone)
    mirror.sync(["Contact"])
    assert gone in live_ids(mirror, "Contact")
    assert mirror.sweep(["Contact"]) == {"salesforce.Contact": 1}
    assert gone not in live_ids(mirror, "Contact")


def test_a_passed_deleted_window_triggers_the_sweep(mirror, box) -> None:
    mirror.sync()
    gone = box.ids("Contact")[6]
    box.hard_delete("Contact", gone)
    box.set_deleted_window(1)
    box.advance_clock(3 * 86_400)
    result = next(r for r in mirror.sync(["Contact"]))
    assert result.swept == 1
    assert gone not in live_ids(mirror, "Contact")


def test_a_session_expiring_mid_pagination_is_renewed(mirror, box) -> None:
    expired: list[bool] = []

    def expire_once(name: str, _outcome: Any, _page: Any) -> None:
        if name == "Opportunity" and not expired:
            box.expire_sessions()
            expired.append(True)

    mirror.sync(progress=expire_once)
    assert expired
    assert_mirrors(mirror, box)


def test_the_daily_api_budget_stops_the_sync_and_it_resumes_later(mirror, box) -> None:
    box.set_daily_limit(box.api_usage + 6)
    with pytest.raises(QuotaExceeded):
        mirror.sync()
    assert mirror.store.recent_runs(1)[0]["status"] == "failed"
    box.set_daily_limit(1_000_000)
    mirror.sync()
    assert_mirrors(mirror, box)


def test_schema_drift_adds_a_column_without_stopping(mirror, box) -> None:
    mirror.sync()
    box.add_field("Opportunity", "Region__c", "string", length=40)
    target = box.ids("Opportunity")[1]
    box.advance_clock(2)
    box.update("Opportunity", target, {"Region__c": "EMEA"})
    mirror.sync(["Opportunity"])
    assert row(mirror, "Opportunity", target)["Region__c"] == "EMEA"


def test_a_malformed_record_is_set_aside_and_the_rest_synced(mirror, box) -> None:
    bad = box.ids("Opportunity")[2]
    box.corrupt("Opportunity", bad, "CloseDate", "not-a-date")
    mirror.sync()
    assert bad not in live_ids(mirror, "Opportunity")
    assert live_ids(mirror, "Opportunity") == set(box.ids("Opportunity")) - {bad}
    with mirror.store.engine.connect() as conn:
        reason = conn.execute(
            select(mirror_rejects.c.reason).where(mirror_rejects.c.record_id == bad)
        ).scalar_one()
    assert "CloseDate" in reason and "not-a-date" in reason


def grants_of(mirror: Mirror, name: str) -> set[tuple[str, ...]]:
    return {grant for grant in mirror.access_rows() if grant[0] == name}


def pending_settles(mirror: Mirror) -> list[str]:
    with mirror.store.engine.connect() as conn:
        return list(conn.execute(select(mirror_access_pending.c.object)).scalars())


def test_a_failing_sync_still_derives_the_slices_of_what_it_backfilled(mirror, box) -> None:
    def fail_on_line_items(name: str, *_: Any) -> None:
        if name == "OpportunityLineItem":
            raise RuntimeError("the portal's process is going down")

    with pytest.raises(RuntimeError):
        mirror.sync(progress=fail_on_line_items)
    settled = {name: grants_of(mirror, name) for name in ("Account", "Opportunity")}
    assert pending_settles(mirror) == []
    assert all(settled.values())
    mirror.rebuild_access()
    assert {name: grants_of(mirror, name) for name in settled} == settled


def test_slices_a_killed_sync_left_underived_are_derived_by_the_next(mirror, box) -> None:
    from mirror.pull.sync import Puller

    # a sync that dies after its backfills end and before it derives their slices
    access = mirror.grant_upkeep("salesforce").page_hook(deferred=True)
    puller = Puller(mirror.store, mirror.adapter("salesforce"), hooks=[access])
    for name in OBJECTS:
        puller.sync_object(mirror.spec("salesforce", name, refresh=True))
    assert sorted(pending_settles(mirror)) == sorted(OBJECTS)
    assert grants_of(mirror, "Opportunity") == set()
    assert {s.object for s in mirror.status() if s.slices_pending} == set(OBJECTS)
    mirror.sync()
    assert pending_settles(mirror) == []
    assert not any(s.slices_pending for s in mirror.status())
    derived = mirror.access_rows()
    assert grants_of(mirror, "Opportunity")
    mirror.rebuild_access()
    assert mirror.access_rows() == derived
