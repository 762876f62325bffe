"""``prm-mirror``: the command line, a thin shell over ``mirror.Mirror``.

It wires the config, the schemas and the adapters into the engine; everything it does, an
embedding app can do through ``Mirror`` too.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from mirror import Mirror, MirrorError
from mirror.config import ConfigError, load_config, secret_values
from mirror.portal.query_args import MAX_PAGE
from mirror.pull.pages import PageOutcome
from mirror.pull.sync import RunResult
from mirror.redaction import redacted, register
from mirror.resources import data_dir
from mirror.types import FieldType, ObjectSpec, Page

console = Console()
EXAMPLE_CONFIG = data_dir("config") / "example.toml"


def _config_path(ctx: click.Context) -> str:
    return str(ctx.obj["config"])


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document instead of a table."
)


def _json_default(value: Any) -> str:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def _emit_json(document: Any) -> None:
    """Print ``document`` as one JSON document on stdout: no markup, datetimes in ISO 8601,
    decimals and anything else JSON lacks as strings."""
    click.echo(json.dumps(document, default=_json_default, indent=2))


def _emit_csv(columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
    """Print ``rows`` as CSV with a header line (empty cells for nulls)."""
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(columns)
    out.writerows([["" if r[c] is None else _plain(r[c]) for c in columns] for r in rows])


def _plain(value: Any) -> str:
    """A value as a person reads it: ``-`` for null, ISO 8601 for datetimes, JSON for lists
    and mappings, the text itself for the rest (no Python reprs)."""
    if value is None:
        return "-"
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=_json_default)
    return str(value)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="prm-mirror", prog_name="prm-mirror")
@click.option(
    "-c",
    "--config",
    default=lambda: os.environ.get("PRM_MIRROR_CONFIG", "prm-mirror.toml"),
    show_default="prm-mirror.toml or $PRM_MIRROR_CONFIG",
    help="Config file.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log what the engine does.")
@click.pass_context
def main(ctx: click.Context, config: str, verbose: bool) -> None:
    """Mirror a CRM into a local database, partner by partner, both ways."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
    sys.excepthook = _redacted_traceback
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


def _redacted_traceback(kind: type[BaseException], error: BaseException, trace: Any) -> None:
    """An uncaught exception's traceback, printed with the config's secrets masked."""
    text = "".join(traceback.format_exception(kind, error, trace))
    sys.stderr.write(redacted(text))


@contextmanager
def _mirror(ctx: click.Context) -> Iterator[Mirror]:
    with _errors():
        mirror = Mirror.open(_config_path(ctx))
    try:
        with _errors():
            yield mirror
    finally:
        mirror.close()


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except ConfigError as exc:
        console.print(f"[red]{redacted(str(exc))}[/red]")
        sys.exit(2)
    except MirrorError as exc:
        console.print(f"[red]error:[/red] {redacted(str(exc))}")
        sys.exit(1)


@main.command()
@click.option("--path", default=None, help="Where to write it (default: the -c config file).")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.pass_context
def init(ctx: click.Context, path: str | None, force: bool) -> None:
    """Write a documented config file to start from."""
    target = Path(path or _config_path(ctx))
    if target.exists() and not force:
        raise click.ClickException(f"{target} exists; pass --force to overwrite it")
    target.write_text(EXAMPLE_CONFIG.read_text(encoding="utf-8"), encoding="utf-8")
    console.print(f"wrote {target}: set the SF_* environment variables, then `prm-mirror check`")


@main.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """Validate the config, log in to every CRM source and check the config against what it
    describes; lists every problem at once and writes nothing.

    Exits 0 when all is well, 2 when the config has problems, 1 when a source cannot log in.
    """
    from mirror.api import build_adapter
    from mirror.config_check import check_config

    with _errors():
        config = load_config(_config_path(ctx))
        register(secret_values(config))
        report = check_config(
            config, lambda name, s: build_adapter(s.crm, name, s.adapter_settings())
        )
    for source, problem in report.logins.items():
        if problem is None:
            console.print(f"[green]ok[/green]   {source}: logged in, objects and fields checked")
        else:
            console.print(
                f"[red]fail[/red] {source}: {escape(redacted(problem))}\n"
                f"     (could not log in: its objects and fields were not checked against the CRM)"
            )
    if report.problems:
        console.print(escape(str(ConfigError(report.problems))), style="red")
        sys.exit(2)
    if report.ok:
        console.print("config ok")
    else:
        console.print("config ok as far as it could be checked without the CRM")
        sys.exit(1)


