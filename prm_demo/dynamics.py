"""``prm-mirror demo --crm dynamics``: a seeded Dataverse sandbox mirrored into SQLite.

Everything goes through the real paths: msal client credentials against the sandbox's Entra ID,
the Dataverse Web API over HTTP with change tracking, the engine's sync into the store, and
partner slices read back through ``PartnerView``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mirror import AccessDenied, Mirror, MirrorConfig, PartnerView, parse_config
from prm_demo.salesforce import print_feed, print_runs, quiet_audit
from sandboxes.dynamics.sandbox import DynamicsSandbox

SLICE_OBJECTS = ("opportunity", "account", "contact", "lead", "prm_dealregistration")


def demo_config(database: str, box: DynamicsSandbox) -> MirrorConfig:
    """The config that mirrors ``box`` into ``database``."""
    return parse_config(
        {"store": {"database": database}, "sources": {"dynamics": box.source_settings()}}
    )


def run_demo(console: Console, db_path: Path, workdir: Path, size: str | int, seed: int) -> None:
    """Run the whole demo, printing as it goes."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    console.rule("1. a seeded Dynamics 365 sandbox")
    with DynamicsSandbox(workdir / "dataverse.db", seed=seed, size=size) as box:
        console.print(f"serving Entra ID and the Dataverse Web API on {box.base_url}")
        with Mirror.open(demo_config(f"sqlite:///{db_path}", box)) as mirror:
            console.rule("2. backfill through change tracking, partner access kept as it goes")
            print_runs(console, mirror.sync())
            partners = _ranked_partners(mirror)
            _print_partners(console, partners)
            first, other = partners[0]["id"], partners[1]["id"]
            console.rule(f"3. the portal, as partner {partners[0]['name']}")
            _show_partner(console, mirror, first, other)
            console.rule("4. the sales team edits Dynamics; a delta sync follows")
            view = mirror.as_partner(first)
            cursor = view.changes().cursor
            for line in _edit_crm(box, view, other):
                console.print(f"  Dynamics: {line}")
            print_runs(console, mirror.sync())
            print_feed(console, view.changes(since=cursor).changes, ("modifiedon", "versionnumber"))
    console.rule("done")
    console.print(f"The mirror is in [bold]{db_path}[/bold]; query it with plain SQL, e.g.")
    console.print(
        f"  sqlite3 {db_path} 'SELECT name, stepname, estimatedvalue FROM dynamics__opportunity "
        "LIMIT 5'"
    )


def _ranked_partners(mirror: Mirror) -> list[dict[str, Any]]:
    # each partner comes with its account's name (the schema's partners.name_field)
    return sorted(mirror.partners(), key=lambda p: -p["slice"].get("opportunity", 0))


def _edit_crm(box: DynamicsSandbox, view: PartnerView, other: str) -> list[str]:
    mine = [r["opportunityid"] for r in view.select("opportunity", fields=["opportunityid"],
                                                    limit=3)]  # fmt: skip
    box.advance_clock(60)
    first, second, third = mine
    box.update("opportunity", first, {"estimatedvalue": 125000.0, "stepname": "3-Propose"})
    box.update("opportunity", second, {"_prm_partneraccountid_value": other})
    box.delete("opportunity", third)
    return [
        f"opportunity {first}: estimatedvalue -> 125000, stepname -> 3-Propose",
        f"opportunity {second}: moved to partner {other}",
        f"opportunity {third}: deleted",
    ]


def _show_partner(console: Console, mirror: Mirror, partner: str, other: str) -> None:
    view = mirror.as_partner(partner)
    columns = ["opportunityid", "name", "stepname", "estimatedvalue", "estimatedclosedate"]
    rows = view.select("opportunity", fields=columns, order_by="-estimatedvalue", limit=5)
    table = Table(*columns, title=f"top 5 of {view.count('opportunity')} opportunities")
    for row in rows:
        table.add_row(
            row["opportunityid"], row["name"], row["stepname"] or "",
            f"{row['estimatedvalue'] or 0:,.0f}", str(row["estimatedclosedate"]),
        )  # fmt: skip
    console.print(table)
    theirs = mirror.as_partner(other).select("opportunity", fields=["opportunityid"], limit=1)
    try:
        with quiet_audit():
            view.get("opportunity", theirs[0]["opportunityid"])
    except AccessDenied as exc:
        console.print(f"another partner's deal: [red]refused[/red] ({exc})")
    customers = view.select("account", where={"prm_ispartner": False}, fields=["accountid"],
                            limit=1)  # fmt: skip
    if customers:
        account = customers[0]["accountid"]
        console.print(f"why can this partner see end customer {account}?")
        for reason in view.explain("account", account).reasons[:4]:
            console.print(f"  {reason}")


def _print_partners(console: Console, partners: list[dict[str, Any]]) -> None:
    table = Table("partner", "id", *SLICE_OBJECTS, title=f"{len(partners)} partners")
    for row in partners[:8]:
        table.add_row(row["name"], row["id"], *(str(row["slice"].get(o, 0)) for o in SLICE_OBJECTS))
    console.print(table)
