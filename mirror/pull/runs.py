"""Sync runs: which process runs each one, and closing the runs of processes that died.

A run is recorded as ``running`` when it starts and closed (``ok``, ``stopped``, ``failed``,
``interrupted``) when it ends. A process killed in between (SIGKILL, the machine lost) closes
nothing, so each run also records its owner: the host, the process id, and a key naming the
process exactly (on Linux the boot, the process-id namespace and the process's start time, so a
reused process id is not taken for the owner), with ``alive_until``, which a heartbeat thread of
the owner pushes forward while the run lasts.

``close_orphaned_runs`` marks ``interrupted``, with the reason, every run whose owner is gone:

- an owner on this machine (same boot and process-id namespace) is looked up directly: gone as
  soon as its process no longer exists (or the id now names a younger process);
- an owner elsewhere (another host sharing a PostgreSQL store) is gone once ``alive_until`` has
  passed: its heartbeat stopped for longer than the store's run lease;
- a run recorded by a version that kept no owner is gone once it has run longer than the lease.

A run wrongly closed (a live owner whose heartbeat could not reach the store for a whole lease)
is set right by the owner itself: ending the run writes its real outcome over the mark.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, insert, select, update

from mirror.store.tables import mirror_runs

if TYPE_CHECKING:
    from mirror.store.database import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessIdentity:
    """One process: where it runs, its id, and what tells it apart from a later process that
    reuses the id (``scope``: the machine's boot and the process-id namespace; ``started``:
    its start time in clock ticks since boot)."""

    host: str
    pid: int
    scope: str
    started: str

    @property
    def key(self) -> str:
        """The identity as one string, as ``mirror_runs.owner`` keeps it."""
        return f"{self.scope}|{self.pid}|{self.started}"


def this_process() -> ProcessIdentity:
    """The calling process (computed again after a fork)."""
    return _identity(os.getpid())


@cache
def _identity(pid: int) -> ProcessIdentity:
    return identity_of(pid)


def identity_of(pid: int) -> ProcessIdentity:
    """The identity of process ``pid`` of this machine, as its runs would record it."""
    return ProcessIdentity(socket.gethostname(), pid, _scope(), _started(pid) or "")


def _scope() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as boot:
            boot_id = boot.read().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        # no /proc: processes are told apart by host and id alone (and the heartbeat)
        return f"host:{socket.gethostname()}"
    return f"linux:{boot_id}:{namespace}"


def _started(pid: int) -> str | None:
    """The start time of process ``pid`` (``None`` without ``/proc``)."""
    try:
        return _stat(pid)[19]
    except OSError:
        return None


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command: the state (field 3 of proc(5))
    first, the start time (field 22) at index 19."""
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
        return stat.read().rsplit(")", 1)[1].split()


def alive_here(owner: str) -> bool | None:
    """Whether the process ``owner`` (a ``ProcessIdentity.key``) still runs, where this process
    can know it (same machine, same process-id namespace); ``None`` where it cannot."""
    scope, _, rest = owner.partition("|")
    pid_text, _, started = rest.partition("|")
    if scope != this_process().scope or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    if scope.startswith("linux:"):
        return _same_process(pid, started)
    # without /proc the id may have been taken by a later process: the heartbeat decides
    return False if not _exists(pid) else None


def _same_process(pid: int, started: str) -> bool | None:
    """Whether ``pid`` is still the process that started at ``started`` (``None``: hidden)."""
    try:
        fields = _stat(pid)
    except OSError:
        # gone, or hidden from this user (``hidepid``): the heartbeat decides the latter
        return False if not _exists(pid) else None
    if fields[0] in ("Z", "X"):
        return False  # killed, and not yet reaped by its parent
    return fields[19] == started


def _exists(pid: int) -> bool:
    if os.name != "posix":
        return True  # Windows' os.kill would end the process: leave it to the heartbeat
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_run(store: Store, source: str, name: str, kind: str) -> int:
    """Record a run of ``kind`` as ``running``, owned by this process; returns its id. The
    store's heartbeat keeps it alive until it is closed."""
    me = this_process()
    now = _now()
    with store.transaction() as conn:
        result = conn.execute(
            insert(mirror_runs).values(
                source=source,
                object=name,
                kind=kind,
                status="running",
                started_at=now,
                host=me.host,
                pid=me.pid,
                owner=me.key,
                alive_until=now + store.heartbeat.lease,
            )
        )
        key = result.inserted_primary_key
    assert key is not None
    store.heartbeat.started()
    return int(key[0])


