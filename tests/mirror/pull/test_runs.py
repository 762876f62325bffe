"""Runs of processes that died: a sync killed mid-run is closed as interrupted by the next
status or daemon start, on SQLite and PostgreSQL; a live worker's run is left alone, on this
machine (looked up directly, even when it is stopped) and elsewhere (judged by its heartbeat);
a store made before runs kept an owner is upgraded, and its old runs are closed."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, MetaData, Table, create_engine, insert, select

from mirror.daemon import Daemon
from mirror.pull.runs import alive_here, close_orphaned_runs, identity_of, this_process
from mirror.store.database import Store, utcnow
from mirror.store.tables import mirror_runs
from sandboxes.salesforce.sandbox import SalesforceSandbox
from tests.mirror.test_daemon import ROOT, _eventually, mirror_for, write_config


@pytest.fixture
def box(tmp_path: Path) -> Iterator[SalesforceSandbox]:
    with SalesforceSandbox(tmp_path / "sf.db", size="small") as sandbox:
        yield sandbox


def _sync_process(config: Path, *prefix: str) -> subprocess.Popen[bytes]:
    """A ``sync`` of Opportunity (500 records, pages of 200) in a process of its own."""
    command = [sys.executable, "-m", "cli", "-c", str(config), "sync", "--object", "Opportunity"]
    return subprocess.Popen(
        [*prefix, *command], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _running(store: Store) -> list[Any]:
    with store.engine.connect() as conn:
        return conn.execute(select(mirror_runs).where(mirror_runs.c.status == "running")).all()


def _run(store: Store, run_id: int) -> Any:
    with store.engine.connect() as conn:
        return conn.execute(select(mirror_runs).where(mirror_runs.c.id == run_id)).one()


def test_a_process_is_told_from_a_later_one_with_its_id_and_from_its_remains() -> None:
    child = subprocess.Popen(["sleep", "60"])
    owner = identity_of(child.pid)
    assert alive_here(owner.key) is True
    # the same id started at another time is another process
    assert alive_here(f"{owner.scope}|{owner.pid}|1") is False
    # a process of another machine or namespace cannot be looked up
    assert alive_here(f"linux:another-boot:pid:[1]|{owner.pid}|{owner.started}") is None
    child.kill()
    # killed and not yet reaped (a zombie), then reaped
    assert _eventually(lambda: alive_here(owner.key) is False, 10)
    child.wait()
    assert alive_here(owner.key) is False


@pytest.mark.parametrize("closer", ["status", "daemon"])
def test_a_sync_killed_mid_run_is_closed_as_interrupted(db_url, tmp_path, box, closer) -> None:
    config = write_config(tmp_path, box, db_url)
    store = Store(db_url)
    box.throttle(0.3)
    try:
        process = _sync_process(config)
        assert _eventually(lambda: bool(_running(store)), 60)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        box.throttle(0)
    [killed] = _running(store)
    assert killed.pid == process.pid and killed.owner.split("|")[0] == this_process().scope
    mirror = mirror_for(db_url, box)
    if closer == "status":
        [opportunity] = mirror.status()
        assert opportunity.last_run_status == "interrupted"
        assert f"process {process.pid} on " in (opportunity.last_error or "")
    else:
        Daemon(mirror, worker_id="next").run_once()
    closed = _run(store, killed.id)
    assert closed.status == "interrupted" and closed.finished_at is not None
    assert closed.error == f"process {process.pid} on {killed.host} ended without closing the run"
    # nothing else is left running, and nothing is closed twice
    assert _running(store) == [] and mirror.close_orphaned_runs() == []
    mirror.close()
    store.close()


def test_a_stopped_process_on_this_machine_keeps_its_run(db_url, tmp_path, box) -> None:
    # a lease of a second: its heartbeat lapses while it is stopped, yet it is alive
    config = write_config(tmp_path, box, db_url, lease_seconds=1.0)
    store = Store(db_url)
    mirror = mirror_for(db_url, box, lease_seconds=1.0)
    box.throttle(0.3)
    process = _sync_process(config)
    try:
        assert _eventually(lambda: bool(_running(store)), 60)
        process.send_signal(signal.SIGSTOP)
        [run] = _running(store)
        assert _eventually(lambda: _run(store, run.id).alive_until < utcnow(), 30)
        assert mirror.close_orphaned_runs() == []
        assert mirror.status()[0].last_run_status == "running"
    finally:
        box.throttle(0)
        process.send_signal(signal.SIGCONT)
    assert process.wait(120) == 0
    assert _run(store, run.id).status == "ok"
    mirror.close()
    store.close()


def _unshare() -> list[str]:
    """A command prefix running a process in a process-id namespace of its own, which this
    process cannot look into (as a worker on another machine)."""
    if not shutil.which("unshare") or os.geteuid() != 0:
        pytest.skip("needs unshare and root for a process-id namespace")
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip(f"unshare refused: {probe.stderr.decode()[:200]}")
    return ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]


def _beats(store: Store, run_id: int, count: int) -> bool:
    """Whether the run's ``alive_until`` moves on ``count`` times (its owner's heartbeat)."""
    seen = {_run(store, run_id).alive_until}

    def moved() -> bool:
        seen.add(_run(store, run_id).alive_until)
        return len(seen) > count

    return _eventually(moved, 30)


def test_a_worker_elsewhere_is_judged_by_its_heartbeat(db_url, tmp_path, box) -> None:
    prefix = _unshare()
    lease = 6.0
    config = write_config(tmp_path, box, db_url, lease_seconds=lease)
    store = Store(db_url)
    mirror = mirror_for(db_url, box, lease_seconds=lease)
    # two seconds a request: the sync outlasts the heartbeats watched
    box.throttle(2.0)
    process = _sync_process(config, *prefix)
    try:
        assert _eventually(lambda: bool(_running(store)), 60)
        [run] = _running(store)
        assert run.owner.split("|")[0] != this_process().scope
        # alive and beating: its run is left running
        assert _beats(store, run.id, 2)
        assert mirror.close_orphaned_runs() == []
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        box.throttle(0)
    # dead, it beats no more: once its last lease has passed, its run is closed
    last = _run(store, run.id).alive_until
    assert _eventually(lambda: utcnow() > last, 30)
    [closed] = mirror.close_orphaned_runs()
    assert closed.id == run.id
    assert closed.reason.startswith(f"no heartbeat from process {run.pid} on {run.host} for ")
    assert _run(store, run.id).status == "interrupted"
    mirror.close()
    store.close()


OWNER_COLUMNS = ("host", "pid", "owner", "alive_until")


def test_a_store_from_before_run_owners_is_upgraded_and_its_old_runs_closed(db_url) -> None:
    store = Store(db_url)
    with store.transaction() as conn:
        for column in OWNER_COLUMNS:
            conn.exec_driver_sql(f"ALTER TABLE mirror_runs DROP COLUMN {column}")
    store.close()
    # an earlier version left two runs running: one started an hour ago, one just now
    earlier = Table(
        "mirror_runs",
        MetaData(),
        *(
            Column(c.name, c.type, primary_key=c.primary_key)
            for c in mirror_runs.columns
            if c.name not in OWNER_COLUMNS
        ),
    )
    engine = create_engine(db_url)
    now = utcnow()
    with engine.begin() as conn:
        for started in (now - dt.timedelta(hours=1), now):
            conn.execute(
                insert(earlier).values(
                    source="s", object="Account", kind="incremental", status="running",
                    started_at=started, pages=0, inserted=0, updated=0, unchanged=0, deleted=0,
                    rejected=0, api_calls=0,
                )
            )  # fmt: skip
    engine.dispose()
    upgraded = Store(db_url, run_lease_seconds=600)
    assert set(OWNER_COLUMNS) <= set(upgraded.recent_runs()[0])
    [closed] = close_orphaned_runs(upgraded)
    assert closed.reason == "no owner recorded, and running for longer than the run lease"
    newest, oldest = upgraded.recent_runs()
    assert (oldest["id"], oldest["status"]) == (closed.id, "interrupted")
    assert newest["status"] == "running"
    upgraded.close()
