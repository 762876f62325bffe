"""Our own writes coming back versus CRM edits made around them, end to end over HTTP against
the sandboxes, on both stores.

SystemModstamp and ``modifiedon`` have whole seconds: a read showing another value at the
version our write produced is either a read taken before the write or a CRM edit made after it
in the same second. The sandboxes' ``set_modstamp`` puts a change on exactly our write's second,
so each case is made deterministically. HubSpot has no conditional writes: a change landing
between the writer's version check and its update is put there by wrapping the check.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from adapters.hubspot.write import BatchWriter as HubSpotWriter
from mirror import Mirror
from mirror.config import parse_config
from mirror.errors import TransientError
from mirror.pull.pages import PageContext, apply_page
from mirror.store.tables import mirror_changes, mirror_outbox
from mirror.types import Page, Record
from sandboxes.dynamics.sandbox import DynamicsSandbox
from sandboxes.hubspot.sandbox import HubSpotSandbox
from sandboxes.salesforce.sandbox import SalesforceSandbox
from tests.adapters.dynamics.fixtures import sandbox_adapter as dynamics_adapter
from tests.adapters.hubspot.fixtures import hubspot_adapter, unthrottled
from tests.mirror.pull.test_sync_dynamics import (
    make_mirror,
    open_opportunity,
    partner_with_opportunities,
)
from tests.mirror.pull.test_sync_hubspot import busiest_partner
from tests.mirror.push.writeback_fixtures import fresh_opportunity, open_mirror

USED: set[str] = set()


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SalesforceSandbox]:
    path = Path(tmp_path_factory.mktemp("salesforce")) / "sf.db"
    with SalesforceSandbox(path, size="tiny") as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def hs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubSpotSandbox]:
    path = Path(tmp_path_factory.mktemp("hubspot")) / "hs.db"
    with HubSpotSandbox(path, size="tiny") as sandbox:
        yield unthrottled(sandbox)


@pytest.fixture(scope="module")
def dv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DynamicsSandbox]:
    path = Path(tmp_path_factory.mktemp("dynamics")) / "dv.db"
    with DynamicsSandbox(path, size="tiny") as sandbox:
        yield sandbox


# -- helpers -------------------------------------------------------------------------------


def entries(mirror: Mirror, record_id: str) -> list[Any]:
    o = mirror_outbox.c
    with mirror.store.engine.connect() as conn:
        return list(conn.execute(select(mirror_outbox).where(o.record_id == record_id)))


def crm_changes(mirror: Mirror, record_id: str) -> list[dict[str, Any]]:
    c = mirror_changes.c
    query = select(c.fields).where(c.record_id == record_id, c.origin == "crm").order_by(c.seq)
    with mirror.store.engine.connect() as conn:
        return [fields or {} for fields in conn.execute(query).scalars()]


def apply_read(mirror: Mirror, source: str, name: str, records: list[Record]) -> None:
    """Apply ``records`` as a sync would apply a page it had read (the checkpoint unchanged)."""
    mirrored = mirror.store.mirrored(source, name)
    checkpoint = mirror.store.load_checkpoint(source, name)
    assert checkpoint is not None
    ctx = PageContext(None, log_inserts=True, policy_of=mirror.policy_of(source))
    with mirror.store.transaction() as conn:
        apply_page(mirror.store, conn, mirrored, Page(records, checkpoint), ctx)


def fetch(mirror: Mirror, source: str, name: str, record_id: str) -> Record:
    spec = mirror.store.mirrored(source, name).spec
    (record,) = mirror.adapter(source).fetch(spec, [record_id])
    return record


# -- Salesforce ----------------------------------------------------------------------------


@pytest.fixture
def sf_mirror(db_url: str, box: SalesforceSandbox) -> Iterator[Mirror]:
    mirror = open_mirror(db_url, box)
    yield mirror
    mirror.close()


def sf_push(mirror: Mirror, box: SalesforceSandbox, value: str) -> tuple[str, str, Any]:
    """A partner's NextStep edit pushed; (partner, record id, the write's SystemModstamp)."""
    partner, opp = fresh_opportunity(mirror, USED)
    box.advance_clock(1)  # our write lands after every version the last sync saw
    mirror.as_partner(partner).update("Opportunity", opp["Id"], {"NextStep": value})
    assert mirror.push()["salesforce"].done == 1
    written = box.get("Opportunity", opp["Id"])
    assert written is not None and written["NextStep"] == value
    return partner, opp["Id"], written["SystemModstamp"]


def test_sf_a_crm_edit_in_our_writes_second_reaches_the_mirror(sf_mirror, box) -> None:
    partner, record_id, stamp = sf_push(sf_mirror, box, "portal says")
    box.update("Opportunity", record_id, {"NextStep": "crm says"})
    box.set_modstamp("Opportunity", [record_id], stamp)
    sf_mirror.sync(["Opportunity"])
    crm = box.get("Opportunity", record_id)
    assert crm is not None and crm["NextStep"] == "crm says"
    assert sf_mirror.as_partner(partner).get("Opportunity", record_id)["NextStep"] == "crm says"
    assert [(e.status, e.confirmed) for e in entries(sf_mirror, record_id)] == [("done", True)]
    assert [c["NextStep"] for c in crm_changes(sf_mirror, record_id) if "NextStep" in c] == [
        ["portal says", "crm says"]
    ]
    assert sf_mirror.conflicts(status=None) == []
    sf_mirror.sync(["Opportunity"])
    assert sf_mirror.as_partner(partner).get("Opportunity", record_id)["NextStep"] == "crm says"


def test_sf_a_sync_stopped_before_settling_leaves_it_to_the_next(
    sf_mirror, box, monkeypatch
) -> None:
    partner, record_id, stamp = sf_push(sf_mirror, box, "portal says")
    box.update("Opportunity", record_id, {"NextStep": "crm says"})
    box.set_modstamp("Opportunity", [record_id], stamp)
    adapter = sf_mirror.adapter("salesforce")

    def unreachable(*_args: Any) -> Any:
        raise TransientError("Salesforce is unreachable")

    monkeypatch.setattr(adapter, "fetch", unreachable)
    with pytest.raises(TransientError):
        sf_mirror.sync(["Opportunity"])
    view = sf_mirror.as_partner(partner)
    assert view.get("Opportunity", record_id)["NextStep"] == "portal says"
    assert [(e.status, e.confirmed) for e in entries(sf_mirror, record_id)] == [("done", False)]
    monkeypatch.undo()
    sf_mirror.sync(["Opportunity"])
    assert view.get("Opportunity", record_id)["NextStep"] == "crm says"
    assert [(e.status, e.confirmed) for e in entries(sf_mirror, record_id)] == [("done", True)]
    assert sf_mirror.conflicts(status=None) == []


def test_sf_a_stale_read_in_our_writes_second_neither_reverts_nor_settles(
    sf_mirror,
    box,
) -> None:
    partner, opp = fresh_opportunity(sf_mirror, USED)
    stale = fetch(sf_mirror, "salesforce", "Opportunity", opp["Id"])
    box.advance_clock(1)
    view = sf_mirror.as_partner(partner)
    view.update("Opportunity", opp["Id"], {"NextStep": "portal says"})
    assert sf_mirror.push()["salesforce"].done == 1
    written = box.get("Opportunity", opp["Id"])
    assert written is not None
    # a read taken just before our write, in the same second as it
    stale["SystemModstamp"] = written["SystemModstamp"]
    apply_read(sf_mirror, "salesforce", "Opportunity", [stale])
    assert view.get("Opportunity", opp["Id"])["NextStep"] == "portal says"
    assert [(e.status, e.confirmed) for e in entries(sf_mirror, opp["Id"])] == [("done", False)]
    sf_mirror.sync(["Opportunity"])
    assert view.get("Opportunity", opp["Id"])["NextStep"] == "portal says"
    assert [(e.status, e.confirmed) for e in entries(sf_mirror, opp["Id"])] == [("done", True)]
    assert all("NextStep" not in c for c in crm_changes(sf_mirror, opp["Id"]))
    assert sf_mirror.conflicts(status=None) == []


def test_sf_a_crm_edit_a_second_after_our_write_is_taken(sf_mirror, box) -> None:
    partner, record_id, _stamp = sf_push(sf_mirror, box, "portal says")
    box.advance_clock(1)
    box.update("Opportunity", record_id, {"NextStep": "crm later"})
    sf_mirror.sync(["Opportunity"])
    assert sf_mirror.as_partner(partner).get("Opportunity", record_id)["NextStep"] == "crm later"
    assert [(e.status, e.confirmed) for e in entries(sf_mirror, record_id)] == [("done", True)]
    assert sf_mirror.conflicts(status=None) == []


# -- Dataverse -----------------------------------------------------------------------------


@pytest.fixture
def dv_mirror(db_url: str, dv: DynamicsSandbox) -> Iterator[Mirror]:
    mirror = make_mirror(db_url, dynamics_adapter(dv, page_size=200))
    mirror.sync()
    yield mirror
    mirror.close()


def dv_push(mirror: Mirror, dv: DynamicsSandbox, value: str) -> tuple[str, str, Any]:
    partner = partner_with_opportunities(mirror)
    record_id = open_opportunity(mirror, partner, USED)["opportunityid"]
    dv.advance_clock(1)
    mirror.as_partner(partner).update("opportunity", record_id, {"stepname": value})
    assert mirror.push()["dynamics"].done == 1
    written = dv.get("opportunity", record_id)
    assert written is not None and written["stepname"] == value
    return partner, record_id, written["modifiedon"]


def test_dv_a_crm_edit_in_our_writes_second_reaches_the_mirror(dv_mirror, dv) -> None:
    partner, record_id, stamp = dv_push(dv_mirror, dv, "portal says")
    dv.update("opportunity", record_id, {"stepname": "crm says"})
    dv.set_modstamp("opportunity", [record_id], stamp)
    dv_mirror.sync(["opportunity"])
    crm = dv.get("opportunity", record_id)
    assert crm is not None and crm["stepname"] == "crm says"
    view = dv_mirror.as_partner(partner)
    assert view.get("opportunity", record_id)["stepname"] == "crm says"
    assert [(e.status, e.confirmed) for e in entries(dv_mirror, record_id)] == [("done", True)]
    assert [c["stepname"] for c in crm_changes(dv_mirror, record_id) if "stepname" in c] == [
        ["portal says", "crm says"]
    ]
    assert dv_mirror.conflicts(status=None) == []


def test_dv_a_stale_read_in_our_writes_second_neither_reverts_nor_settles(dv_mirror, dv) -> None:
    partner = partner_with_opportunities(dv_mirror)
    record_id = open_opportunity(dv_mirror, partner, USED)["opportunityid"]
    stale = fetch(dv_mirror, "dynamics", "opportunity", record_id)
    dv.advance_clock(1)
    view = dv_mirror.as_partner(partner)
    view.update("opportunity", record_id, {"stepname": "portal says"})
    assert dv_mirror.push()["dynamics"].done == 1
    written = dv.get("opportunity", record_id)
    assert written is not None
    stale["modifiedon"] = written["modifiedon"]
    apply_read(dv_mirror, "dynamics", "opportunity", [stale])
    assert view.get("opportunity", record_id)["stepname"] == "portal says"
    assert [(e.status, e.confirmed) for e in entries(dv_mirror, record_id)] == [("done", False)]
    dv_mirror.sync(["opportunity"])
    assert view.get("opportunity", record_id)["stepname"] == "portal says"
    assert [(e.status, e.confirmed) for e in entries(dv_mirror, record_id)] == [("done", True)]
    assert all("stepname" not in c for c in crm_changes(dv_mirror, record_id))
    assert dv_mirror.conflicts(status=None) == []


# -- HubSpot -------------------------------------------------------------------------------


def hs_mirror(db_url: str, hs: HubSpotSandbox, policy: str) -> Mirror:
    objects = ["companies", "deals", "deal_company_associations"]
    config = parse_config(
        {
            "store": {"database": db_url},
            "sources": {
                "hubspot": {
                    "crm": "hubspot",
                    "access_token": "unused",
                    "objects": objects,
                    "conflicts": {"default": policy},
                }
            },
        }
    )
    mirror = Mirror(config, adapters={"hubspot": hubspot_adapter(hs)})
    mirror.sync()
    return mirror


def open_deal(mirror: Mirror, used: set[str]) -> tuple[str, str]:
    """An open deal of the busiest partner that no test of the module has taken yet
    (``used`` is the module's own: each module has its own sandbox)."""
    partner = busiest_partner(mirror)
    for deal in mirror.as_partner(partner).select("deals", where={"hs_is_closed": False}):
        if deal["hs_object_id"] not in used:
            used.add(deal["hs_object_id"])
            return partner, deal["hs_object_id"]
    raise AssertionError("no open deal left")


@pytest.mark.parametrize(
    ("policy", "kept"), [("manual", "crm says"), ("portal_wins", "portal says")]
)
def test_hs_a_change_between_the_check_and_the_update_becomes_a_conflict(
    db_url,
    hs,
    monkeypatch,
    policy,
    kept,
) -> None:
    mirror = hs_mirror(db_url, hs, policy)
    try:
        partner, deal = open_deal(mirror, USED)
        view = mirror.as_partner(partner)
        view.update("deals", deal, {"hs_next_step": "portal says", "amount": 4242.0})
        checked = HubSpotWriter._check_versions

        def someone_edits_meanwhile(self: HubSpotWriter, batch: Any) -> Any:
            verdicts = checked(self, batch)
            hs.update("deals", deal, {"hs_next_step": "crm says"})
            return verdicts

        monkeypatch.setattr(HubSpotWriter, "_check_versions", someone_edits_meanwhile)
        assert mirror.push()["hubspot"].blocked == 1
        monkeypatch.undo()
        crm = hs.get("deals", deal)
        assert crm is not None and crm["hs_next_step"] == "crm says"
        mirror.sync(["deals"])
        mirror.push()
        mirror.sync(["deals"])
        crm = hs.get("deals", deal)
        assert crm is not None and (crm["hs_next_step"], crm["amount"]) == (kept, 4242.0)
        mirrored = view.get("deals", deal)
        assert (mirrored["hs_next_step"], mirrored["amount"]) == (kept, 4242.0)
        conflicts = mirror.conflicts(status=None)
        status = "open" if policy == "manual" else "resolved"
        assert [(c["field"], c["portal"], c["crm"], c["status"]) for c in conflicts] == [
            ("hs_next_step", "portal says", "crm says", status)
        ]
    finally:
        mirror.close()


def test_hs_our_own_write_is_not_mistaken_for_an_overwrite(db_url, hs) -> None:
    mirror = hs_mirror(db_url, hs, "manual")
    try:
        partner, deal = open_deal(mirror, USED)
        view = mirror.as_partner(partner)
        for step in ("first", "second"):
            view.update("deals", deal, {"hs_next_step": step})
            assert mirror.push()["hubspot"].done == 1
            mirror.sync(["deals"])
            crm = hs.get("deals", deal)
            assert crm is not None and crm["hs_next_step"] == step
            assert view.get("deals", deal)["hs_next_step"] == step
        assert mirror.conflicts(status=None) == []
        assert [(e.status, e.confirmed) for e in entries(mirror, deal)] == [("done", True)] * 2
    finally:
        mirror.close()
