"""Dynamics 365 end to end: Mirror -> Dynamics adapter (msal + Web API over HTTP) -> Dataverse
sandbox, on both stores: backfill and incremental by change tracking and by cursor, deletes,
hard deletes, an expired delta token, a token expiring mid-run, 429 bursts, a partner
reassignment seen through a PartnerView, and write-back with a 412 on a concurrent edit."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from adapters.dynamics.adapter import DynamicsAdapter
from adapters.dynamics.write import BatchWriter
from mirror import AccessDenied, Mirror
from mirror.config import parse_config
from mirror.store.tables import mirror_changes
from sandboxes.dynamics.sandbox import DynamicsSandbox
from tests.adapters.dynamics.fixtures import sandbox_adapter

OBJECTS = ["systemuser", "account", "contact", "opportunity"]


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DynamicsSandbox]:
    path = Path(tmp_path_factory.mktemp("dynamics")) / "dv.db"
    with DynamicsSandbox(path, size="small") as sandbox:
        yield sandbox


def make_mirror(url: str, adapter: DynamicsAdapter, **sync: Any) -> Mirror:
    config = parse_config(
        {
            "store": {"database": url},
            "sync": {"push_retry_delay": 0, **sync},
            "sources": {
                "dynamics": {
                    "crm": "dynamics",
                    "org_url": "https://org.example.crm.dynamics.com",
                    "tenant_id": "t",
                    "client_id": "c",
                    "client_secret": "s",
                    "objects": OBJECTS,
                    "conflicts": {"default": "manual"},
                }
            },
        }
    )
    return Mirror(config, adapters={"dynamics": adapter})


@pytest.fixture
def adapter(box: DynamicsSandbox) -> DynamicsAdapter:
    return sandbox_adapter(box, page_size=200)


@pytest.fixture
def mirror(db_url: str, adapter: DynamicsAdapter) -> Iterator[Mirror]:
    mirror = make_mirror(db_url, adapter)
    mirror.sync()
    yield mirror
    mirror.close()


def live_ids(mirror: Mirror, name: str) -> set[str]:
    mirrored = mirror.store.mirrored("dynamics", name)
    table, key = mirrored.table, mirrored.table.c[mirrored.spec.key]
    with mirror.store.engine.connect() as conn:
        return set(conn.execute(select(key).where(table.c._deleted.is_(False))).scalars())


def row(mirror: Mirror, name: str, record_id: str) -> dict[str, Any]:
    mirrored = mirror.store.mirrored("dynamics", name)
    key = mirrored.table.c[mirrored.spec.key]
    with mirror.store.engine.connect() as conn:
        return dict(conn.execute(select(mirrored.table).where(key == record_id)).one()._mapping)


def crm_changes_since(mirror: Mirror, seq: int) -> list[Any]:
    c = mirror_changes.c
    query = select(mirror_changes).where(c.seq > seq, c.origin == "crm").order_by(c.seq)
    with mirror.store.engine.connect() as conn:
        return list(conn.execute(query))


def last_seq(mirror: Mirror) -> int:
    with mirror.store.engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.max(mirror_changes.c.seq), 0))).scalar())


def assert_mirrors(mirror: Mirror, box: DynamicsSandbox) -> None:
    for name in OBJECTS:
        assert live_ids(mirror, name) == set(box.ids(name)), name


def partner_with_opportunities(mirror: Mirror, skip: set[str] = frozenset()) -> str:  # type: ignore[assignment]
    ranked = sorted(mirror.partners(), key=lambda p: -p["slice"].get("opportunity", 0))
    return next(p["id"] for p in ranked if p["id"] not in skip)


def open_opportunity(mirror: Mirror, partner: str, used: set[str]) -> dict[str, Any]:
    for record in mirror.as_partner(partner).select("opportunity", where={"statecode": 0},
                                                     limit=500):  # fmt: skip
        if record["opportunityid"] not in used:
            used.add(record["opportunityid"])
            return record
    raise AssertionError("no open opportunity left")


USED: set[str] = set()


def test_backfill_then_incremental_by_change_tracking_and_by_cursor(mirror, box) -> None:
    assert_mirrors(mirror, box)
    opportunity = box.ids("opportunity")[7]
    user = box.ids("systemuser")[2]
    box.advance_clock(5)
    box.update("opportunity", opportunity, {"stepname": "incremental"})
    box.update("systemuser", user, {"firstname": "Renamed"})
    results = {r.object: r for r in mirror.sync()}
    assert results["opportunity"].kind == "incremental"
    assert results["opportunity"].totals.updated == 1
    assert results["systemuser"].totals.updated == 1
    assert row(mirror, "opportunity", opportunity)["stepname"] == "incremental"
    assert row(mirror, "systemuser", user)["fullname"].startswith("Renamed ")
    checkpoint = mirror.store.load_checkpoint("dynamics", "opportunity")
    assert checkpoint is not None and "$deltatoken=" in checkpoint.state["delta_link"]
    users = mirror.store.load_checkpoint("dynamics", "systemuser")
    assert users is not None and users.state == {"mode": "cursor"}


def test_deletes_arrive_as_tombstones_and_hard_deletes_by_the_sweep(mirror, box) -> None:
    deleted, purged = box.ids("contact")[3], box.ids("contact")[4]
    box.advance_clock(2)
    box.delete("contact", deleted)
    box.hard_delete("contact", purged)
    result = mirror.sync(["contact"])[0]
    assert result.totals.deleted == 1
    assert deleted not in live_ids(mirror, "contact") and purged in live_ids(mirror, "contact")
    assert mirror.sweep(["contact"]) == {"dynamics.contact": 1}
    assert_mirrors(mirror, box)


def test_an_expired_delta_token_resyncs_without_loss_or_duplicates(mirror, box) -> None:
    changed, gone = box.ids("opportunity")[11], box.ids("opportunity")[12]
    box.advance_clock(8 * 86_400)
    box.update("opportunity", changed, {"stepname": "during the gap"})
    box.delete("opportunity", gone)
    box.expire_delta_tokens()
    before = last_seq(mirror)
    result = mirror.sync(["opportunity"])[0]
    assert result.swept == 1 and result.totals.updated == 1
    assert result.totals.unchanged == len(box.ids("opportunity")) - 1
    changes = crm_changes_since(mirror, before)
    assert sorted((c.record_id, c.op) for c in changes) == sorted(
        [(changed, "update"), (gone, "delete")]
    )
    assert row(mirror, "opportunity", changed)["stepname"] == "during the gap"
    assert_mirrors(mirror, box)
    again = mirror.sync(["opportunity"])[0]
    assert again.swept == 0 and again.totals.unchanged == 0


def test_a_user_changed_twice_in_one_second_with_a_sync_between_keeps_the_second(
    mirror, box
) -> None:
    # systemuser has no change tracking: it is read by the modifiedon cursor (whole seconds)
    user = box.ids("systemuser")[3]
    box.advance_clock(2)
    box.freeze_clock()  # both changes and the sync between them share one second
    try:
        box.update("systemuser", user, {"firstname": "First of the second"})
        mirror.sync(["systemuser"])
        assert row(mirror, "systemuser", user)["firstname"] == "First of the second"
        box.update("systemuser", user, {"firstname": "Second of the second"})
    finally:
        box.thaw_clock()
    box.advance_clock(2)
    mirror.sync(["systemuser"])
    mirror.sync(["systemuser"])
    assert row(mirror, "systemuser", user)["firstname"] == "Second of the second"


def test_a_token_expiring_mid_run_is_renewed_once(db_url, box, adapter) -> None:
    mirror = make_mirror(db_url, adapter, prefetch_pages=0)
    tokens_before = box.call_count("oauth2/v2.0/token")
    expired: list[bool] = []

    def expire_once(name: str, _outcome: Any, _page: Any) -> None:
        if name == "contact" and not expired:
            box.expire_tokens()
            expired.append(True)

    try:
        mirror.sync(progress=expire_once)
        assert expired and adapter.connection.token_renewals == 1
        assert box.call_count("oauth2/v2.0/token") == tokens_before + 2
        assert_mirrors(mirror, box)
    finally:
        mirror.close()


def test_429_bursts_are_waited_out_as_retry_after_says(mirror, box, adapter) -> None:
    waits: list[float] = []
    adapter.connection.sleep = waits.append
    target = box.ids("account")[1]
    box.advance_clock(2)
    box.update("account", target, {"telephone1": "+1 555 0100"})
    box.throttle(3, retry_after=2, path_contains="/accounts")
    result = mirror.sync(["account"])[0]
    assert result.totals.updated == 1
    assert len(waits) == 3 and all(w >= 2 for w in waits)
    assert row(mirror, "account", target)["telephone1"] == "+1 555 0100"


def test_a_partner_reassignment_is_seen_through_partner_views(mirror, box) -> None:
    first = partner_with_opportunities(mirror)
    second = partner_with_opportunities(mirror, {first})
    opportunity = open_opportunity(mirror, first, USED)["opportunityid"]
    mine, theirs = mirror.as_partner(first), mirror.as_partner(second)
    cursors = mine.changes().cursor, theirs.changes().cursor
    box.advance_clock(2)
    box.update("opportunity", opportunity, {"_prm_partneraccountid_value": second})
    mirror.sync(["opportunity"])
    with pytest.raises(AccessDenied):
        mine.get("opportunity", opportunity)
    assert theirs.get("opportunity", opportunity)["_prm_partneraccountid_value"] == second
    left = [c for c in mine.changes(since=cursors[0]).changes if c["record_id"] == opportunity]
    entered = [c for c in theirs.changes(since=cursors[1]).changes if c["record_id"] == opportunity]
    assert [c["op"] for c in left] == ["leave"] and "enter" in [c["op"] for c in entered]


def test_write_back_with_a_412_on_a_concurrent_edit(mirror, box, monkeypatch) -> None:
    partner = partner_with_opportunities(mirror)
    opportunity = open_opportunity(mirror, partner, USED)["opportunityid"]
    view = mirror.as_partner(partner)
    view.update("opportunity", opportunity, {"stepname": "Send the quote"})
    checked = BatchWriter._current

    def concurrent_edit(self: BatchWriter, writes: Any) -> Any:
        versions = checked(self, writes)
        box.update("opportunity", opportunity, {"estimatedvalue": 777.0})
        return versions

    monkeypatch.setattr(BatchWriter, "_current", concurrent_edit)
    calls_before = box.call_count("$batch")
    assert mirror.push()["dynamics"].blocked == 1
    assert box.call_count("$batch") == calls_before + 1
    monkeypatch.setattr(BatchWriter, "_current", checked)
    box.advance_clock(1)
    mirror.sync(["opportunity"])
    assert mirror.push()["dynamics"].done == 1
    record = box.get("opportunity", opportunity)
    assert record is not None
    assert (record["estimatedvalue"], record["stepname"]) == (777.0, "Send the quote")
    mirrored = view.get("opportunity", opportunity)
    assert (mirrored["estimatedvalue"], mirrored["stepname"]) == (777.0, "Send the quote")
    assert mirror.conflicts(status=None) == []


def test_a_create_chain_reaches_the_crm_parents_first(mirror, box) -> None:
    partner = partner_with_opportunities(mirror)
    view = mirror.as_partner(partner)
    deal = f"Chain deal {uuid.uuid4().hex[:8]}"
    account = view.create("account", {"name": "Chain Industries"})
    opportunity = view.create(
        "opportunity",
        {"name": deal, "_parentaccountid_value": account,
         "_customerid_value": account, "estimatedvalue": 1000.0},
    )  # fmt: skip
    assert view.get("opportunity", opportunity)["_prm_partneraccountid_value"] == partner
    assert mirror.push()["dynamics"].done == 2
    made = [box.get("opportunity", i) for i in box.ids("opportunity")]
    [created] = [o for o in made if o and o["name"] == deal]
    assert created["_prm_partneraccountid_value"] == partner
    parent = box.get("account", created["_parentaccountid_value"])
    assert parent is not None and parent["name"] == "Chain Industries"
    assert created["customeridtype"] == "account"
    box.advance_clock(1)
    mirror.sync(["account", "opportunity"])
    assert view.get("opportunity", created["opportunityid"])["name"] == deal
