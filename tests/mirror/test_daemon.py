"""The daemon: leases on both stores, jobs against the sandbox, metrics and health, the API
budget, the self-audit, SIGTERM, and three workers sharing PostgreSQL with one killed."""

from __future__ import annotations

import gc
import itertools
import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text

from mirror import Mirror
from mirror.config import parse_config
from mirror.daemon import Daemon, settle_heap
from mirror.leases import Leases
from mirror.store.database import Store
from mirror.store.tables import mirror_runs
from sandboxes.salesforce.sandbox import SalesforceSandbox
from tests.adapters.conftest import sandbox_adapter
from tests.conftest import PG_URL

ROOT = Path(__file__).resolve().parent.parent.parent
OBJECTS = ["User", "Account", "Contact", "Opportunity", "OpportunityLineItem"]


def test_a_lease_is_exclusive_until_released_or_expired(db_url: str) -> None:
    store = Store(db_url)
    first, second = Leases(store, "w1", ttl_seconds=60), Leases(store, "w2", ttl_seconds=60)
    assert first.acquire("sync:x") and first.acquire("sync:x")
    assert not second.acquire("sync:x")
    first.release("sync:x")
    assert second.acquire("sync:x")
    short = Leases(store, "w3", ttl_seconds=0.2)
    assert short.acquire("push:y")
    assert not first.acquire("push:y")
    time.sleep(0.3)
    assert first.acquire("push:y")
    assert set(first.holders()) == {"sync:x", "push:y"}
    store.close()


@pytest.fixture
def box(tmp_path: Path) -> Iterator[SalesforceSandbox]:
    with SalesforceSandbox(tmp_path / "sf.db", size="small") as sandbox:
        yield sandbox


def mirror_for(url: str, box: SalesforceSandbox, **daemon: Any) -> Mirror:
    config = parse_config(
        {
            "store": {"database": url},
            "daemon": {"metrics_port": 0, "log_format": "text", **daemon},
            "sources": {
                "salesforce": {
                    "crm": "salesforce",
                    "username": "u",
                    "password": "p",
                    "objects": OBJECTS,
                }
            },
        }
    )
    return Mirror(config, adapters={"salesforce": sandbox_adapter(box)})


def test_run_once_syncs_pushes_and_reports_metrics_and_health(db_url, box) -> None:
    mirror = mirror_for(db_url, box)
    worker = Daemon(mirror, worker_id="solo")
    snapshot = worker.run_once()
    assert all("error" not in state for state in snapshot["jobs"].values()), snapshot
    assert {f"sync:salesforce:{o}" for o in OBJECTS} <= set(snapshot["jobs"])
    partner = max(mirror.partners(), key=lambda p: p["slice"].get("Opportunity", 0))["id"]
    view = mirror.as_partner(partner)
    opp = view.select("Opportunity", where={"IsClosed": False}, limit=1)[0]["Id"]
    view.update("Opportunity", opp, {"NextStep": "via the daemon"})
    worker.run_once()
    assert box.get("Opportunity", opp)["NextStep"] == "via the daemon"
    rendered = worker.metrics.render().decode()
    assert (
        'prm_records_synced_total{object="Opportunity",op="insert",source="salesforce"} 500.0'
        in rendered
    )
    assert "prm_sync_age_seconds" in rendered and "prm_data_age_seconds" in rendered
    assert "prm_outbox_entries" in rendered and "prm_build_info{" in rendered
    assert 'prm_job_duration_seconds_count{kind="sync"}' in rendered
    mirror.close()


def test_settling_the_heap_loads_the_mirrored_tables_and_freezes_them(tmp_path, box) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    first = mirror_for(url, box)
    Daemon(first, worker_id="solo").sync_job("salesforce", "Account")
    first.close()
    restarted = mirror_for(url, box)
    assert gc.get_freeze_count() == 0
    try:
        frozen = settle_heap(restarted)
        # the sandbox's server threads may free a frozen object meanwhile: it leaves the count
        assert frozen > 1000 and frozen - 100 <= gc.get_freeze_count() <= frozen
        loaded = set(restarted.store._tables)
        # Account is mirrored; the objects never synced have no table to load yet
        assert loaded == {("salesforce", "Account")}
        account = restarted.store.mirrored("salesforce", "Account").table
        collected = {id(o) for o in gc.get_objects()}
        assert id(account) not in collected and id(restarted.visibility()) not in collected
        assert id(restarted) not in collected
    finally:
        gc.unfreeze()
    restarted.close()


