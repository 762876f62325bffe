"""The change streams of a daemon: one listener thread per ``StreamListener`` source, the webhook
endpoint for ``WebhookReceiver`` sources, one applier thread per stream source, and the thread
that makes the incremental polls gaps ask for.

- A listener resumes from the position saved with the last events it stored. When its
  connection fails it asks for a poll of every object of its source (changes made while it was
  down may never be replayed), then reconnects after 1, 2, 4 ... seconds, at most
  ``[daemon] stream_retry_max``. SIGTERM sets ``stop``; the listener ends within seconds.
- An applier wakes when its source's events are stored (and every second, for events another
  process stored), waits ``stream_batch_window`` for more, and applies the inbox object by
  object under the object's lock and lease (``Mirror.apply_stream``); an object whose sync is
  running keeps its records in the inbox until the sync ends.
- The gap poller runs the sync job of each object a gap named (the same job the schedule runs,
  under the same lease); the schedule's polls go on regardless, as the backstop.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from mirror.adapter import StreamListener, WebhookReceiver
from mirror.config import DaemonConfig
from mirror.leases import Leases
from mirror.logs import log_context
from mirror.observability import Metrics
from mirror.stream import inbox
from mirror.stream.applier import Applied
from mirror.stream.webhooks import WebhookServer

if TYPE_CHECKING:
    from mirror.api import Mirror

log = logging.getLogger("prm_mirror.stream")
REPOLL_SECONDS = 5.0  # a requested poll not answered yet is asked for again after this
FAILURES_BEFORE_POLL = 3
BUSY_RETRY = 0.25  # seconds before an object whose sync held it is tried again
BIND_RETRY = 5.0  # seconds between tries for a webhook port another process holds


class StreamRuntime:
    """The threads that run ``mirror``'s change streams until ``stop`` is set."""

    def __init__(
        self,
        mirror: Mirror,
        leases: Leases,
        metrics: Metrics,
        stop: threading.Event,
        sync: Callable[[str, str], None],
        applied: Callable[[str], None] | None = None,
    ) -> None:
        """``sync(source, object)`` makes a poll a gap asked for; ``applied(source)`` is
        called after stream records of ``source`` were written (a held-back portal edit may
        be ready to push)."""
        self.mirror = mirror
        self.store = mirror.store
        self.settings: DaemonConfig = mirror.config.daemon
        self.leases = leases
        self.metrics = metrics
        self.stop = stop
        self.sync = sync
        self.applied = applied
        self.sources = mirror.stream_sources()
        self.wakes = {source: threading.Event() for source in self.sources}
        self.server: WebhookServer | None = None
        self._polls = threading.Event()
        self._threads: list[threading.Thread] = []
        self._asked: dict[tuple[str, str], float] = {}

    def start(self) -> StreamRuntime:
        """Start every stream's threads (and the webhook endpoint when a source needs it)."""
        hooks = False
        for source in self.sources:
            adapter = self.mirror.adapter(source)
            if isinstance(adapter, StreamListener):
                self._spawn(functools.partial(self._listen, source), f"stream:{source}", source)
            elif isinstance(adapter, WebhookReceiver):
                hooks = True
                inbox.set_state(self.store, source, "listening", "waiting for deliveries")
            self._spawn(functools.partial(self._apply, source), f"stream-apply:{source}", source)
        if self.sources:
            self._spawn(self._poll_gaps, "stream-gaps")
        if hooks and self.settings.webhook_port and not self._serve_hooks():
            self._spawn(self._bind_later, "webhooks")
        return self

    def _serve_hooks(self, warn: bool = True) -> bool:
        """Start the webhook endpoint; false when its port is taken."""
        s = self.settings
        try:
            server = WebhookServer(
                self._receive, s.webhook_host, s.webhook_port, self.wake, s.webhook_public_url
            )
        except OSError as exc:
            if warn:
                log.warning("webhook deliveries not received here for now: %s", exc)
            return False
        self.server = server.start()
        return True

    def _bind_later(self) -> None:
        """Another daemon on this host holds the webhook port and receives the deliveries
        (this one applies what it stores); take the port over when that daemon stops."""
        while not self.stop.wait(BIND_RETRY):
            if self._serve_hooks(warn=False):
                log.info("webhook port taken over: deliveries received here")
                if self.stop.is_set() and self.server is not None:
                    self.server.stop()
                return

    def close(self) -> None:
        """Stop the endpoint and wait for the threads (``stop`` must be set)."""
        if self.server is not None:
            self.server.stop()
        for event in self.wakes.values():
            event.set()
        self._polls.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def wake(self, source: str) -> None:
        """Events of ``source`` were stored: its applier should run."""
        if source in self.wakes:
            self.wakes[source].set()

    def _spawn(self, target: Callable[[], None], name: str, source: str | None = None) -> None:
        def run() -> None:
            with log_context(source=source, job=name):
                target()

        thread = threading.Thread(target=run, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _receive(
        self, source: str, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, str]:
        status, text = self.mirror.receive_webhook(source, method, url, headers, body)
        if status == 200:
            self.metrics.stream_received.labels(source).inc()
        else:
            self._polls.set()
        return status, text

    # --- listeners -----------------------------------------------------------------------

    def _listen(self, source: str) -> None:
        adapter = self.mirror.adapter(source)
        assert isinstance(adapter, StreamListener)
        delay = 1.0
        while not self.stop.is_set():
            try:
                specs = [
                    self.mirror.spec(source, name) for name in self.mirror.object_names(source)
                ]
                position = inbox.load_position(self.store, source)
                inbox.set_state(self.store, source, "connecting", f"from {position or 'now'}")
                self.metrics.stream_up.labels(source).set(1)
                for item in adapter.listen(specs, position, self.stop):
                    recorded = self.mirror.record_stream(source, [item])
                    self.metrics.stream_received.labels(source).inc(recorded.events)
                    if recorded.gaps:
                        self._polls.set()
                    self.wake(source)
                    delay = 1.0
                if self.stop.is_set():
                    break
                raise ConnectionError("the stream ended")
            except Exception as exc:
                self._broken(source, str(exc) or type(exc).__name__, delay)
                self._polls.set()
                self.stop.wait(delay)
                delay = min(delay * 2, self.settings.stream_retry_max)
        self.metrics.stream_up.labels(source).set(0)
        self._quietly(lambda: inbox.set_state(self.store, source, "stopped"))

    def _broken(self, source: str, reason: str, delay: float) -> None:
        self.metrics.stream_up.labels(source).set(0)
        log.warning("stream of %s failed: %s; reconnecting in %.0f s", source, reason, delay)
        self._quietly(lambda: self.mirror.stream_gap(source, f"listener failed: {reason}"))
        self._quietly(lambda: inbox.set_state(self.store, source, "down", reason))

    # --- appliers ------------------------------------------------------------------------

    def _apply(self, source: str) -> None:
        wake = self.wakes[source]
        failures: dict[str, int] = {}
        while not self.stop.is_set():
            woke = wake.wait(timeout=1.0)
            wake.clear()
            if self.stop.is_set():
                return
            if woke:
                self.stop.wait(self.settings.stream_batch_window)
            try:
                waiting = [o for s, o in self.mirror.stream_waiting(source) if s == source]
            except Exception:
                log.exception("the inbox of %s could not be read", source)
                self.stop.wait(1.0)
                continue
            applied: list[Applied] = []
            for name in waiting:
                try:
                    applied += self.mirror.apply_stream(source, [name], leases=self.leases)
                    failures.pop(name, None)
                except Exception as exc:
                    failures[name] = failures.get(name, 0) + 1
                    self._failed(source, name, exc, failures[name])
            self._note(source, applied)
            if len(applied) < len(waiting):
                # an object's sync holds it, or its apply failed: look again soon
                busy = len(applied) + len(failures) < len(waiting)
                self.stop.wait(BUSY_RETRY if busy else 1.0)
                wake.set()

    def _failed(self, source: str, name: str, exc: Exception, count: int) -> None:
        """An apply of ``name`` failed; the third failure in a row hands its waiting records
        to a poll (a record the CRM will not fetch must not hold the stream up forever)."""
        if count < FAILURES_BEFORE_POLL:
            log.warning("stream records of %s.%s could not be applied: %s", source, name, exc)
            return
        log.error(
            "stream records of %s.%s failed %d times (%s): an incremental poll takes them",
            source,
            name,
            count,
            exc,
        )
        self._quietly(lambda: self.mirror.hand_to_poll(source, name, f"apply failed: {exc}"))
        self._polls.set()

    def _note(self, source: str, applied: list[Applied]) -> None:
        for done in applied:
            log.debug(
                "stream: %d records of %s applied (%d written, %d deleted), lag %s s",
                done.taken,
                done.object,
                done.written,
                done.deleted,
                "?" if done.lag is None else f"{done.lag:.2f}",
            )
            self.metrics.stream_applied.labels(source, done.object).inc(done.taken)
            if done.lag is not None:
                self.metrics.stream_lag.labels(source).set(done.lag)
        if self.applied is not None and any(done.written for done in applied):
            self.applied(source)

    # --- gap polls -----------------------------------------------------------------------

    def _poll_gaps(self) -> None:
        while not self.stop.is_set():
            self._polls.wait(timeout=1.0)
            self._polls.clear()
            try:
                requested = inbox.requested_polls(self.store)
            except Exception:
                log.exception("the requested polls could not be read")
                continue
            for source, name, reason in requested:
                if self.stop.is_set():
                    return
                key = (source, name)
                if time.monotonic() - self._asked.get(key, -REPOLL_SECONDS) < REPOLL_SECONDS:
                    continue
                self._asked[key] = time.monotonic()
                self.metrics.stream_fallbacks.labels(source).inc()
                log.info("polling %s.%s now: %s", source, name, reason)
                self.sync(source, name)

    def _quietly(self, work: Callable[[], object]) -> None:
        try:
            work()
        except Exception:
            log.exception("the stream's state could not be recorded")
