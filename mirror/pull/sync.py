"""Pull: CRM -> mirror, per object, one store transaction per page.

A backfill and an incremental sync are the same loop: read pages after the saved checkpoint and
apply each one with its checkpoint in one transaction. Reading the next page overlaps with
writing the current one (a bounded prefetch of ``prefetch_pages``), so a sync runs at the speed
of the slower of the CRM and the store, not of both added up, while memory holds at most
``prefetch_pages + 1`` pages.

A first backfill of a large object may instead be split into ranges that several workers read
at once, each range with its own checkpoint and lease (``mirror.pull.ranges``); the object moves to
its incremental phase when the last range is done.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, select, update

from mirror.adapter import CrmAdapter, KeyedIds, RangePlan, RangeReader
from mirror.leases import Leases
from mirror.logs import log_context
from mirror.pull.pages import PageContext, PageHook, PageOutcome, apply_page
from mirror.pull.prefetch import prefetched
from mirror.pull.ranges import RangeBook, RangeRow, RangeTaken, plan_of, range_lease
from mirror.pull.reconcile import PolicyOf
from mirror.pull.runs import start_run
from mirror.pull.sweep import sweep
from mirror.push.echoes import verify_echoes
from mirror.push.local_ids import AccessChanges
from mirror.store.database import MirrorTable, Store, utcnow
from mirror.store.tables import mirror_runs
from mirror.types import Checkpoint, ObjectSpec, Page

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
        backfill_ranges: int = 1,
        range_min_records: int = 0,
        leases: Leases | None = None,
        access: AccessChanges | None = None,
    ) -> None:
        """``backfill_ranges`` above 1 splits large first backfills into ranges (see
        ``mirror.pull.ranges``); ``leases`` shares those ranges out between workers (without it,
        this puller reads every open range itself); ``access`` keeps the grants current when
        a pulled record is merged with the portal create it turns out to be."""
        self.store = store
        self.policy_of = policy_of
        self.indexes = dict(indexes or {})
        self.adapter = adapter
        self.prefetch_pages = prefetch_pages
        self.hooks = tuple(hooks)
        self.backfill_ranges = backfill_ranges
        self.range_min_records = range_min_records
        self.leases = leases
        self.access = access
        self.ranges = RangeBook(store)

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
        saved = None if restart else self.store.load_checkpoint(spec.source, spec.name)
        mirrored = self.store.prepare_object(
            spec,
            self.indexes.get(spec.name, ()),
            defer_indexes=saved is None or saved.phase != "incremental",
        )
        if restart:
            self.store.reset_checkpoint(spec.source, spec.name)
            self.ranges.forget(spec.source, spec.name)
        since = self.store.load_checkpoint(spec.source, spec.name)
        calls_before = self.adapter.api_calls()
        if since is None:
            since = self._plan(mirrored.spec)
        plan = plan_of(since)
        if since is not None and plan is not None:
            return self._split_backfill(mirrored, plan, since, progress, stop, calls_before)
        kind = "incremental" if since is not None and since.phase == "incremental" else "backfill"
        first_backfill = since is None or kind == "backfill"
        result = RunResult(spec.source, spec.name, kind, self._start_run(spec, kind))
        ctx = self.context(result.run_id, log_inserts=not first_backfill)
        started = utcnow()
        pages = self.adapter.read(mirrored.spec, since)

        def work() -> None:
            self._apply_pages(mirrored, pages, ctx, result, progress, stop)
            if not result.stopped:
                verify_echoes(self.store, self.adapter, mirrored, ctx, started)

        return self._run(result, work)

    def join_backfill(
        self,
        spec: ObjectSpec,
        *,
        progress: ProgressCallback | None = None,
        stop: threading.Event | None = None,
    ) -> RunResult | None:
        """Read the free ranges of ``spec``'s split backfill, if it has one (else ``None``):
        how further workers join a backfill another worker planned, or take a dead one's
        ranges over."""
        since = self.store.load_checkpoint(spec.source, spec.name)
        plan = plan_of(since)
        if since is None or plan is None:
            return None
        mirrored = self.store.prepare_object(
            spec, self.indexes.get(spec.name, ()), defer_indexes=True
        )
        return self._split_backfill(mirrored, plan, since, progress, stop)

    def sweep(
        self, mirrored: MirrorTable, run_id: int | None = None, keep_staged: bool = False
    ) -> int:
        """Mark deleted every mirrored record the CRM no longer has; returns how many
        (``mirror.pull.sweep``; ``keep_staged`` leaves the CRM's listing staged for the
        caller, the self-audit)."""
        return sweep(self.store, self.adapter, mirrored, self.hooks, run_id, keep_staged)

    def _plan(self, spec: ObjectSpec) -> Checkpoint | None:
        """Plan a split backfill when configured and the adapter can; the saved checkpoint."""
        if self.backfill_ranges < 2 or not isinstance(self.adapter, RangeReader):
            return None
        plan = self.adapter.plan_ranges(spec, self.backfill_ranges, self.range_min_records)
        if plan is None:
            return None
        log.info("backfill of %s.%s split into %d ranges", spec.source, spec.name, len(plan.bounds))
        return self.ranges.start(spec, plan)

    def _split_backfill(
        self,
        mirrored: MirrorTable,
        plan: RangePlan,
        since: Checkpoint,
        progress: ProgressCallback | None,
        stop: threading.Event | None,
        calls_before: int | None = None,
    ) -> RunResult:
        spec = mirrored.spec
        result = RunResult(spec.source, spec.name, "backfill", self._start_run(spec, "backfill"))
        ctx = self.context(result.run_id, log_inserts=False)

        def settle(conn: Connection) -> None:
            self.store.build_indexes(conn, mirrored)
            outcome = PageOutcome(initial=True, backfill_done=True)
            for hook in self.hooks:
                hook(conn, mirrored, outcome)

        def work() -> None:
            self._read_ranges(mirrored, plan, since, ctx, result, progress, stop)
            if self.ranges.finish(spec.source, spec.name, settle):
                log.info("backfill of %s.%s complete in every range", spec.source, spec.name)

        return self._run(result, work, calls_before)

    def _read_ranges(
        self,
        mirrored: MirrorTable,
        plan: RangePlan,
        since: Checkpoint,
        ctx: PageContext,
        result: RunResult,
        progress: ProgressCallback | None,
        stop: threading.Event | None,
    ) -> None:
        """Read open ranges, each under its lease, until none is left free."""
        spec = mirrored.spec
        while stop is None or not stop.is_set():
            worked = False
            for row in self.ranges.open_ranges(spec.source, spec.name):
                lease = range_lease(spec, row.number)
                if self.leases is not None and not self.leases.claim(lease):
                    continue
                try:
                    current = self.ranges.load(spec.source, spec.name, row.number)
                    if current is None or current.done:
                        continue
                    pages_before = result.pages
                    self._read_range(
                        mirrored, plan, since, current, lease, ctx, result, progress, stop
                    )
                    # a range that yields no page would be claimed again and again
                    worked = worked or result.pages > pages_before
                finally:
                    if self.leases is not None:
                        self.leases.release(lease)
                if result.stopped:
                    return
            if not worked:
                return

    def _read_range(
        self,
        mirrored: MirrorTable,
        plan: RangePlan,
        since: Checkpoint,
        row: RangeRow,
        lease: str,
        ctx: PageContext,
        result: RunResult,
        progress: ProgressCallback | None,
        stop: threading.Event | None,
    ) -> None:
        """Apply range ``row``'s pages, each with the range's checkpoint and the object's
        unchanged one; ends early when its lease is lost or the run is asked to stop."""
        assert isinstance(self.adapter, RangeReader)
        spec = mirrored.spec
        version = row.version
        local_stop = threading.Event()

        def advance(conn: Connection, page: Page) -> Page:
            nonlocal version
            version = self.ranges.advance(
                conn, spec.source, spec.name, row.number, version, page.checkpoint
            )
            return dataclasses.replace(page, checkpoint=since)

        def renew(name: str, outcome: PageOutcome, page: Page) -> None:
            if progress is not None:
                progress(name, outcome, page)
            stopping = stop is not None and stop.is_set()
            if stopping or (self.leases is not None and not self.leases.acquire(lease)):
                local_stop.set()

        pages = self.adapter.read_range(spec, plan, row.number, row.checkpoint)
        try:
            self._apply_pages(mirrored, pages, ctx, result, renew, local_stop, advance)
        except RangeTaken as taken:
            log.info("%s", taken)

    def context(self, run_id: int | None, *, log_inserts: bool) -> PageContext:
        """The page context of this puller's run ``run_id`` (its hooks, policies, key lookups)."""
        created_id = self.adapter.created_id if isinstance(self.adapter, KeyedIds) else None
        ctx = PageContext(
            run_id,
            log_inserts=log_inserts,
            hooks=self.hooks,
            created_id=created_id,
            access=self.access,
        )
        if self.policy_of is not None:
            ctx = dataclasses.replace(ctx, policy_of=self.policy_of)
        return ctx

    def _run(
        self, result: RunResult, work: Callable[[], None], calls_before: int | None = None
    ) -> RunResult:
        """Do ``work`` as run ``result``: its API calls (since ``calls_before``, default now)
        and outcome go to ``mirror_runs``."""
        if calls_before is None:
            calls_before = self.adapter.api_calls()
        started = time.monotonic()
        with log_context(source=result.source, object=result.object, run_id=result.run_id):
            try:
                work()
            except BaseException as exc:
                result.api_calls = self.adapter.api_calls() - calls_before
                self._finish_run(result, _status_of(exc), repr(exc)[:2000])
                log_run(result, _status_of(exc), time.monotonic() - started, exc)
                raise
            result.api_calls = self.adapter.api_calls() - calls_before
            status = "stopped" if result.stopped else "ok"
            self._finish_run(result, status, None)
            log_run(result, status, time.monotonic() - started)
        return result

    def _apply_pages(
        self,
        mirrored: MirrorTable,
        pages: Iterator[Page],
        ctx: PageContext,
        result: RunResult,
        progress: ProgressCallback | None,
        stop: threading.Event | None,
        prepare: Callable[[Connection, Page], Page] | None = None,
    ) -> None:
        """Apply ``pages`` one transaction each; ``prepare`` runs first in that transaction
        and may replace the page applied."""
        for page in prefetched(pages, self.prefetch_pages):
            # a first backfill asks for a sweep in case the mirror held the object already (a
            # restarted backfill); an empty table has nothing to mark and saves the listing
            if page.needs_sweep and _holds_live_rows(self.store, mirrored):
                result.swept += self.sweep(mirrored, ctx.run_id)
            with self.store.transaction() as conn:
                applied = page if prepare is None else prepare(conn, page)
                outcome = apply_page(self.store, conn, mirrored, applied, ctx)
            result.pages += 1
            result.totals.add(outcome)
            if result.pages & (result.pages - 1) == 0:
                self.store.refresh_statistics(mirrored.table.name)
            if progress is not None:
                progress(mirrored.spec.name, outcome, page)
            if stop is not None and stop.is_set():
                result.stopped = True
                return

    def _start_run(self, spec: ObjectSpec, kind: str) -> int:
        return start_run(self.store, spec.source, spec.name, kind)

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


