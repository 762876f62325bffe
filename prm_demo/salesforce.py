"""``prm-mirror demo``: a seeded Salesforce sandbox mirrored into SQLite, partner slices shown.

Everything here goes through the real paths: simple-salesforce over HTTP to the sandbox, the
engine's sync into the store, and plain SQL on the mirror tables afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mirror import AccessDenied, Mirror, MirrorConfig, PartnerView, parse_config
from sandboxes.salesforce.sandbox import SalesforceSandbox


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
        with Mirror.open(demo_config(f"sqlite:///{db_path}", box)) as mirror:
            console.rule("2. backfill into SQLite, partner access kept as it goes")
            print_runs(console, mirror.sync())
            partners = sorted(mirror.partners(), key=lambda p: -p["slice"].get("Opportunity", 0))
            _print_partners(console, partners)
            first, other = partners[0]["id"], partners[1]["id"]
            console.rule(f"3. the portal, as partner {partners[0]['name']}")
            _show_partner(console, mirror, first, other)
            console.rule("4. the sales team edits the CRM; an incremental sync follows")
            view = mirror.as_partner(first)
            cursor = view.changes().cursor
            print_edits(console, _edit_crm(box, view, other))
            print_runs(console, mirror.sync())
            print_feed(console, view.changes(since=cursor).changes)
    console.rule("done")
    console.print(f"The mirror is in [bold]{db_path}[/bold]; query it with plain SQL, e.g.")
    console.print(
        f'  sqlite3 {db_path} \'SELECT "Name", "StageName", "Amount" '
        "FROM salesforce__opportunity LIMIT 5'"
    )
    console.print("or as a partner: prm-mirror -c config/demo.toml query --partner ID Opportunity")


def _edit_crm(box: SalesforceSandbox, view: PartnerView, other: str) -> list[str]:
    mine = [r["Id"] for r in view.select("Opportunity", fields=["Id"], limit=3)]
    box.advance_clock(60)
    first, second, third = mine
    box.update("Opportunity", first, {"Amount": 125000, "StageName": "Negotiation/Review"})
    box.update("Opportunity", second, {"PartnerAccountId": other})
    box.delete("Opportunity", third)
    return [
        f"Opportunity {first}: Amount -> 125000, StageName -> Negotiation/Review",
        f"Opportunity {second}: moved to partner {other}",
        f"Opportunity {third}: deleted",
    ]


def _show_partner(console: Console, mirror: Mirror, partner: str, other: str) -> None:
    view = mirror.as_partner(partner)
    rows = view.select(
        "Opportunity",
        fields=["Id", "Name", "StageName", "Amount", "CloseDate"],
        order_by="-Amount",
        limit=5,
    )
    table = Table(
        "Id",
        "Name",
        "StageName",
        "Amount",
        "CloseDate",
        title=f"top 5 of {view.count('Opportunity')} opportunities in the slice",
    )
    for row in rows:
        table.add_row(
            row["Id"], row["Name"], row["StageName"], f"{row['Amount']:,.0f}", str(row["CloseDate"])
        )
    console.print(table)
    foreign = mirror.as_partner(other).select("Opportunity", fields=["Id"], limit=1)[0]["Id"]
    try:
        with quiet_audit():
            view.get("Opportunity", foreign)
    except AccessDenied as exc:
        console.print(f"another partner's deal {foreign}: [red]refused[/red] ({exc})")
        console.print("  (an application logs each refusal as a warning on `prm_mirror.access`)")
    account = view.select("Account", where={"IsPartner": False}, fields=["Id"], limit=1)[0]["Id"]
    console.print(f"why can this partner see end customer {account}?")
    for reason in view.explain("Account", account).reasons[:4]:
        console.print(f"  {reason}")


def print_runs(console: Console, results: list[Any]) -> None:
    """The sync results as a table."""
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


DEMO_PARTNERS_SHOWN = 8


@contextmanager
def quiet_audit() -> Iterator[None]:
    """The demos' deliberate refusal without the audit warning every refusal logs (which on
    a terminal reads like a failure of the demo)."""
    audit = logging.getLogger("prm_mirror.access")
    level = audit.level
    audit.setLevel(logging.ERROR)
    try:
        yield
    finally:
        audit.setLevel(level)


def _print_partners(console: Console, partners: list[dict[str, Any]]) -> None:
    objects = ["Opportunity", "Account", "Contact", "OpportunityLineItem", "Deal_Registration__c"]
    shown = partners[:DEMO_PARTNERS_SHOWN]
    title = f"{len(partners)} partners and their slices"
    if len(shown) < len(partners):
        title = f"{title} (the first {len(shown)}; `prm-mirror partners` lists every one)"
    table = Table("partner", "id", *objects, title=title)
    for row in shown:
        table.add_row(row["name"], row["id"], *(str(row["slice"].get(o, 0)) for o in objects))
    console.print(table)


def print_edits(console: Console, edits: list[str], crm: str = "CRM") -> None:
    """The edits made in the CRM."""
    for edit in edits:
        console.print(f"  {crm}: {edit}")


def print_feed(
    console: Console,
    changes: list[dict[str, Any]],
    skip: tuple[str, ...] = ("SystemModstamp", "LastModifiedDate"),
) -> None:
    """A partner's change feed, without the system fields in ``skip``."""
    table = Table("object", "record", "op", "fields (before -> after)", title="the partner's feed")
    for change in changes[:12]:
        fields = change["fields"] or {}
        shown = ", ".join(f"{k}: {v[0]!r} -> {v[1]!r}" for k, v in fields.items() if k not in skip)
        table.add_row(change["object"], change["record_id"], change["op"], shown or "-")
    console.print(table)
