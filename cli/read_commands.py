"""Looking at the mirror: ``status``, ``partners``, ``query`` as a partner sees it, and ``explain``
why a record is or is not in a partner's slice."""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Any

import click
from rich.table import Table

from cli import output
from cli.app import main, open_mirror
from cli.output import emit_csv, emit_json, json_option
from mirror import MAX_PAGE, FieldType, Mirror, ObjectSpec


@main.command()
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Per object: phase, cursor, rows, rejects and the last run; each change stream's state."""
    with open_mirror(ctx) as mirror:
        if as_json:
            emit_json(_status_document(mirror))
            return
        table = Table("object", "phase", "cursor", "rows", "deleted", "rejects", "last run")
        for s in mirror.status(unsynced=True):
            last = (
                f"{s.last_run_status} {s.last_run_at:%Y-%m-%d %H:%M:%S}" if s.last_run_at else "-"
            )
            if s.last_error:
                last += f" ({s.last_error[:60]})"
            table.add_row(
                f"{s.source}.{s.object}",
                (s.phase or "never synced") + (" (slices pending)" if s.slices_pending else ""),
                s.cursor or "-",
                str(s.rows),
                str(s.deleted),
                str(s.rejects),
                last,
            )
        output.console.print(table)
        queue = mirror.queue_summary()
        waiting = sum(queue.get(k, 0) for k in ("pending", "sending", "blocked"))
        output.console.print(
            f"outbox: {waiting} waiting ({queue.get('blocked', 0)} blocked), "
            f"{queue.get('failed', 0)} failed, {queue.get('done', 0)} done; "
            f"open conflicts: {queue['conflicts']}"
        )
        streams = mirror.stream_status()
        if streams:
            output.console.print(_stream_table(streams))


def _stream_table(streams: list[Any]) -> Table:
    """Each change stream: state, replay position, last event, lag, inbox and counters."""
    table = Table(
        "stream", "state", "position", "last event", "lag", "waiting", "received/applied", "gaps"
    )
    for s in streams:
        state = s.state + (f" ({s.detail[:60]})" if s.detail else "")
        last = f"{s.last_event_at:%Y-%m-%d %H:%M:%S}" if s.last_event_at else "-"
        lag = f"{s.lag_seconds:.1f} s" if s.lag_seconds is not None else "-"
        gaps = str(s.gaps) + (f" (last: {s.last_gap_reason[:60]})" if s.last_gap_reason else "")
        if s.polls_requested:
            gaps += f"; polling {', '.join(s.polls_requested)}"
        table.add_row(
            s.source,
            state,
            s.position or "-",
            last,
            lag,
            str(s.waiting),
            f"{s.received}/{s.applied}",
            gaps,
        )
    return table


def _status_document(mirror: Mirror) -> dict[str, Any]:
    queue = mirror.queue_summary()
    return {
        "objects": [asdict(s) for s in mirror.status(unsynced=True)],
        "outbox": {
            k: queue.get(k, 0)
            for k in ("pending", "sending", "blocked", "failed", "done", "superseded")
        },
        "open_conflicts": queue["conflicts"],
        "streams": [asdict(s) for s in mirror.stream_status()],
    }


@main.command()
@click.option("--source", default=None, help="Source name (when several are configured).")
@json_option
@click.pass_context
def partners(ctx: click.Context, source: str | None, as_json: bool) -> None:
    """Partners with the size of their slice per object."""
    with open_mirror(ctx) as mirror:
        rows = mirror.partners(source)
        if as_json:
            emit_json({"partners": [{k: r[k] for k in ("id", "name", "slice")} for r in rows]})
            return
        objects = sorted({name for row in rows for name in row["slice"]})
        table = Table("partner", "id", *objects)
        for row in rows:
            table.add_row(row["name"], row["id"], *(str(row["slice"].get(o, 0)) for o in objects))
        output.console.print(table)


