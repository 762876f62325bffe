"""The Dataverse sandbox's event pipeline for webhooks: every committed row write of a table
with a registered step is posted to the step's service endpoint, the way Dataverse does.

- Synchronous steps (mode 0) post inside the write's transaction, before it commits: a failed
  post fails the write (500 ``0x80040266``, everything rolled back, a ``$batch`` changeset
  included) and is never retried. The receiver must not read the row back meanwhile: the
  write holds the organisation's lock until the post returns (in Dataverse, the row lock).
- Asynchronous steps (mode 1) post after the commit, from a queue worked by one thread (the
  asynchronous service). A post answered 2xx succeeds. 502, 503 and 504 get one more attempt
  at once (documented); a post that still fails is a failed attempt of the system job, tried
  again after each of ``retry_delays`` seconds (Dataverse does not document its schedule:
  these are the sandbox's), then left Failed (``statuscode`` 31).
- The post: ``POST <url>`` (WebhookKey adds ``?code=<key>``, HttpQueryString its pairs, and
  HttpHeader its pairs as headers) with ``Content-Type: application/json``, ``x-request-id``,
  ``x-ms-dynamics-organization``, ``x-ms-dynamics-entity-name``, ``x-ms-dynamics-request-name``
  and ``x-ms-correlation-request-id``; the body is the ``RemoteExecutionContext``
  (``webhook_context``). The timeout is 60 s unless the tests set another.

Injected faults (``DeliveryFaults``, through the sandbox's controls) act on the next posts of
either mode: lost (never posted), duplicated (posted twice), sent with a wrong key, failed with
a status as if the network had answered it; on asynchronous ones also reordered (the next
``n`` are held and posted in reverse order) and delayed.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import orjson
import requests

from sandboxes.dynamics.errors import DataverseError
from sandboxes.dynamics.store import DataverseStore, RowChange
from sandboxes.dynamics.webhook_context import MESSAGE_OF_OP, execution_context, fit
from sandboxes.dynamics.webhook_registry import (
    AUTH_HTTP_HEADER,
    MODE_ASYNC,
    Step,
    WebhookRegistry,
    auth_pairs,
)

GATEWAY_STATUSES = (502, 503, 504)
DEFAULT_RETRY_DELAYS = (5.0, 30.0, 120.0, 600.0)
LOG_LIMIT = 100_000
"""Entries the delivery log keeps (the oldest are dropped first)."""
SYNC_FAILURE = "0x80040266"


@dataclass
class DeliveryFaults:
    """Faults for the next posts (counts go down as they are used)."""

    lose: int = 0
    duplicate: int = 0
    wrong_key: int = 0
    reorder: int = 0
    fail: int = 0
    fail_status: int = 503
    delay_seconds: float = 0.0

    def take(self, name: str) -> bool:
        """Use one of fault ``name``; whether there was one."""
        if getattr(self, name) > 0:
            setattr(self, name, getattr(self, name) - 1)
            return True
        return False


@dataclass
class Delivery:
    """One system job (or one synchronous call): a step's post of one change."""

    job_id: str
    step: Step
    context: dict[str, Any]
    record_id: str
    wrong_key: bool = False
    attempt: int = 0
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))


