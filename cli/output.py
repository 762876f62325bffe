"""What the commands print: the shared console, JSON and CSV documents, and values as a person
reads them (no Python reprs)."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import click
from rich.console import Console

console = Console()

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document instead of a table."
)


def json_default(value: Any) -> str:
    """How JSON shows what it has no type for: ISO 8601 for datetimes, text for the rest."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def emit_json(document: Any) -> None:
    """Print ``document`` as one JSON document on stdout: no markup, datetimes in ISO 8601,
    decimals and anything else JSON lacks as strings."""
    click.echo(json.dumps(document, default=json_default, indent=2))


def emit_csv(columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
    """Print ``rows`` as CSV with a header line (empty cells for nulls)."""
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(columns)
    out.writerows([["" if r[c] is None else plain(r[c]) for c in columns] for r in rows])


def plain(value: Any) -> str:
    """A value as a person reads it: ``-`` for null, ISO 8601 for datetimes, JSON for lists
    and mappings, the text itself for the rest (no Python reprs)."""
    if value is None:
        return "-"
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=json_default)
    return str(value)
