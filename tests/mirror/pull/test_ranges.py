"""Split backfills in the engine: ranges with their own checkpoints and leases, resumed from
their last page, and the move to the incremental phase exactly once, on both stores."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from mirror import Mirror
from mirror.config import parse_config
from mirror.leases import Leases
from mirror.pull.ranges import RangeBook, RangeTaken, plan_of
from mirror.store.tables import mirror_changes, mirror_ranges
from mirror.types import Checkpoint
from sandboxes.salesforce.sandbox import SalesforceSandbox
from tests.adapters.conftest import sandbox_adapter

OPPORTUNITIES = 1500
RANGES = 3


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SalesforceSandbox]:
    path = tmp_path_factory.mktemp("ranges") / "sf.db"
    with SalesforceSandbox(path, size=OPPORTUNITIES) as sandbox:
        yield sandbox


def ranged_mirror(url: str, box: SalesforceSandbox) -> Mirror:
    config = parse_config(
        {
            "store": {"database": url},
            "sync": {
                "prefetch_pages": 0,
                "backfill_ranges": RANGES,
                "backfill_range_min_records": 1000,
            },
            "sources": {
                "salesforce": {
                    "crm": "salesforce",
                    "username": "u",
                    "password": "p",
                    "objects": ["Account", "Opportunity"],
                }
            },
        }
    )
    return Mirror(config, adapters={"salesforce": sandbox_adapter(box)})


def stop_after(pages: int) -> tuple[threading.Event, Any]:
    stop = threading.Event()
    seen = []

    def progress(*_: Any) -> None:
        seen.append(1)
        if len(seen) >= pages:
            stop.set()

    return stop, progress


def start_split_backfill(mirror: Mirror, pages: int) -> None:
    stop, progress = stop_after(pages)
    mirror.sync(["Opportunity"], stop=stop, progress=progress)


def mirrored_ids(mirror: Mirror, name: str = "Opportunity") -> list[str]:
    table = mirror.store.mirrored("salesforce", name).table
    with mirror.store.engine.connect() as conn:
        return list(conn.execute(select(table.c.Id).where(~table.c._deleted)).scalars())


def duplicate_changes(mirror: Mirror) -> list[Any]:
    c = mirror_changes.c
    with mirror.store.engine.connect() as conn:
        return conn.execute(
            select(c.object, c.record_id, c.op, c.partner_id, func.count())
            .group_by(c.object, c.record_id, c.op, c.partner_id)
            .having(func.count() > 1)
        ).all()


def test_a_small_object_is_backfilled_whole(db_url: str, box: SalesforceSandbox) -> None:
    mirror = ranged_mirror(db_url, box)
    mirror.sync(["Account"])
    assert mirror.store.load_checkpoint("salesforce", "Account").phase == "incremental"
    with mirror.store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(mirror_ranges)).scalar() == 0
    mirror.close()


def test_a_split_backfill_resumes_each_range_from_its_last_page(
    db_url: str, box: SalesforceSandbox
) -> None:
    mirror = ranged_mirror(db_url, box)
    stop, progress = stop_after(2)
    first = mirror.sync(["Opportunity"], stop=stop, progress=progress)[0]
    assert first.stopped and first.pages == 2
    checkpoint = mirror.store.load_checkpoint("salesforce", "Opportunity")
    plan = plan_of(checkpoint)
    assert plan is not None and len(plan.bounds) == RANGES
    book = RangeBook(mirror.store)
    rows = book.open_ranges("salesforce", "Opportunity")
    assert len(rows) == RANGES and rows[0].version == 2 and rows[0].checkpoint is not None
    assert len(mirrored_ids(mirror)) == 2 * 200

    rest = mirror.sync(["Opportunity"])[0]
    assert rest.kind == "backfill" and not rest.stopped
    assert rest.totals.inserted == OPPORTUNITIES - 2 * 200
    assert sorted(mirrored_ids(mirror)) == box.ids("Opportunity")
    assert mirror.store.load_checkpoint("salesforce", "Opportunity") == plan.after
    assert book.open_ranges("salesforce", "Opportunity") == []
    assert duplicate_changes(mirror) == []

    box.advance_clock(1)
    changed = box.ids("Opportunity")[7]
    box.update("Opportunity", changed, {"NextStep": "after the split backfill"})
    again = mirror.sync(["Opportunity"])[0]
    assert again.kind == "incremental" and again.totals.updated == 1
    mirror.close()


def test_busy_ranges_are_left_to_their_worker_and_taken_over_when_it_dies(
    db_url: str, box: SalesforceSandbox
) -> None:
    mirror = ranged_mirror(db_url, box)
    start_split_backfill(mirror, 1)
    dead = Leases(mirror.store, "dead", ttl_seconds=8)
    assert dead.acquire("backfill:salesforce:Opportunity:1")
    me = Leases(mirror.store, "me", ttl_seconds=60)
    mirror.sync(["Opportunity"], leases=me)
    open_ranges = RangeBook(mirror.store).open_ranges("salesforce", "Opportunity")
    assert [row.number for row in open_ranges] == [1]
    assert mirror.store.load_checkpoint("salesforce", "Opportunity").phase == "backfill"
    while "backfill:salesforce:Opportunity:1" in me.holders():
        time.sleep(0.1)
    joined = mirror.join_backfills("salesforce", me)
    assert [r.object for r in joined] == ["Opportunity"]
    assert mirror.store.load_checkpoint("salesforce", "Opportunity").phase == "incremental"
    assert sorted(mirrored_ids(mirror)) == box.ids("Opportunity")
    assert mirror.join_backfills("salesforce", me) == []
    mirror.close()


def test_a_worker_whose_range_was_taken_over_cannot_commit_a_page(
    db_url: str, box: SalesforceSandbox
) -> None:
    mirror = ranged_mirror(db_url, box)
    start_split_backfill(mirror, 1)
    book = RangeBook(mirror.store)
    row = book.load("salesforce", "Opportunity", 0)
    assert row is not None and row.version == 1
    page = Checkpoint(cursor="006000000000000AAA", phase="backfill")
    with mirror.store.transaction() as conn:
        assert book.advance(conn, "salesforce", "Opportunity", 0, 1, page) == 2
    with pytest.raises(RangeTaken), mirror.store.transaction() as conn:
        conn.execute(text("DELETE FROM mirror_checkpoints"))
        book.advance(conn, "salesforce", "Opportunity", 0, 1, page)
    assert mirror.store.load_checkpoint("salesforce", "Opportunity") is not None
    mirror.close()


def test_the_last_ranges_move_the_object_to_incremental_exactly_once(
    db_url: str, box: SalesforceSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = ranged_mirror(db_url, box)
    monkeypatch.setattr(RangeBook, "finish", lambda *_: False)
    mirror.sync(["Opportunity"])
    monkeypatch.undo()
    book = RangeBook(mirror.store)
    assert book.open_ranges("salesforce", "Opportunity") == []
    plan = plan_of(mirror.store.load_checkpoint("salesforce", "Opportunity"))
    assert plan is not None
    with ThreadPoolExecutor(4) as pool:
        done = list(pool.map(lambda _: book.finish("salesforce", "Opportunity"), range(4)))
    assert sorted(done) == [False, False, False, True]
    assert mirror.store.load_checkpoint("salesforce", "Opportunity") == plan.after
    mirror.close()


def test_the_daemon_reads_a_split_backfill_once(tmp_path: Path, box: SalesforceSandbox) -> None:
    from mirror.daemon import Daemon

    mirror = ranged_mirror(f"sqlite:///{tmp_path / 'm.db'}", box)
    worker = Daemon(mirror, worker_id="solo")
    worker.sync_job("salesforce", "Opportunity")
    worker.ranges_job("salesforce")
    assert mirror.store.load_checkpoint("salesforce", "Opportunity").phase == "incremental"
    assert sorted(mirrored_ids(mirror)) == box.ids("Opportunity")
    mirror.close()