class WebhookService:
    """Registrations and the event pipeline of one sandbox organisation (module docstring)."""

    def __init__(self, store: DataverseStore, organization: Callable[[], tuple[str, str]]) -> None:
        """Hook into ``store``'s commits; ``organization()`` gives ``(id, host name)``."""
        self.registry = WebhookRegistry(store)
        self.organization = organization
        self.faults = DeliveryFaults()
        self.retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS
        self.timeout = 60.0
        self.log: list[dict[str, Any]] = []
        self.jobs: dict[str, int] = {}
        self._queue: list[tuple[float, int, Delivery]] = []
        self._held: list[Delivery] = []
        self._busy = 0
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._http = requests.Session()
        self._http.trust_env = False
        store.before_commit = self._synchronous
        store.after_commit = self._asynchronous

    # --- the pipeline ---------------------------------------------------------------------

    def _deliveries(self, changes: list[RowChange], mode: int) -> list[Delivery]:
        found: list[Delivery] = []
        if not self.registry.steps:
            return found
        for change in changes:
            message = MESSAGE_OF_OP.get(change.op)
            if message is None:
                continue
            for step in self.registry.active_steps(message, change.entity.name):
                if step.mode != mode or not _passes_filter(step, change):
                    continue
                job_id = str(uuid.uuid4()) if mode == MODE_ASYNC else str(uuid.UUID(int=0))
                context = execution_context(step, change, organization=self.organization(),
                                            operation_id=job_id,
                                            correlation_id=str(uuid.uuid4()))  # fmt: skip
                found.append(Delivery(job_id, step, context, change.record_id))
        return found

    def _synchronous(self, changes: list[RowChange]) -> None:
        for delivery in self._deliveries(changes, 0):
            copies = self._apply_faults(delivery)
            for copy in copies:
                status = self._post(copy)
                if not 200 <= status < 300:
                    raise DataverseError(
                        500, SYNC_FAILURE,
                        f"Webhook step '{copy.step.name}' failed: the endpoint answered {status} "
                        "(Endpoint unavailable). The operation was rolled back.",
                    )  # fmt: skip

    def _asynchronous(self, changes: list[RowChange]) -> None:
        deliveries = self._deliveries(changes, MODE_ASYNC)
        if not deliveries:
            return
        with self._cond:
            for delivery in deliveries:
                self.jobs[delivery.job_id] = 0
                for copy in self._apply_faults(delivery):
                    if self.faults.take("reorder"):
                        self._held.append(copy)
                        if self.faults.reorder == 0:
                            self._flush_held()
                        continue
                    self._push(copy, self.faults.delay_seconds)
            self._ensure_worker()
            self._cond.notify_all()

    def _apply_faults(self, delivery: Delivery) -> list[Delivery]:
        with self._cond:
            if self.faults.take("lose"):
                self._note(delivery, None, "lost")
                self.jobs[delivery.job_id] = 30
                return []
            delivery.wrong_key = self.faults.take("wrong_key")
            copies = [delivery]
            if self.faults.take("duplicate"):
                copies.append(Delivery(delivery.job_id, delivery.step, delivery.context,
                                       delivery.record_id, delivery.wrong_key))  # fmt: skip
            return copies

    def _flush_held(self) -> None:
        held, self._held = self._held, []
        for delivery in reversed(held):
            self._push(delivery, self.faults.delay_seconds)

    def _push(self, delivery: Delivery, delay: float) -> None:
        heapq.heappush(self._queue, (time.monotonic() + delay, next(self._order), delivery))

    def _ensure_worker(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stopped = False
            self._thread = threading.Thread(target=self._work, name="dataverse-async-service",
                                            daemon=True)  # fmt: skip
            self._thread.start()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (
                    not self._queue or self._queue[0][0] > time.monotonic()
                ):
                    wait = self._queue[0][0] - time.monotonic() if self._queue else None
                    self._cond.wait(wait)
                if self._stopped:
                    return
                _due, _order, delivery = heapq.heappop(self._queue)
                self._busy += 1
                self.jobs[delivery.job_id] = 20
            status = 0
            try:
                status = self._post(delivery)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._settle(delivery, status)
                    self._cond.notify_all()

    def _settle(self, delivery: Delivery, status: int) -> None:
        if 200 <= status < 300:
            self.jobs[delivery.job_id] = 30
            return
        delivery.attempt += 1
        if delivery.attempt <= len(self.retry_delays):
            self.jobs[delivery.job_id] = 10
            self._push(delivery, self.retry_delays[delivery.attempt - 1])
            self._note(delivery, status, "will retry")
        else:
            self.jobs[delivery.job_id] = 31
            self._note(delivery, status, "failed")

    def _post(self, delivery: Delivery) -> int:
        """Post once (and once more on 502/503/504); the last status (0: no answer)."""
        status = self._post_once(delivery)
        if status in GATEWAY_STATUSES:
            status = self._post_once(delivery)
        return status

    def _post_once(self, delivery: Delivery) -> int:
        with self._cond:
            failed = self.faults.take("fail")
            fail_status = self.faults.fail_status
        if failed:
            self._note(delivery, fail_status, "injected failure")
            return fail_status
        try:
            endpoint = self.registry.endpoint(delivery.step.endpoint_id)
        except DataverseError:
            self._note(delivery, None, "endpoint deleted")
            return 0
        url, headers = _addressed(endpoint, delivery)
        body = orjson.dumps(delivery.context)
        context, exceeded = fit(delivery.context, body)
        if exceeded:
            body = orjson.dumps(context)
            headers["x-ms-dynamics-msg-size-exceeded"] = "true"
        try:
            response = self._http.post(url, data=body, headers=headers, timeout=self.timeout)
            status = response.status_code
        except requests.RequestException as error:
            self._note(delivery, None, f"no answer: {type(error).__name__}")
            return 0
        self._note(delivery, status, "delivered" if 200 <= status < 300 else "refused")
        return status

    def _note(self, delivery: Delivery, status: int | None, outcome: str) -> None:
        with self._cond:
            self.log.append({
                "job": delivery.job_id, "step": delivery.step.step_id,
                "message": delivery.context["MessageName"],
                "entity": delivery.context["PrimaryEntityName"],
                "record_id": delivery.context["PrimaryEntityId"], "mode": delivery.step.mode,
                "attempt": delivery.attempt, "status": status, "outcome": outcome,
                "wrong_key": delivery.wrong_key, "at": time.time(),
            })  # fmt: skip
            if len(self.log) > LOG_LIMIT:
                del self.log[: len(self.log) - LOG_LIMIT]

    # --- controls -------------------------------------------------------------------------

    def release_held(self) -> None:
        """Post the deliveries held back for reordering now (in reverse order)."""
        with self._cond:
            self.faults.reorder = 0
            self._flush_held()
            self._ensure_worker()
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no post is queued, held or in flight; whether that happened in time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._held or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    def stop(self) -> None:
        """Stop the asynchronous service (queued posts are dropped)."""
        with self._cond:
            self._stopped = True
            self._queue.clear()
            self._held.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._http.close()


def _passes_filter(step: Step, change: RowChange) -> bool:
    """Whether an Update touches one of the step's filtering attributes (always, without)."""
    if MESSAGE_OF_OP[change.op] != "Update" or not step.filtering:
        return True
    return any(name in change.values for name in step.filtering)


def _addressed(endpoint: dict[str, Any], delivery: Delivery) -> tuple[str, dict[str, str]]:
    """The URL and headers of a post to ``endpoint`` with its authentication."""
    context = delivery.context
    headers = {
        "Content-Type": "application/json",
        "x-request-id": delivery.request_id,
        "x-ms-dynamics-organization": context["OrganizationName"],
        "x-ms-dynamics-entity-name": context["PrimaryEntityName"],
        "x-ms-dynamics-request-name": context["MessageName"],
        "x-ms-correlation-request-id": context["CorrelationId"],
    }
    pairs = auth_pairs(endpoint["authtype"], endpoint["authvalue"])
    if delivery.wrong_key:
        pairs = [(name, f"{value}-wrong") for name, value in pairs]
    url = str(endpoint["url"])
    if endpoint["authtype"] == AUTH_HTTP_HEADER:
        headers.update(dict(pairs))
        return url, headers
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(pairs)) if q)
    return urlunsplit(parts._replace(query=query)), headers
