"""A CRM change made in the second (HubSpot: the millisecond) of the version a portal edit was
made against, after a sync had read that version, leaves the version as it was; the push's
check compares the written fields' values with the edit's base, so such a change is never
overwritten. End to end over HTTP against the sandboxes, on both stores.

Each sandbox clock is frozen, so the version the sync reads and the CRM's change that follows
share their stamp, as they do in a CRM whose clock moved less than its resolution between the
two. HubSpot's frozen clock still gives each change a millisecond of its own: the change's
last-modified value and its property history are put on the version's millisecond.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mirror import Mirror
from mirror.push.preconditions import changed_fields
from mirror.store.tables import mirror_outbox
from mirror.types import FieldSpec, FieldType, ObjectSpec
from sandboxes.dynamics.sandbox import DynamicsSandbox
from sandboxes.hubspot.sandbox import HubSpotSandbox
from sandboxes.salesforce.sandbox import SalesforceSandbox
from tests.adapters.dynamics.fixtures import sandbox_adapter as dynamics_adapter
from tests.adapters.hubspot.fixtures import unthrottled
from tests.mirror.pull.test_sync_dynamics import make_mirror, open_opportunity
from tests.mirror.pull.test_sync_dynamics import partner_with_opportunities as dv_partner
from tests.mirror.push.test_echo import hs_mirror, open_deal
from tests.mirror.push.writeback_fixtures import fresh_opportunity, open_mirror

USED: set[str] = set()


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SalesforceSandbox]:
    path = Path(tmp_path_factory.mktemp("salesforce")) / "sf.db"
    with SalesforceSandbox(path, size="tiny") as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def dv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DynamicsSandbox]:
    path = Path(tmp_path_factory.mktemp("dynamics")) / "dv.db"
    with DynamicsSandbox(path, size="tiny") as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def hs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubSpotSandbox]:
    path = Path(tmp_path_factory.mktemp("hubspot")) / "hs.db"
    with HubSpotSandbox(path, size="tiny") as sandbox:
        yield unthrottled(sandbox)


@contextmanager
def frozen(sandbox: Any) -> Iterator[None]:
    """The sandbox's clock stopped in a second of its own."""
    sandbox.advance_clock(2)
    sandbox.freeze_clock()
    try:
        yield
    finally:
        sandbox.thaw_clock()


def statuses(mirror: Mirror, record_id: str) -> list[tuple[str, bool]]:
    o = mirror_outbox.c
    query = select(o.status, o.confirmed).where(o.record_id == record_id).order_by(o.seq)
    with mirror.store.engine.connect() as conn:
        return [(status, bool(confirmed)) for status, confirmed in conn.execute(query)]


def conflicts(mirror: Mirror) -> list[tuple[str, Any, Any, str]]:
    return [(c["field"], c["portal"], c["crm"], c["status"]) for c in mirror.conflicts(status=None)]


# -- Salesforce ----------------------------------------------------------------------------


def sf_read_then_changed(
    mirror: Mirror, box: SalesforceSandbox, start: dict[str, Any], change: dict[str, Any]
) -> tuple[str, str]:
    """A record synced at version v, then changed in the CRM in v's second; (partner, id).
    Call with the clock frozen."""
    partner, opp = fresh_opportunity(mirror, USED)
    box.update("Opportunity", opp["Id"], {"Description": "the version edited", **start})
    mirror.sync(["Opportunity"])
    version = box.get("Opportunity", opp["Id"])["SystemModstamp"]  # type: ignore[index]
    box.update("Opportunity", opp["Id"], change)
    assert box.get("Opportunity", opp["Id"])["SystemModstamp"] == version  # type: ignore[index]
    return partner, opp["Id"]


