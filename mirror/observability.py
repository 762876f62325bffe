"""Metrics and health for the daemon (its log lines: ``mirror.logs``).

- Prometheus metrics on ``/metrics`` (records synced, time since the last good sync and data
  age per object, job durations, build info, API calls and remaining
  budget, outbox depth, open conflicts, rejects, job errors, the change streams' events,
  applied records, fallback polls, lag and inbox, pushes woken by portal writes) from a
  registry of our own, so
  several daemons in one process (tests) do not collide;
- ``/healthz`` (liveness): 200 with the jobs' last outcomes while the scheduler runs and the
  store answers, 503 otherwise;
- ``/readyz`` (readiness): 503 also while any object's last sync failed, naming them;
"""

from __future__ import annotations

import json
import logging
import platform
import threading
from collections.abc import Callable
from datetime import datetime
from importlib import metadata
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response


class Metrics:
    """The daemon's Prometheus metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.records = Counter(
            "prm_records_synced", "Records applied by pulls", ["source", "object", "op"], registry=r
        )
        self.rejects = Counter(
            "prm_rejects", "CRM records set aside", ["source", "object"], registry=r
        )
        self.since_sync = Gauge(
            "prm_sync_age_seconds",
            "Seconds since the object's last successful sync (alert on this)",
            ["source", "object"],
            registry=r,
        )
        self.data_age = Gauge(
            "prm_data_age_seconds",
            "Now minus the object's cursor: the newest change mirrored (quiet objects grow old)",
            ["source", "object"],
            registry=r,
        )
        self.failing = Gauge(
            "prm_object_failing",
            "1 while the object's last sync failed",
            ["source", "object"],
            registry=r,
        )
        self.duration = Histogram(
            "prm_job_duration_seconds",
            "How long each job run took",
            ["kind"],
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
            registry=r,
        )
        self.build = Info("prm_build", "The running prm-mirror", registry=r)
        self.build.info({"version": _version(), "python": platform.python_version()})
        self.api_calls = Counter(
            "prm_api_calls", "HTTP requests to the CRM", ["source"], registry=r
        )
        self.budget = Gauge(
            "prm_api_budget_remaining", "Daily API requests left", ["source"], registry=r
        )
        self.outbox = Gauge(
            "prm_outbox_entries", "Outbox entries by status", ["status"], registry=r
        )
        self.conflicts = Gauge("prm_conflicts_open", "Conflicts waiting for a person", registry=r)
        self.errors = Counter("prm_job_errors", "Failed job runs", ["job"], registry=r)
        self.last_success = Gauge(
            "prm_job_last_success_timestamp", "Unix time of the last good run", ["job"], registry=r
        )
        self.stream_received = Counter(
            "prm_stream_events_received", "Change-stream events stored", ["source"], registry=r
        )
        self.stream_applied = Counter(
            "prm_stream_records_applied",
            "Records the change stream named, fetched and applied",
            ["source", "object"],
            registry=r,
        )
        self.stream_fallbacks = Counter(
            "prm_stream_fallbacks",
            "Incremental polls made because a stream could not vouch for its changes",
            ["source"],
            registry=r,
        )
        self.stream_lag = Gauge(
            "prm_stream_lag_seconds",
            "CRM commit to mirror, for the newest change the stream applied",
            ["source"],
            registry=r,
        )
        self.stream_waiting = Gauge(
            "prm_stream_inbox_records",
            "Records waiting in the stream's inbox",
            ["source"],
            registry=r,
        )
        self.stream_up = Gauge(
            "prm_stream_up", "1 while the source's stream is connected", ["source"], registry=r
        )
        self.push_wakeups = Counter(
            "prm_push_wakeups", "Pushes started by a portal write", ["source"], registry=r
        )

    def render(self) -> bytes:
        """The text exposition format."""
        return bytes(generate_latest(self.registry))


def _version() -> str:
    try:
        return metadata.version("prm-mirror")
    except metadata.PackageNotFoundError:
        return "unknown"


class Health:
    """What the jobs last did, for ``/healthz`` and ``prm-mirror status``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.jobs: dict[str, dict[str, Any]] = {}
        self.failing: dict[str, str] = {}
        self.running = False

    def record(self, job: str, ok: bool, detail: str | None = None) -> None:
        """Remember a job's outcome."""
        with self._lock:
            entry = self.jobs.setdefault(job, {})
            entry["last_success" if ok else "last_error"] = datetime.now().astimezone().isoformat()
            entry["ok"] = ok
            if not ok:
                entry["error"] = detail
            elif detail:
                entry["note"] = detail

    def set_failing(self, failing: dict[str, str]) -> None:
        """The objects whose last sync failed, with the error (``source.object``: error)."""
        with self._lock:
            self.failing = dict(failing)

    def not_ready(self) -> dict[str, str]:
        """What keeps the mirror from being ready, with the error: each object whose last sync
        failed (``source.object``, from its runs or its job) and each other job whose last run
        failed."""
        with self._lock:
            failing = dict(self.failing)
            for job, entry in self.jobs.items():
                if not entry.get("ok", True):
                    kind, _, what = job.partition(":")
                    name = what.replace(":", ".") if kind == "sync" else job
                    failing[name] = str(entry.get("error") or "failed")
        return failing

    def snapshot(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        with self._lock:
            return {"running": self.running, "jobs": {k: dict(v) for k, v in self.jobs.items()}}


class PlainRequestLog(WSGIRequestHandler):
    """Logs each scrape or probe as a plain DEBUG line on ``prm_mirror.http`` (werkzeug's own
    lines are INFO, coloured with terminal escapes, and would flood the daemon's log)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """One uncoloured line per request, at DEBUG."""
        http_log.debug("%s %s %s", self.command, self.path, code)


http_log = logging.getLogger("prm_mirror.http")


class ObservabilityServer:
    """``/metrics`` and ``/healthz`` on a background thread."""

    def __init__(
        self, metrics: Metrics, health: Health, store_ok: Callable[[], bool], host: str, port: int
    ) -> None:
        self.metrics = metrics
        self.health = health
        self.store_ok = store_ok
        self._server: BaseWSGIServer = make_server(
            host, port, self._app, threaded=True, request_handler=PlainRequestLog
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        """The port it listens on (useful with port 0)."""
        return int(self._server.server_port)

    def start(self) -> ObservabilityServer:
        """Serve in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.path == "/metrics":
            response = Response(self.metrics.render(), content_type=CONTENT_TYPE_LATEST)
        elif request.path == "/healthz":
            body = self.health.snapshot()
            body["store"] = self.store_ok()
            healthy = body["running"] and body["store"]
            response = Response(
                json.dumps(body), status=200 if healthy else 503, content_type="application/json"
            )
        elif request.path == "/readyz":
            response = self._readiness()
        else:
            response = Response("not found", status=404)
        return response(environ, start_response)

    def _readiness(self) -> Response:
        """200 when the scheduler runs, the store answers and no object's last sync (nor any
        job's last run) failed; 503 naming what is not ready (``source.object`` or the job)."""
        failing = self.health.not_ready()
        body = {"running": self.health.running, "store": self.store_ok(), "failing": failing}
        ready = body["running"] and body["store"] and not failing
        return Response(
            json.dumps(body), status=200 if ready else 503, content_type="application/json"
        )