@main.command()
@click.option("--partner", required=True, help="The partner's CRM id.")
@click.option("--user", default=None, help="View as this partner user.")
@click.option("--role", type=click.Choice(["admin", "rep"]), default=None)
@click.option(
    "--where",
    "conditions",
    multiple=True,
    help="Field=Value, Field>=N, Field~Pat%; repeat for more (all apply, on one field too).",
)
@click.option("--fields", default=None, help="Comma-separated fields to show.")
@click.option("--order", default=None, help="Field to order by; -Field for descending.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, MAX_PAGE))
@json_option
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (a header, then the rows).")
@click.argument("object_name")
@click.pass_context
def query(
    ctx: click.Context,
    partner: str,
    user: str | None,
    role: str | None,
    conditions: tuple[str, ...],
    fields: str | None,
    order: str | None,
    limit: int,
    as_json: bool,
    as_csv: bool,
    object_name: str,
) -> None:
    """Query OBJECT_NAME as a partner sees it."""
    if as_json and as_csv:
        raise click.UsageError("--json and --csv exclude each other")
    with open_mirror(ctx) as mirror:
        view = mirror.as_partner(partner, user, role=role)
        where: dict[str, list[tuple[str, Any]]] = {}
        for name, condition in map(parse_condition, conditions):
            where.setdefault(name, []).append(condition)
        if not any(p["id"] == partner for p in mirror.partners(view.source)):
            raise click.BadParameter(
                f"{partner!r} is not a partner of the mirror", param_hint="--partner"
            )
        chosen = fields.split(",") if fields else None
        rows = view.select(object_name, where=where, fields=chosen, order_by=order, limit=limit)
        total = view.count(object_name, where=where)
        if chosen:
            columns = chosen
        else:
            spec = mirror.store.mirrored(view.source, object_name).spec
            columns = _default_columns(spec, [*where, (order or "").lstrip("-")], rows)
        if as_json:
            shown = [{c: row[c] for c in columns} for row in rows]
            emit_json({"object": object_name, "total": total, "columns": columns, "rows": shown})
            return
        if as_csv:
            emit_csv(columns, rows)
            return
        table = Table(*columns, title=f"{object_name}: {len(rows)} of {total}")
        for row in rows:
            table.add_row(*("" if row[c] is None else str(row[c]) for c in columns))
        output.console.print(table)


NAME_COLUMNS = 3


def _default_columns(spec: ObjectSpec, asked: list[str], rows: list[dict[str, Any]]) -> list[str]:
    """What ``query`` shows without ``--fields``: the key, the object's first few name fields,
    its partner field and the fields the query filters or orders by (all of them, every column,
    are one ``--fields`` away)."""
    texts = (FieldType.STRING, FieldType.TEXT)
    names = [f.name for f in spec.fields if f.type in texts and f.name.lower().endswith("name")]
    wanted = [spec.key, *names[:NAME_COLUMNS], spec.partner_field or "", *asked]
    present = set(rows[0]) if rows else set(spec.field_names)
    return [name for name in dict.fromkeys(wanted) if name and name in present]


CONDITION = re.compile(r"^(\w+)\s*(!=|>=|<=|=|<|>|~)\s*(.*)$")
OPERATORS = {"~": "like"}


def parse_condition(text: str) -> tuple[str, tuple[str, Any]]:
    match = CONDITION.match(text)
    if not match:
        raise click.BadParameter(f"{text!r}: write Field=Value, Field>=N or Field~Pattern%")
    name, operator, raw = match.groups()
    return name, (OPERATORS.get(operator, operator), literal(raw))


def literal(raw: str) -> Any:
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for convert in (int, float):
        try:
            return convert(raw)
        except ValueError:
            continue
    return raw


@main.command()
@click.option("--partner", required=True, help="The partner's CRM id.")
@click.option("--user", default=None, help="Explain for this partner user.")
@json_option
@click.argument("object_name")
@click.argument("record_id")
@click.pass_context
def explain(
    ctx: click.Context,
    partner: str,
    user: str | None,
    as_json: bool,
    object_name: str,
    record_id: str,
) -> None:
    """Say why RECORD_ID is (or is not) in the partner's slice."""
    with open_mirror(ctx) as mirror:
        explanation = mirror.explain(partner, object_name, record_id, user)
        if as_json:
            emit_json({
                "object": object_name, "record_id": record_id, "partner": partner, "user": user,
                "visible": explanation.visible, "reasons": list(explanation.reasons),
            })  # fmt: skip
            return
        verdict = "[green]visible[/green]" if explanation.visible else "[red]not visible[/red]"
        output.console.print(f"{object_name} {record_id}: {verdict}")
        for reason in explanation.reasons:
            output.console.print(f"  {reason}")