@main.command()
@click.option("--object", "objects", multiple=True, help="Only this object (repeatable).")
@click.option("--restart", is_flag=True, help="Forget the checkpoint and read everything anew.")
@click.pass_context
def backfill(ctx: click.Context, objects: tuple[str, ...], restart: bool) -> None:
    """Backfill objects (an interrupted backfill resumes where it stopped)."""
    with _mirror(ctx) as mirror:
        if not restart:
            for s in mirror.status():
                if s.phase == "incremental" and (not objects or s.object in objects):
                    console.print(
                        f"{s.source}.{s.object}: backfilled already, so this reads only what "
                        "changed since; --restart reads everything anew"
                    )
        with _progress() as progress:
            results = mirror.backfill(objects or None, restart=restart, progress=progress)
    _print_results(results)


@main.command()
@click.option("--object", "objects", multiple=True, help="Only this object (repeatable).")
@click.pass_context
def sync(ctx: click.Context, objects: tuple[str, ...]) -> None:
    """Bring the mirror up to date (backfilling objects never synced)."""
    with _mirror(ctx) as mirror, _progress() as progress:
        results = mirror.sync(objects or None, progress=progress)
    _print_results(results)


@main.command()
@click.option("--object", "objects", multiple=True, help="Only this object (repeatable).")
@click.pass_context
def sweep(ctx: click.Context, objects: tuple[str, ...]) -> None:
    """Find records deleted in the CRM that it no longer reports, and mark them deleted."""
    with _mirror(ctx) as mirror:
        for name, count in mirror.sweep(objects or None).items():
            console.print(f"{name}: {count} marked deleted")


