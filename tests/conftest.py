"""Shared fixtures: a mirror database URL on SQLite and, when configured, on PostgreSQL."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import Phase, settings
from sqlalchemy import create_engine

PG_URL = os.environ.get("PRM_MIRROR_TEST_PG_URL")

# The suite replays the same examples on every run, so a red run means a change broke something
# rather than a new search having been lucky; ``PRM_MIRROR_HYPOTHESIS_SEARCH=1`` (or asking for
# more examples) searches anew on each run. Explaining a failure re-runs it many times over: a
# stateful example costs seconds, so the suite reports the shrunk example without it.
settings.register_profile(
    "suite", derandomize=True, phases=[p for p in Phase if p is not Phase.explain]
)
settings.register_profile("search", derandomize=False)
SEARCH = os.environ.get("PRM_MIRROR_HYPOTHESIS_SEARCH") == "1" or bool(
    os.environ.get("PRM_MIRROR_HYPOTHESIS_EXAMPLES")
)
settings.load_profile("search" if SEARCH else "suite")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@contextmanager
def fresh_database(backend: str) -> Iterator[str]:
    """A new empty database URL: a SQLite file, or a PostgreSQL schema dropped afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="prm-test-") as folder:
            yield f"sqlite:///{folder}/mirror.db"
        return
    if not PG_URL:
        pytest.skip("PostgreSQL suite: set PRM_MIRROR_TEST_PG_URL (see README)")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """``sqlite`` or ``postgresql`` (the latter only when PRM_MIRROR_TEST_PG_URL is set)."""
    if request.param == "postgresql" and not PG_URL:
        pytest.skip("PostgreSQL suite: set PRM_MIRROR_TEST_PG_URL (see README)")
    return str(request.param)


@pytest.fixture
def db_url(backend: str) -> Iterator[str]:
    """A fresh, empty mirror database URL on each backend."""
    with fresh_database(backend) as url:
        yield url
