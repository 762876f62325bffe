"""Push: outbox -> CRM, in order, batched, idempotent, one bad record never blocking the rest.

Each round takes the oldest ready entry of every record (so a record's edits reach the CRM in
the order they were made), leaves out entries that reference a portal-created record the CRM has
not created yet (the parent is created first, its id swapped in, and the child goes in a later
round), groups the rest by object and operation in batches, marks them ``sending`` and commits
before calling the CRM. Marking a batch re-reads its entries, locked: a pull that ran since the
round read them (a daemon syncs while it pushes) may have parked one in a ``manual`` conflict,
superseded it or rebased it onto the CRM's newer values, and an entry goes out only as that
pull left it, never as the round first read it. A crash after that leaves them ``sending``: the
next push sends them again, and that is safe: creates carry an idempotency key (an external-id
upsert), updates carry the same values, and the precondition then fails only to be reconciled
by the next pull. An update of a portal-created record that carries no version (made before a
pull brought the record) is held to the version the CRM gave the create.

The CRM's answers of a batch are recorded in one transaction; when that fails, each answer is
recorded in a transaction of its own, and an entry whose answer cannot be recorded is retried
later like a transient failure, so it never holds back the entries behind it. An entry a pull
settled while its write was on the way (a create recognised by its key) keeps what the pull
decided. A ``blocked`` entry waits for the next pull to reconcile it; one still blocked after a
sync of its object that began after the block and completed is sent again, so the CRM says
what became of the record (deleted for good, typically) instead of the entry waiting forever.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Connection, select, update

from mirror.adapter import CrmAdapter
from mirror.errors import MirrorError, QuotaExceeded, TransientError
from mirror.push.landed import settle_lost_answers
from mirror.push.local_ids import AccessChanges, current_ids, settle_create
from mirror.push.outbox import (
    OPEN_STATUSES,
    OutboxEntry,
    created_versions,
    is_local,
    locked_entries,
    release_blocks,
    set_entry,
    source_entries,
    stale_blocks,
    still_pending,
)
from mirror.push.refusals import revert
from mirror.push.writes import sendable, write_of
from mirror.store.database import Store, utcnow
from mirror.store.tables import mirror_checkpoints
from mirror.types import ObjectSpec, Write, WriteResult

log = logging.getLogger("prm_mirror.writeback")
Hook = Callable[[Connection, str, list[str]], None]


@dataclass
class PushResult:
    """What one push did."""

    sent: int = 0
    done: int = 0
    failed: int = 0
    retried: int = 0
    blocked: int = 0
    batches: int = 0
    api_calls: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: PushResult) -> None:
        """Accumulate what ``other`` recorded (its entries' outcomes and errors)."""
        self.done += other.done
        self.failed += other.failed
        self.retried += other.retried
        self.blocked += other.blocked
        self.errors.extend(other.errors)


class Pusher:
    """Drains one source's outbox into its CRM."""

    def __init__(
        self,
        store: Store,
        adapter: CrmAdapter,
        source: str,
        spec_of: Callable[[str], ObjectSpec],
        *,
        batch_size: int = 10_000,
        max_attempts: int = 8,
        base_delay: float = 1.0,
        on_change: Hook | None = None,
        access: AccessChanges | None = None,
    ) -> None:
        """``on_change`` is told of records a refused write changed back; ``access`` keeps
        the grants current when a created record is merged into its CRM row."""
        self.store = store
        self.adapter = adapter
        self.source = source
        self.spec_of = spec_of
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.on_change = on_change
        self.access = access
        self._synced: dict[str, str] = {}

    def push(self, *, max_rounds: int = 20) -> PushResult:
        """Send every ready entry once (a retry waits for a later push); returns the counts.

        Rounds continue while entries become ready because their parents were just created.
        Stops at a quota error (nothing lost).
        """
        result = PushResult()
        calls_before = self.adapter.api_calls()
        attempted: set[int] = set()
        with self.store.engine.connect() as conn:
            stale = stale_blocks(conn, self.source)
        if stale:
            with self.store.transaction() as conn:
                release_blocks(conn, stale)
        for _ in range(max_rounds):
            # the checkpoints first: every CRM change up to them is already reconciled with the
            # entries read after
            self._synced = self._synced_through()
            ready = [row for row in self._ready() if row.seq not in attempted]
            if not ready:
                break
            attempted.update(row.seq for row in ready)
            for batch in self._batches(ready):
                self._send(batch, result)
        result.api_calls = self.adapter.api_calls() - calls_before
        return result

    def _synced_through(self) -> dict[str, str]:
        """Each object's checkpoint cursor (objects still in their backfill have none)."""
        c = mirror_checkpoints.c
        query = select(c.object, c.cursor).where(
            c.source == self.source, c.phase == "incremental", c.cursor.is_not(None)
        )
        with self.store.engine.connect() as conn:
            return {name: cursor for name, cursor in conn.execute(query)}

    def _ready(self) -> list[OutboxEntry]:
        """The oldest open entry of each record, when it is due and references no record the
        CRM has not created yet."""
        with self.store.engine.connect() as conn:
            rows = source_entries(conn, self.source, OPEN_STATUSES)
        now = utcnow()
        first: dict[tuple[str, str], OutboxEntry] = {}
        for row in rows:
            first.setdefault((row.object, row.record_id), row)
        return [row for row in first.values() if sendable(row) and row.next_attempt_at <= now]

    def _batches(self, rows: list[OutboxEntry]) -> Iterable[list[OutboxEntry]]:
        groups: dict[tuple[str, str], list[OutboxEntry]] = {}
        for row in rows:
            groups.setdefault((row.object, row.op), []).append(row)
        for group in groups.values():
            for start in range(0, len(group), self.batch_size):
                yield group[start : start + self.batch_size]

    def _send(self, batch: list[OutboxEntry], result: PushResult) -> None:
        spec = self.spec_of(batch[0].object)
        with self.store.transaction() as conn:
            batch = self._claim(conn, batch)
        if not batch:
            return
        replaced = self._replaced(batch)
        created = self._created_versions(batch)
        writes = [self._write(spec, row, replaced, created) for row in batch]
        result.sent += len(batch)
        result.batches += 1
        try:
            answers = self.adapter.write(spec, writes)
        except QuotaExceeded:
            self._requeue(batch)
            raise
        except (TransientError, MirrorError) as exc:
            answers = [WriteResult(ok=False, message=str(exc), retryable=True) for _ in writes]
        answers = settle_lost_answers(self.adapter, spec, writes, answers)
        self._record(spec, batch, answers, result)

    def _record(
        self,
        spec: ObjectSpec,
        batch: list[OutboxEntry],
        answers: list[WriteResult],
        result: PushResult,
    ) -> None:
        """Record the answers of a batch in one transaction or, when that fails, each answer
        in its own: one entry that cannot be recorded never rolls the others back."""
        recorded = PushResult()
        try:
            with self.store.transaction() as conn:
                sending = self._still_sending(conn, batch)
                for row, answer in zip(batch, answers, strict=True):
                    if row.seq in sending:
                        self._apply(conn, spec, sending[row.seq], answer, recorded)
        except Exception as exc:
            log.warning(
                "recording %d %s answers at once failed (%s); recording each on its own",
                len(batch), spec.name, _describe(exc),
            )  # fmt: skip
            recorded = PushResult()
            for row, answer in zip(batch, answers, strict=True):
                self._record_one(spec, row, answer, recorded)
        result.add(recorded)

    def _record_one(
        self, spec: ObjectSpec, row: OutboxEntry, answer: WriteResult, result: PushResult
    ) -> None:
        """Record one answer; when even that fails, the entry is retried later."""
        recorded = PushResult()
        try:
            with self.store.transaction() as conn:
                if current := self._still_sending(conn, [row]).get(row.seq):
                    self._apply(conn, spec, current, answer, recorded)
            result.add(recorded)
            return
        except Exception as exc:
            log.exception("recording the answer to outbox entry %d failed", row.seq)
            reason = _describe(exc)
        failure = WriteResult(
            ok=False,
            error_code="NOT_RECORDED",
            message=f"the CRM's answer could not be recorded in the mirror ({reason})",
            retryable=True,
        )
        with self.store.transaction() as conn:
            if current := self._still_sending(conn, [row]).get(row.seq):
                self._apply(conn, spec, current, failure, result)

    def _claim(self, conn: Connection, batch: list[OutboxEntry]) -> list[OutboxEntry]:
        """Mark ``sending`` the entries of ``batch`` still ready as they stand now (locked
        until the commit), and return them as they stand: a pull that ran since the batch was
        read may have parked an entry in a conflict, superseded it or rebased it onto the
        CRM's newer values, and only the entry as that pull left it may be sent."""
        current = self._locked(conn, batch, ("pending", "sending"))
        claimed = [current[row.seq] for row in batch if row.seq in current]
        claimed = [row for row in claimed if sendable(row)]
        for row in claimed:
            set_entry(conn, row.seq, status="sending")
        return claimed

    def _still_sending(self, conn: Connection, rows: list[OutboxEntry]) -> dict[int, OutboxEntry]:
        """The entries still ``sending``, as they stand now (locked until the commit): a pull
        may have settled one while its write was on the way."""
        return self._locked(conn, rows, ("sending",))

    def _locked(
        self, conn: Connection, rows: list[OutboxEntry], statuses: tuple[str, ...]
    ) -> dict[int, OutboxEntry]:
        return locked_entries(conn, [row.seq for row in rows], statuses)

    def _replaced(self, batch: list[OutboxEntry]) -> dict[str, str]:
        """The CRM ids of the local ids the batch's entries were edited against."""
        bases = {v for row in batch for v in (row.old_values or {}).values() if is_local(v)}
        if not bases:
            return {}
        with self.store.engine.connect() as conn:
            return current_ids(conn, self.source, bases)

    def _created_versions(self, batch: list[OutboxEntry]) -> dict[str, str]:
        """The version the CRM gave each record the portal created, for the batch's updates of
        it that carry no version of their own (made before a pull brought the record): they
        were made against the create's values, and a change made in the CRM since the create
        must hold them back like any other."""
        ids = sorted(
            {row.record_id for row in batch if row.op == "update" and not row.base_version}
        )
        if not ids:
            return {}
        with self.store.engine.connect() as conn:
            return created_versions(conn, self.source, ids)

    def _write(
        self, spec: ObjectSpec, row: OutboxEntry, replaced: dict[str, str], created: dict[str, str]
    ) -> Write:
        return write_of(spec, row, replaced, created, self._synced.get(spec.name))

    def _apply(
        self,
        conn: Connection,
        spec: ObjectSpec,
        row: OutboxEntry,
        answer: WriteResult,
        result: PushResult,
    ) -> None:
        now = utcnow()
        if answer.ok and row.op == "create" and answer.record_id:
            result.done += 1
            settle_create(
                conn,
                self.store,
                spec,
                row,
                answer.record_id,
                version=answer.version,
                confirmed=answer.version is None,
                access=self.access,
            )
            self._settle(conn, spec, answer.record_id)
            return
        if answer.ok:
            result.done += 1
            record_id = row.record_id
            set_entry(
                conn,
                row.seq,
                status="done",
                crm_id=answer.record_id or row.record_id,
                pushed_version=answer.version,
                confirmed=answer.version is None or row.op == "delete",
                error_code=None,
                error_message=None,
            )
            self._settle(conn, spec, record_id)
            return
        if answer.precondition_failed:
            result.blocked += 1
            set_entry(
                conn,
                row.seq,
                status="blocked",
                error_code="CHANGED_IN_CRM",
                error_message=answer.message,
            )
            return
        if answer.retryable and row.attempts + 1 < self.max_attempts:
            result.retried += 1
            delay = min(self.base_delay * 2**row.attempts, 300.0) * (0.5 + random.random())
            set_entry(
                conn,
                row.seq,
                status="pending",
                attempts=row.attempts + 1,
                next_attempt_at=now + timedelta(seconds=delay),
                error_code=answer.error_code,
                error_message=answer.message,
            )
            return
        result.failed += 1
        result.errors.append(f"{spec.name} {row.record_id}: {answer.message}")
        set_entry(
            conn,
            row.seq,
            status="failed",
            attempts=row.attempts + 1,
            error_code=answer.error_code or "FAILED",
            error_message=answer.message,
        )
        revert(conn, self.store, spec, row, answer, now)
        self._settle(conn, spec, row.record_id)
        if self.on_change is not None:
            self.on_change(conn, spec.name, [row.record_id])

    def _requeue(self, batch: list[OutboxEntry]) -> None:
        with self.store.transaction() as conn:
            for seq in self._still_sending(conn, batch):
                set_entry(conn, seq, status="pending")

    def _settle(self, conn: Connection, spec: ObjectSpec, record_id: str) -> None:
        if not still_pending(conn, spec.source, spec.name, record_id):
            self._set_pending(conn, spec, record_id, False)

    def _set_pending(self, conn: Connection, spec: ObjectSpec, record_id: str, value: bool) -> None:
        mirrored = self.store.mirrored(spec.source, spec.name)
        key = mirrored.table.c[spec.key]
        conn.execute(update(mirrored.table).where(key == record_id).values(_pending=value))


def _describe(exc: BaseException) -> str:
    """An error's kind and first line, without the statement or values a database error
    carries."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__