@main.command()
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Per object: phase, cursor, rows, rejects and the last run."""
    with _mirror(ctx) as mirror:
        if as_json:
            _emit_json(_status_document(mirror))
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
        console.print(table)
        queue = mirror.queue_summary()
        waiting = sum(queue.get(k, 0) for k in ("pending", "sending", "blocked"))
        console.print(
            f"outbox: {waiting} waiting ({queue.get('blocked', 0)} blocked), "
            f"{queue.get('failed', 0)} failed, {queue.get('done', 0)} done; "
            f"open conflicts: {queue['conflicts']}"
        )


def _status_document(mirror: Mirror) -> dict[str, Any]:
    queue = mirror.queue_summary()
    return {
        "objects": [asdict(s) for s in mirror.status(unsynced=True)],
        "outbox": {
            k: queue.get(k, 0)
            for k in ("pending", "sending", "blocked", "failed", "done", "superseded")
        },
        "open_conflicts": queue["conflicts"],
    }


@main.command()
@click.option("--source", default=None, help="Source name (when several are configured).")
@json_option
@click.pass_context
def partners(ctx: click.Context, source: str | None, as_json: bool) -> None:
    """Partners with the size of their slice per object."""
    with _mirror(ctx) as mirror:
        rows = mirror.partners(source)
        if as_json:
            _emit_json({"partners": [{k: r[k] for k in ("id", "name", "slice")} for r in rows]})
            return
        objects = sorted({name for row in rows for name in row["slice"]})
        table = Table("partner", "id", *objects)
        for row in rows:
            table.add_row(row["name"], row["id"], *(str(row["slice"].get(o, 0)) for o in objects))
        console.print(table)


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
    with _mirror(ctx) as mirror:
        view = mirror.as_partner(partner, user, role=role)
        where: dict[str, list[tuple[str, Any]]] = {}
        for name, condition in map(_condition, conditions):
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
            _emit_json({"object": object_name, "total": total, "columns": columns, "rows": shown})
            return
        if as_csv:
            _emit_csv(columns, rows)
            return
        table = Table(*columns, title=f"{object_name}: {len(rows)} of {total}")
        for row in rows:
            table.add_row(*("" if row[c] is None else str(row[c]) for c in columns))
        console.print(table)


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


_CONDITION = re.compile(r"^(\w+)\s*(!=|>=|<=|=|<|>|~)\s*(.*)$")
_OPERATORS = {"~": "like"}


def _condition(text: str) -> tuple[str, tuple[str, Any]]:
    match = _CONDITION.match(text)
    if not match:
        raise click.BadParameter(f"{text!r}: write Field=Value, Field>=N or Field~Pattern%")
    name, operator, raw = match.groups()
    return name, (_OPERATORS.get(operator, operator), _literal(raw))


def _literal(raw: str) -> Any:
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
    with _mirror(ctx) as mirror:
        explanation = mirror.explain(partner, object_name, record_id, user)
        if as_json:
            _emit_json({
                "object": object_name, "record_id": record_id, "partner": partner, "user": user,
                "visible": explanation.visible, "reasons": list(explanation.reasons),
            })  # fmt: skip
            return
        verdict = "[green]visible[/green]" if explanation.visible else "[red]not visible[/red]"
        console.print(f"{object_name} {record_id}: {verdict}")
        for reason in explanation.reasons:
            console.print(f"  {reason}")


@main.group()
def access() -> None:
    """The partner access table."""


@access.command("grant")
@click.option("--role", required=True, help="The portal's PostgreSQL role (not the owner).")
@click.option("--source", default=None, help="Source name (when several are configured).")
@click.pass_context
def access_grant(ctx: click.Context, role: str, source: str | None) -> None:
    """Install row-level security and column grants for a portal role (PostgreSQL)."""
    with _mirror(ctx) as mirror:
        report = mirror.install_partner_security(role, source)
        console.print(f"role {report.role} in schema {report.schema}:")
        console.print(f"  partner-sliced: {', '.join(report.sliced) or '-'}")
        console.print(f"  public: {', '.join(report.public) or '-'}")
        console.print(f"  denied: {', '.join(report.denied) or '-'}")
        if report.unmirrored:
            console.print(
                f"  not mirrored yet (run again after a sync): {', '.join(report.unmirrored)}"
            )
        console.print(
            "the portal sets its partner per transaction: SET LOCAL prm.partner_id = '...'"
        )


@access.command("rebuild")
@click.option("--source", default=None, help="Source name (when several are configured).")
@click.pass_context
def access_rebuild(ctx: click.Context, source: str | None) -> None:
    """Recompute partner access from scratch and report whether it agreed with the
    incrementally kept table."""
    with _mirror(ctx) as mirror:
        before = mirror.access_rows(source)
        count = mirror.rebuild_access(source)
        after = mirror.access_rows(source)
        if before == after:
            console.print(f"[green]agrees[/green]: {count} grants, none changed")
        else:
            console.print(
                f"[yellow]repaired[/yellow]: {count} grants; {len(after - before)} added, "
                f"{len(before - after)} removed"
            )


@main.command()
@click.pass_context
def push(ctx: click.Context) -> None:
    """Send pending portal edits to the CRM."""
    with _mirror(ctx) as mirror:
        table = Table("source", "sent", "done", "retrying", "blocked", "failed", "API calls")
        for source, r in mirror.push().items():
            table.add_row(
                source, str(r.sent), str(r.done), str(r.retried), str(r.blocked), str(r.failed),
                str(r.api_calls),
            )  # fmt: skip
            for error in r.errors[:20]:
                console.print(f"[red]failed[/red] {error}")
        console.print(table)


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
    with _mirror(ctx) as mirror:
        entries = mirror.outbox("failed" if failed else status, limit)
        if as_json:
            _emit_json({"entries": [{k: e[k] for k in OUTBOX_KEYS} for e in entries]})
            return
        table = Table("seq", "object", "record", "op", "status", "fields", "author", "error")
        for e in entries:
            fields = ", ".join(f"{k}={_plain(v)}" for k, v in e["new_values"].items())
            table.add_row(
                str(e["seq"]), e["object"], e["crm_id"] or e["record_id"], e["op"], e["status"],
                fields[:60], e["author"] or "-", (e["error_message"] or "")[:60],
            )  # fmt: skip
        console.print(table)


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
    with _mirror(ctx) as mirror:
        if as_json:
            _emit_json({"conflicts": mirror.conflicts(None if show_all else "open")})
            return
        table = Table("id", "object", "record", "field", "portal", "crm", "policy", "status")
        for c in mirror.conflicts(None if show_all else "open"):
            table.add_row(
                str(c["id"]), c["object"], c["record_id"], c["field"], _plain(c["portal"]),
                _plain(c["crm"]), c["policy"], c["resolution"] or c["status"],
            )  # fmt: skip
        console.print(table)


@conflicts.command("show")
@click.argument("conflict_id", type=int)
@json_option
@click.pass_context
def conflicts_show(ctx: click.Context, conflict_id: int, as_json: bool) -> None:
    """Everything about one conflict."""
    with _mirror(ctx) as mirror:
        found = [c for c in mirror.conflicts(None) if c["id"] == conflict_id]
        if not found:
            raise click.ClickException(f"no conflict {conflict_id}")
        if as_json:
            _emit_json(found[0])
            return
        for key, value in found[0].items():
            console.print(f"{key:>15}: {escape(_plain(value))}")


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
    with _mirror(ctx) as mirror:
        done = mirror.resolve_conflict(conflict_id, take, _literal(value) if value else None, by)
        console.print(f"conflict {conflict_id}: {done['field']} = {done['value']!r} ({take})")


@main.command()
@click.argument("object_name")
@click.argument("record_id")
@json_option
@click.pass_context
def diff(ctx: click.Context, object_name: str, record_id: str, as_json: bool) -> None:
    """Compare one record in the mirror with the CRM (changes nothing)."""
    with _mirror(ctx) as mirror:
        result = mirror.diff(object_name, record_id)
        if as_json:
            fields = {n: {"mirror": m, "crm": c} for n, (m, c) in result["fields"].items()}
            _emit_json({"object": object_name, "record_id": record_id, **result, "fields": fields})
            return
        console.print(f"in mirror: {result['in_mirror']}, in CRM: {result['in_crm']}")
        table = Table("field", "mirror", "CRM")
        for name, (mine, theirs) in result["fields"].items():
            table.add_row(name, escape(_plain(mine)), escape(_plain(theirs)))
        console.print(table if result["fields"] else "no field differs")
        for entry in result["pending"]:
            console.print(
                f"pending portal edit #{entry['seq']} ({entry['status']}): "
                f"{escape(_plain(entry['values']))}"
            )


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
    with _mirror(ctx) as mirror:
        regs = _registrations(mirror)
        rows = regs.recent(status)
        if as_json:
            _emit_json({"registrations": rows})
            return
        columns = ("id", "partner", "company", "status", "verdict", "opportunity")
        table = Table(*columns)
        for r in rows:
            table.add_row(*(str(r.get(k) or "-") for k in columns))
        console.print(table)


@registrations.command("show")
@click.argument("registration_id")
@click.pass_context
def registrations_show(ctx: click.Context, registration_id: str) -> None:
    """One registration with every match: other partners' deals and the open pipeline."""
    with _mirror(ctx) as mirror:
        detail = _registrations(mirror).show(registration_id)
        for key, value in detail["registration"].items():
            if not key.startswith("_") and value is not None:
                console.print(f"{key:>22}: {value}")
        console.print(f"verdict: [bold]{detail['verdict']}[/bold] (score {detail['score']:.2f})")
        probing = detail["probing"]
        console.print(
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
        console.print(table)


@registrations.command("probes")
@click.option("--at-least", default=2, show_default=True, help="Attempts per customer.")
@click.pass_context
def registrations_probes(ctx: click.Context, at_least: int) -> None:
    """Customers one partner registered repeatedly (refused attempts counted)."""
    with _mirror(ctx) as mirror:
        table = Table("partner", "company", "domain", "attempts", "refused", "last")
        for p in _registrations(mirror).probes(at_least):
            row = (p["partner"], p["company"], p["domain"], p["attempts"], p["refused"], p["last"])
            table.add_row(*(str(v or "-") for v in row))
        console.print(table)


@registrations.command("approve")
@click.argument("registration_id")
@click.option("--by", default=lambda: os.environ.get("USER"), help="Who approves it.")
@click.pass_context
def registrations_approve(ctx: click.Context, registration_id: str, by: str | None) -> None:
    """Approve: one opportunity attributed to the partner (then `prm-mirror push`)."""
    with _mirror(ctx) as mirror:
        opportunity = _registrations(mirror).approve(registration_id, by=by)
        console.print(f"approved; opportunity {opportunity} (pushed by `prm-mirror push`)")


@registrations.command("reject")
@click.argument("registration_id")
@click.option("--reason", required=True, help="What the partner is told.")
@click.option("--by", default=lambda: os.environ.get("USER"), help="Who rejects it.")
@click.pass_context
def registrations_reject(ctx: click.Context, registration_id: str, reason: str, by: str | None):
    """Reject with a reason."""
    with _mirror(ctx) as mirror:
        _registrations(mirror).reject(registration_id, reason, by=by)
        console.print("rejected (pushed by `prm-mirror push`)")


@registrations.command("expire")
@click.pass_context
def registrations_expire(ctx: click.Context) -> None:
    """Expire submitted registrations with no progress for `expire_after_days`."""
    with _mirror(ctx) as mirror:
        expired = _registrations(mirror).expire()
        console.print(f"{len(expired)} registration(s) expired")


DAEMON_EXIT_CODES = {"ok": 0, "config": 2, "some_failed": 3, "all_failed": 4}


@main.command()
@click.option("--once", is_flag=True, help="Run every sync and push once, then exit.")
@click.option("--worker-id", default=None, help="This worker's name (default: host-pid).")
@click.pass_context
def daemon(ctx: click.Context, once: bool, worker_id: str | None) -> None:
    """Run the scheduled syncs, pushes, sweeps and audits until SIGTERM.

    With --once (for cron) the exit code tells what happened: 0 every job ok, 2 the config is
    invalid (nothing ran), 3 some jobs failed, 4 every sync failed (nothing was mirrored, e.g.
    the CRM is unreachable or refuses the login).
    """
    from mirror.config_check import cron_problems
    from mirror.daemon import Daemon
    from mirror.observability import configure_logging

    with _errors():
        problems = cron_problems(load_config(_config_path(ctx)))
        if problems:
            raise ConfigError(problems)
    with _mirror(ctx) as mirror:
        if not once:
            configure_logging(mirror.config.daemon.log_format, secret_values(mirror.config))
        worker = Daemon(mirror, worker_id=worker_id)
        if not once:
            worker.run()
            return
        jobs = worker.run_once()["jobs"]
    for job, state in sorted(jobs.items()):
        outcome = "[red]failed[/red]" if "error" in state else "ok"
        detail = escape(state.get("error") or state.get("note") or "")
        console.print(f"{job}: {outcome} {detail}")
    sys.exit(DAEMON_EXIT_CODES[_once_outcome(jobs)])


def _once_outcome(jobs: dict[str, dict[str, Any]]) -> str:
    """``ok``, ``some_failed`` or ``all_failed`` (no sync job succeeded) for one round."""
    failed = {job for job, state in jobs.items() if "error" in state}
    if not failed:
        return "ok"
    syncs = {job for job in jobs if job.startswith("sync:")}
    return "all_failed" if syncs <= failed else "some_failed"


@contextmanager
def _progress() -> Iterator[Callable[[str, PageOutcome, Page], None]]:
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(bar_width=None),
        TextColumn("{task.fields[records]} records, {task.fields[pages]} pages"),
        TimeElapsedColumn(),
    )
    tasks: dict[str, Any] = {}
    with Progress(*columns, console=console, transient=False) as bar:

        def advance(name: str, outcome: PageOutcome, page: Page) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=None, records=0, pages=0)
            task = bar.tasks[tasks[name]]
            bar.update(
                tasks[name],
                records=task.fields["records"] + len(page.records) + len(page.tombstones),
                pages=task.fields["pages"] + 1,
            )

        yield advance


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
    console.print(table)