def test_the_metrics_and_health_endpoints(tmp_path, box) -> None:
    mirror = mirror_for(f"sqlite:///{tmp_path / 'm.db'}", box, metrics_port=0)
    worker = Daemon(mirror, worker_id="web")
    worker.settings = worker.settings.model_copy(update={"metrics_port": 0})
    from mirror.observability import ObservabilityServer

    server = ObservabilityServer(worker.metrics, worker.health, worker._store_ok, "127.0.0.1", 0)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        with pytest.raises(urllib.error.HTTPError) as down:
            urllib.request.urlopen(f"{base}/healthz")
        assert down.value.code == 503
        worker.health.running = True
        worker.run_once()
        health = json.load(urllib.request.urlopen(f"{base}/healthz"))
        assert health["store"] is True and "sync:salesforce:Account" in health["jobs"]
        metrics = urllib.request.urlopen(f"{base}/metrics").read().decode()
        assert "prm_records_synced_total" in metrics
    finally:
        server.stop()
        mirror.close()


def test_the_api_reserve_pauses_crm_jobs(tmp_path, box) -> None:
    mirror = mirror_for(f"sqlite:///{tmp_path / 'm.db'}", box, api_reserve=0.5)
    worker = Daemon(mirror, worker_id="thrifty")
    worker.sync_job("salesforce", "Account")
    box.set_daily_limit(box.api_usage + 5)
    worker.sync_job("salesforce", "User")
    calls = box.call_count()
    worker.sync_job("salesforce", "Contact")
    assert box.call_count() == calls
    note = worker.health.snapshot()["jobs"]["sync:salesforce:Contact"]["note"]
    assert "paused" in note
    box.set_daily_limit(1_000_000)
    mirror.close()


def test_the_self_audit_heals_what_the_sync_missed(db_url, box) -> None:
    mirror = mirror_for(db_url, box, audit_sample=1000)
    mirror.sync()
    worker = Daemon(mirror, worker_id="auditor")
    contacts = mirror.store.mirrored("salesforce", "Contact").table
    victim, drifted = box.ids("Contact")[:2]
    with mirror.store.transaction() as conn:
        conn.execute(contacts.delete().where(contacts.c.Id == victim))
        conn.execute(
            contacts.update().where(contacts.c.Id == drifted).values(LastName="Stale", _hash="x")
        )
    box.hard_delete("Contact", box.ids("Contact")[5])
    report = {r.object: r for r in worker.audit("salesforce")}["Contact"]
    assert (report.missing_healed, report.deleted_healed) == (1, 1)
    assert report.drift_healed == 1 and report.healed == 3
    with mirror.store.engine.connect() as conn:
        names = dict(conn.execute(select(contacts.c.Id, contacts.c.LastName)).all())
    assert victim in names and names[drifted] == box.get("Contact", drifted)["LastName"]
    mirror.close()


def write_config(
    folder: Path,
    box: SalesforceSandbox,
    database: str,
    *,
    sync: dict[str, Any] | None = None,
    objects: list[str] = OBJECTS,
    **daemon: Any,
) -> Path:
    path = folder / "daemon.toml"
    path.write_text(f"""
[store]
database = "{database}"
[sync]
prefetch_pages = 0
{_toml_lines(sync or {})}
[daemon]
metrics_port = 0
log_format = "json"
{_toml_lines(daemon)}
[sources.salesforce]
crm = "salesforce"
objects = {json.dumps(objects)}
login_url = "{box.base_url}"
username = "{box.username}"
password = "{box.password}"
security_token = "{box.security_token}"
page_size = 200
""")
    return path


def _toml_lines(options: dict[str, Any]) -> str:
    return "\n".join(
        f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}" for k, v in options.items()
    )


