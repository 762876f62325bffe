"""Deal registration works the same on HubSpot and Dynamics 365: register, a conflicting
second registration, approval into one opportunity attributed to the partner, and the push."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mirror import Mirror
from mirror.config import parse_config
from mirror.portal.dealmatch import PartnerVerdict

CLOSE = (dt.date.today() + dt.timedelta(days=45)).isoformat()


def hubspot(tmp_path: Path) -> tuple[Any, Any, dict[str, Any]]:
    from sandboxes.hubspot.sandbox import HubSpotSandbox
    from tests.adapters.hubspot.fixtures import hubspot_adapter, unthrottled

    box = unthrottled(HubSpotSandbox(tmp_path / "hs.db", size="tiny").start())
    return box, hubspot_adapter(box), {"crm": "hubspot", "access_token": "t"}


def dynamics(tmp_path: Path) -> tuple[Any, Any, dict[str, Any]]:
    from sandboxes.dynamics.sandbox import DynamicsSandbox
    from tests.adapters.dynamics.fixtures import sandbox_adapter

    box = DynamicsSandbox(tmp_path / "dv.db", size="tiny").start()
    source = {
        "crm": "dynamics",
        "org_url": "https://x",
        "tenant_id": "t",
        "client_id": "c",
        "client_secret": "s",
    }
    return box, sandbox_adapter(box), source


@pytest.fixture(params=[hubspot, dynamics], ids=["hubspot", "dynamics"])
def crm(request: pytest.FixtureRequest, tmp_path: Path, db_url: str) -> Iterator[Any]:
    box, adapter, source = request.param(tmp_path)
    name = source["crm"]
    config = parse_config({"store": {"database": db_url}, "sources": {name: source}})
    mirror = Mirror(config, adapters={name: adapter})
    try:
        mirror.sync()
        yield box, mirror
    finally:
        mirror.close()
        box.stop()


def test_registration_flow(crm) -> None:
    box, mirror = crm
    settings = mirror.registrations().settings
    ranked = sorted(mirror.partners(), key=lambda p: -sum(p["slice"].values()))
    first, second = ranked[0]["id"], ranked[1]["id"]
    deal = {
        "company": "Zyxwv Robotics Corp.",
        "domain": "zyxwv.io",
        "amount": 1000,
        "close_date": CLOSE,
    }
    mine = mirror.as_partner(first).register_deal(deal)
    theirs = mirror.as_partner(second).register_deal({**deal, "company": "ZYXWV Robotics"})
    assert (mine.verdict, theirs.verdict) == (PartnerVerdict.CLEAR, PartnerVerdict.REVIEW)
    assert mirror.push()[mirror.default_source].failed == 0
    registrations = mirror.registrations()
    reg_id = next(
        r["id"]
        for r in registrations.recent()
        if r["partner"] == first and r["company"] == "Zyxwv Robotics Corp."
    )
    opportunity = registrations.approve(reg_id, by="cm")
    assert registrations.approve(reg_id, by="cm") == opportunity
    assert mirror.push()[mirror.default_source].failed == 0
    made = [
        r
        for r in mirror.as_partner(first).select(settings.opportunity["object"], limit=1000)
        if str(r.get(settings.opportunity_column("name", "Name"), "")).startswith("Zyxwv")
    ]
    assert len(made) == 1
    assert made[0][settings.opportunity["partner_field"]] == first
    assert box is not None
