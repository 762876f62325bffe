"""TinyCRM's change stream, for the engine's stream tests: a change log the CRM appends to as
records change, read two ways, as the real CRMs offer theirs:

- ``TinyListener`` opens a "connection" and reads the log from a replay position (the index of
  the next entry), like a subscription with replay ids; entries older than the retained ones
  are gone, and a position before them yields a gap;
- ``TinyWebhooks`` receives deliveries the CRM posts over HTTP to a registered URL, one per
  change, signed with HMAC-SHA256 of the body (``X-Tiny-Signature: sha256=<hex>``), retried
  with backoff while the receiver does not answer 2xx.

``TinyStream`` holds the log of one server and the faults a test injects: a lost, duplicated
or reordered delivery, a gap (overflow) entry, dropped connections, a retention that forgets
everything emitted so far, a delivery with a bad signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests

from adapters._kit.settings import reveal
from mirror.adapter import StreamItem
from mirror.errors import StreamSignatureError, TransientError
from mirror.types import ObjectSpec, StreamEvent, StreamGap
from tests.adapters.fourth.adapter import TinyAdapter
from tests.adapters.fourth.crm import TinyCrm

SIGNATURE = "X-Tiny-Signature"
_streams: dict[str, TinyStream] = {}


@dataclass(frozen=True)
class Entry:
    """One change as the stream tells it (``gap`` entries name no record)."""

    object: str | None
    record_id: str | None
    kind: str  # "change", "delete" or "gap"
    at: datetime | None

    def as_json(self) -> dict[str, Any]:
        """The entry in a delivery's body."""
        at = self.at.isoformat() if self.at else None
        return {"object": self.object, "id": self.record_id, "kind": self.kind, "at": at}


