"""Many rows through one statement, with per-row work kept to what the database needs.

SQLAlchemy's ``executemany`` builds every row's parameters through the compiled statement's
general machinery, which costs more than SQLite itself spends storing the row. On SQLite the
statement is compiled once here, each column's bind processor is looked up once, and the rows go
to the driver as plain tuples; a value repeated from the row before (the page's timestamp, the
source name) is converted once. Other databases keep SQLAlchemy's own batching (PostgreSQL's
multi-row ``INSERT``), which is already the fast path there.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.sql import Executable

from mirror.tables import UtcDateTime

_MISSING = object()


def execute_many(
    conn: Connection, statement: Executable, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Run ``statement`` once per row of ``rows`` (rows with the same keys, in one batch)."""
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        conn.execute(statement, list(rows))
        return
    for keys, group in _by_keys(rows).items():
        _sqlite_many(conn, statement, keys, group)


def _by_keys(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, ...], list[Mapping[str, Any]]]:
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    return groups


def _sqlite_many(
    conn: Connection, statement: Executable, keys: tuple[str, ...], rows: list[Mapping[str, Any]]
) -> None:
    compiled = statement.compile(dialect=conn.dialect, column_keys=list(keys))  # type: ignore[attr-defined]
    names: list[str] = list(compiled.positiontup or ())
    if not names:
        for _row in rows:
            conn.exec_driver_sql(str(compiled))
        return
    from_rows = [name for name in names if name in keys]
    pick = itemgetter(*from_rows) if from_rows else None
    picked: list[tuple[Any, ...]] = [
        (pick(row) if len(from_rows) > 1 else (pick(row),)) if pick else () for row in rows
    ]
    plain = all(_converter(compiled, n, conn.dialect) is _identity for n in from_rows)
    if plain and len(from_rows) == len(names):
        conn.exec_driver_sql(str(compiled), picked)
        return
    # column by column: the conversions run in C (map, zip) over the columns that need them
    position = {name: i for i, name in enumerate(from_rows)}
    by_row = list(zip(*picked, strict=True)) if picked and from_rows else []
    columns: list[Sequence[Any]] = []
    for name in names:
        convert = _converter(compiled, name, conn.dialect)
        index = position.get(name)
        if index is None:
            columns.append([convert(compiled.binds[name].effective_value)] * len(rows))
        elif convert is _identity:
            columns.append(by_row[index])
        else:
            columns.append(list(map(convert, by_row[index])))
    conn.exec_driver_sql(str(compiled), list(zip(*columns, strict=True)))


def _converter(compiled: Any, name: str, dialect: Any) -> Callable[[Any], Any]:
    """The bind processor of ``name``, remembering its last input (repeated values are common)."""
    column_type = compiled.binds[name].type
    process = column_type.dialect_impl(dialect).bind_processor(dialect)
    if isinstance(column_type, UtcDateTime):
        process = _utc_text(process)
    if process is None:
        return _identity
    last_in: Any = _MISSING
    last_out: Any = None

    def convert(value: Any) -> Any:
        nonlocal last_in, last_out
        if value is not last_in:
            last_in, last_out = value, process(value)
        return last_out

    return convert


def _identity(value: Any) -> Any:
    return value


def _utc_text(general: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """SQLite's text of a UTC timestamp (as SQLAlchemy writes it), without its general path."""

    def process(value: Any) -> Any:
        if type(value) is not dt.datetime:
            return general(value)
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat(" ", "microseconds")

    return process
