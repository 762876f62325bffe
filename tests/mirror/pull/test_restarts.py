"""Deletes and merges the CRM made before a backfill was started again, or while it ran, on
every CRM and both stores, over HTTP against tiny sandboxes: once the restarted backfill and
the read after it are done, none of those records is live in the mirror, merge losers point at
their survivors, and partners' change feeds carry the deletes. And a portal create the CRM
deleted for good before its echo was read is found by the delete sweep."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mirror import Mirror
from mirror.config import parse_config
from mirror.store.tables import mirror_idmap
from tests.mirror.push.test_writeback_faults import (
    DYNAMICS,
    HUBSPOT,
    SALESFORCE,
    Crm,
    busiest_partner,
    crm_deletes,
    crm_id_of,
    open_mirror,
)

# small pages, so that a backfill of a tiny sandbox crosses page boundaries (Salesforce pages
# hold 200 records at least: one page)
PAGE_SIZE = 4


@dataclass(frozen=True)
class Accounts:
    """Where a CRM keeps end customers, and how to tell them from partners."""

    object: str
    name_field: str
    partner_flag: str


ACCOUNTS = {
    "salesforce": Accounts("Account", "Name", "IsPartner"),
    "hubspot": Accounts("companies", "name", "prm_is_partner"),
    "dynamics": Accounts("account", "name", "prm_ispartner"),
}


@dataclass
class Setup:
    """A sandbox, its adapter and a mirror of it synced once."""

    crm: Crm
    box: Any
    adapter: Any
    mirror: Mirror


def start(crm: Crm, folder: Path) -> tuple[Any, Any]:
    """A started tiny sandbox of ``crm`` and an adapter on it reading small pages."""
    if crm.name == "salesforce":
        from sandboxes.salesforce.sandbox import SalesforceSandbox
        from tests.adapters.conftest import sandbox_adapter

        sf = SalesforceSandbox(folder / "sf.db", size="tiny").start()
        return sf, sandbox_adapter(sf)
    if crm.name == "hubspot":
        from sandboxes.hubspot.sandbox import HubSpotSandbox
        from tests.adapters.hubspot.fixtures import hubspot_adapter, unthrottled

        hs = unthrottled(HubSpotSandbox(folder / "hs.db", size="tiny").start())
        return hs, hubspot_adapter(hs, page_size=PAGE_SIZE)
    from sandboxes.dynamics.sandbox import DynamicsSandbox
    from tests.adapters.dynamics.fixtures import sandbox_adapter as dynamics_adapter

    dv = DynamicsSandbox(folder / "dv.db", size="tiny").start()
    return dv, dynamics_adapter(dv, page_size=PAGE_SIZE)


def _setup(crm: Crm, folder: Path, url: str) -> Iterator[Setup]:
    box, adapter = start(crm, folder)
    mirror = open_mirror(crm, url, adapter)
    try:
        yield Setup(crm, box, adapter, mirror)
    finally:
        mirror.close()
        box.stop()


@pytest.fixture(params=[SALESFORCE, HUBSPOT, DYNAMICS], ids=lambda crm: crm.name)
def setup(request: pytest.FixtureRequest, tmp_path: Path, db_url: str) -> Iterator[Setup]:
    yield from _setup(request.param, tmp_path, db_url)


@pytest.fixture(params=[SALESFORCE, HUBSPOT], ids=lambda crm: crm.name)
def merging(request: pytest.FixtureRequest, tmp_path: Path, db_url: str) -> Iterator[Setup]:
    """``setup`` on the CRMs that merge records (Dataverse merges no account through the
    Web API)."""
    yield from _setup(request.param, tmp_path, db_url)


@pytest.fixture
def hubspot(tmp_path: Path, db_url: str) -> Iterator[Setup]:
    """``setup`` on HubSpot only."""
    yield from _setup(HUBSPOT, tmp_path, db_url)


def live_ids(mirror: Mirror, source: str, name: str) -> set[str]:
    """The ids of the rows of ``name`` not marked deleted."""
    mirrored = mirror.store.mirrored(source, name)
    table = mirrored.table
    query = select(table.c[mirrored.spec.key]).where(table.c._deleted.is_(False))
    with mirror.store.engine.connect() as conn:
        return set(conn.execute(query).scalars())


def crm_ids(s: Setup, name: str) -> set[str]:
    """The CRM's live ids of ``name`` as the mirror keys them (Dataverse's in lower case)."""
    ids = {str(i) for i in s.box.ids(name)}
    return {i.lower() for i in ids} if s.crm.name == "dynamics" else ids


def customers(s: Setup) -> list[str]:
    """The CRM's end-customer accounts (not partners), in id order."""
    accounts = ACCOUNTS[s.crm.name]
    ids = sorted(s.box.ids(accounts.object))
    return [a for a in ids if not s.box.get(accounts.object, a)[accounts.partner_flag]]