@pytest.mark.parametrize(
    ("policy", "kept"), [("manual", "crm says"), ("portal_wins", "portal says")]
)
def test_sf_a_change_of_the_field_in_the_edited_versions_second_is_a_conflict(
    db_url, box, policy, kept
) -> None:
    mirror = open_mirror(db_url, box, default=policy)
    try:
        with frozen(box):
            partner, record_id = sf_read_then_changed(mirror, box, {}, {"NextStep": "crm says"})
            view = mirror.as_partner(partner)
            view.update("Opportunity", record_id, {"NextStep": "portal says"})
            result = mirror.push()["salesforce"]
            assert (result.done, result.blocked) == (0, 1)
            assert box.get("Opportunity", record_id)["NextStep"] == "crm says"  # type: ignore[index]
        mirror.sync(["Opportunity"])
        mirror.push()
        mirror.sync(["Opportunity"])
        assert box.get("Opportunity", record_id)["NextStep"] == kept  # type: ignore[index]
        assert view.get("Opportunity", record_id)["NextStep"] == kept
        status = "open" if policy == "manual" else "resolved"
        assert conflicts(mirror) == [("NextStep", "portal says", "crm says", status)]
    finally:
        mirror.close()


def test_sf_a_change_of_another_field_in_that_second_holds_nothing_back(db_url, box) -> None:
    mirror = open_mirror(db_url, box)
    try:
        with frozen(box):
            # the CRM's Amount is whole and its NextStep empty: the values come back as 125000
            # and null, while the edit's base holds 125000.0 and None
            start = {"Amount": 125000, "NextStep": None}
            change = {"Description": "crm says"}
            partner, record_id = sf_read_then_changed(mirror, box, start, change)
            view = mirror.as_partner(partner)
            view.update("Opportunity", record_id, {"NextStep": "portal says", "Amount": 7.5})
            result = mirror.push()["salesforce"]
            assert (result.done, result.blocked) == (1, 0)
        mirror.sync(["Opportunity"])
        crm = box.get("Opportunity", record_id)
        assert crm is not None
        assert (crm["NextStep"], crm["Amount"], crm["Description"]) == (
            "portal says", 7.5, "crm says"
        )  # fmt: skip
        assert view.get("Opportunity", record_id)["NextStep"] == "portal says"
        assert statuses(mirror, record_id) == [("done", True)]
        assert conflicts(mirror) == []
    finally:
        mirror.close()


def test_sf_an_edit_on_top_of_a_refused_one_is_checked_against_what_the_crm_kept(
    db_url, box
) -> None:
    mirror = open_mirror(db_url, box)
    try:
        with frozen(box):  # the record in the checked second, so its values are compared
            partner, record_id = sf_read_then_changed(
                mirror, box, {"Amount": 3.0}, {"Description": "changed in that second"}
            )
            view = mirror.as_partner(partner)
            view.update("Opportunity", record_id, {"Amount": -5.0})  # a validation rule refuses
            view.update("Opportunity", record_id, {"Amount": 7.0})  # made against -5.0
            result = mirror.push()["salesforce"]
            assert (result.failed, result.done, result.blocked) == (1, 1, 0)
            assert box.get("Opportunity", record_id)["Amount"] == 7.0  # type: ignore[index]
        mirror.sync(["Opportunity"])
        assert view.get("Opportunity", record_id)["Amount"] == 7.0
        assert conflicts(mirror) == []
    finally:
        mirror.close()


# -- Dataverse -----------------------------------------------------------------------------


def dv_read_then_changed(
    mirror: Mirror, dv: DynamicsSandbox, start: dict[str, Any], change: dict[str, Any]
) -> tuple[str, str]:
    """A row synced at version v, then changed in the CRM in v's second (a new row version,
    the same ``modifiedon``); (partner, id). Call with the clock frozen."""
    partner = dv_partner(mirror)
    record_id = open_opportunity(mirror, partner, USED)["opportunityid"]
    dv.update("opportunity", record_id, {"description": "the version edited", **start})
    mirror.sync(["opportunity"])
    version = dv.get("opportunity", record_id)["modifiedon"]  # type: ignore[index]
    dv.update("opportunity", record_id, change)
    assert dv.get("opportunity", record_id)["modifiedon"] == version  # type: ignore[index]
    return partner, record_id


@pytest.fixture
def dv_mirror(db_url: str, dv: DynamicsSandbox) -> Iterator[Mirror]:
    mirror = make_mirror(db_url, dynamics_adapter(dv, page_size=200))
    mirror.sync()
    yield mirror
    mirror.close()


