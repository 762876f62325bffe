"""The sync daemon: APScheduler jobs per source and object, shared out by leases.

Jobs: an incremental sync of every object every ``sync_interval`` seconds, the pusher every
``push_interval``, a look for free ranges of split backfills every ``range_interval``, the
delete sweep and the self-audit on cron schedules, and a metrics refresh. Each job runs under a
lease in the store (``mirror.leases``), so several daemons sharing one PostgreSQL store split
the objects (and the ranges of one object's split backfill, ``mirror.pull.ranges``) between them and
take over a dead worker's work when its lease expires; one job never overlaps itself
(``max_instances=1``, ``coalesce``), and runs are jittered. SIGTERM or SIGINT finish the page
being written, commit, and exit; a restart resumes from the checkpoints. Before each CRM job
the org's API budget, as the CRM's own usage headers report it, is checked: the daemon leaves
``api_reserve`` of the daily limit free for the vendor's people and waits for the quota to
reset. On start, and with each metrics refresh, runs left ``running`` by dead processes are
closed as ``interrupted`` (``mirror.pull.runs``). On SQLite the jobs' write transactions take turns
(``mirror.store.sqlite_writes``); reads never wait.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import text

from mirror.api import Mirror
from mirror.errors import ConfigError, MirrorError, QuotaExceeded
from mirror.heap import settle_heap as settle_heap
from mirror.leases import Leases
from mirror.logs import log_context
from mirror.observability import Health, Metrics, ObservabilityServer
from mirror.pull.audit import audit_object
from mirror.pull.sync import Puller, RunResult
from mirror.push.wakeup import PushWaker, has_pending
from mirror.store.database import utcnow
from mirror.stream.runtime import StreamRuntime

log = logging.getLogger("prm_mirror.daemon")


class Daemon:
    """Schedules and runs the mirror's work for one worker process."""

    def __init__(self, mirror: Mirror, *, worker_id: str | None = None) -> None:
        self.mirror = mirror
        self.settings = mirror.config.daemon
        self.worker_id = worker_id or self.settings.worker_id or _default_worker()
        self.leases = Leases(mirror.store, self.worker_id, self.settings.lease_seconds)
        self.stopping = threading.Event()
        self.metrics = Metrics()
        self.health = Health()
        self.server: ObservabilityServer | None = None
        self.scheduler: BaseScheduler | None = None
        self.streams: StreamRuntime | None = None
        self.waker: PushWaker | None = None

    # --- running ------------------------------------------------------------------------

    def run(self) -> None:
        """Run in the foreground until SIGTERM/SIGINT; then finish the current page and exit."""
        self.mirror.close_orphaned_runs()
        problems = self.mirror.stream_problems()
        if problems:
            raise ConfigError(problems)
        scheduler = BlockingScheduler(timezone="UTC", executors=_executors())
        self._install(scheduler)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())
        self._start_server()
        frozen = settle_heap(self.mirror)
        log.info(
            "daemon %s starting (%d objects kept out of garbage collection)", self.worker_id, frozen
        )
        self.health.running = True
        self.start_streams()
        try:
            scheduler.start()
        finally:
            self.health.running = False
            self.close_streams()
            if self.server is not None:
                self.server.stop()
            log.info("daemon %s stopped", self.worker_id)

    def stop(self) -> None:
        """Ask every job to end after its current page, then shut the scheduler down."""
        self.stopping.set()
        scheduler = self.scheduler
        if scheduler is not None and scheduler.running:
            threading.Thread(target=scheduler.shutdown, kwargs={"wait": True}).start()

    def run_once(self) -> dict[str, Any]:
        """Every job once, in order (syncs, push, metrics): for cron-style use and tests."""
        self.mirror.close_orphaned_runs()
        for source in self.mirror.config.sources:
            for name in self.mirror.object_names(source):
                self.sync_job(source, name)
            self.push_job(source)
        self.refresh_metrics()
        return self.health.snapshot()

    def _install(self, scheduler: BaseScheduler) -> None:
        self.scheduler = scheduler
        s = self.settings
        common = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
        for source in self.mirror.config.sources:
            for name in self.mirror.object_names(source):
                scheduler.add_job(
                    self.sync_job,
                    "interval",
                    args=(source, name),
                    seconds=s.sync_interval,
                    jitter=s.jitter,
                    id=f"sync:{source}:{name}",
                    next_run_time=utcnow(),
                    **common,
                )
            scheduler.add_job(
                self.ranges_job,
                "interval",
                args=(source,),
                seconds=s.range_interval,
                jitter=min(s.jitter, s.range_interval),
                id=f"ranges:{source}",
                **common,
            )
            scheduler.add_job(
                self.push_job,
                "interval",
                args=(source,),
                seconds=s.push_interval,
                jitter=min(s.jitter, s.push_interval),
                id=f"push:{source}",
                **common,
            )
            scheduler.add_job(
                self.sweep_job,
                CronTrigger.from_crontab(s.sweep_cron, "UTC"),
                args=(source,),
                jitter=s.jitter,
                id=f"sweep:{source}",
                **common,
            )
            scheduler.add_job(
                self.audit_job,
                CronTrigger.from_crontab(s.audit_cron, "UTC"),
                args=(source,),
                jitter=s.jitter,
                id=f"audit:{source}",
                **common,
            )
        scheduler.add_job(
            self.refresh_metrics,
            "interval",
            seconds=15,
            id="metrics",
            next_run_time=utcnow(),
            **common,
        )

    def start_streams(self) -> None:
        """Start the change streams' threads and the pusher's wake-up on portal writes (``run``
        does; they end when the daemon stops)."""
        s, mirror = self.settings, self.mirror
        if mirror.stream_sources():
            self.streams = StreamRuntime(
                mirror, self.leases, self.metrics, self.stopping, self.sync_job, self._applied
            )
            self.streams.start()
        self.waker = PushWaker(
            mirror.store,
            self._woken_push,
            mirror.config.sources,
            self.stopping,
            window=s.push_wake_window,
            poll=s.push_wake_poll,
        ).start()

    def close_streams(self) -> None:
        """Stop the streams and the wake-up, and wait for their threads."""
        self.stopping.set()
        for part in (self.streams, self.waker):
            if part is not None:
                part.close()

    def _applied(self, source: str) -> None:
        if self.waker is not None and has_pending(self.mirror.store, source):
            self.waker.tell(source)

    def _woken_push(self, source: str) -> None:
        self.metrics.push_wakeups.labels(source).inc()
        self.push_job(source)

    def _start_server(self) -> None:
        if self.settings.metrics_port and self.server is None:
            self.server = ObservabilityServer(
                self.metrics,
                self.health,
                self._store_ok,
                self.settings.metrics_host,
                self.settings.metrics_port,
            ).start()

    # --- jobs ---------------------------------------------------------------------------

    def sync_job(self, source: str, name: str) -> None:
        """Incremental sync of one object, under its lease (renewed at every page)."""
        job = f"sync:{source}:{name}"
        local_stop = threading.Event()
        renew = self._renewer(job, local_stop)
        self._leased(
            job,
            source,
            lambda: self._record_sync(
                self.mirror.sync(
                    [name], sources=[source], stop=local_stop, progress=renew, leases=self.leases
                )
            ),
        )

    def ranges_job(self, source: str) -> None:
        """Read free ranges of the source's split backfills, each under its own lease: how
        this worker joins a backfill another planned, or takes over a dead worker's range."""
        job = f"ranges:{source}"
        if self.stopping.is_set() or self._over_budget(source, job):
            return
        self._guard(
            job,
            lambda: self._record_sync(
                self.mirror.join_backfills(source, self.leases, stop=self.stopping)
            ),
        )

    def push_job(self, source: str) -> None:
        """Push the source's outbox, under its lease (one pusher per source keeps the order)."""
        self._leased(f"push:{source}", source, lambda: self.mirror.push([source]))

    def sweep_job(self, source: str) -> None:
        """The delete sweep of every object of the source."""
        self._leased(f"sweep:{source}", source, lambda: self.mirror.sweep())

    def audit_job(self, source: str) -> None:
        """The self-audit of every object of the source."""
        self._leased(f"audit:{source}", source, lambda: self.audit(source))

    def _leased(self, job: str, source: str, work: Callable[[], Any]) -> None:
        """Run ``work`` if the daemon is not stopping, the API budget allows it, and this
        worker holds the job's lease."""
        if self.stopping.is_set() or self._over_budget(source, job):
            return
        # this process's other threads (a stream apply, a woken push) do the same work under
        # this lock: the lease alone is shared by every thread of one worker
        with self.mirror.work_lock(job), self.leases.held(job) as ours:
            if ours:
                self._guard(job, work)

    def audit(self, source: str) -> list[Any]:
        """Audit every mirrored object of ``source``; returns the reports."""
        self.mirror.visibility(source)  # fails closed on rules the mirrored schema contradicts
        access = self.mirror.grant_upkeep(source).page_hook()
        puller = Puller(
            self.mirror.store,
            self.mirror.adapter(source),
            hooks=[access],
            policy_of=self.mirror.policy_of(source),
        )
        reports = []
        for name in self.mirror.object_names(source):
            mirrored = self.mirror.store.prepare_object(self.mirror.spec(source, name))
            reports.append(audit_object(puller, mirrored, self.settings.audit_sample))
        return reports

    def refresh_metrics(self) -> None:
        """Lag per object, outbox depth and open conflicts, from the store."""
        now = time.time()
        failing: dict[str, str] = {}
        for status in self.mirror.status():
            labels = (status.source, status.object)
            if status.last_success_at is not None:
                self.metrics.since_sync.labels(*labels).set(now - _epoch(status.last_success_at))
            cursor = _parse(status.cursor) if status.cursor else None
            if cursor is not None:
                self.metrics.data_age.labels(*labels).set(now - cursor)
            if status.last_run_status in ("failed", "interrupted"):
                failing[f"{status.source}.{status.object}"] = status.last_error or "failed"
        self.health.set_failing(failing)
        not_ready = self.health.not_ready()
        for status in self.mirror.status(unsynced=True):
            name = f"{status.source}.{status.object}"
            self.metrics.failing.labels(status.source, status.object).set(int(name in not_ready))
        for stream in self.mirror.stream_status():
            self.metrics.stream_waiting.labels(stream.source).set(stream.waiting)
        for state, count in self.mirror.queue_summary().items():
            if state == "conflicts":
                self.metrics.conflicts.set(count)
            else:
                self.metrics.outbox.labels(state).set(count)

    # --- helpers ------------------------------------------------------------------------

    def _guard(self, job: str, work: Callable[[], Any]) -> None:
        started = time.monotonic()
        try:
            with log_context(job=job, worker=self.worker_id):
                work()
        except QuotaExceeded as exc:
            self.health.record(job, False, f"API quota used up: {exc}")
            log.warning("%s: API quota used up; waiting for it to reset", job)
        except MirrorError as exc:
            self.metrics.errors.labels(job).inc()
            self.health.record(job, False, str(exc))
            log.error("%s failed: %s", job, exc)
        except Exception as exc:
            self.metrics.errors.labels(job).inc()
            self.health.record(job, False, repr(exc))
            log.exception("%s failed", job)
        else:
            self.metrics.last_success.labels(job).set(time.time())
            self.health.record(job, True)
        finally:
            self.metrics.duration.labels(job.split(":", 1)[0]).observe(time.monotonic() - started)

    def _record_sync(self, results: list[RunResult]) -> None:
        for r in results:
            t = r.totals
            for op, count in (
                ("insert", t.inserted),
                ("update", t.updated),
                ("delete", t.deleted + r.swept),
            ):
                if count:
                    self.metrics.records.labels(r.source, r.object, op).inc(count)
            if t.rejected:
                self.metrics.rejects.labels(r.source, r.object).inc(t.rejected)
            if r.api_calls:
                self.metrics.api_calls.labels(r.source).inc(r.api_calls)

    def _renewer(self, job: str, local_stop: threading.Event) -> Callable[..., None]:
        def renew(*_: Any) -> None:
            if self.stopping.is_set() or not self.leases.acquire(job):
                local_stop.set()

        return renew

    def _over_budget(self, source: str, job: str) -> bool:
        usage = getattr(self.mirror.adapter(source), "api_usage", lambda: None)()
        if not usage:
            return False
        used, limit = usage
        self.metrics.budget.labels(source).set(max(limit - used, 0))
        if limit and used >= limit * (1 - self.settings.api_reserve):
            note = f"paused: {used} of {limit} daily API requests used (reserve kept free)"
            self.health.record(job, True, note)
            log.info("%s %s", job, note)
            return True
        return False

    def _store_ok(self) -> bool:
        try:
            with self.mirror.store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False


def _executors() -> dict[str, Any]:
    # a few objects at once: more would only queue for the store's one writer (SQLite) and the
    # CRM's concurrency limits
    return {"default": ThreadPoolExecutor(max_workers=4)}


def _default_worker() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _epoch(moment: datetime) -> float:
    """Unix time of ``moment``; a naive one is UTC (as the store keeps them)."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _parse(cursor: str) -> float | None:
    try:
        return datetime.fromisoformat(cursor.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
