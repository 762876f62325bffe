"""The change-stream operations of a ``Mirror``: storing what a stream delivers, applying the
inbox, answering webhooks, and the pullers every sync and stream apply of a source uses.

Work on one object is serialised: a sync and a stream apply of the same object take the same
lock in this process (``work_lock``) and, in the daemon, the same lease across processes, so
the read-compare-write that keeps the newer version (``mirror.pull.pages``) is never raced.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence

from mirror.adapter import StreamItem, WebhookReceiver
from mirror.config_check import stream_problems
from mirror.configured import Configured
from mirror.errors import MirrorError, StreamSignatureError
from mirror.leases import Leases
from mirror.logs import log_context
from mirror.status import StreamStatus, stream_statuses
from mirror.stream import inbox
from mirror.stream.applier import BATCH, Applied, apply_waiting
from mirror.types import StreamGap

log = logging.getLogger("prm_mirror.stream")
_LOCKS = threading.Lock()


def sync_job(source: str, name: str) -> str:
    """The name of an object's sync: its daemon job, its lease and its work lock."""
    return f"sync:{source}:{name}"


def push_job(source: str) -> str:
    """The name of a source's push: its daemon job, its lease and its work lock."""
    return f"push:{source}"


class Streams(Configured):
    """The change-stream side of a mirror (``Mirror`` builds on it)."""

    def work_lock(self, name: str) -> threading.RLock:
        """The lock this process's work called ``name`` (``sync_job``, ``push_job``) runs
        under, so two threads never do it at once."""
        with _LOCKS:
            locks: dict[str, threading.RLock] = self.__dict__.setdefault("_work_locks", {})
            return locks.setdefault(name, threading.RLock())

    def stream_sources(self) -> list[str]:
        """The sources whose config turns their change stream on (``stream = true``)."""
        return [name for name, source in self.config.sources.items() if source.stream]

    def stream_problems(self) -> list[str]:
        """What keeps the configured streams from running: an adapter without a stream, a
        webhook stream with no endpoint to post to."""
        return [
            problem
            for source in self.stream_sources()
            for problem in stream_problems(
                self.config, source, self._source(source), self.adapter(source)
            )
        ]

    def record_stream(
        self, source: str, items: Sequence[StreamItem], *, state: str = "live"
    ) -> inbox.Recorded:
        """Store what ``source``'s stream delivered (events, gaps, its position) in one
        transaction; acknowledge the delivery only after this returns."""
        recorded = inbox.record(self.store, source, items, self.object_names(source), state=state)
        for name, reason in recorded.gaps:
            with log_context(source=source, object=name):
                log.warning("stream gap: %s; an incremental poll follows", reason)
        return recorded

    def stream_gap(self, source: str, reason: str, name: str | None = None) -> None:
        """Record that ``source``'s stream may have missed changes of ``name`` (``None``:
        every object): an incremental poll of each is requested."""
        self.record_stream(source, [StreamGap(name, reason)])

    def receive_webhook(
        self, source: str, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, str]:
        """One delivery posted by ``source``'s CRM: the HTTP status and text to answer. 200
        only once its changes are committed to the inbox (500 if they could not be: the CRM
        delivers again); 401 for a signature the adapter cannot verify (and the source is
        polled, since the delivery may have been a real one)."""
        if source not in self.stream_sources():
            return 404, "no stream for this source"
        adapter = self.adapter(source)
        if not isinstance(adapter, WebhookReceiver):
            return 404, "this source's stream is not a webhook"
        try:
            items = adapter.receive(method, url, headers, body)
        except StreamSignatureError as exc:
            self._gap_quietly(source, f"delivery refused: {exc}")
            return 401, "signature not verified"
        except MirrorError as exc:
            self._gap_quietly(source, f"delivery not understood: {exc}")
            return 400, "delivery not understood"
        try:
            self.record_stream(source, items)
        except Exception:
            log.exception("webhook delivery of %s could not be stored", source)
            return 500, "not stored; deliver again"
        return 200, "ok"

    def _gap_quietly(self, source: str, reason: str) -> None:
        try:
            self.stream_gap(source, reason)
        except Exception:
            log.exception("the gap of %s could not be recorded", source)

    def hand_to_poll(self, source: str, name: str, reason: str) -> int:
        """Drop the waiting records of ``name`` and ask for an incremental poll of it instead
        (they changed after its checkpoint, so the poll reads them); returns how many."""
        dropped = inbox.hand_to_poll(self.store, source, name, reason)
        with log_context(source=source, object=name):
            log.warning("%d stream records handed to a poll: %s", dropped, reason)
        return dropped

    def stream_waiting(self, source: str | None = None) -> dict[tuple[str, str], int]:
        """Records waiting in the inbox per (source, object)."""
        return inbox.waiting(self.store, source)

    def apply_stream(
        self,
        source: str,
        objects: Iterable[str] | None = None,
        *,
        leases: Leases | None = None,
        wait: bool = False,
    ) -> list[Applied]:
        """Apply the waiting inbox records of ``source`` (or of ``objects``). An object whose
        sync is running in this process is skipped unless ``wait`` (its records stay in the
        inbox); with ``leases``, so is one whose sync another worker holds."""
        names = list(objects or [o for s, o in inbox.waiting(self.store, source) if s == source])
        results = []
        for name in names:
            job = sync_job(source, name)
            lock = self.work_lock(job)
            if not lock.acquire(blocking=wait):
                continue
            try:
                if leases is not None and not leases.acquire(job):
                    continue
                try:
                    results.append(self._apply_object(source, name))
                finally:
                    if leases is not None:
                        leases.release(job)
            finally:
                lock.release()
        return results

    def _apply_object(self, source: str, name: str) -> Applied:
        try:
            mirrored = self.store.mirrored(source, name)
        except KeyError:
            inbox.discard(self.store, source, name)
            return Applied(name)
        checkpoint = self.store.load_checkpoint(source, name)
        access = self.grant_upkeep(source).page_hook()
        puller = self._puller(source, {name: mirrored.spec}, None, access)
        incremental = checkpoint is not None and checkpoint.phase == "incremental"
        ctx = puller.context(None, log_inserts=incremental)
        total = Applied(name)
        while True:
            done = apply_waiting(self.store, puller.adapter, mirrored, ctx, limit=BATCH)
            total.taken += done.taken
            total.fetched += done.fetched
            total.written += done.written
            total.deleted += done.deleted
            total.unchanged += done.unchanged
            total.lag = done.lag if done.lag is not None else total.lag
            if done.taken < BATCH:
                return total

    def stream_status(self) -> list[StreamStatus]:
        """Each configured stream: its state, replay position, last event, lag, waiting
        records and requested polls."""
        return stream_statuses(self.store, self.stream_sources())
