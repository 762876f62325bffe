"""The chaos harness (``bench.chaos``): its checker finds every kind of failure it counts, and a
short seeded run of each scenario (the engine's own processes against a sandbox process, under
the nemesis) ends with every count at 0."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from bench.chaos.checker import CHANGE_KINDS, EDIT_KINDS, RECORD_KINDS, check
from bench.chaos.nemesis import Crm
from bench.chaos.portal import Edit
from bench.chaos.run import Options, run
from bench.chaos.scenarios import SCENARIOS
from mirror import Mirror
from mirror.config import parse_config
from mirror.store.tables import mirror_outbox
from mirror.types import Write, WriteOp
from sandboxes.salesforce.sandbox import SalesforceSandbox
from sandboxes.testing.admin import AdminClient

PG_URL = os.environ.get("PRM_MIRROR_TEST_PG_URL")


def _edit(
    number: int, op: str, name: str, record_id: str, field: str, value: str, head: int = 0
) -> Edit:
    return Edit(number, op, name, record_id, field, value, "partner", None, time.time(), head)


def test_the_checker_finds_each_kind_of_failure(tmp_path: Path) -> None:
    scenario = SCENARIOS["salesforce"]
    with SalesforceSandbox(tmp_path / "sf.db", size="tiny") as box:
        source = {**scenario.source(box.base_url, None), "objects": list(scenario.objects)}
        raw = {
            "store": {"database": f"sqlite:///{tmp_path / 'm.db'}"},
            "sources": {"salesforce": source},
        }
        crm = Crm("salesforce", AdminClient(box.base_url, box.admin_token).admin)
        with Mirror(parse_config(raw)) as mirror:
            mirror.sync()
            partner = max(mirror.partners(), key=lambda p: p["slice"].get("Opportunity", 0))
            view = mirror.as_partner(partner["id"])
            o1, o2, o3, o4 = (r["Id"] for r in view.select("Opportunity", limit=4))
            local = view.create("Opportunity", {"Name": "portal-1", "StageName": "Prospecting",
                                                "CloseDate": "2027-06-30"})  # fmt: skip
            view.update("Opportunity", o1, {"NextStep": "portal-2"})
            assert mirror.push()["salesforce"].done == 2
            adapter = mirror.adapter("salesforce")
            spec = mirror.store.mirrored("salesforce", "Opportunity").spec

            def write(record_id: str, value: str) -> None:
                values = {"NextStep": value}
                done = adapter.write(spec, [Write(WriteOp.UPDATE, spec.name, values, record_id)])
                assert done[0].ok

            box.update("Opportunity", o1, {"NextStep": "crm-1"})
            write(o1, "portal-2")  # the edit again, over the CRM's newer value
            write(o2, "portal-4")  # a later edit written before an earlier one
            write(o2, "portal-3")
            head = crm.log_head()  # a portal edit accepted now, then a CRM change it overwrites
            box.update("Opportunity", o3, {"NextStep": "crm-2"})
            write(o3, "portal-6")
            mirror.sync()
            contacts = mirror.store.mirrored("salesforce", "Contact").table
            opportunities = mirror.store.mirrored("salesforce", "Opportunity").table
            with mirror.store.transaction() as conn:
                gone, deleted = conn.execute(select(contacts.c.Id).limit(2)).scalars()
                conn.execute(contacts.delete().where(contacts.c.Id == gone))
                created = (
                    conn.execute(select(opportunities).where(opportunities.c.Name == "portal-1"))
                    .one()
                    ._mapping
                )
                conn.execute(insert(opportunities).values({**created, "Id": "local-again"}))
                o = mirror_outbox.c  # an edit the CRM has, its entry never closed
                conn.execute(
                    update(mirror_outbox).where(o.record_id == o1).values(status="sending")
                )
            box.delete("Contact", deleted)
            box.update("Opportunity", o4, {"Description": "changed after the last sync"})
            edits = [
                _edit(1, "create", "Opportunity", local, "Name", "portal-1"),
                _edit(2, "update", "Opportunity", o1, "NextStep", "portal-2"),
                _edit(3, "update", "Opportunity", o2, "NextStep", "portal-3"),
                _edit(4, "update", "Opportunity", o2, "NextStep", "portal-4"),
                _edit(5, "update", "Opportunity", o4, "NextStep", "portal-5"),
                _edit(6, "update", "Opportunity", o3, "NextStep", "portal-6", head),
            ]
            findings = check(mirror, crm, scenario, edits)
    assert findings.records == dict.fromkeys(RECORD_KINDS, 1), findings.examples
    assert findings.edits == dict.fromkeys(EDIT_KINDS, 1), findings.examples
    assert findings.changes == dict.fromkeys(CHANGE_KINDS, 1), findings.examples
    examples = findings.examples
    assert gone in examples["records.lost"][0] and deleted in examples["records.ghost"][0]
    assert o4 in examples["records.stale"][0] and "local-again" in examples["records.duplicated"][0]
    assert "#5 " in examples["edits.lost"][0] and "#2 " in examples["edits.duplicated"][0]
    assert "#2 " in examples["edits.stuck"][0]
    assert "#4 " in examples["edits.reordered"][0] and "#6" in examples["changes.overwritten"][0]


SCENARIO_RUNS = [
    pytest.param("salesforce", "sqlite", 200),
    pytest.param("salesforce", "postgresql", 200, marks=pytest.mark.postgres),
    pytest.param("hubspot", "sqlite", 200),
    pytest.param("dynamics", "sqlite", 200),
]


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize(("crm", "store", "size"), SCENARIO_RUNS)
def test_a_short_chaos_run_ends_with_nothing_lost(crm: str, store: str, size: int) -> None:
    if store == "postgresql" and not PG_URL:
        pytest.skip("PostgreSQL suite: set PRM_MIRROR_TEST_PG_URL")
    options = Options(crm, store, seed=3, duration=10.0, size=size, kills=3, pg_url=PG_URL or "")
    result: dict[str, Any] = run(options)
    assert sum(result["kills"].values()) >= 1 and sum(result["portal_edits"].values()) >= 1
    assert sum(result["crm_changes"].values()) >= 10
    failures = {
        f"{group} {kind}": count
        for group in ("records", "edits", "changes")
        for kind, count in result[group].items()
    }
    assert not any(failures.values()), (failures, result["examples"])


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_short_chaos_run_with_the_salesforce_stream_ends_with_nothing_lost() -> None:
    options = Options("salesforce", seed=5, duration=30.0, size=200, kills=3, streams=True)
    result: dict[str, Any] = run(options)
    # the daemons listened (how many events they stored depends on when the kills came)
    assert "salesforce" in result["streams"], result["streams"]
    failures = {
        f"{group} {kind}": count
        for group in ("records", "edits", "changes")
        for kind, count in result[group].items()
    }
    assert not any(failures.values()), (failures, result["examples"])