def last_run(conn: Connection, source: str, name: str) -> dict[str, Any]:
    """The latest run of one object, as a row of ``mirror_runs`` (empty: it never ran)."""
    r = mirror_runs.c
    query = select(mirror_runs).where(r.source == source, r.object == name)
    row = conn.execute(query.order_by(r.id.desc()).limit(1)).first()
    return row._asdict() if row else {}


def last_success(conn: Connection, source: str, name: str) -> dt.datetime | None:
    """When a run of one object last ended well."""
    r = mirror_runs.c
    query = select(func.max(r.finished_at)).where(
        r.source == source, r.object == name, r.status == "ok"
    )
    finished: dt.datetime | None = conn.execute(query).scalar()
    return finished


class RunHeartbeat:
    """Pushes ``alive_until`` of this process's running runs forward, a quarter of ``lease``
    at a time, from a thread that runs while the process has runs open."""

    def __init__(self, store: Store, lease_seconds: float) -> None:
        """Beat for the runs ``store`` records, each time extending them by ``lease_seconds``."""
        self.store = store
        self.lease = dt.timedelta(seconds=lease_seconds)
        self.beats = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._kicked = False
        self._closed = threading.Event()

    def started(self) -> None:
        """A run of this process began: beat until no run of ours is open."""
        with self._lock:
            self._kicked = True
            if self._thread is None and not self._closed.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="prm-mirror-run-heartbeat", daemon=True
                )
                self._thread.start()

    def close(self) -> None:
        """Stop beating (the store is closing)."""
        self._closed.set()
        with self._lock:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def _run(self) -> None:
        interval = self.lease.total_seconds() / 4
        while not self._closed.wait(interval):
            with self._lock:
                kicked, self._kicked = self._kicked, False
            open_runs = self.beat()
            with self._lock:
                if open_runs == 0 and not kicked and not self._kicked:
                    self._thread = None
                    return
        with self._lock:
            self._thread = None

    def beat(self) -> int | None:
        """Extend this process's running runs now; how many there were (``None``: the store
        could not be reached, and the next beat tries again)."""
        me = this_process()
        statement = (
            update(mirror_runs)
            .where(mirror_runs.c.owner == me.key, mirror_runs.c.status == "running")
            .values(alive_until=_now() + self.lease)
        )
        try:
            with self.store.transaction() as conn:
                count = conn.execute(statement).rowcount
        except Exception as error:
            log.warning("the heartbeat of this process's runs failed: %s", error)
            return None
        self.beats += 1
        return int(count)


@dataclass(frozen=True)
class ClosedRun:
    """A run found without a live owner and marked ``interrupted``."""

    id: int
    source: str
    object: str
    reason: str


def close_orphaned_runs(store: Store) -> list[ClosedRun]:
    """Mark ``interrupted`` every running run whose owner is gone (see the module's rules);
    returns those marked. Safe beside live workers: a run whose owner beat meanwhile is left."""
    now = _now()
    r = mirror_runs.c
    query = select(
        r.id, r.source, r.object, r.host, r.pid, r.owner, r.alive_until, r.started_at
    ).where(r.status == "running")
    with store.engine.connect() as conn:
        running = conn.execute(query).all()
    gone = [(row, reason) for row in running if (reason := _gone(row, now, store)) is not None]
    if not gone:
        return []
    closed = []
    with store.transaction() as conn:
        for row, reason in gone:
            seen = (
                r.alive_until.is_(None)
                if row.alive_until is None
                else (r.alive_until == row.alive_until)
            )
            marked = conn.execute(
                update(mirror_runs)
                .where(r.id == row.id, r.status == "running", seen)
                .values(status="interrupted", finished_at=now, error=reason)
            ).rowcount
            if marked:
                closed.append(ClosedRun(row.id, row.source, row.object, reason))
    for run in closed:
        log.warning("run %d of %s.%s closed: %s", run.id, run.source, run.object, run.reason)
    return closed


def _gone(row: Any, now: dt.datetime, store: Store) -> str | None:
    """Why the run's owner is gone, or ``None`` while it may be alive."""
    who = f"process {row.pid} on {row.host}"
    if row.owner is None:
        if row.started_at + store.heartbeat.lease < now:
            return "no owner recorded, and running for longer than the run lease"
        return None
    local = alive_here(row.owner)
    if local is not None:
        return None if local else f"{who} ended without closing the run"
    if row.alive_until is not None and row.alive_until < now:
        silent = now - row.alive_until + store.heartbeat.lease
        return f"no heartbeat from {who} for {silent.total_seconds():.0f} s"
    return None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
