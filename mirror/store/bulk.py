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
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql import Executable

from mirror.store.tables import UtcDateTime

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


def upsert(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows``, replacing rows with the same primary key; one executemany."""
    if not rows:
        return
    keys = [c.name for c in table.primary_key.columns]
    insert = pg_insert(table) if conn.dialect.name == "postgresql" else sqlite_insert(table)
    columns = [name for name in rows[0] if name not in keys]
    if columns:
        statement = insert.on_conflict_do_update(
            index_elements=keys, set_={name: insert.excluded[name] for name in columns}
        )
    else:
        statement = insert.on_conflict_do_nothing(index_elements=keys)
    if len(keys) == 1:
        # in key order, each batch touches the key's index pages once, not at random
        rows = sorted(rows, key=lambda row: row[keys[0]])
    execute_many(conn, statement, rows)


def _by_keys(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, ...], list[Mapping[str, Any]]]:
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    return groups


@dataclass(frozen=True)
class _Prepared:
    """A statement compiled for one set of row keys, with its columns' converters."""

    sql: str
    names: list[str]
    from_rows: list[str]
    converters: dict[str, Callable[[Any], Any]]
    compiled: Any


# statements of the same shape (the access upkeep's, the change log's) are compiled once
_prepared: dict[tuple[Any, ...], _Prepared] = {}
_PREPARED_MAX = 256


def _prepare(
    conn: Connection, statement: Executable, keys: tuple[str, ...]
) -> tuple[_Prepared, dict[str, Any]]:
    """The compiled form of ``statement`` for rows with ``keys``, and the values of the
    statement's own parameters (its literals) for this execution."""
    cache_key = statement._generate_cache_key()  # type: ignore[attr-defined]
    lookup = (cache_key.key, keys, conn.dialect.name) if cache_key is not None else None
    prepared = _prepared.get(lookup) if lookup is not None else None
    if prepared is None:
        compiled = statement.compile(  # type: ignore[attr-defined]
            dialect=conn.dialect, column_keys=list(keys), cache_key=cache_key
        )
        names: list[str] = list(compiled.positiontup or ())
        prepared = _Prepared(
            str(compiled),
            names,
            [name for name in names if name in keys],
            {name: _converter(compiled, name, conn.dialect) for name in names},
            compiled,
        )
        if lookup is not None:
            if len(_prepared) >= _PREPARED_MAX:
                _prepared.clear()
            _prepared[lookup] = prepared
    own = prepared.compiled.construct_params(
        extracted_parameters=cache_key.bindparams if cache_key is not None else None,
        escape_names=False,
        _check=False,  # the rows' own values are bound per row, not here
    )
    return prepared, own


def _sqlite_many(
    conn: Connection, statement: Executable, keys: tuple[str, ...], rows: list[Mapping[str, Any]]
) -> None:
    prepared, own = _prepare(conn, statement, keys)
    names, from_rows = prepared.names, prepared.from_rows
    if not names:
        for _row in rows:
            conn.exec_driver_sql(prepared.sql)
        return
    pick = itemgetter(*from_rows) if from_rows else None
    picked: list[tuple[Any, ...]] = [
        (pick(row) if len(from_rows) > 1 else (pick(row),)) if pick else () for row in rows
    ]
    converters = prepared.converters
    plain = all(converters[n] is _identity for n in from_rows)
    if plain and len(from_rows) == len(names):
        conn.exec_driver_sql(prepared.sql, picked)
        return
    # column by column: the conversions run in C (map, zip) over the columns that need them
    position = {name: i for i, name in enumerate(from_rows)}
    by_row = list(zip(*picked, strict=True)) if picked and from_rows else []
    columns: list[Sequence[Any]] = []
    for name in names:
        convert = converters[name]
        index = position.get(name)
        if index is None:
            columns.append([convert(own[name])] * len(rows))
        elif convert is _identity:
            columns.append(by_row[index])
        else:
            columns.append(list(map(convert, by_row[index])))
    conn.exec_driver_sql(prepared.sql, list(zip(*columns, strict=True)))


def _converter(compiled: Any, name: str, dialect: Any) -> Callable[[Any], Any]:
    """The bind processor of ``name``, remembering its last input (repeated values are common)."""
    column_type = compiled.binds[name].type
    process = column_type.dialect_impl(dialect).bind_processor(dialect)
    if isinstance(column_type, UtcDateTime):
        process = _utc_text(process)
    if process is None:
        return _identity
    # one tuple, replaced whole: threads sharing a cached converter never pair an input with
    # another thread's output
    memo: tuple[Any, Any] = (_MISSING, None)

    def convert(value: Any) -> Any:
        nonlocal memo
        last = memo
        if value is last[0]:
            return last[1]
        out = process(value)
        memo = (value, out)
        return out

    return convert


def _identity(value: Any) -> Any:
    return value


def _utc_text(general: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """SQLite's text of a UTC timestamp (as SQLAlchemy writes it), without its general path."""

    def process(value: Any) -> Any:
        if type(value) is not dt.datetime:
            return general(value)
        if value.tzinfo is dt.UTC:
            # the same text as isoformat(" ", "microseconds") without the offset, in half the
            # time: a backfill writes four timestamps per record
            return "%04d-%02d-%02d %02d:%02d:%02d.%06d" % (  # noqa: UP031
                value.year,
                value.month,
                value.day,
                value.hour,
                value.minute,
                value.second,
                value.microsecond,
            )
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat(" ", "microseconds")

    return process
