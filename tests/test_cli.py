"""The command line against a live sandbox: every command, bad configs, and a backfill killed
with SIGKILL and resumed with nothing lost or duplicated."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

import cli.output
from cli import main
from sandboxes.salesforce.sandbox import SalesforceSandbox

ROOT = Path(__file__).resolve().parent.parent
OBJECTS = '["User", "Account", "Contact", "Product2", "Opportunity", "OpportunityLineItem"]'


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables printed in full, as on a wide terminal."""
    monkeypatch.setattr(cli.output, "console", Console(width=250, force_terminal=False))


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SalesforceSandbox]:
    path = tmp_path_factory.mktemp("cli") / "sf.db"
    with SalesforceSandbox(path, size="small") as sandbox:
        yield sandbox


def write_config(folder: Path, box: SalesforceSandbox, page_size: int = 2000) -> Path:
    path = folder / "prm-mirror.toml"
    path.write_text(
        f"""
[store]
database = "sqlite:///{folder / "mirror.db"}"

[sources.salesforce]
crm = "salesforce"
objects = {OBJECTS}
login_url = "{box.base_url}"
username = "{box.username}"
password = "${{SANDBOX_PASSWORD}}"
security_token = "{box.security_token}"
page_size = {page_size}
"""
    )
    return path


def run(config: Path, *args: str, password: str = "") -> object:
    env = {"SANDBOX_PASSWORD": password}
    return CliRunner().invoke(main, ["-c", str(config), *args], env=env, catch_exceptions=False)


def test_init_writes_a_config_that_check_validates(tmp_path: Path) -> None:
    target = tmp_path / "new.toml"
    result = CliRunner().invoke(main, ["init", "--path", str(target)])
    assert result.exit_code == 0 and target.exists()
    again = CliRunner().invoke(main, ["init", "--path", str(target)])
    assert again.exit_code != 0 and "exists" in again.output
    checked = CliRunner().invoke(main, ["-c", str(target), "check"], env={})
    assert checked.exit_code == 2
    assert "SF_USERNAME is not set" in checked.output and "SF_PASSWORD is not set" in checked.output


def test_check_reports_a_wrong_password_without_printing_it(tmp_path, box) -> None:
    config = write_config(tmp_path, box)
    result = run(config, "check", password="not-the-password")
    assert result.exit_code == 1
    assert "fail" in result.output and "not-the-password" not in result.output
    assert run(config, "check", password=box.password).exit_code == 0


def test_backfill_sync_status_and_partner_commands(tmp_path, box) -> None:
    config = write_config(tmp_path, box)
    ok = box.password
    backfill = run(config, "backfill", password=ok)
    assert backfill.exit_code == 0, backfill.output
    assert "salesforce.Opportunity" in backfill.output
    status = run(config, "status", password=ok)
    assert "incremental" in status.output and "open conflicts: 0" in status.output
    partners = run(config, "partners", password=ok)
    assert partners.exit_code == 0 and "Opportunity" in partners.output
    with sqlite3.connect(tmp_path / "mirror.db") as db:
        partner, opp = db.execute(
            'SELECT "PartnerAccountId", "Id" FROM salesforce__opportunity '
            'WHERE "PartnerAccountId" IS NOT NULL LIMIT 1'
        ).fetchone()
    query = run(config, "query", "--partner", partner, "--where", "Amount>=0",
                "--fields", "Id,Name,Amount", "Opportunity", password=ok)  # fmt: skip
    assert query.exit_code == 0 and opp[:10] in query.output
    explain = run(config, "explain", "--partner", partner, "Opportunity", opp, password=ok)
    assert "visible" in explain.output and "PartnerAccountId" in explain.output
    with sqlite3.connect(tmp_path / "mirror.db") as db:
        (other_user,) = db.execute(
            'SELECT "Id" FROM salesforce__user WHERE "AccountId" IS NOT NULL '
            'AND "AccountId" != ? LIMIT 1', (partner,),
        ).fetchone()  # fmt: skip
    for role in ("admin", "rep"):  # a user of another partner cannot pose as this one's
        posing = run(config, "query", "--partner", partner, "--user", other_user,
                     "--role", role, "Opportunity", password=ok)  # fmt: skip
        assert posing.exit_code == 1 and "is not a user of partner" in posing.output
    too_many = run(config, "query", "--partner", partner, "--limit", "0", "Opportunity",
                   password=ok)  # fmt: skip
    assert too_many.exit_code == 2 and "--limit" in too_many.output
    plain = run(config, "query", "--partner", partner, "--limit", "3", "Opportunity", password=ok)
    header = "".join(plain.output.split())
    assert plain.exit_code == 0 and "Id" in header and "Name" in header
    assert "SystemModstamp" not in header and "Amount" not in header  # not every column
    nobody = run(config, "query", "--partner", "001NOTAPARTNER", "Opportunity", password=ok)
    assert nobody.exit_code == 2 and "not a partner" in nobody.output
    bogus = run(config, "outbox", "--status", "bogus", password=ok)
    assert bogus.exit_code == 2 and "--status" in bogus.output
    both = run(config, "query", "--partner", partner, "--where", "Amount<0", "--where",
               "Amount>=0", "--fields", "Id", "Opportunity", password=ok)  # fmt: skip
    assert both.exit_code == 0 and "Opportunity:0of0" in "".join(both.output.split())
    rebuilt = run(config, "access", "rebuild", password=ok)
    assert "agrees" in rebuilt.output
    box.advance_clock(5)
    box.update("Opportunity", opp, {"NextStep": "cli sync"})
    synced = run(config, "sync", "--object", "Opportunity", password=ok)
    assert synced.exit_code == 0 and "incremental" in synced.output