def test_sigterm_finishes_the_page_and_a_restart_resumes(tmp_path, box) -> None:
    database = f"sqlite:///{tmp_path / 'm.db'}"
    config = write_config(tmp_path, box, database, sync_interval=3600.0, jitter=0.0)
    box.throttle(0.05)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "-c", str(config), "daemon"],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        engine = create_engine(database)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _pages_written(engine):
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=60)
    finally:
        box.throttle(0)
    assert process.returncode == 0, err[-2000:]
    assert "daemon" in err and "stopped" in err and "s3cret" not in err
    for line in err.strip().splitlines():
        json.loads(line)
    with engine.connect() as conn:
        statuses = [r[0] for r in conn.execute(select(mirror_runs.c.status))]
    assert "running" not in statuses and "stopped" in statuses
    done = subprocess.run(
        [sys.executable, "-m", "cli", "-c", str(config), "daemon", "--once"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    with engine.connect() as conn:
        ids = set(conn.execute(text('SELECT "Id" FROM salesforce__opportunity')).scalars())
    assert ids == set(box.ids("Opportunity"))


def _pages_written(engine: Any) -> bool:
    try:
        with engine.connect() as conn:
            return bool(conn.execute(text("SELECT COUNT(*) FROM mirror_checkpoints")).scalar())
    except Exception:
        return False


@pytest.mark.postgres
def test_three_workers_share_the_work_and_survive_one_killed(tmp_path, box) -> None:
    if not PG_URL:
        pytest.skip("PostgreSQL suite: set PRM_MIRROR_TEST_PG_URL")
    from tests.conftest import fresh_database

    with fresh_database("postgresql") as database:
        config = write_config(
            tmp_path,
            box,
            database,
            sync_interval=1.0,
            jitter=0.2,
            lease_seconds=3.0,
            push_interval=1.0,
        )
        box.throttle(0.01)
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "cli", "-c", str(config), "daemon", "--worker-id", f"w{i}"],
                cwd=ROOT,
                stderr=subprocess.DEVNULL,
            )
            for i in range(3)
        ]
        try:
            engine = create_engine(database)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not _pages_written(engine):
                time.sleep(0.1)
            workers[0].send_signal(signal.SIGKILL)
            box.advance_clock(5)
            changed = box.ids("Opportunity")[:10]
            for record_id in changed:
                box.update("Opportunity", record_id, {"NextStep": "after the kill"})
            assert _eventually(lambda: _caught_up(engine, box, changed))
            with engine.connect() as conn:
                runs = conn.execute(
                    text(
                        "SELECT object, started_at, finished_at FROM mirror_runs "
                        "WHERE status IN ('ok', 'stopped') ORDER BY object, started_at"
                    )
                ).all()
            for before, after in itertools.pairwise(runs):
                if before.object == after.object:
                    assert before.finished_at <= after.started_at, (before, after)
            engine.dispose()
        finally:
            box.throttle(0)
            for worker in workers[1:]:
                worker.send_signal(signal.SIGTERM)
            for worker in workers:
                worker.wait(60)


def _caught_up(engine: Any, box: SalesforceSandbox, changed: list[str]) -> bool:
    try:
        with engine.connect() as conn:
            for name in OBJECTS:
                ids = set(
                    conn.execute(
                        text(f'SELECT "Id" FROM salesforce__{name.lower()} WHERE NOT _deleted')
                    ).scalars()
                )
                if ids != set(box.ids(name)):
                    return False
            steps = (
                conn.execute(
                    text('SELECT "NextStep" FROM salesforce__opportunity WHERE "Id" = ANY(:ids)'),
                    {"ids": changed},
                )
                .scalars()
                .all()
            )
        return len(steps) == len(changed) and set(steps) == {"after the kill"}
    except Exception:
        return False


SPLIT_OPPORTUNITIES = 3000


@pytest.mark.postgres
def test_three_workers_split_one_backfill_and_survive_one_killed(tmp_path) -> None:
    if not PG_URL:
        pytest.skip("PostgreSQL suite: set PRM_MIRROR_TEST_PG_URL")
    from tests.conftest import fresh_database

    with (
        SalesforceSandbox(tmp_path / "sf.db", size=SPLIT_OPPORTUNITIES) as box,
        fresh_database("postgresql") as database,
    ):
        config = write_config(
            tmp_path,
            box,
            database,
            sync={"backfill_ranges": 3, "backfill_range_min_records": 1000},
            objects=["Account", "Opportunity"],
            sync_interval=1.0,
            jitter=0.0,
            lease_seconds=2.0,
            range_interval=0.5,
            push_interval=60.0,
        )
        box.throttle(0.02)
        workers = {
            f"w{i}": subprocess.Popen(
                [sys.executable, "-m", "cli", "-c", str(config), "daemon", "--worker-id", f"w{i}"],
                cwd=ROOT,
                stderr=subprocess.DEVNULL,
            )
            for i in range(3)
        }
        engine = create_engine(database)
        try:
            deadline = time.monotonic() + 60
            victim = None
            while time.monotonic() < deadline and victim is None:
                victim = _busy_range_holder(engine)
                time.sleep(0.05)
            assert victim is not None, "no range was read"
            workers[victim].send_signal(signal.SIGKILL)
            workers[victim].wait(10)
            box.advance_clock(5)
            changed = box.ids("Opportunity")[::300]
            for record_id in changed:
                box.update("Opportunity", record_id, {"NextStep": "during the backfill"})
            box.throttle(0)
            assert _eventually(lambda: _split_caught_up(engine, box, changed))
            with engine.connect() as conn:
                phase = conn.execute(
                    text("SELECT phase FROM mirror_checkpoints WHERE object = 'Opportunity'")
                ).scalar()
                assert phase == "incremental"
                assert conn.execute(text("SELECT COUNT(*) FROM mirror_ranges")).scalar() == 0
                mirrored = dict(
                    conn.execute(text('SELECT "Id", "Name" FROM salesforce__opportunity')).all()
                )
                duplicates = conn.execute(
                    text(
                        "SELECT object, record_id, op, partner_id, owner_id FROM mirror_changes "
                        "GROUP BY object, record_id, op, partner_id, owner_id HAVING COUNT(*) > 1"
                    )
                ).all()
                crm_changes = conn.execute(
                    text(
                        "SELECT record_id FROM mirror_changes WHERE object = 'Opportunity' "
                        "AND origin = 'crm'"
                    )
                ).scalars()
                # a change the range read itself is part of the backfill, not a change
                assert set(crm_changes) <= set(changed)
            assert duplicates == []
            names = {i: box.get("Opportunity", i)["Name"] for i in box.ids("Opportunity")}
            assert mirrored == names
        finally:
            box.throttle(0)
            engine.dispose()
            for worker in workers.values():
                if worker.poll() is None:
                    worker.send_signal(signal.SIGTERM)
            for worker in workers.values():
                worker.wait(60)