def log_run(
    result: RunResult, status: str, seconds: float, error: BaseException | None = None
) -> None:
    """One line per run: what it did, how long it took, and why it failed if it did (INFO when
    it ended well, WARNING when not)."""
    t = result.totals
    done = (
        f"{result.pages} pages, {t.inserted} new, {t.updated} changed, {t.unchanged} same, "
        f"{t.deleted + result.swept} deleted, {t.rejected} rejected, {result.api_calls} API calls"
    )
    name = f"{result.kind} of {result.source}.{result.object}"
    if error is None:
        log.log(
            logging.INFO if status == "ok" else logging.WARNING,
            "%s %s in %.1f s: %s", name, status, seconds, done,
        )  # fmt: skip
    else:
        log.warning("%s %s after %.1f s (%s): %s", name, status, seconds, error, done)


def _holds_live_rows(store: Store, mirrored: MirrorTable) -> bool:
    """Whether ``mirrored``'s table has a row not marked deleted."""
    table = mirrored.table
    query = select(table.c[mirrored.spec.key]).where(table.c._deleted.is_(False)).limit(1)
    with store.engine.connect() as conn:
        return conn.execute(query).first() is not None


def _status_of(exc: BaseException) -> str:
    return "interrupted" if isinstance(exc, KeyboardInterrupt | SystemExit) else "failed"