def test_a_restarted_backfill_leaves_no_record_deleted_before_it_live(setup: Setup) -> None:
    s, crm = setup, setup.crm
    deals = sorted(live_ids(s.mirror, crm.name, crm.object))
    gone, changed = deals[0], deals[1]
    s.box.advance_clock(1)
    s.box.delete(crm.object, gone)
    # a change after the delete: the cursor a backfill hands over is past the delete's stamp
    s.box.advance_clock(1)
    s.box.update(crm.object, changed, {crm.edit: "changed after the delete"})
    s.box.advance_clock(2)
    s.mirror.sync(restart=True)
    s.box.advance_clock(2)
    s.mirror.sync()
    assert gone not in live_ids(s.mirror, crm.name, crm.object)
    assert live_ids(s.mirror, crm.name, crm.object) == crm_ids(s, crm.object)
    assert crm_deletes(s.mirror, gone) == 1


def test_a_restarted_backfill_and_the_read_after_it_catch_deletes_made_while_it_ran(
    setup: Setup,
) -> None:
    s, crm = setup, setup.crm
    before = sorted(live_ids(s.mirror, crm.name, crm.object))
    deleted: list[str] = []

    def delete_at_the_first_page(name: str, _outcome: Any, page: Any) -> None:
        if name != crm.object or deleted:
            return
        key = s.mirror.store.mirrored(crm.name, name).spec.key
        delivered = {str(record[key]) for record in page.records}
        ahead = [i for i in before if i not in delivered]
        # one record the backfill delivered already, and one it has still to list (if any)
        for record_id in [sorted(delivered)[0], *ahead[-1:]]:
            s.box.delete(crm.object, record_id)
            deleted.append(record_id)

    s.box.advance_clock(1)
    s.mirror.sync([crm.object], restart=True, progress=delete_at_the_first_page)
    s.box.advance_clock(2)
    s.mirror.sync([crm.object])
    assert deleted and not set(deleted) & live_ids(s.mirror, crm.name, crm.object)
    assert live_ids(s.mirror, crm.name, crm.object) == crm_ids(s, crm.object)


def test_a_merge_before_a_restarted_backfill_leaves_the_loser_mapped_to_its_survivor(
    merging: Setup,
) -> None:
    s, accounts = merging, ACCOUNTS[merging.crm.name]
    survivor, loser, changed = customers(s)[:3]
    s.box.advance_clock(1)
    s.box.merge(accounts.object, survivor, [loser])
    s.box.advance_clock(1)
    s.box.update(accounts.object, changed, {accounts.name_field: "changed after the merge"})
    s.box.advance_clock(2)
    s.mirror.sync(restart=True)
    live = live_ids(s.mirror, s.crm.name, accounts.object)
    assert survivor in live and loser not in live
    m = mirror_idmap.c
    query = select(m.new_id, m.kind).where(m.object == accounts.object, m.old_id == loser)
    with s.mirror.store.engine.connect() as conn:
        assert conn.execute(query).all() == [(survivor, "merge")]


