"""SQLite's one writer: the daemon's first start on a fresh store, threads and processes syncing
different objects into one store at once, readers never held up by a writer, and a write
transaction opened inside another refused at once."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import create_engine, func, insert, select, text

from mirror import daemon
from mirror.daemon import Daemon
from mirror.store.database import Store, utcnow
from mirror.store.sqlite_writes import NestedWriteError
from mirror.store.tables import mirror_leases, mirror_runs
from sandboxes.salesforce.sandbox import SalesforceSandbox
from tests.mirror.test_daemon import OBJECTS, ROOT, _eventually, mirror_for, write_config


@pytest.fixture
def box(tmp_path: Path) -> Iterator[SalesforceSandbox]:
    with SalesforceSandbox(tmp_path / "sf.db", size="small") as sandbox:
        yield sandbox


def test_the_daemons_first_start_on_a_fresh_sqlite_store_fails_no_job(tmp_path, box) -> None:
    # every object's first sync starts at once, in the scheduler's threads
    mirror = mirror_for(
        f"sqlite:///{tmp_path / 'm.db'}", box, sync_interval=3600.0, push_interval=3600.0,
        jitter=0.0,
    )  # fmt: skip
    worker = Daemon(mirror, worker_id="first")
    scheduler = _in_background(worker)
    wanted = {f"sync:salesforce:{name}" for name in OBJECTS}
    try:
        assert _eventually(lambda: wanted <= set(worker.health.snapshot()["jobs"]))
    finally:
        scheduler.shutdown(wait=True)
    jobs = worker.health.snapshot()["jobs"]
    assert {job: state["error"] for job, state in jobs.items() if "error" in state} == {}
    _assert_mirrored(mirror.store, box)
    mirror.close()


def _in_background(worker: Daemon) -> BackgroundScheduler:
    """The daemon's schedule started on background threads, as ``Daemon.run`` installs it."""
    worker.mirror.close_orphaned_runs()
    scheduler = BackgroundScheduler(timezone="UTC", executors=daemon._executors())
    worker._install(scheduler)
    worker.health.running = True
    scheduler.start()
    return scheduler


def test_a_daemon_process_first_start_on_a_fresh_sqlite_store_fails_no_job(tmp_path, box) -> None:
    database = f"sqlite:///{tmp_path / 'm.db'}"
    port = _free_port()
    config = write_config(tmp_path, box, database, sync_interval=3600.0, push_interval=3600.0,
                          jitter=0.0)  # fmt: skip
    config.write_text(config.read_text().replace("metrics_port = 0", f"metrics_port = {port}"))
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "-c", str(config), "daemon"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    wanted = {f"sync:salesforce:{name}" for name in OBJECTS}
    try:
        _eventually(lambda: process.poll() is not None or wanted <= set(_jobs(port)))
        jobs = _jobs(port)
        assert wanted <= set(jobs), jobs
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err[-2000:]
    assert {job: state["error"] for job, state in jobs.items() if "error" in state} == {}
    logged = [json.loads(line) for line in err.strip().splitlines()]
    assert [entry for entry in logged if entry["level"] == "error"] == []
    store = Store(database)
    _assert_mirrored(store, box)
    store.close()


@pytest.mark.parametrize("round_", range(3))
def test_two_threads_sync_two_objects_into_one_sqlite_store_at_once(tmp_path, box, round_) -> None:
    # Account's slices are derived while Opportunity's pages are written, and the other way
    mirror = mirror_for(f"sqlite:///{tmp_path / 'm.db'}", box)
    names = ["Account", "Opportunity"]
    together = threading.Barrier(len(names))
    errors: list[BaseException] = []

    def sync(name: str) -> None:
        together.wait()
        try:
            mirror.sync([name])
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=sync, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    _assert_mirrored(mirror.store, box, names)
    mirror.close()


def test_two_processes_sync_two_objects_into_one_sqlite_store_at_once(tmp_path, box) -> None:
    database = f"sqlite:///{tmp_path / 'm.db'}"
    config = write_config(tmp_path, box, database)
    names = ["Account", "Opportunity"]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "cli", "-c", str(config), "sync", "--object", name],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    outcomes = [(process.wait(300), process.stderr.read()) for process in processes]  # type: ignore[union-attr]
    assert [code for code, _ in outcomes] == [0, 0], [err[-2000:] for _, err in outcomes]
    store = Store(database)
    _assert_mirrored(store, box, names)
    store.close()


def test_a_writer_holds_up_neither_readers_nor_the_next_writer(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    holding, release = threading.Event(), threading.Event()
    seen_by_next: list[int] = []

    def first() -> None:
        with store.transaction() as conn:
            _lease(conn, "first")
            holding.set()
            release.wait()

    def second() -> None:
        with store.transaction() as conn:
            seen_by_next.append(_leases(conn))
            _lease(conn, "second")

    writers = [threading.Thread(target=first), threading.Thread(target=second)]
    writers[0].start()
    holding.wait()
    writers[1].start()
    # a reader, in the store's own pool and from another connection altogether, is answered
    # at once with what was committed, while the writer holds the lock and the next one waits
    with store.engine.connect() as conn:
        assert _leases(conn) == 0
    outside = create_engine(store.url)
    with outside.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM mirror_leases")).scalar() == 0
    outside.dispose()
    release.set()
    for writer in writers:
        writer.join()
    # the next writer began after the first committed, and saw its row
    assert seen_by_next == [1]
    with store.engine.connect() as conn:
        assert _leases(conn) == 2
    store.close()


def test_a_write_transaction_inside_another_is_refused_at_once(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    with store.transaction() as conn:
        _lease(conn, "outer")
        with pytest.raises(NestedWriteError), store.transaction():
            pass
    with store.engine.connect() as conn:
        assert _leases(conn) == 1
    store.close()


def _lease(conn: Any, name: str) -> None:
    now = utcnow()
    conn.execute(
        insert(mirror_leases).values(name=name, holder="t", expires_at=now, acquired_at=now)
    )


def _leases(conn: Any) -> int:
    return int(conn.execute(select(func.count()).select_from(mirror_leases)).scalar_one())


def _assert_mirrored(store: Store, box: SalesforceSandbox, names: list[str] = OBJECTS) -> None:
    """Every object of ``names`` holds exactly the sandbox's records, and every run ended ok."""
    with store.engine.connect() as conn:
        for name in names:
            ids = set(conn.execute(text(f'SELECT "Id" FROM salesforce__{name.lower()}')).scalars())
            assert ids == set(box.ids(name)), name
        runs = conn.execute(select(mirror_runs.c.object, mirror_runs.c.status)).all()
    assert {name for name, _ in runs} == set(names)
    assert {status for _, status in runs} == {"ok"}, runs


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _jobs(port: int) -> dict[str, Any]:
    """The daemon's jobs with their last outcomes, as its health endpoint reports them."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            return dict(json.load(answer)["jobs"])
    except OSError:  # not serving yet (or 503 while it starts)
        return {}
