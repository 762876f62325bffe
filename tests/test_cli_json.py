"""``--json`` and ``--csv``: each command prints one parseable document with the keys that
docs/operations.md names, and the human output shows values, not Python reprs."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import cli.outbox_commands
import cli.output
from mirror import Mirror
from sandboxes.salesforce.sandbox import SalesforceSandbox
from tests.test_cli import run, write_config


@dataclass
class World:
    """A synced tiny sandbox with one pushed edit, one open conflict and one registration."""

    box: SalesforceSandbox
    config: Path
    partner: str
    opp: str
    conflict: int


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.output, "console", Console(width=250, force_terminal=False))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("cli-json")
    with SalesforceSandbox(folder / "sf.db", size="tiny") as box:
        config = write_config(folder, box)
        text = config.read_text().replace(
            '"OpportunityLineItem"]', '"OpportunityLineItem", "Deal_Registration__c"]'
        )
        config.write_text(text)
        os.environ["SANDBOX_PASSWORD"] = box.password
        try:
            assert run(config, "sync", password=box.password).exit_code == 0
            with Mirror.open(config) as mirror:
                partner = max(mirror.partners(), key=lambda p: p["slice"].get("Opportunity", 0))
                view = mirror.as_partner(partner["id"])
                opp = view.select("Opportunity", where={"IsClosed": False}, limit=1)[0]["Id"]
                view.update("Opportunity", opp, {"NextStep": "portal 1"})
                view.register_deal({"company": "Platypus Data", "domain": "platypus.dev",
                                    "amount": 1000, "close_date": "2099-01-01"})  # fmt: skip
            run(config, "push", password=box.password)
            with Mirror.open(config) as mirror:
                mirror.as_partner(partner["id"]).update(
                    "Opportunity", opp, {"NextStep": "portal 2"}
                )
            box.advance_clock(3)
            box.update("Opportunity", opp, {"NextStep": "crm 2"})
            run(config, "sync", "--object", "Opportunity", password=box.password)
            with Mirror.open(config) as mirror:
                conflict = mirror.conflicts()[0]["id"]
            yield World(box, config, partner["id"], opp, conflict)
        finally:
            os.environ.pop("SANDBOX_PASSWORD", None)


def _json(world: World, *args: str) -> Any:
    result = run(world.config, *args, "--json", password=world.box.password)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_status_json(world: World) -> None:
    doc = _json(world, "status")
    assert set(doc) == {"objects", "outbox", "open_conflicts", "streams"}
    assert doc["streams"] == []
    assert doc["open_conflicts"] == 1 and doc["outbox"]["done"] >= 1
    opp = next(o for o in doc["objects"] if o["object"] == "Opportunity")
    assert {"source", "phase", "cursor", "rows", "deleted", "rejects", "last_run_status",
            "last_run_at", "last_error", "slices_pending"} <= set(opp)  # fmt: skip
    assert opp["phase"] == "incremental" and "T" in opp["last_run_at"]  # ISO 8601


def test_partners_json(world: World) -> None:
    doc = _json(world, "partners")
    assert all(set(p) == {"id", "name", "slice"} for p in doc["partners"])
    assert world.partner in {p["id"] for p in doc["partners"]}


def test_query_json_and_csv(world: World) -> None:
    args = ("query", "--partner", world.partner, "--fields", "Id,Name,Amount,CloseDate")
    doc = _json(world, *args, "Opportunity")
    assert set(doc) == {"object", "total", "columns", "rows"}
    assert doc["columns"] == ["Id", "Name", "Amount", "CloseDate"]
    assert doc["total"] >= len(doc["rows"]) >= 1 and world.opp in {r["Id"] for r in doc["rows"]}
    result = run(world.config, *args, "--csv", "Opportunity", password=world.box.password)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [r["Id"] for r in rows] == [r["Id"] for r in doc["rows"]]
    both = run(world.config, *args, "--csv", "--json", "Opportunity", password=world.box.password)
    assert both.exit_code == 2


def test_outbox_json(world: World) -> None:
    entries = _json(world, "outbox")["entries"]
    assert {e["status"] for e in entries} >= {"done"}
    assert set(entries[0]) == set(cli.outbox_commands.OUTBOX_KEYS)
    assert "T" in entries[0]["created_at"]


def test_conflicts_json_and_human_values(world: World) -> None:
    listed = _json(world, "conflicts")["conflicts"]
    assert [c["id"] for c in listed] == [world.conflict]
    assert listed[0]["portal"] == "portal 2" and listed[0]["crm"] == "crm 2"
    shown = _json(world, "conflicts", "show", str(world.conflict))
    assert {"id", "object", "record_id", "field", "portal", "crm", "status"} <= set(shown)
    human = run(world.config, "conflicts", "show", str(world.conflict),
                password=world.box.password).output  # fmt: skip
    assert "portal 2" in human and "'portal 2'" not in human


def test_registrations_json(world: World) -> None:
    regs = _json(world, "registrations", "list")["registrations"]
    assert all(set(r) == {"id", "partner", "company", "status", "verdict", "opportunity"}
               for r in regs)  # fmt: skip
    assert "Platypus Data" in {r["company"] for r in regs}


def test_diff_json_and_human_values(world: World) -> None:
    world.box.advance_clock(3)
    world.box.update("Opportunity", world.opp, {"Description": "only in the crm"})
    try:
        doc = _json(world, "diff", "Opportunity", world.opp)
        assert set(doc) == {"object", "record_id", "in_mirror", "in_crm", "fields", "pending"}
        assert doc["fields"]["Description"]["crm"] == "only in the crm"
        human = run(world.config, "diff", "Opportunity", world.opp,
                    password=world.box.password).output  # fmt: skip
        assert "only in the crm" in human and "'only in the crm'" not in human
    finally:
        run(world.config, "sync", "--object", "Opportunity", password=world.box.password)


def test_explain_json(world: World) -> None:
    doc = _json(world, "explain", "--partner", world.partner, "Opportunity", world.opp)
    assert set(doc) == {"object", "record_id", "partner", "user", "visible", "reasons"}
    assert doc["visible"] is True and doc["reasons"]
