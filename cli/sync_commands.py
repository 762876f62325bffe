"""Moving data: ``backfill``, ``sync`` and ``sweep`` pull from the CRM, ``push`` sends portal edits
back; progress while they run and a table of what each run did."""

from __future__ import annotations

import click
from rich.table import Table

from cli import output
from cli.app import main, open_mirror
from cli.progress import sync_progress
from mirror import RunResult


@main.command()
@click.option("--object", "objects", multiple=True, help="Only this object (repeatable).")
@click.option("--restart", is_flag=True, help="Forget the checkpoint and read everything anew.")
@click.pass_context
def backfill(ctx: click.Context, objects: tuple[str, ...], restart: bool) -> None:
    """Backfill objects (an interrupted backfill resumes where it stopped)."""
    with open_mirror(ctx) as mirror:
        if not restart:
            for s in mirror.status():
                if s.phase == "incremental" and (not objects or s.object in objects):
                    output.console.print(
                        f"{s.source}.{s.object}: backfilled already, so this reads only what "
                        "changed since; --restart reads everything anew"
                    )
        with sync_progress(output.console) as progress:
            results = mirror.backfill(objects or None, restart=restart, progress=progress)
    _print_results(results)


@main.command()
@click.option("--object", "objects", multiple=True, help="Only this object (repeatable).")
@click.pass_context
def sync(ctx: click.Context, objects: tuple[str, ...]) -> None:
    """Bring the mirror up to date (backfilling objects never synced)."""
    with open_mirror(ctx) as mirror, sync_progress(output.console) as progress:
        results = mirror.sync(objects or None, progress=progress)
    _print_results(results)


@main.command()
@click.option("--object", "objects", multiple=True, help="Only this object (repeatable).")
@click.pass_context
def sweep(ctx: click.Context, objects: tuple[str, ...]) -> None:
    """Find records deleted in the CRM that it no longer reports, and mark them deleted."""
    with open_mirror(ctx) as mirror:
        for name, count in mirror.sweep(objects or None).items():
            output.console.print(f"{name}: {count} marked deleted")


@main.command()
@click.pass_context
def push(ctx: click.Context) -> None:
    """Send pending portal edits to the CRM."""
    with open_mirror(ctx) as mirror:
        table = Table("source", "sent", "done", "retrying", "blocked", "failed", "API calls")
        for source, r in mirror.push().items():
            table.add_row(
                source, str(r.sent), str(r.done), str(r.retried), str(r.blocked), str(r.failed),
                str(r.api_calls),
            )  # fmt: skip
            for error in r.errors[:20]:
                output.console.print(f"[red]failed[/red] {error}")
        output.console.print(table)


def _print_results(results: list[RunResult]) -> None:
    table = Table(
        "object", "run", "pages", "new", "changed", "same", "deleted", "rejected", "calls"
    )
    for r in results:
        t = r.totals
        table.add_row(
            f"{r.source}.{r.object}",
            r.kind,
            str(r.pages),
            str(t.inserted),
            str(t.updated),
            str(t.unchanged),
            str(t.deleted + r.swept),
            str(t.rejected),
            str(r.api_calls),
        )
    output.console.print(table)
