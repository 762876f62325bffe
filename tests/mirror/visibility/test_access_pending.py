"""Deferred slice derivations settled by two workers at once, on PostgreSQL.

A sync defers the grants of each object whose first backfill ends (``mirror_access_pending``)
and settles them at its end; a daemon's workers end their syncs at the same time. Two settlers
of one source, one of them seeing an object the other's read had not, must neither deadlock
nor drop the object the second one found.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, delete, insert, select, text

from mirror import Mirror
from mirror.config import parse_config
from mirror.store.tables import mirror_access_pending
from mirror.visibility.upkeep import GrantUpkeep
from sandboxes.salesforce.sandbox import SalesforceSandbox
from tests.adapters.conftest import sandbox_adapter
from tests.conftest import fresh_database
from tests.mirror.push.writeback_fixtures import box  # noqa: F401

pytestmark = pytest.mark.postgres
SOURCE = "salesforce"


@pytest.fixture
def pg_mirror(box: SalesforceSandbox) -> Iterator[tuple[Mirror, str]]:  # noqa: F811
    """A mirror of the opportunities and accounts on PostgreSQL, its connections named (to
    watch them wait) by an application name of their own."""
    with fresh_database("postgresql") as url:
        name = f"prm-settle-{time.monotonic_ns()}"
        source = {"crm": "salesforce", "auth": "password", "username": "u", "password": "p"}
        config = parse_config(
            {
                "store": {"database": f"{url}&application_name={name}"},
                "sources": {SOURCE: source | {"objects": ["Account", "Opportunity"]}},
            }
        )
        mirror = Mirror(config, adapters={SOURCE: sandbox_adapter(box)})
        try:
            mirror.sync()
            yield mirror, name
        finally:
            mirror.close()


def pending(mirror: Mirror) -> list[str]:
    p = mirror_access_pending.c
    with mirror.store.engine.connect() as conn:
        return list(conn.execute(select(p.object).where(p.source == SOURCE)).scalars())


def defer(mirror: Mirror, name: str) -> None:
    """What the last page of ``name``'s first backfill leaves, committed."""
    with mirror.store.transaction() as conn:
        conn.execute(insert(mirror_access_pending).values(source=SOURCE, object=name))


def until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` (a state of the database, not a time) for at most 30 s."""
    deadline = time.monotonic() + 30
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what}")
        time.sleep(0.01)


def test_two_settlers_at_once_neither_deadlock_nor_drop_an_object(pg_mirror, monkeypatch) -> None:
    mirror, application = pg_mirror
    maintainer = GrantUpkeep(mirror.store, mirror.slice_rules(SOURCE))
    # the object the second settler finds is stored ahead of the first one's (in the slot
    # VACUUM freed), so a scan of the table meets it first, as it did in the daemon
    defer(mirror, "Zzz")
    defer(mirror, "Opportunity")
    with mirror.store.transaction() as conn:
        conn.execute(delete(mirror_access_pending).where(mirror_access_pending.c.object == "Zzz"))
    with mirror.store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM mirror_access_pending")

    inside, go = threading.Event(), threading.Event()
    settle = maintainer.derivation.settle

    def first_one_pauses(conn: Any, names: Any, backfilled_by_sync: Any) -> None:
        if threading.current_thread().name == "first":
            inside.set()
            assert go.wait(60)
        settle(conn, names, backfilled_by_sync)

    monkeypatch.setattr(maintainer.derivation, "settle", first_one_pauses)
    settled: dict[str, list[str]] = {}
    failed: list[BaseException] = []

    def run() -> None:
        try:
            settled[threading.current_thread().name] = maintainer.settle_pending()
        except BaseException as exc:
            failed.append(exc)

    first = threading.Thread(target=run, name="first")
    first.start()
    until(inside.is_set, "the first settler to read its objects")
    defer(mirror, "Account")
    second = threading.Thread(target=run, name="second")
    second.start()
    admin = create_engine(mirror.store.engine.url)
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE application_name = :name AND wait_event_type = 'Lock'"
    )
    try:
        with admin.connect() as conn:
            until(
                lambda: conn.execute(waiting, {"name": application}).scalar_one() == 1,
                "the second settler to wait for the first",
            )
    finally:
        admin.dispose()
        go.set()
        first.join(60)
        second.join(60)
    assert failed == []
    assert settled == {"first": ["Opportunity"], "second": ["Account"]}
    assert pending(mirror) == []
