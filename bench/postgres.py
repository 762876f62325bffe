"""The benchmarks' PostgreSQL: a fresh schema per run, what a run committed, whether it answers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from bench.common import PG_URL


@contextmanager
def pg_schema(base_url: str = PG_URL, *, keep: bool = False) -> Iterator[str]:
    """A fresh PostgreSQL schema for one run; yields its URL and drops it afterwards (unless
    ``keep``)."""
    from sqlalchemy import create_engine, text

    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    separator = "&" if "?" in base_url else "?"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
        yield f"{base_url}{separator}options=-csearch_path%3D{name}"
    finally:
        if not keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        admin.dispose()


def committed_rows(database: str, tables: Sequence[str]) -> dict[str, int]:
    """Rows each existing table of ``database`` holds (what a stopped run had committed)."""
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(database)
    try:
        present = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            return {
                name: int(conn.execute(text(f'SELECT COUNT(*) FROM "{name}"')).scalar_one())
                for name in tables
                if name in present
            }
    finally:
        engine.dispose()


def pg_available(base_url: str = PG_URL) -> bool:
    """Whether the benchmark PostgreSQL server answers."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    engine = create_engine(base_url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except OperationalError:
        return False
    finally:
        engine.dispose()