def test_dv_a_change_of_the_field_in_the_edited_versions_second_is_a_conflict(
    dv_mirror, dv
) -> None:
    with frozen(dv):
        partner, record_id = dv_read_then_changed(dv_mirror, dv, {}, {"stepname": "crm says"})
        view = dv_mirror.as_partner(partner)
        view.update("opportunity", record_id, {"stepname": "portal says"})
        result = dv_mirror.push()["dynamics"]
        assert (result.done, result.blocked) == (0, 1)
        assert dv.get("opportunity", record_id)["stepname"] == "crm says"  # type: ignore[index]
    dv_mirror.sync(["opportunity"])
    assert dv_mirror.push()["dynamics"].sent == 0
    assert dv.get("opportunity", record_id)["stepname"] == "crm says"  # type: ignore[index]
    assert view.get("opportunity", record_id)["stepname"] == "crm says"
    assert conflicts(dv_mirror) == [("stepname", "portal says", "crm says", "open")]


def test_dv_a_change_of_another_field_in_that_second_holds_nothing_back(dv_mirror, dv) -> None:
    with frozen(dv):
        start = {"estimatedvalue": 125000, "closeprobability": 40, "stepname": None}
        change = {"description": "crm says"}
        partner, record_id = dv_read_then_changed(dv_mirror, dv, start, change)
        view = dv_mirror.as_partner(partner)
        edit = {"stepname": "portal says", "estimatedvalue": 7.5, "closeprobability": 60}
        view.update("opportunity", record_id, edit)
        result = dv_mirror.push()["dynamics"]
        assert (result.done, result.blocked) == (1, 0)
    dv_mirror.sync(["opportunity"])
    crm = dv.get("opportunity", record_id)
    assert crm is not None
    assert (crm["stepname"], float(crm["estimatedvalue"]), crm["closeprobability"]) == (
        "portal says", 7.5, 60
    )  # fmt: skip
    assert crm["description"] == "crm says"
    assert statuses(dv_mirror, record_id) == [("done", True)]
    assert conflicts(dv_mirror) == []


# -- HubSpot -------------------------------------------------------------------------------


def same_millisecond(hs: HubSpotSandbox, deal: str, stamp: int) -> None:
    """Put the deal's last change on millisecond ``stamp``: its last-modified value and the
    property history the change wrote (HubSpot stamps two writes in one millisecond alike)."""
    hs.set_modstamp("deals", [deal], dt.datetime.fromtimestamp(stamp / 1000, dt.UTC))
    name = hs.portal.records.object_type("deals").name
    with hs.portal.store.transaction() as conn:
        conn.execute(
            "UPDATE hs_history SET ts_ms = ? WHERE type = ? AND id = ? AND ts_ms > ?",
            (stamp, name, int(deal), stamp),
        )


def hs_read_then_changed(
    mirror: Mirror, hs: HubSpotSandbox, start: dict[str, Any], change: dict[str, Any]
) -> tuple[str, str]:
    """A deal synced at version v, then changed in the CRM in v's millisecond; (partner, id).
    Call with the clock frozen."""
    partner, deal = open_deal(mirror, USED)
    hs.update("deals", deal, {"description": "the version edited", **start})
    stamp = hs.set_modstamp("deals", [deal])
    mirror.sync(["deals"])
    hs.update("deals", deal, change)
    same_millisecond(hs, deal, stamp)
    return partner, deal


@pytest.mark.parametrize(
    ("policy", "kept"), [("manual", "crm says"), ("portal_wins", "portal says")]
)
def test_hs_a_change_of_the_field_in_the_edited_versions_millisecond_is_a_conflict(
    db_url, hs, policy, kept
) -> None:
    mirror = hs_mirror(db_url, hs, policy)
    try:
        with frozen(hs):
            partner, deal = hs_read_then_changed(mirror, hs, {}, {"hs_next_step": "crm says"})
            view = mirror.as_partner(partner)
            view.update("deals", deal, {"hs_next_step": "portal says"})
            result = mirror.push()["hubspot"]
            assert (result.done, result.blocked) == (0, 1)
            assert hs.get("deals", deal)["hs_next_step"] == "crm says"  # type: ignore[index]
        mirror.sync(["deals"])
        mirror.push()
        mirror.sync(["deals"])
        assert hs.get("deals", deal)["hs_next_step"] == kept  # type: ignore[index]
        assert view.get("deals", deal)["hs_next_step"] == kept
        status = "open" if policy == "manual" else "resolved"
        assert conflicts(mirror) == [("hs_next_step", "portal says", "crm says", status)]
    finally:
        mirror.close()


