"""``prm-mirror demo --crm hubspot``: a seeded HubSpot sandbox mirrored into SQLite.

Everything goes through the real paths: hubspot-api-client over HTTP to the sandbox (with its
rate limits), the engine's sync into the store, partner slices through ``PartnerView``, and
plain SQL on the mirror tables afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mirror import AccessDenied, Mirror, MirrorConfig, PartnerView, parse_config
from prm_demo.salesforce import print_edits, print_feed, print_runs, quiet_audit
from sandboxes.hubspot.sandbox import HubSpotSandbox

SLICE_OBJECTS = ["deals", "companies", "contacts", "line_items", "deal_registrations"]


def hubspot_demo_config(database: str, box: HubSpotSandbox) -> MirrorConfig:
    """The config that mirrors ``box`` into ``database``."""
    return parse_config(
        {
            "store": {"database": database},
            "sources": {
                "hubspot": {
                    "crm": "hubspot",
                    "access_token": box.access_token,
                    "host": box.base_url,
                }
            },
        }
    )


def run_hubspot_demo(
    console: Console, db_path: Path, workdir: Path, size: str | int, seed: int
) -> None:
    """Run the whole demo, printing as it goes."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    console.rule("1. a seeded HubSpot sandbox")
    with HubSpotSandbox(workdir / "sandbox.db", seed=seed, size=size) as box:
        console.print(f"serving the HubSpot CRM API on {box.base_url}")
        with Mirror.open(hubspot_demo_config(f"sqlite:///{db_path}", box)) as mirror:
            console.rule("2. backfill into SQLite, partner access kept as it goes")
            print_runs(console, mirror.sync())
            partners = sorted(mirror.partners(), key=lambda p: -p["slice"].get("deals", 0))
            _print_partners(console, partners)
            first, other = partners[0]["id"], partners[1]["id"]
            console.rule(f"3. the portal, as partner company {first}")
            _show_partner(console, mirror, first, other)
            console.rule("4. the sales team edits HubSpot; an incremental sync follows")
            view = mirror.as_partner(first)
            cursor = view.changes().cursor
            print_edits(console, _edit_crm(box, view, first, other), "HubSpot")
            print_runs(console, mirror.sync())
            print_feed(
                console,
                view.changes(since=cursor).changes,
                ("hs_lastmodifieddate", "lastmodifieddate", "hs_forecast_amount"),
            )
    console.rule("done")
    console.print(f"The mirror is in [bold]{db_path}[/bold]; query it with plain SQL, e.g.")
    console.print(
        f'  sqlite3 {db_path} \'SELECT "dealname", "dealstage", "amount" '
        "FROM hubspot__deals LIMIT 5'"
    )


def _edit_crm(box: HubSpotSandbox, view: PartnerView, first: str, other: str) -> list[str]:
    mine = [r["hs_object_id"] for r in view.select("deals", fields=["hs_object_id"], limit=3)]
    one, two, three = mine
    box.update("deals", one, {"amount": 125000, "dealstage": "contractsent"})
    box.dissociate("deals", two, "companies", first, label="Partner")
    box.associate("deals", two, "companies", other, label="Partner")
    box.update("deals", two, {"hs_next_step": "handed to another partner"})
    box.delete("deals", three)
    return [
        f"deal {one}: amount -> 125000, dealstage -> contractsent",
        f"deal {two}: Partner association moved to company {other}",
        f"deal {three}: archived",
    ]


def _show_partner(console: Console, mirror: Mirror, partner: str, other: str) -> None:
    view = mirror.as_partner(partner)
    rows = view.select(
        "deals",
        fields=["hs_object_id", "dealname", "dealstage", "amount", "closedate"],
        order_by="-amount",
        limit=5,
    )
    table = Table(
        "id", "dealname", "dealstage", "amount", "closedate",
        title=f"top 5 of {view.count('deals')} deals in the slice",
    )  # fmt: skip
    for row in rows:
        table.add_row(
            row["hs_object_id"], row["dealname"], row["dealstage"], f"{row['amount'] or 0:,.0f}",
            str(row["closedate"]),
        )  # fmt: skip
    console.print(table)
    foreign = mirror.as_partner(other).select("deals", fields=["hs_object_id"], limit=1)[0]
    try:
        with quiet_audit():
            view.get("deals", foreign["hs_object_id"])
    except AccessDenied as exc:
        console.print(
            f"another partner's deal {foreign['hs_object_id']}: [red]refused[/red] ({exc})"
        )
    customer = view.select(
        "companies", where={"prm_is_partner": False}, fields=["hs_object_id"], limit=1
    )[0]["hs_object_id"]
    console.print(f"why can this partner see end customer {customer}?")
    for reason in view.explain("companies", customer).reasons[:4]:
        console.print(f"  {reason}")


def _print_partners(console: Console, partners: list[dict[str, Any]]) -> None:
    table = Table("partner", *SLICE_OBJECTS, title=f"{len(partners)} partners and their slices")
    for row in partners[:8]:
        table.add_row(row["id"], *(str(row["slice"].get(o, 0)) for o in SLICE_OBJECTS))
    console.print(table)
