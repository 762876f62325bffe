"""Waking the pusher when a portal write is committed, instead of at its next interval.

Every outbox entry is written through ``mirror.push.outbox.enqueue``, which calls ``written``
in the writing transaction. Three ways carry the news to a ``PushWaker``:

- in this process, the store connection's return to its pool after the transaction (that is,
  after the commit; a rolled-back write tells nothing) calls every subscriber;
- on PostgreSQL, ``pg_notify`` in the same transaction reaches every process that listens on
  ``CHANNEL`` when it commits (the database delivers it only then);
- on SQLite, which has no notifications, the waker looks at the outbox's newest sequence every
  ``poll`` seconds: one indexed read.

The waker then waits ``window`` seconds, so a burst of writes goes out in one push, and pushes
each source written to.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Connection, Engine, event, func, select, text

from mirror.store.database import Store
from mirror.store.tables import mirror_outbox

CHANNEL = "prm_mirror_outbox"
_SOURCES = "prm_mirror_outbox_sources"
_subscribers: list[Callable[[str], None]] = []
_lock = threading.Lock()
log = logging.getLogger("prm_mirror.push")


def written(conn: Connection, source: str) -> None:
    """An outbox entry of ``source`` was written in ``conn``'s transaction: wake the pushers
    once it commits."""
    _watch(conn.engine)
    conn.info.setdefault(_SOURCES, set()).add(source)
    if conn.dialect.name == "postgresql":
        notify = text("SELECT pg_notify(:channel, :source)")
        conn.execute(notify, {"channel": CHANNEL, "source": source})


def subscribe(callback: Callable[[str], None]) -> Callable[[], None]:
    """Call ``callback(source)`` after each committed portal write of this process; returns
    the function that ends the subscription."""
    with _lock:
        _subscribers.append(callback)

    def unsubscribe() -> None:
        with _lock:
            if callback in _subscribers:
                _subscribers.remove(callback)

    return unsubscribe


def _watch(engine: Engine) -> None:
    with _lock:
        if not event.contains(engine.pool, "checkin", _returned):
            event.listen(engine.pool, "checkin", _returned)
            event.listen(engine, "rollback", _rolled_back)


def _rolled_back(conn: Connection) -> None:
    conn.info.pop(_SOURCES, None)


def _returned(_dbapi_connection: Any, record: Any) -> None:
    sources = record.info.pop(_SOURCES, None) if record is not None else None
    if not sources:
        return
    with _lock:
        subscribers = list(_subscribers)
    for source in sources:
        for callback in subscribers:
            callback(source)


def has_pending(store: Store, source: str) -> bool:
    """Whether ``source`` has an outbox entry waiting to be pushed (one an applied change
    may just have released)."""
    o = mirror_outbox.c
    query = select(o.seq).where(o.status == "pending", o.source == source).limit(1)
    with store.engine.connect() as conn:
        return conn.execute(query).first() is not None


class PushWaker:
    """Pushes a source soon after a portal write to it (``push(source)``), on its thread."""

    def __init__(
        self,
        store: Store,
        push: Callable[[str], None],
        sources: Iterable[str],
        stop: threading.Event,
        *,
        window: float = 0.2,
        poll: float = 0.25,
    ) -> None:
        self.store = store
        self.push = push
        self.sources = frozenset(sources)
        self.stop = stop
        self.window = window
        self.poll = poll
        self._pending: set[str] = set()
        self._wake = threading.Event()
        self._guard = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._last_seq = 0

    def start(self) -> PushWaker:
        """Subscribe and start the waker's thread (and, on PostgreSQL, its listener)."""
        self._unsubscribe = subscribe(self.tell)
        self._last_seq = self._newest()[0]
        self._spawn(self._run, "push-waker")
        if self.store.dialect == "postgresql":
            self._spawn(self._listen, "push-listener")
        return self

    def close(self) -> None:
        """Stop listening (the caller sets ``stop``); wait for the threads."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def tell(self, source: str) -> None:
        """A portal write to ``source`` was committed."""
        with self._guard:
            self._pending.add(source)
        self._wake.set()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _take(self) -> set[str]:
        self._wake.clear()
        with self._guard:
            taken, self._pending = self._pending, set()
        return taken

    def _run(self) -> None:
        while not self.stop.is_set():
            self._wake.wait(timeout=self.poll or 1.0)
            if self.stop.is_set():
                return
            sources = self._take() | self._polled()
            if not sources:
                continue
            self.stop.wait(self.window)
            # every entry up to the newest now is in the push below: the poll need not see it
            sources |= self._take() | self._polled()
            for source in sorted(sources & self.sources):
                if self.stop.is_set():
                    return
                try:
                    # a write told twice (by this process and by NOTIFY) is pushed once
                    if has_pending(self.store, source):
                        self.push(source)
                except Exception:
                    log.exception("push of %s after a portal write failed", source)

    def _polled(self) -> set[str]:
        """SQLite: the sources written to since the last look (other processes' writes)."""
        if not self.poll or self.store.dialect == "postgresql":
            return set()
        try:
            newest, sources = self._newest(self._last_seq)
        except Exception:
            log.exception("the outbox could not be read")
            return set()
        self._last_seq = max(self._last_seq, newest)
        return sources

    def _newest(self, after: int | None = None) -> tuple[int, set[str]]:
        o = mirror_outbox.c
        with self.store.engine.connect() as conn:
            newest = int(conn.execute(select(func.max(o.seq))).scalar() or 0)
            if after is None or newest <= after:
                return newest, set()
            query = select(o.source).where(o.seq > after).group_by(o.source)
            return newest, set(conn.execute(query).scalars())

    def _listen(self) -> None:
        """PostgreSQL: the notifications of every process's portal writes."""
        while not self.stop.is_set():
            try:
                raw = self.store.engine.raw_connection()
            except Exception:
                log.exception("cannot listen for portal writes; retrying")
                self.stop.wait(5)
                continue
            try:
                driver: Any = raw.driver_connection
                driver.autocommit = True
                driver.execute(f"LISTEN {CHANNEL}")
                while not self.stop.is_set():
                    for note in driver.notifies(timeout=1.0):
                        self.tell(str(note.payload))
            except Exception:
                log.exception("listening for portal writes failed; listening again")
                self.stop.wait(1)
            finally:
                raw.invalidate()