def signature(secret: str, body: bytes) -> str:
    """The signature header's value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class TinyStream:
    """The change stream of one TinyCRM server, with the faults a test injects."""

    def __init__(self, crm: TinyCrm, secret: str = "tiny-hook-secret") -> None:
        self.crm = crm
        self.secret = secret
        self.emitted: list[Entry] = []
        self.first = 0  # the position of emitted[0]: older entries are past retention
        self.lose = 0
        self.duplicate = 0
        self.hold: list[Entry] | None = None
        self.broken = 0
        self.bad_signatures = 0
        self.target: str | None = None
        self.delivered: list[tuple[int, list[dict[str, Any]]]] = []
        self._outbox: queue.Queue[list[Entry] | None] = queue.Queue()
        self._sender: threading.Thread | None = None
        crm.watchers.append(self._heard)
        _streams[crm.address] = self

    # --- the CRM side ------------------------------------------------------------------------

    def _heard(self, object_name: str, record_id: str, kind: str, when: datetime) -> None:
        self._emit(Entry(object_name, record_id, kind, when))

    def _emit(self, entry: Entry) -> None:
        with self.crm.lock:
            if self.lose:
                self.lose -= 1
                return
            if self.hold is not None and not self.hold:
                self.hold.append(entry)
                return
            entries = [entry] * (2 if self.duplicate else 1)
            self.duplicate = max(self.duplicate - 1, 0)
            if self.hold:
                entries += self.hold
                self.hold = None
            self.emitted += entries
            if self.target is not None:
                for one in entries:
                    self._outbox.put([one])

    @property
    def head(self) -> int:
        """The position after the newest entry."""
        return self.first + len(self.emitted)

    def read(self, position: int) -> list[tuple[int, Entry]]:
        """The entries from ``position`` on, each with the position after it."""
        with self.crm.lock:
            start = max(position - self.first, 0)
            return [(self.first + i + 1, e) for i, e in enumerate(self.emitted[start:], start)]

    # --- controls ------------------------------------------------------------------------

    def lose_next(self, count: int = 1) -> None:
        """The next ``count`` changes are never told (a lost delivery)."""
        self.lose += count

    def duplicate_next(self, count: int = 1) -> None:
        """The next ``count`` changes are told twice."""
        self.duplicate += count

    def reorder_next(self) -> None:
        """The next change is told after the one following it."""
        self.hold = []

    def gap(self, object_name: str | None = None) -> None:
        """Tell a gap (an overflow): the stream cannot vouch for ``object_name``'s changes."""
        self._emit(Entry(object_name, None, "gap", None))

    def break_connections(self, count: int = 1) -> None:
        """The next ``count`` reads of a listener fail as a dropped connection."""
        self.broken += count

    def forget_retained(self) -> None:
        """Everything emitted so far falls out of the retention window."""
        with self.crm.lock:
            self.first += len(self.emitted)
            self.emitted = []

    def sign_badly_next(self) -> None:
        """The next delivery carries a signature that does not match."""
        self.bad_signatures += 1

    def post_to(self, url: str, retries: int = 6) -> None:
        """Deliver every change from now on to ``url`` (a webhook subscription)."""
        self.target = url
        self._sender = threading.Thread(target=self._send, args=(retries,), daemon=True)
        self._sender.start()

    def close(self) -> None:
        """Stop delivering."""
        self._outbox.put(None)
        if self._sender is not None:
            self._sender.join(timeout=10)
        _streams.pop(self.crm.address, None)

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until every delivery queued so far has been answered (or given up)."""
        deadline = time.monotonic() + timeout
        while self._outbox.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not self._outbox.unfinished_tasks, "deliveries still waiting"

    def _send(self, retries: int) -> None:
        while True:
            batch = self._outbox.get()
            try:
                if batch is None:
                    return
                self._deliver(batch, retries)
            finally:
                self._outbox.task_done()

    def _deliver(self, batch: list[Entry], retries: int) -> None:
        body = json.dumps({"events": [entry.as_json() for entry in batch]}).encode()
        for attempt in range(retries + 1):
            secret = self.secret
            if self.bad_signatures:
                self.bad_signatures -= 1
                secret = "not-the-secret"
            headers = {SIGNATURE: signature(secret, body), "Content-Type": "application/json"}
            try:
                answer = requests.post(str(self.target), data=body, headers=headers, timeout=10)
                status = answer.status_code
            except requests.RequestException:
                status = 0
            self.delivered.append((status, [entry.as_json() for entry in batch]))
            if 200 <= status < 300 or status == 401:
                return
            time.sleep(0.02 * 2**attempt)


def stream_of(crm: TinyCrm) -> TinyStream:
    """The stream of ``crm`` (made on first use)."""
    return _streams.get(crm.address) or TinyStream(crm)


def as_item(entry: Entry, position: str | None) -> StreamItem:
    """The engine's view of one log entry."""
    if entry.kind == "gap":
        return StreamGap(entry.object, "overflow: too many changes at once", position)
    assert entry.object is not None and entry.record_id is not None
    if entry.kind == "delete":
        return StreamEvent(
            entry.object, deleted=(entry.record_id,), committed_at=entry.at, position=position
        )
    return StreamEvent(
        entry.object, changed=(entry.record_id,), committed_at=entry.at, position=position
    )


class TinyListener(TinyAdapter):
    """TinyCRM with a change stream it listens to (``StreamListener``)."""

    def listen(
        self, specs: Sequence[ObjectSpec], position: str | None, stop: threading.Event
    ) -> Iterator[StreamItem]:
        """The log's entries after ``position`` until ``stop``; a position past the retention
        window is a gap, after which the stream goes on from now."""
        stream = _streams[str(self.settings.url)]
        names = {spec.name for spec in specs}
        index = stream.head if position is None else int(position)
        while not stop.is_set():
            if stream.broken:
                stream.broken -= 1
                raise TransientError("tinycrm: the stream connection dropped")
            if index < stream.first:
                index = stream.head
                yield StreamGap(None, "replay position past the retention window", str(index))
            for after, entry in stream.read(index):
                index = after
                if entry.object is None or entry.object in names:
                    yield as_item(entry, str(after))
            stop.wait(0.005)


class TinyWebhooks(TinyAdapter):
    """TinyCRM posting its changes to the mirror (``WebhookReceiver``)."""

    def receive(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> list[StreamItem]:
        """The changes of one delivery, once its signature is verified."""
        secret = reveal(self.settings.webhook_secret) or ""
        given = {k.lower(): v for k, v in headers.items()}.get(SIGNATURE.lower(), "")
        if method != "POST" or not hmac.compare_digest(given, signature(secret, body)):
            raise StreamSignatureError("tinycrm: the delivery's signature does not match")
        entries = json.loads(body)["events"]
        return [
            as_item(
                Entry(e["object"], e["id"], e["kind"], e["at"] and datetime.fromisoformat(e["at"])),
                None,
            )
            for e in entries
        ]