@main.group()
def sandbox() -> None:
    """Local CRM sandboxes that speak the real wire protocols."""


@sandbox.command("serve")
@click.option(
    "--crm",
    type=click.Choice(["salesforce", "hubspot", "dynamics"]),
    default="salesforce",
    show_default=True,
)
@click.option("--port", default=8765, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--size",
    default="small",
    show_default=True,
    help="tiny|small|medium|large, or a number of opportunities.",
)
@click.option("--seed", default=7, show_default=True)
@click.option("--db", "db_path", default=None, help="The sandbox's own SQLite file.")
@click.option(
    "--write-config",
    "config_out",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Also write the config that mirrors this sandbox to this file.",
)
@click.option(
    "--mirror-db",
    default="sqlite:///prm-mirror-demo.db",
    show_default=True,
    help="The mirror's database in the printed config.",
)
def sandbox_serve(
    crm: str,
    port: int,
    size: str,
    seed: int,
    db_path: str | None,
    config_out: str | None,
    mirror_db: str,
) -> None:
    """Serve a seeded sandbox CRM in the foreground (Ctrl-C stops it).

    It prints the config that mirrors it (credentials included: they are the sandbox's own).
    """
    from sandboxes.kit.configs import config_toml

    path = db_path or f"prm-sandbox-{crm}-{size}-{seed}.db"
    console.print(f"generating or opening {path} ...")
    box = _sandbox(crm, path, seed, _size(size), port)
    text = config_toml(crm, box, mirror_db)
    click.echo(f"{crm} sandbox on {box.base_url}; a config that mirrors it:\n")
    click.echo(text)
    if config_out:
        Path(config_out).write_text(text, encoding="utf-8")
        click.echo(f"wrote {config_out}: `prm-mirror -c {config_out} sync` mirrors it")
    box.serve_forever()


