"""``access``: the partner access table: install PostgreSQL row-level security for a portal role,
or rebuild the table from scratch and say whether it agreed."""

from __future__ import annotations

import click

from cli import output
from cli.app import main, open_mirror


@main.group()
def access() -> None:
    """The partner access table."""


@access.command("grant")
@click.option("--role", required=True, help="The portal's PostgreSQL role (not the owner).")
@click.option("--source", default=None, help="Source name (when several are configured).")
@click.pass_context
def access_grant(ctx: click.Context, role: str, source: str | None) -> None:
    """Install row-level security and column grants for a portal role (PostgreSQL)."""
    with open_mirror(ctx) as mirror:
        report = mirror.install_partner_security(role, source)
        output.console.print(f"role {report.role} in schema {report.schema}:")
        output.console.print(f"  partner-sliced: {', '.join(report.sliced) or '-'}")
        output.console.print(f"  public: {', '.join(report.public) or '-'}")
        output.console.print(f"  denied: {', '.join(report.denied) or '-'}")
        if report.unmirrored:
            output.console.print(
                f"  not mirrored yet (run again after a sync): {', '.join(report.unmirrored)}"
            )
        output.console.print(
            "the portal sets its partner per transaction: SET LOCAL prm.partner_id = '...'"
        )


@access.command("rebuild")
@click.option("--source", default=None, help="Source name (when several are configured).")
@click.pass_context
def access_rebuild(ctx: click.Context, source: str | None) -> None:
    """Recompute partner access from scratch and report whether it agreed with the
    incrementally kept table."""
    with open_mirror(ctx) as mirror:
        before = mirror.access_rows(source)
        count = mirror.rebuild_access(source)
        after = mirror.access_rows(source)
        if before == after:
            output.console.print(f"[green]agrees[/green]: {count} grants, none changed")
        else:
            output.console.print(
                f"[yellow]repaired[/yellow]: {count} grants; {len(after - before)} added, "
                f"{len(before - after)} removed"
            )
