"""Webhook deliveries as HubSpot makes them: batches, v3 signatures, concurrency, retries.

Events queued by committed changes are gathered for ``batch_window`` seconds into batches of
at most 100 and POSTed as a JSON array to the app's target URL, at most
``maxConcurrentRequests`` at once, so batches may arrive in any order. Each request carries
``X-HubSpot-Signature-v3`` (base64 HMAC-SHA256 with the app's client secret over method, URI,
body and ``X-HubSpot-Request-Timestamp``, epoch milliseconds of the wall clock) and the older
v1 signature. A 2xx answer delivers the batch. A connection failure, a timeout (5 s), a 5xx or a
429 is retried, with ``attemptNumber`` counting up, up to 10 times, on HubSpot's spread of about
24 hours (``RETRY_DELAYS`` with jitter, a 429's ``Retry-After`` honoured); the sandbox runs that
schedule on a compressed clock (``time_scale`` real seconds per HubSpot second). Any other
answer (400, 401, 403, 404...) is not retried, and a batch still failing after the last retry is
given up: both are lost to the receiver, which only a poll recovers.

Injected faults (``WebhookFaults``) apply to the next requests: ``duplicate`` (sent twice),
``reorder`` (held back until the next batch has been answered), ``lose`` (dropped, never
retried), ``bad_signature`` (signed with another secret), ``stale_timestamp`` (signed six
minutes in the past) and ``delay`` (held back ``seconds``). Every request is logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson
import urllib3

from sandboxes.hubspot.webhooks import WebhookConfig

BATCH_MAX = 100
RETRY_DELAYS = (60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 28800)
"""HubSpot seconds before each retry: ten retries spread over about 24 hours."""
FAULT_KINDS = ("duplicate", "reorder", "lose", "bad_signature", "stale_timestamp", "delay")
STALE_MS = 6 * 60 * 1000
REORDER_HOLD = 2.0
LOG_MAX = 20_000
URI_DECODED = {
    "%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'",
    "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";",
}  # fmt: skip
"""The escapes HubSpot's v3 signature has decoded in the request URI."""


def signed_uri(url: str) -> str:
    """The request URI as the v3 signature covers it."""
    for escaped, plain in URI_DECODED.items():
        url = url.replace(escaped, plain).replace(escaped.lower(), plain)
    return url