def _busy_range_holder(engine: Any) -> str | None:
    """A worker holding the lease of a range it has already committed pages of."""
    try:
        with engine.connect() as conn:
            return conn.execute(
                text(
                    "SELECT l.holder FROM mirror_leases l JOIN mirror_ranges r "
                    "ON l.name = 'backfill:salesforce:Opportunity:' || r.range_no "
                    "WHERE r.version >= 1 AND r.phase <> 'done' AND l.expires_at > now() "
                    "LIMIT 1"
                )
            ).scalar()
    except Exception:
        return None


def _split_caught_up(engine: Any, box: SalesforceSandbox, changed: list[str]) -> bool:
    try:
        with engine.connect() as conn:
            steps = dict(
                conn.execute(
                    text('SELECT "Id", "NextStep" FROM salesforce__opportunity WHERE NOT _deleted')
                ).all()
            )
    except Exception:
        return False
    return sorted(steps) == box.ids("Opportunity") and all(
        steps[i] == "during the backfill" for i in changed
    )


def _eventually(check: Callable[[], bool], seconds: float = 90.0) -> bool:
    """Whether ``check`` comes true within ``seconds`` (asked every half second)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return check()


def gauge(rendered: str, name: str, obj: str) -> float:
    line = next(x for x in rendered.splitlines()
                if x.startswith(f"{name}{{") and f'object="{obj}"' in x)  # fmt: skip
    return float(line.rsplit(" ", 1)[1])


def test_a_quiet_object_just_synced_is_fresh_and_a_failing_one_is_not_ready(tmp_path, box) -> None:
    mirror = mirror_for(f"sqlite:///{tmp_path / 'm.db'}", box)
    worker = Daemon(mirror, worker_id="ready")
    from mirror.observability import ObservabilityServer

    server = ObservabilityServer(worker.metrics, worker.health, worker._store_ok, "127.0.0.1", 0)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        worker.health.running = True
        worker.run_once()
        worker.refresh_metrics()
        rendered = worker.metrics.render().decode()
        # the newest account changed long ago (the CRM's clock): the data is old, the sync not
        sync_age = gauge(rendered, "prm_sync_age_seconds", "Account")
        assert 0 <= sync_age < 600
        assert gauge(rendered, "prm_data_age_seconds", "Account") > sync_age
        ready = json.load(urllib.request.urlopen(f"{base}/readyz"))
        assert ready["failing"] == {}
        box.fail_next(200, path_contains="Account")
        worker.sync_job("salesforce", "Account")
        worker.refresh_metrics()
        with pytest.raises(urllib.error.HTTPError) as not_ready:
            urllib.request.urlopen(f"{base}/readyz")
        assert not_ready.value.code == 503
        assert list(json.load(not_ready.value)["failing"]) == ["salesforce.Account"]
        assert urllib.request.urlopen(f"{base}/healthz").status == 200  # alive all the same
        assert gauge(worker.metrics.render().decode(), "prm_object_failing", "Account") == 1
    finally:
        server.stop()
        mirror.close()