def test_hs_a_change_of_another_field_in_that_millisecond_holds_nothing_back(db_url, hs) -> None:
    mirror = hs_mirror(db_url, hs, "manual")
    try:
        with frozen(hs):
            # HubSpot answers "125000" and "...T00:00:00Z" where the edit's base holds 125000.0
            # and a datetime with its offset
            start = {"amount": "125000", "closedate": "2027-03-31T00:00:00Z"}
            change = {"description": "crm says"}
            partner, deal = hs_read_then_changed(mirror, hs, start, change)
            view = mirror.as_partner(partner)
            close = dt.datetime(2027, 6, 30, tzinfo=dt.UTC)
            edit = {"hs_next_step": "portal says", "amount": 7.5, "closedate": close}
            view.update("deals", deal, edit)
            result = mirror.push()["hubspot"]
            assert (result.done, result.blocked) == (1, 0)
        mirror.sync(["deals"])
        crm = hs.get("deals", deal)
        assert crm is not None
        assert (crm["hs_next_step"], float(crm["amount"]), crm["description"]) == (
            "portal says", 7.5, "crm says"
        )  # fmt: skip
        assert statuses(mirror, deal) == [("done", True)]
        assert conflicts(mirror) == []
    finally:
        mirror.close()


# -- the comparison ------------------------------------------------------------------------


SPEC = ObjectSpec(
    source="crm",
    name="Deal",
    key="Id",
    cursor_field="Stamp",
    fields=(
        FieldSpec("Id", FieldType.ID),
        FieldSpec("Amount", FieldType.DECIMAL),
        FieldSpec("Count", FieldType.INTEGER),
        FieldSpec("Closes", FieldType.DATETIME),
        FieldSpec("Day", FieldType.DATE),
        FieldSpec("Step", FieldType.STRING),
        FieldSpec("Open", FieldType.BOOLEAN),
    ),
)


@pytest.mark.parametrize(
    ("base", "now"),
    [
        ({"Amount": 10.0}, {"Amount": 10}),
        ({"Amount": "10.0"}, {"Amount": 10}),
        ({"Amount": 0.1 + 0.2}, {"Amount": 0.3}),
        ({"Count": 10}, {"Count": "10"}),
        ({"Closes": "2027-03-31T10:00:00+00:00"}, {"Closes": "2027-03-31T10:00:00.000Z"}),
        (
            {"Closes": "2027-03-31T12:00:00+02:00"},
            {"Closes": dt.datetime(2027, 3, 31, 10, tzinfo=dt.UTC)},
        ),
        ({"Day": "2027-03-31"}, {"Day": dt.date(2027, 3, 31)}),
        ({"Step": None}, {"Step": ""}),
        ({"Open": "true"}, {"Open": True}),
        ({"Step": "a", "Amount": 1.0}, {"Step": "a"}),  # a field the check did not read
    ],
)
def test_the_same_value_in_another_form_is_unchanged(base, now) -> None:
    assert changed_fields(SPEC, base, now) == []


@pytest.mark.parametrize(
    ("base", "now", "changed"),
    [
        ({"Amount": 10.0}, {"Amount": 10.01}, ["Amount"]),
        ({"Step": None}, {"Step": "x"}, ["Step"]),
        ({"Closes": "2027-03-31T10:00:00Z"}, {"Closes": "2027-03-31T10:00:01Z"}, ["Closes"]),
        ({"Open": False, "Step": "a"}, {"Open": True, "Step": "b"}, ["Open", "Step"]),
    ],
)
def test_another_value_is_changed(base, now, changed) -> None:
    assert changed_fields(SPEC, base, now) == changed
