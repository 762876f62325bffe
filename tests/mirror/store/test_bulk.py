"""The bulk writer stores exactly what SQLAlchemy's own executemany stores."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    create_engine,
    delete,
    insert,
    select,
    text,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from mirror.store.bulk import execute_many
from mirror.store.tables import UtcDateTime

metadata = MetaData()
sample = Table(
    "sample",
    metadata,
    Column("id", String(20), primary_key=True),
    Column("at", UtcDateTime),
    Column("flag", Boolean),
    Column("amount", Numeric(18, 2)),
    Column("extra", JSON),
    Column("n", Integer),
)
AT = dt.datetime(2026, 3, 1, 12, 30, 5, 123456, tzinfo=dt.UTC)
ROWS = [
    {"id": "a", "at": AT, "flag": True, "amount": Decimal("12.50"), "extra": {"k": [1]}, "n": 1},
    {"id": "b", "at": AT, "flag": False, "amount": None, "extra": None, "n": None},
    {"id": "c", "at": AT + dt.timedelta(hours=-3), "flag": None, "amount": 3, "extra": [], "n": 3},
    {"id": "d", "at": AT.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30)))},
    {"id": "e", "at": AT.replace(tzinfo=None, microsecond=0)},
    {"id": "f", "at": None},
]
ROWS = [{"flag": None, "amount": None, "extra": None, "n": None, **row} for row in ROWS]


def stored(rows_writer: str, rows: list[dict[str, object]] = ROWS) -> list[tuple[object, ...]]:
    """The raw stored values (no result processing) after writing ``rows`` one way."""
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as conn:
        if rows_writer == "bulk":
            execute_many(conn, insert(sample), rows)
        else:
            conn.execute(insert(sample), rows)
        return [tuple(r) for r in conn.execute(text("SELECT * FROM sample ORDER BY id"))]


def test_bulk_insert_stores_what_sqlalchemy_stores() -> None:
    assert stored("bulk") == stored("sqlalchemy")
    assert stored("bulk")[0][1] == "2026-03-01 12:30:05.123456"


def test_rows_with_different_keys_and_statement_constants() -> None:
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as conn:
        execute_many(conn, insert(sample), [{"id": "a", "n": 1}, {"id": "b", "flag": True}])
        upsert = sqlite_insert(sample)
        upsert = upsert.on_conflict_do_update(index_elements=["id"], set_={"n": upsert.excluded.n})
        execute_many(conn, upsert, [{"id": "a", "n": 5}, {"id": "z", "n": 7}])
        execute_many(conn, delete(sample).where(sample.c.id == "z", sample.c.n == 7), [{}])
        rows = conn.execute(select(sample.c.id, sample.c.flag, sample.c.n).order_by("id")).all()
    assert [tuple(r) for r in rows] == [("a", None, 5), ("b", True, None)]


def test_nothing_to_write_is_no_statement() -> None:
    engine = create_engine("sqlite://")
    with engine.begin() as conn:
        execute_many(conn, insert(sample), [])  # the table does not even exist


def test_a_statement_of_the_same_shape_uses_its_own_constants() -> None:
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as conn:
        for n in (1, 2, 3):
            statement = insert(sample).values(flag=n % 2 == 0, n=n)
            execute_many(conn, statement, [{"id": f"row{n}"}])
        for n in (1, 3):
            execute_many(conn, delete(sample).where(sample.c.n == n), [{}])
        rows = conn.execute(select(sample.c.id, sample.c.flag, sample.c.n).order_by("id")).all()
    assert [tuple(r) for r in rows] == [("row2", True, 2)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.datetimes(timezones=st.just(dt.UTC)), min_size=1, max_size=20))
def test_any_utc_timestamp_is_stored_as_sqlalchemy_stores_it(moments: list[dt.datetime]) -> None:
    rows = [{**ROWS[-1], "id": str(i), "at": at} for i, at in enumerate(moments)]
    assert stored("bulk", rows) == stored("sqlalchemy", rows)