def test_push_outbox_conflicts_and_diff(tmp_path, box) -> None:
    from mirror import Mirror

    config = write_config(tmp_path, box)
    os.environ["SANDBOX_PASSWORD"] = box.password
    try:
        assert run(config, "sync", password=box.password).exit_code == 0
        with Mirror.open(config) as mirror:
            partner = max(mirror.partners(), key=lambda p: p["slice"].get("Opportunity", 0))
            view = mirror.as_partner(partner["id"])
            opp = view.select("Opportunity", where={"IsClosed": False}, limit=1)[0]["Id"]
            view.update("Opportunity", opp, {"NextStep": "from the portal"})
        diff = run(config, "diff", "Opportunity", opp, password=box.password)
        assert "NextStep" in diff.output and "pending portal edit" in diff.output
        assert "pending" in run(config, "outbox", password=box.password).output
        pushed = run(config, "push", password=box.password)
        assert pushed.exit_code == 0
        assert box.get("Opportunity", opp)["NextStep"] == "from the portal"
        with Mirror.open(config) as mirror:
            mirror.as_partner(partner["id"]).update("Opportunity", opp, {"NextStep": "portal 2"})
        box.advance_clock(3)
        box.update("Opportunity", opp, {"NextStep": "crm 2"})
        run(config, "sync", "--object", "Opportunity", password=box.password)
        listed = run(config, "conflicts", password=box.password)
        assert "portal 2" in listed.output and "crm 2" in listed.output
        with Mirror.open(config) as mirror:
            conflict_id = str(mirror.conflicts()[0]["id"])
        shown = run(config, "conflicts", "show", conflict_id, password=box.password)
        assert "NextStep" in shown.output
        resolved = run(config, "conflicts", "resolve", conflict_id, "--take", "portal",
                       password=box.password)  # fmt: skip
        assert resolved.exit_code == 0, resolved.output
        run(config, "push", password=box.password)
        assert box.get("Opportunity", opp)["NextStep"] == "portal 2"
        assert "failed" not in run(config, "outbox", "--failed", password=box.password).output
    finally:
        os.environ.pop("SANDBOX_PASSWORD", None)


def test_a_backfill_killed_with_sigkill_resumes_with_nothing_lost(tmp_path, box) -> None:
    config = write_config(tmp_path, box, page_size=200)
    env = {**os.environ, "SANDBOX_PASSWORD": box.password}
    command = [sys.executable, "-m", "cli", "-c", str(config), "backfill"]
    box.throttle(0.02)
    try:
        process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        database = tmp_path / "mirror.db"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _mid_backfill(database):
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        box.throttle(0)
    assert _mid_backfill(database), "the backfill finished before it could be killed"
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(database) as db:
        for sobject in ("Opportunity", "OpportunityLineItem", "Contact"):
            mirrored = {r[0] for r in db.execute(
                f'SELECT "Id" FROM salesforce__{sobject.lower()} WHERE _deleted = 0')}  # fmt: skip
            assert mirrored == set(box.ids(sobject)), sobject
        runs = db.execute("SELECT status FROM mirror_runs ORDER BY id").fetchall()
    # the killed process's run was closed by the resumed one
    assert ("interrupted",) in runs and ("running",) not in runs


def _mid_backfill(database: Path) -> bool:
    if not database.exists():
        return False
    try:
        with sqlite3.connect(database, timeout=1) as db:
            rows = db.execute(
                "SELECT object, phase FROM mirror_checkpoints WHERE phase = 'backfill'"
            ).fetchall()
            return bool(rows)
    except sqlite3.Error:
        return False


def test_registration_commands(tmp_path, box) -> None:
    from mirror import Mirror

    config = write_config(tmp_path, box)
    text = config.read_text().replace(
        '"OpportunityLineItem"]', '"OpportunityLineItem", "Deal_Registration__c"]'
    )
    config.write_text(text)
    os.environ["SANDBOX_PASSWORD"] = box.password
    try:
        assert run(config, "sync", password=box.password).exit_code == 0
        with Mirror.open(config) as mirror:
            partner = mirror.partners()[0]["id"]
            mirror.as_partner(partner).register_deal({
                "company": "Platypus Data", "domain": "platypus.dev", "amount": 1000,
                "close_date": "2099-01-01"})  # fmt: skip
        run(config, "push", password=box.password)
        listed = run(
            config, "registrations", "list", "--status", "Submitted", password=box.password
        )
        assert "Platypus Data" in listed.output
        with Mirror.open(config) as mirror:
            reg = next(
                r for r in mirror.registrations().recent() if r["company"] == "Platypus Data"
            )
        shown = run(config, "registrations", "show", reg["id"], password=box.password)
        assert "verdict" in shown.output and "platypus.dev" in shown.output
        approved = run(config, "registrations", "approve", reg["id"], password=box.password)
        assert approved.exit_code == 0 and "opportunity" in approved.output
        run(config, "push", password=box.password)
        assert box.get("Deal_Registration__c", reg["id"])["Status__c"] == "Approved"
        rejected = run(config, "registrations", "reject", reg["id"], "--reason", "late",
                       password=box.password)  # fmt: skip
        assert rejected.exit_code == 1 and "already approved" in rejected.output
        assert "expired" in run(config, "registrations", "expire", password=box.password).output
    finally:
        os.environ.pop("SANDBOX_PASSWORD", None)


@pytest.mark.parametrize("crm", ["salesforce", "hubspot", "dynamics"])
def test_the_demo_runs_on_every_crm(tmp_path, crm, caplog) -> None:
    db = tmp_path / f"{crm}.db"
    result = CliRunner().invoke(
        main, ["demo", "--crm", crm, "--size", "tiny", "--db", str(db)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output[-2000:]
    assert db.exists() and "done" in result.output
    # the deliberate refusal is no failure: nothing warns
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
