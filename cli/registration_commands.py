"""``registrations``: deal registrations partners submitted: list, show with every match,
probing partners, approve, reject, expire."""

from __future__ import annotations

import os
from typing import Any

import click
from rich.table import Table

from cli import output
from cli.app import main, open_mirror
from cli.output import emit_json, json_option
from mirror import Mirror


@main.group()
def registrations() -> None:
    """Deal registrations: list, show (with conflicts), approve, reject, expire."""


def _registrations(mirror: Mirror) -> Any:
    found = mirror.registrations()
    if found is None:
        raise click.ClickException("this CRM's schema configures no deal registration")
    return found


@registrations.command("list")
@click.option(
    "--status", default=None, type=click.Choice(["Submitted", "Approved", "Rejected", "Expired"])
)
@json_option
@click.pass_context
def registrations_list(ctx: click.Context, status: str | None, as_json: bool) -> None:
    """Registrations, newest first."""
    with open_mirror(ctx) as mirror:
        regs = _registrations(mirror)
        rows = regs.recent(status)
        if as_json:
            emit_json({"registrations": rows})
            return
        columns = ("id", "partner", "company", "status", "verdict", "opportunity")
        table = Table(*columns)
        for r in rows:
            table.add_row(*(str(r.get(k) or "-") for k in columns))
        output.console.print(table)


@registrations.command("show")
@click.argument("registration_id")
@click.pass_context
def registrations_show(ctx: click.Context, registration_id: str) -> None:
    """One registration with every match: other partners' deals and the open pipeline."""
    with open_mirror(ctx) as mirror:
        detail = _registrations(mirror).show(registration_id)
        for key, value in detail["registration"].items():
            if not key.startswith("_") and value is not None:
                output.console.print(f"{key:>22}: {value}")
        output.console.print(
            f"verdict: [bold]{detail['verdict']}[/bold] (score {detail['score']:.2f})"
        )
        probing = detail["probing"]
        output.console.print(
            f"this partner registered this customer {probing['attempts']} time(s) recently "
            f"({probing['refused']} refused)"
        )
        table = Table("kind", "id", "partner", "company", "score", "reasons")
        for m in detail["matches"]:
            table.add_row(
                m["kind"],
                m["id"],
                m["partner"] or "direct",
                m["company"],
                f"{m['score']:.2f}",
                "; ".join(m["reasons"]),
            )
        output.console.print(table)


@registrations.command("probes")
@click.option("--at-least", default=2, show_default=True, help="Attempts per customer.")
@click.pass_context
def registrations_probes(ctx: click.Context, at_least: int) -> None:
    """Customers one partner registered repeatedly (refused attempts counted)."""
    with open_mirror(ctx) as mirror:
        table = Table("partner", "company", "domain", "attempts", "refused", "last")
        for p in _registrations(mirror).probes(at_least):
            row = (p["partner"], p["company"], p["domain"], p["attempts"], p["refused"], p["last"])
            table.add_row(*(str(v or "-") for v in row))
        output.console.print(table)


@registrations.command("approve")
@click.argument("registration_id")
@click.option("--by", default=lambda: os.environ.get("USER"), help="Who approves it.")
@click.pass_context
def registrations_approve(ctx: click.Context, registration_id: str, by: str | None) -> None:
    """Approve: one opportunity attributed to the partner (then `prm-mirror push`)."""
    with open_mirror(ctx) as mirror:
        opportunity = _registrations(mirror).approve(registration_id, by=by)
        output.console.print(f"approved; opportunity {opportunity} (pushed by `prm-mirror push`)")


@registrations.command("reject")
@click.argument("registration_id")
@click.option("--reason", required=True, help="What the partner is told.")
@click.option("--by", default=lambda: os.environ.get("USER"), help="Who rejects it.")
@click.pass_context
def registrations_reject(
    ctx: click.Context, registration_id: str, reason: str, by: str | None
) -> None:
    """Reject with a reason."""
    with open_mirror(ctx) as mirror:
        _registrations(mirror).reject(registration_id, reason, by=by)
        output.console.print("rejected (pushed by `prm-mirror push`)")


@registrations.command("expire")
@click.pass_context
def registrations_expire(ctx: click.Context) -> None:
    """Expire submitted registrations with no progress for `expire_after_days`."""
    with open_mirror(ctx) as mirror:
        expired = _registrations(mirror).expire()
        output.console.print(f"{len(expired)} registration(s) expired")
