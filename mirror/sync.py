"""Pull: CRM -> mirror, per object, one store transaction per page.

A backfill and an incremental sync are the same loop: read pages after the saved checkpoint and
apply each one with its checkpoint in one transaction. Reading the next page overlaps with
writing the current one (a bounded prefetch of ``prefetch_pages``), so a sync runs at the speed
of the slower of the CRM and the store, not of both added up, while memory holds at most
``prefetch_pages + 1`` pages.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, insert, select, update

from mirror.adapter import CrmAdapter
from mirror.pages import PageContext, PageHook, PageOutcome, apply_page
from mirror.reconcile import PolicyOf
from mirror.store import MirrorTable, Store, utcnow
from mirror.tables import mirror_changes, mirror_runs, mirror_sweep
from mirror.types import ObjectSpec, Page

log = logging.getLogger("prm_mirror.sync")
ProgressCallback = Callable[[str, PageOutcome, Page], None]


@dataclass
class RunResult:
    """The outcome of one sync run of one object."""

    source: str
    object: str
    kind: str
    run_id: int
    pages: int = 0
    totals: PageOutcome = field(default_factory=PageOutcome)
    api_calls: int = 0
    swept: int = 0
    stopped: bool = False


class Puller:
    """Pulls objects from one CRM adapter into the store."""

    def __init__(
        self,
        store: Store,
        adapter: CrmAdapter,
        *,
        prefetch_pages: int = 1,
        hooks: Sequence[PageHook] = (),
        indexes: Mapping[str, tuple[str, ...]] | None = None,
        policy_of: PolicyOf | None = None,
    ) -> None:
        self.store = store
        self.policy_of = policy_of
        self.indexes = dict(indexes or {})
        self.adapter = adapter
        self.prefetch_pages = prefetch_pages
        self.hooks = tuple(hooks)

    def sync_object(
        self,
        spec: ObjectSpec,
        *,
        restart: bool = False,
        progress: ProgressCallback | None = None,
        stop: threading.Event | None = None,
    ) -> RunResult:
        """Bring one object up to date: a backfill (resumed if one was interrupted) or an
        incremental read. ``restart`` forgets the checkpoint and backfills from scratch; when
        ``stop`` is set the run ends after the page it is writing (committed, resumable)."""
        mirrored = self.store.prepare_object(spec, self.indexes.get(spec.name, ()))
        if restart:
            self.store.reset_checkpoint(spec.source, spec.name)
        since = self.store.load_checkpoint(spec.source, spec.name)
        kind = "incremental" if since is not None and since.phase == "incremental" else "backfill"
        first_backfill = since is None or kind == "backfill"
        result = RunResult(spec.source, spec.name, kind, self._start_run(spec, kind))
        ctx = PageContext(result.run_id, log_inserts=not first_backfill, hooks=self.hooks)
        if self.policy_of is not None:
            ctx = dataclasses.replace(ctx, policy_of=self.policy_of)
        calls_before = self.adapter.api_calls()
        try:
            for page in _prefetched(self.adapter.read(mirrored.spec, since), self.prefetch_pages):
                if page.needs_sweep:
                    result.swept += self.sweep(mirrored, ctx.run_id)
                with self.store.transaction() as conn:
                    outcome = apply_page(self.store, conn, mirrored, page, ctx)
                result.pages += 1
                result.totals.add(outcome)
                if result.pages & (result.pages - 1) == 0:
                    self.store.refresh_statistics(mirrored.table.name)
                if progress is not None:
                    progress(spec.name, outcome, page)
                if stop is not None and stop.is_set():
                    result.stopped = True
                    break
        except BaseException as exc:
            result.api_calls = self.adapter.api_calls() - calls_before
            self._finish_run(result, _status_of(exc), repr(exc)[:2000])
            raise
        result.api_calls = self.adapter.api_calls() - calls_before
        self._finish_run(result, "stopped" if result.stopped else "ok", None)
        return result

    def sweep(
        self, mirrored: MirrorTable, run_id: int | None = None, keep_staged: bool = False
    ) -> int:
        """Mark deleted every mirrored record the CRM no longer has; returns how many.

        The CRM's live ids are staged in ``mirror_sweep`` in short transactions (a long read
        never holds a write lock), then compared with the mirror in one transaction;
        ``keep_staged`` leaves them there for the caller (the self-audit).
        """
        spec, table = mirrored.spec, mirrored.table
        scope = (mirror_sweep.c.source == spec.source, mirror_sweep.c.object == spec.name)
        with self.store.transaction() as conn:
            conn.execute(delete(mirror_sweep).where(*scope))
        for batch in self.adapter.read_ids(spec):
            rows = [{"source": spec.source, "object": spec.name, "record_id": i} for i in batch]
            with self.store.transaction() as conn:
                self.store.upsert(conn, mirror_sweep, rows)
        key = table.c[spec.key]
        live_in_crm = select(mirror_sweep.c.record_id).where(*scope)
        with self.store.transaction() as conn:
            gone = list(
                conn.execute(
                    select(key).where(table.c._deleted.is_(False), key.not_in(live_in_crm))
                ).scalars()
            )
            now = utcnow()
            for start in range(0, len(gone), 500):
                chunk = gone[start : start + 500]
                conn.execute(
                    update(table).where(key.in_(chunk)).values(_deleted=True, _synced_at=now)
                )
            if gone:
                conn.execute(
                    insert(mirror_changes), [_sweep_change(spec, i, now, run_id) for i in gone]
                )
            outcome = PageOutcome(deleted=len(gone), deleted_ids=gone)
            for hook in self.hooks:
                hook(conn, mirrored, outcome)
            if not keep_staged:
                conn.execute(delete(mirror_sweep).where(*scope))
        log.info("sweep of %s.%s marked %d records deleted", spec.source, spec.name, len(gone))
        return len(gone)

    def _start_run(self, spec: ObjectSpec, kind: str) -> int:
        with self.store.transaction() as conn:
            result = conn.execute(
                insert(mirror_runs).values(
                    source=spec.source,
                    object=spec.name,
                    kind=kind,
                    status="running",
                    started_at=utcnow(),
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def _finish_run(self, result: RunResult, status: str, error: str | None) -> None:
        totals = result.totals
        with self.store.transaction() as conn:
            conn.execute(
                update(mirror_runs)
                .where(mirror_runs.c.id == result.run_id)
                .values(
                    status=status,
                    finished_at=utcnow(),
                    pages=result.pages,
                    inserted=totals.inserted,
                    updated=totals.updated,
                    unchanged=totals.unchanged,
                    deleted=totals.deleted + result.swept,
                    rejected=totals.rejected,
                    api_calls=result.api_calls,
                    error=error,
                )
            )


def _status_of(exc: BaseException) -> str:
    return "interrupted" if isinstance(exc, KeyboardInterrupt | SystemExit) else "failed"


def _sweep_change(spec: ObjectSpec, record_id: str, now: Any, run_id: int | None) -> dict[str, Any]:
    return {
        "source": spec.source,
        "object": spec.name,
        "record_id": record_id,
        "op": "delete",
        "origin": "crm",
        "author": "sweep",
        "fields": None,
        "at": now,
        "run_id": run_id,
    }


_DONE = object()


def _prefetched(pages: Iterator[Page], depth: int) -> Iterator[Page]:
    """Iterate ``pages`` with up to ``depth`` pages read ahead in a background thread."""
    if depth <= 0:
        yield from pages
        return
    buffer: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for page in pages:
                while not stop.is_set():
                    try:
                        buffer.put(page, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            buffer.put(exc)
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="prm-mirror-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():
            try:
                buffer.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.1)