def _sandbox(crm: str, path: str, seed: int, size: str | int, port: int) -> Any:
    if crm == "hubspot":
        from sandboxes.hubspot.sandbox import HubSpotSandbox

        return HubSpotSandbox(path, seed=seed, size=size, port=port)
    if crm == "dynamics":
        from sandboxes.dynamics.sandbox import DynamicsSandbox

        return DynamicsSandbox(path, seed=seed, size=size, port=port)
    from sandboxes.salesforce.sandbox import SalesforceSandbox

    return SalesforceSandbox(path, seed=seed, size=size, port=port)


def _size(size: str) -> str | int:
    return int(size) if size.isdigit() else size


@main.command()
@click.option("--db", "db_path", default="prm-mirror-demo.db", show_default=True)
@click.option("--size", default="small", show_default=True, help="Sandbox size.")
@click.option("--seed", default=7, show_default=True)
@click.option(
    "--crm",
    type=click.Choice(["salesforce", "hubspot", "dynamics"]),
    default="salesforce",
    show_default=True,
)
def demo(db_path: str, size: str, seed: int, crm: str) -> None:
    """Start a seeded sandbox CRM, mirror it into SQLite and show what happened."""
    with _errors(), tempfile.TemporaryDirectory(prefix="prm-demo-") as workdir:
        if crm == "hubspot":
            from prm_demo.hubspot import run_hubspot_demo

            run_hubspot_demo(console, Path(db_path), Path(workdir), _size(size), seed)
        elif crm == "dynamics":
            from prm_demo.dynamics import run_demo as run_dynamics_demo

            run_dynamics_demo(console, Path(db_path), Path(workdir), _size(size), seed)
        else:
            from prm_demo.salesforce import run_demo

            run_demo(console, Path(db_path), Path(workdir), _size(size), seed)


if __name__ == "__main__":
    main()
