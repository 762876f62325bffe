"""The way back to the CRM: the ``outbox`` of portal edits, ``conflicts`` changed on both sides,
and ``diff`` of one record against the CRM."""

from __future__ import annotations

import os

import click
from rich.markup import escape
from rich.table import Table

from cli import output
from cli.app import main, open_mirror
from cli.output import emit_json, json_option, plain
from cli.read_commands import literal


@main.command()
@click.option("--failed", is_flag=True, help="Only writes the CRM refused.")
@click.option(
    "--status",
    default=None,
    type=click.Choice(["pending", "sending", "blocked", "done", "failed", "superseded"]),
)
@click.option("--limit", default=50, show_default=True)
@json_option
@click.pass_context
def outbox(ctx: click.Context, failed: bool, status: str | None, limit: int, as_json: bool) -> None:
    """Portal edits on their way to the CRM (newest first)."""
    with open_mirror(ctx) as mirror:
        entries = mirror.outbox("failed" if failed else status, limit)
        if as_json:
            emit_json({"entries": [{k: e[k] for k in OUTBOX_KEYS} for e in entries]})
            return
        table = Table("seq", "object", "record", "op", "status", "fields", "author", "error")
        for e in entries:
            fields = ", ".join(f"{k}={plain(v)}" for k, v in e["new_values"].items())
            table.add_row(
                str(e["seq"]), e["object"], e["crm_id"] or e["record_id"], e["op"], e["status"],
                fields[:60], e["author"] or "-", (e["error_message"] or "")[:60],
            )  # fmt: skip
        output.console.print(table)


OUTBOX_KEYS = (
    "seq", "source", "object", "record_id", "crm_id", "op", "status", "new_values",
    "old_values", "partner_id", "author", "attempts", "error_code", "error_message",
    "created_at", "updated_at",
)  # fmt: skip


@main.group(invoke_without_command=True)
@click.option("--all", "show_all", is_flag=True, help="Resolved conflicts too.")
@json_option
@click.pass_context
def conflicts(ctx: click.Context, show_all: bool, as_json: bool) -> None:
    """Fields changed on both sides (list them; `show` or `resolve` one)."""
    if ctx.invoked_subcommand is not None:
        return
    with open_mirror(ctx) as mirror:
        if as_json:
            emit_json({"conflicts": mirror.conflicts(None if show_all else "open")})
            return
        table = Table("id", "object", "record", "field", "portal", "crm", "policy", "status")
        for c in mirror.conflicts(None if show_all else "open"):
            table.add_row(
                str(c["id"]), c["object"], c["record_id"], c["field"], plain(c["portal"]),
                plain(c["crm"]), c["policy"], c["resolution"] or c["status"],
            )  # fmt: skip
        output.console.print(table)


@conflicts.command("show")
@click.argument("conflict_id", type=int)
@json_option
@click.pass_context
def conflicts_show(ctx: click.Context, conflict_id: int, as_json: bool) -> None:
    """Everything about one conflict."""
    with open_mirror(ctx) as mirror:
        found = [c for c in mirror.conflicts(None) if c["id"] == conflict_id]
        if not found:
            raise click.ClickException(f"no conflict {conflict_id}")
        if as_json:
            emit_json(found[0])
            return
        for key, value in found[0].items():
            output.console.print(f"{key:>15}: {escape(plain(value))}")


@conflicts.command("resolve")
@click.argument("conflict_id", type=int)
@click.option("--take", type=click.Choice(["crm", "portal", "value"]), required=True)
@click.option("--value", default=None, help="With --take value: the value to write.")
@click.option("--by", default=lambda: os.environ.get("USER"), help="Who resolves it.")
@click.pass_context
def conflicts_resolve(
    ctx: click.Context, conflict_id: int, take: str, value: str | None, by: str | None
) -> None:
    """Resolve a parked conflict (then `prm-mirror push` sends the chosen value)."""
    if take == "value" and value is None:
        raise click.BadParameter("--take value needs --value")
    with open_mirror(ctx) as mirror:
        done = mirror.resolve_conflict(conflict_id, take, literal(value) if value else None, by)
        output.console.print(
            f"conflict {conflict_id}: {done['field']} = {done['value']!r} ({take})"
        )


@main.command()
@click.argument("object_name")
@click.argument("record_id")
@json_option
@click.pass_context
def diff(ctx: click.Context, object_name: str, record_id: str, as_json: bool) -> None:
    """Compare one record in the mirror with the CRM (changes nothing)."""
    with open_mirror(ctx) as mirror:
        result = mirror.diff(object_name, record_id)
        if as_json:
            fields = {n: {"mirror": m, "crm": c} for n, (m, c) in result["fields"].items()}
            emit_json({"object": object_name, "record_id": record_id, **result, "fields": fields})
            return
        output.console.print(f"in mirror: {result['in_mirror']}, in CRM: {result['in_crm']}")
        table = Table("field", "mirror", "CRM")
        for name, (mine, theirs) in result["fields"].items():
            table.add_row(name, escape(plain(mine)), escape(plain(theirs)))
        output.console.print(table if result["fields"] else "no field differs")
        for entry in result["pending"]:
            output.console.print(
                f"pending portal edit #{entry['seq']} ({entry['status']}): "
                f"{escape(plain(entry['values']))}"
            )
