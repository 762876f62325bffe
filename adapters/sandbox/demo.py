"""``prm-mirror demo``: a seeded Salesforce sandbox mirrored into SQLite, partner slices shown.

Everything here goes through the real paths: simple-salesforce over HTTP to the sandbox, the
engine's sync into the store, and plain SQL on the mirror tables afterwards.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, text

from adapters.sandbox.salesforce import SalesforceSandbox
from mirror import Mirror
from mirror.config import MirrorConfig, parse_config

PARTNER_SLICES = text(
    """
    SELECT p."Id" AS id, p."Name" AS name,
           COUNT(o."Id") AS opportunities,
           COALESCE(SUM(CASE WHEN o."IsClosed" = 0 THEN o."Amount" END), 0) AS open_pipeline,
           (SELECT COUNT(*) FROM salesforce__deal_registration__c r
             WHERE r."Partner_Account__c" = p."Id" AND r._deleted = 0) AS registrations
      FROM salesforce__account p
      LEFT JOIN salesforce__opportunity o
             ON o."PartnerAccountId" = p."Id" AND o._deleted = 0
     WHERE p."IsPartner" = 1 AND p._deleted = 0
     GROUP BY p."Id", p."Name"
     ORDER BY opportunities DESC, p."Name"
     LIMIT :limit
    """
)


def demo_config(database: str, box: SalesforceSandbox) -> MirrorConfig:
    """The config that mirrors ``box`` into ``database``."""
    return parse_config(
        {
            "store": {"database": database},
            "sources": {
                "salesforce": {
                    "crm": "salesforce",
                    "auth": "password",
                    "login_url": box.base_url,
                    "username": box.username,
                    "password": box.password,
                    "security_token": box.security_token,
                }
            },
        }
    )


def run_demo(console: Console, db_path: Path, workdir: Path, size: str | int, seed: int) -> None:
    """Run the whole demo, printing as it goes."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    console.rule("1. a seeded Salesforce sandbox")
    with SalesforceSandbox(workdir / "sandbox.db", seed=seed, size=size) as box:
        console.print(f"serving the Salesforce REST API on {box.base_url}")
        database = f"sqlite:///{db_path}"
        with Mirror.open(demo_config(database, box)) as mirror:
            console.rule("2. backfill into SQLite")
            _print_runs(console, mirror.sync())
            _print_slices(console, database)
            console.rule("3. the sales team edits the CRM; an incremental sync follows")
            _print_edits(console, _edit_crm(box))
            _print_runs(console, mirror.sync())
            _print_changes(console, database)
    console.rule("done")
    console.print(f"The mirror is in [bold]{db_path}[/bold]; query it with plain SQL, e.g.")
    console.print(
        f'  sqlite3 {db_path} \'SELECT "Name", "StageName", "Amount" '
        "FROM salesforce__opportunity LIMIT 5'"
    )


def _edit_crm(box: SalesforceSandbox) -> list[str]:
    opportunities = box.ids("Opportunity")
    partners = [a for a in box.ids("Account") if (box.get("Account", a) or {}).get("IsPartner")]
    box.advance_clock(60)
    first, second, third = opportunities[:3]
    box.update("Opportunity", first, {"Amount": 125000, "StageName": "Negotiation/Review"})
    box.update("Opportunity", second, {"PartnerAccountId": partners[-1]})
    box.delete("Opportunity", third)
    return [
        f"Opportunity {first}: Amount -> 125000, StageName -> Negotiation/Review",
        f"Opportunity {second}: moved to partner {partners[-1]}",
        f"Opportunity {third}: deleted",
    ]


def _print_runs(console: Console, results: list[Any]) -> None:
    table = Table("object", "run", "pages", "new", "changed", "deleted", "rejected", "API calls")
    for r in results:
        t = r.totals
        table.add_row(
            r.object,
            r.kind,
            str(r.pages),
            str(t.inserted),
            str(t.updated),
            str(t.deleted + r.swept),
            str(t.rejected),
            str(r.api_calls),
        )
    console.print(table)


def _print_slices(console: Console, database: str) -> None:
    engine = create_engine(database)
    with engine.connect() as conn:
        rows = conn.execute(PARTNER_SLICES, {"limit": 8}).all()
    engine.dispose()
    table = Table(
        "partner",
        "id",
        "opportunities",
        "open pipeline",
        "registrations",
        title="partner slices (top 8 by opportunities)",
    )
    for row in rows:
        table.add_row(
            row.name,
            row.id,
            str(row.opportunities),
            f"{row.open_pipeline:,.0f}",
            str(row.registrations),
        )
    console.print(table)


def _print_edits(console: Console, edits: list[str]) -> None:
    for edit in edits:
        console.print(f"  CRM: {edit}")


def _print_changes(console: Console, database: str) -> None:
    engine = create_engine(database)
    query = text(
        "SELECT object, record_id, op, fields FROM mirror_changes ORDER BY seq DESC LIMIT 10"
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    engine.dispose()
    table = Table("object", "record", "op", "fields (before -> after)", title="change feed")
    for row in rows:
        fields = json.loads(row.fields) if isinstance(row.fields, str) else row.fields
        shown = ", ".join(
            f"{k}: {v[0]!r} -> {v[1]!r}"
            for k, v in (fields or {}).items()
            if k not in ("SystemModstamp", "LastModifiedDate")
        )
        table.add_row(row.object, row.record_id, row.op, shown or "-")
    console.print(table)
