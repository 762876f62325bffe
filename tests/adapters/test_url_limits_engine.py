"""The engine on objects too wide for one request URL, on all three CRMs and both stores: the
sync mirrors every added field, a partner's edit of an added field is pushed, a dry-run diff
names the one field the CRM changed, and the self-audit heals a missing and a drifted row.

The widened objects are the ones partners see: the Salesforce Opportunity (450 more fields),
HubSpot deals (400 more properties) and the Dataverse opportunity table (800 more columns).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mirror import Mirror
from mirror.config import parse_config
from mirror.daemon import Daemon
from sandboxes.dynamics.sandbox import DynamicsSandbox
from sandboxes.hubspot.sandbox import HubSpotSandbox
from sandboxes.salesforce.sandbox import SalesforceSandbox
from tests.adapters.conftest import sandbox_adapter
from tests.adapters.dynamics.fixtures import sandbox_adapter as dynamics_adapter
from tests.adapters.hubspot.fixtures import hubspot_adapter, unthrottled
from tests.adapters.wide_fixtures import (
    HUBSPOT_WIDTH,
    dynamics_column,
    hubspot_property,
    salesforce_field,
    widen_dynamics,
    widen_hubspot,
    widen_salesforce,
)

USED: set[str] = set()


@pytest.fixture(scope="module")
def sf_box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SalesforceSandbox]:
    path = Path(tmp_path_factory.mktemp("sf-wide-engine")) / "sf.db"
    with SalesforceSandbox(path, size="tiny") as sandbox:
        widen_salesforce(sandbox, "Opportunity")
        yield sandbox


@pytest.fixture(scope="module")
def hs_box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubSpotSandbox]:
    path = Path(tmp_path_factory.mktemp("hs-wide-engine")) / "hs.db"
    with HubSpotSandbox(path, size="tiny") as sandbox:
        unthrottled(sandbox)
        widen_hubspot(sandbox, "deals")
        yield sandbox


@pytest.fixture(scope="module")
def dv_box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DynamicsSandbox]:
    path = Path(tmp_path_factory.mktemp("dv-wide-engine")) / "dv.db"
    with DynamicsSandbox(path, size="tiny") as sandbox:
        widen_dynamics(sandbox, "opportunity")
        yield sandbox


def open_mirror(
    url: str, source: str, settings: dict[str, Any], adapter: Any, writable: tuple[str, str]
) -> Mirror:
    """A mirror of one source in ``url`` whose partners may write ``writable`` (object and
    field), synced once."""
    name, field = writable
    # every field of the widened object is the partners' (a deny-list hiding none)
    visibility = {"partners": {"field_rules": "deny"}, "fields": {name: {"writable": [field]}}}
    config = parse_config(
        {
            "store": {"database": url},
            "sync": {"push_retry_delay": 0},
            "daemon": {"metrics_port": 0, "audit_sample": 1000},
            "sources": {
                source: {**settings, "conflicts": {"default": "manual"}, "visibility": visibility}
            },
        }
    )
    mirror = Mirror(config, adapters={source: adapter})
    mirror.sync()
    return mirror


def mirrored_ids(mirror: Mirror, source: str, name: str, key: str) -> set[str]:
    table = mirror.store.mirrored(source, name).table
    with mirror.store.engine.connect() as conn:
        return set(conn.execute(select(table.c[key]).where(table.c._deleted.is_(False))).scalars())


def editable_record(mirror: Mirror, name: str, key: str, where: dict[str, Any]) -> tuple[str, str]:
    """A partner and one of its records of ``name`` no earlier test touched."""
    for partner in sorted(mirror.partners(), key=lambda p: -p["slice"].get(name, 0)):
        for row in mirror.as_partner(partner["id"]).select(name, where=where, limit=500):
            if row[key] not in USED:
                USED.add(row[key])
                return partner["id"], str(row[key])
    raise AssertionError(f"no partner record of {name} left")


def check_engine(
    mirror: Mirror,
    source: str,
    name: str,
    key: str,
    box: Any,
    field: Callable[[int], str],
    where: dict[str, Any],
) -> None:
    """Sync, push, diff and audit the wide object ``name`` (see the module docstring)."""
    assert mirrored_ids(mirror, source, name, key) == set(box.ids(name))
    assert {field(n) for n in range(10)} <= set(mirror.spec(source, name).field_names)
    partner, record_id = editable_record(mirror, name, key, where)
    mirror.as_partner(partner).update(name, record_id, {field(7): "from the portal"})
    pushed = mirror.push()[source]
    assert (pushed.done, pushed.failed) == (1, 0)
    assert (box.get(name, record_id) or {})[field(7)] == "from the portal"
    mirror.sync([name])
    added = {field(n) for n in range(HUBSPOT_WIDTH)}
    assert mirror.diff(name, record_id, source)["fields"] == {}
    box.update(name, record_id, {field(8): "from the CRM"})
    changed = mirror.diff(name, record_id, source)["fields"]
    assert {f: v for f, v in changed.items() if f in added} == {field(8): (None, "from the CRM")}
    table = mirror.store.mirrored(source, name).table
    missing, drifted = [i for i in box.ids(name) if i != record_id][:2]
    with mirror.store.transaction() as conn:
        conn.execute(table.delete().where(table.c[key] == missing))
        conn.execute(
            table.update().where(table.c[key] == drifted).values({field(9): "stale", "_hash": "x"})
        )
    report = {r.object: r for r in Daemon(mirror, worker_id="auditor").audit(source)}[name]
    assert report.missing_healed == 1 and report.drift_healed >= 2, report
    assert mirrored_ids(mirror, source, name, key) == set(box.ids(name))
    fetched = {r[key]: r for r in mirror.adapter(source).fetch(mirror.spec(source, name),
                                                               [drifted, record_id])}  # fmt: skip
    with mirror.store.engine.connect() as conn:
        rows = conn.execute(select(table).where(table.c[key].in_([drifted, record_id])))
        mirrored = {row._mapping[key]: row._mapping for row in rows}
    for record in (drifted, record_id):
        assert {f: mirrored[record][f] for f in (field(7), field(8), field(9))} == {
            f: fetched[record][f] for f in (field(7), field(8), field(9))
        }


def test_a_wide_salesforce_opportunity_end_to_end(db_url: str, sf_box) -> None:
    settings = {"crm": "salesforce", "auth": "password", "username": "u", "password": "p",
                "objects": ["User", "Account", "Contact", "Opportunity"]}  # fmt: skip
    writable = ("Opportunity", salesforce_field(7))
    mirror = open_mirror(db_url, "salesforce", settings, sandbox_adapter(sf_box), writable)
    try:
        check_engine(mirror, "salesforce", "Opportunity", "Id", sf_box, salesforce_field,
                     {"IsClosed": False})  # fmt: skip
    finally:
        mirror.close()


def test_wide_hubspot_deals_end_to_end(db_url: str, hs_box) -> None:
    settings = {"crm": "hubspot", "access_token": "unused",
                "objects": ["companies", "contacts", "deals"]}  # fmt: skip
    writable = ("deals", hubspot_property(7))
    mirror = open_mirror(db_url, "hubspot", settings, hubspot_adapter(hs_box), writable)
    try:
        check_engine(mirror, "hubspot", "deals", "hs_object_id", hs_box, hubspot_property,
                     {"hs_is_closed": False})  # fmt: skip
    finally:
        mirror.close()


def test_a_wide_dataverse_opportunity_end_to_end(db_url: str, dv_box) -> None:
    settings = {"crm": "dynamics", "org_url": "https://org.example.crm.dynamics.com",
                "tenant_id": "t", "client_id": "c", "client_secret": "s",
                "objects": ["systemuser", "account", "contact", "opportunity"]}  # fmt: skip
    adapter = dynamics_adapter(dv_box, page_size=200)
    mirror = open_mirror(db_url, "dynamics", settings, adapter, ("opportunity", dynamics_column(7)))
    try:
        check_engine(mirror, "dynamics", "opportunity", "opportunityid", dv_box, dynamics_column,
                     {"statecode": 0})  # fmt: skip
    finally:
        mirror.close()