def v3_signature(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """``X-HubSpot-Signature-v3`` of one request."""
    source = f"{method}{signed_uri(uri)}{body.decode()}{timestamp}".encode()
    return base64.b64encode(hmac.new(secret.encode(), source, hashlib.sha256).digest()).decode()


@dataclass
class Timing:
    """How long the sandbox's HubSpot waits: ``time_scale`` real seconds per HubSpot second
    of the retry schedule, ``timeout`` (real seconds) for an answer, ``batch_window`` (real
    seconds) to gather events into a batch, ``jitter`` the spread of each retry delay."""

    time_scale: float = 1e-4
    timeout: float = 5.0
    batch_window: float = 0.02
    jitter: float = 0.2


@dataclass
class Batch:
    """Events sent in one request, with their attempt number and when they are due."""

    number: int
    events: list[dict[str, Any]]
    attempt: int = 0
    due: float = 0.0
    held: bool = False


@dataclass
class WebhookFaults:
    """Faults queued for the next requests: ``[kind, remaining, seconds]``."""

    queue: list[list[Any]] = field(default_factory=list)

    def add(self, kind: str, count: int, seconds: float) -> None:
        """Queue ``kind`` for the next ``count`` requests."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown webhook fault {kind!r} (one of {', '.join(FAULT_KINDS)})")
        self.queue.append([kind, count, seconds])

    def take(self) -> tuple[str, float] | None:
        """Consume one use of the first queued fault."""
        if not self.queue:
            return None
        fault = self.queue[0]
        fault[1] -= 1
        if fault[1] <= 0:
            self.queue.pop(0)
        return str(fault[0]), float(fault[2])


class Delivery:
    """The delivery worker of one portal's app."""

    def __init__(self, config: WebhookConfig) -> None:
        """Deliver ``config``'s events; the worker thread starts with the first event."""
        self.config = config
        self.timing = Timing()
        self.faults = WebhookFaults()
        self.log: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._fresh: list[tuple[float, dict[str, Any]]] = []
        self._waiting: list[Batch] = []
        self._in_flight = 0
        self._requests = 0
        self._numbers = 0
        self._closed = False
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=128, thread_name_prefix="hs-webhook")
        self._http = urllib3.PoolManager(maxsize=128, retries=False)

    # -- the queue --------------------------------------------------------------------------

    def enqueue(self, events: Iterable[dict[str, Any]]) -> None:
        """Queue events for delivery."""
        now = time.monotonic()
        with self._cond:
            self._fresh.extend((now, event) for event in events)
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="hs-webhooks", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def pending(self) -> int:
        """Events not yet delivered, given up or lost."""
        with self._cond:
            queued = sum(len(b.events) for b in self._waiting)
            return len(self._fresh) + queued + self._in_flight

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued, waiting for a retry or under way."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._fresh or self._waiting or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def discard(self) -> int:
        """Forget every queued and waiting event; how many there were."""
        with self._cond:
            count = len(self._fresh) + sum(len(b.events) for b in self._waiting)
            self._fresh.clear()
            self._waiting.clear()
            self._cond.notify_all()
        return count

    def close(self) -> None:
        """Stop delivering (queued events are lost, as a restart of HubSpot's queue is not
        something the sandbox emulates)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- the worker -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                ready = self._ready(time.monotonic())
                while not ready and not self._closed:
                    self._cond.wait(self._sleep(time.monotonic()))
                    ready = self._ready(time.monotonic())
                if self._closed:
                    return
                for batch in ready:
                    self._waiting.remove(batch)
                    self._in_flight += len(batch.events)
                    self._requests += 1
            try:
                for batch in ready:
                    self._pool.submit(self._dispatch, batch)
            except RuntimeError:
                return

    def _ready(self, now: float) -> list[Batch]:
        """Form batches of the fresh events once they are ``batch_window`` old (or fill a
        batch), and take the due batches the concurrency limit lets out (holding the lock)."""
        if self._fresh and (
            now - self._fresh[0][0] >= self.timing.batch_window or len(self._fresh) >= BATCH_MAX
        ):
            events = [event for _, event in self._fresh]
            self._fresh.clear()
            for start in range(0, len(events), BATCH_MAX):
                self._numbers += 1
                self._waiting.append(Batch(self._numbers, events[start : start + BATCH_MAX]))
        target = self.config.target
        if target is None:
            return []
        room = target.max_concurrent_requests - self._requests
        due = [b for b in self._waiting if b.due <= now]
        return due[: max(room, 0)]

    def _sleep(self, now: float) -> float:
        target = self.config.target
        if target is not None and self._requests >= target.max_concurrent_requests:
            return 0.5  # a request settling wakes the worker
        moments = [b.due for b in self._waiting]
        if self._fresh:
            moments.append(self._fresh[0][0] + self.timing.batch_window)
        return min([0.5, *(max(m - now, 0.001) for m in moments)])

    def _dispatch(self, batch: Batch) -> None:
        """Send one batch (with the next injected fault, if any) and settle its outcome."""
        try:
            with self._cond:
                fault = None if batch.held else self.faults.take()
            kind, seconds = fault or ("", 0.0)
            if kind == "lose":
                self._record(batch, "lost", None, kind)
                self._settle(batch, None)
                return
            if kind in ("delay", "reorder"):
                batch.held = kind == "reorder"
                wait = seconds if kind == "delay" else REORDER_HOLD
                self._record(batch, "held", None, kind)
                self._settle(batch, time.monotonic() + wait)
                return
            status, retry_after = self._post(batch, kind)
            self._record(batch, _outcome(status), status, kind or None)
            if kind == "duplicate":
                again, _ = self._post(batch, "")
                self._record(batch, "duplicate", again, kind)
            self._settle(batch, self._retry_at(batch, status, retry_after))
        except Exception as error:  # the worker must outlive one bad batch
            self._record(batch, "error", None, repr(error))
            self._settle(batch, None)

    def _post(self, batch: Batch, fault: str) -> tuple[int | str, str | None]:
        """POST the batch: its status (or ``"timeout"``, ``"connection_error"``) and the
        answer's ``Retry-After``."""
        target = self.config.target
        if target is None:
            return "connection_error", None
        body = orjson.dumps([{**event, "attemptNumber": batch.attempt} for event in batch.events])
        now_ms = int(time.time() * 1000) - (STALE_MS if fault == "stale_timestamp" else 0)
        secret = self.config.client_secret
        if fault == "bad_signature":
            secret = secret[::-1] + "-not-the-app-secret"
        timestamp = str(now_ms)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "HubSpot Connect 2.0 (http://dev.hubspot.com/) (sandbox)",
            "X-HubSpot-Signature-v3": v3_signature(secret, "POST", target.url, body, timestamp),
            "X-HubSpot-Request-Timestamp": timestamp,
            "X-HubSpot-Signature-Version": "v1",
            "X-HubSpot-Signature": hashlib.sha256(secret.encode() + body).hexdigest(),
        }
        try:
            answer = self._http.request(
                "POST", target.url, body=body, headers=headers,
                timeout=urllib3.Timeout(total=self.timing.timeout), redirect=False,
            )  # fmt: skip
        except urllib3.exceptions.NewConnectionError:
            return "connection_error", None
        except urllib3.exceptions.TimeoutError:
            return "timeout", None
        except (urllib3.exceptions.HTTPError, OSError):
            return "connection_error", None
        return int(answer.status), answer.headers.get("Retry-After")

    def _retry_at(self, batch: Batch, status: int | str, retry_after: str | None) -> float | None:
        """When to send the batch again (``None``: delivered, refused or given up)."""
        retried = isinstance(status, str) or status == 429 or status >= 500
        if not retried:
            return None
        if batch.attempt >= len(RETRY_DELAYS):
            self._record(batch, "gave_up", status, None)
            return None
        delay = RETRY_DELAYS[batch.attempt] * random.uniform(
            1 - self.timing.jitter, 1 + self.timing.jitter
        )
        if status == 429 and retry_after and retry_after.isdigit():
            delay = float(retry_after)
        batch.attempt += 1
        return time.monotonic() + delay * self.timing.time_scale

    def _settle(self, batch: Batch, again_at: float | None) -> None:
        """The request is over: the batch waits for ``again_at`` or is done."""
        with self._cond:
            self._requests -= 1
            self._in_flight -= len(batch.events)
            if not batch.held:
                for other in self._waiting:
                    if other.held:
                        other.held, other.due = False, time.monotonic()
            if again_at is not None:
                batch.due = again_at
                self._waiting.append(batch)
            self._cond.notify_all()

    def _record(self, batch: Batch, outcome: str, status: int | str | None, fault: Any) -> None:
        entry = {
            "batch": batch.number,
            "attempt": batch.attempt,
            "events": [event["eventId"] for event in batch.events],
            "outcome": outcome,
            "status": status,
            "fault": fault,
            "at": time.time(),
        }
        with self._cond:
            self.log.append(entry)
            del self.log[:-LOG_MAX]


def _outcome(status: int | str) -> str:
    if isinstance(status, int) and 200 <= status < 300:
        return "delivered"
    if isinstance(status, str) or status == 429 or status >= 500:
        return "failed"
    return "refused"