def deleted_for_good_before_its_echo(s: Setup, name: str, values: dict[str, Any]) -> None:
    """A partner creates a record of ``name``, the push makes it, and the CRM deletes it for
    good before any pull reads it back: the sweep marks it deleted and closes its entry."""
    crm = s.crm
    view = s.mirror.as_partner(busiest_partner(s.mirror, crm.object))
    local = view.create(name, values)
    assert s.mirror.push()[crm.name].done == 1
    made = crm_id_of(s.mirror, local)
    s.box.advance_clock(1)
    s.box.hard_delete(name, made)
    s.box.advance_clock(2)
    s.mirror.sync()
    assert s.mirror.sweep([name]) == {f"{crm.name}.{name}": 1}
    assert made not in live_ids(s.mirror, crm.name, name)
    assert crm_deletes(s.mirror, made) == 1
    (entry,) = [e for e in s.mirror.outbox() if e["record_id"] == made]
    assert (entry["status"], entry["confirmed"]) == ("done", True)


def test_a_portal_create_deleted_for_good_before_its_echo_is_found_by_the_sweep(
    setup: Setup,
) -> None:
    deleted_for_good_before_its_echo(
        setup, setup.crm.object, setup.crm.values("Made in the portal")
    )


def test_a_hubspot_company_made_in_the_portal_and_deleted_before_its_echo_is_swept(
    hubspot: Setup,
) -> None:
    values = {"name": "Made in the portal", "domain": "portal.example"}
    deleted_for_good_before_its_echo(hubspot, "companies", values)


@pytest.mark.parametrize("crm", [SALESFORCE, HUBSPOT, DYNAMICS], ids=lambda crm: crm.name)
def test_a_first_backfill_lists_no_ids_for_a_sweep(crm: Crm, tmp_path: Path, db_url: str) -> None:
    box, adapter = start(crm, tmp_path)
    listed: list[str] = []
    read_ids = adapter.read_ids

    def counted(spec: Any) -> Any:
        listed.append(spec.name)
        return read_ids(spec)

    adapter.read_ids = counted
    try:
        mirror = open_mirror(crm, db_url, adapter)
        mirror.close()
    finally:
        box.stop()
    assert listed == []


@pytest.mark.parametrize(
    "read, sync",
    [
        ("bulk", {}),
        ("ranges", {"backfill_ranges": 3, "backfill_range_min_records": 10}),
    ],
)
def test_a_restarted_salesforce_bulk_or_split_backfill_takes_deletes_and_merges(
    tmp_path: Path, db_url: str, read: str, sync: dict[str, Any]
) -> None:
    from sandboxes.salesforce.sandbox import SalesforceSandbox
    from tests.adapters.conftest import sandbox_adapter

    box = SalesforceSandbox(tmp_path / "sf.db", size="tiny").start()
    # a Bulk API job (in pages of 10) for any object above 10 records, or id ranges
    adapter = sandbox_adapter(box, bulk_threshold=10 if read == "bulk" else 10_000,
                              bulk_page_size=10)  # fmt: skip
    source = {"crm": "salesforce", **SALESFORCE.source, "objects": ["Account", "Opportunity"]}
    config = {"store": {"database": db_url}, "sync": sync, "sources": {"salesforce": source}}
    mirror = Mirror(parse_config(config), adapters={"salesforce": adapter})
    try:
        mirror.sync()
        s = Setup(SALESFORCE, box, adapter, mirror)
        gone = sorted(live_ids(mirror, "salesforce", "Opportunity"))[0]
        survivor, loser, changed = customers(s)[:3]
        box.advance_clock(1)
        box.delete("Opportunity", gone)
        box.merge("Account", survivor, [loser])
        box.advance_clock(1)
        box.update("Account", changed, {"Name": "changed after the merge"})
        box.advance_clock(2)
        mirror.sync(restart=True)
        assert gone not in live_ids(mirror, "salesforce", "Opportunity")
        assert live_ids(mirror, "salesforce", "Account") == crm_ids(s, "Account")
        m = mirror_idmap.c
        query = select(m.new_id).where(m.object == "Account", m.old_id == loser)
        with mirror.store.engine.connect() as conn:
            assert conn.execute(query).scalars().all() == [survivor]
    finally:
        mirror.close()
        box.stop()
