"""Push: outbox -> CRM, in order, batched, idempotent, one bad record never blocking the rest.

Each round takes the oldest ready entry of every record (so a record's edits reach the CRM in
the order they were made), leaves out entries that reference a portal-created record the CRM has
not created yet (the parent is created first, its id swapped in, and the child goes in a later
round), groups the rest by object and operation in batches, marks them ``sending`` and commits
before calling the CRM. A crash after that leaves them ``sending``: the next push sends them
again, and that is safe: creates carry an idempotency key (an external-id upsert), updates
carry the same values, and the precondition then fails only to be reconciled by the next pull.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, update

from mirror.adapter import CrmAdapter
from mirror.errors import MirrorError, QuotaExceeded, TransientError
from mirror.outbox import (
    OPEN_STATUSES,
    is_local,
    replace_local_id,
    set_entry,
    still_pending,
    typed,
)
from mirror.store import Store, utcnow
from mirror.tables import mirror_changes, mirror_checkpoints, mirror_outbox
from mirror.types import ObjectSpec, Write, WriteOp, WriteResult

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
    ) -> None:
        self.store = store
        self.adapter = adapter
        self.source = source
        self.spec_of = spec_of
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.on_change = on_change
        self._synced: dict[str, str] = {}

    def push(self, *, max_rounds: int = 20) -> PushResult:
        """Send every ready entry once (a retry waits for a later push); returns the counts.

        Rounds continue while entries become ready because their parents were just created.
        Stops at a quota error (nothing lost).
        """
        result = PushResult()
        calls_before = self.adapter.api_calls()
        attempted: set[int] = set()
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

    def _ready(self) -> list[Any]:
        """The oldest open entry of each record, when it is due and references no record the
        CRM has not created yet."""
        o = mirror_outbox.c
        query = (
            select(mirror_outbox)
            .where(o.source == self.source, o.status.in_(OPEN_STATUSES))
            .order_by(o.seq)
        )
        with self.store.engine.connect() as conn:
            rows = conn.execute(query).all()
        now = utcnow()
        first: dict[tuple[str, str], Any] = {}
        for row in rows:
            first.setdefault((row.object, row.record_id), row)
        return [
            row
            for row in first.values()
            if row.status != "blocked"
            and row.next_attempt_at <= now
            and not any(is_local(v) for v in row.new_values.values())
            and (row.op == "create" or not is_local(row.record_id))
        ]

    def _batches(self, rows: list[Any]) -> Iterable[list[Any]]:
        groups: dict[tuple[str, str], list[Any]] = {}
        for row in rows:
            groups.setdefault((row.object, row.op), []).append(row)
        for group in groups.values():
            for start in range(0, len(group), self.batch_size):
                yield group[start : start + self.batch_size]

    def _send(self, batch: list[Any], result: PushResult) -> None:
        spec = self.spec_of(batch[0].object)
        with self.store.transaction() as conn:
            for row in batch:
                set_entry(conn, row.seq, status="sending")
        writes = [self._write(spec, row) for row in batch]
        result.sent += len(batch)
        result.batches += 1
        try:
            answers = self.adapter.write(spec, writes)
        except QuotaExceeded:
            self._requeue(batch)
            raise
        except (TransientError, MirrorError) as exc:
            answers = [WriteResult(ok=False, message=str(exc), retryable=True) for _ in writes]
        with self.store.transaction() as conn:
            for row, answer in zip(batch, answers, strict=True):
                self._apply(conn, spec, row, answer, result)

    def _write(self, spec: ObjectSpec, row: Any) -> Write:
        values = {name: typed(spec, name, value) for name, value in row.new_values.items()}
        op = WriteOp(row.op)
        return Write(
            op=op,
            object=spec.name,
            values=values if op is not WriteOp.DELETE else {},
            record_id=None if op is WriteOp.CREATE else row.record_id,
            expected_version=None if row.force or op is WriteOp.CREATE else row.base_version,
            idempotency_key=row.idempotency_key,
            synced_through=self._synced.get(spec.name),
        )

    def _apply(
        self, conn: Connection, spec: ObjectSpec, row: Any, answer: WriteResult, result: PushResult
    ) -> None:
        now = utcnow()
        if answer.ok:
            result.done += 1
            record_id = row.record_id
            if row.op == "create" and answer.record_id:
                replace_local_id(conn, self.store, spec, row.record_id, answer.record_id, now)
                record_id = answer.record_id
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
        self._revert(conn, spec, row, answer, now)

    def _requeue(self, batch: list[Any]) -> None:
        with self.store.transaction() as conn:
            for row in batch:
                set_entry(conn, row.seq, status="pending")

    def _settle(self, conn: Connection, spec: ObjectSpec, record_id: str) -> None:
        if not still_pending(conn, spec.source, spec.name, record_id):
            self._set_pending(conn, spec, record_id, False)

    def _set_pending(self, conn: Connection, spec: ObjectSpec, record_id: str, value: bool) -> None:
        mirrored = self.store.mirrored(spec.source, spec.name)
        key = mirrored.table.c[spec.key]
        conn.execute(update(mirrored.table).where(key == record_id).values(_pending=value))

    def _revert(
        self, conn: Connection, spec: ObjectSpec, row: Any, answer: WriteResult, now: datetime
    ) -> None:
        """A write the CRM refused for good: the mirror row returns to the CRM's values."""
        mirrored = self.store.mirrored(spec.source, spec.name)
        table, key = mirrored.table, mirrored.table.c[spec.key]
        if row.op == "create":
            conn.execute(update(table).where(key == row.record_id).values(_deleted=True))
        elif row.op == "delete":
            conn.execute(update(table).where(key == row.record_id).values(_deleted=False))
        else:
            current = conn.execute(select(table).where(key == row.record_id)).first()
            restore = {
                name: typed(spec, name, old)
                for name, old in row.old_values.items()
                if current is not None
                and name in table.c
                and current._mapping[name] == typed(spec, name, row.new_values.get(name))
            }
            if restore:
                conn.execute(update(table).where(key == row.record_id).values(**restore))
        conn.execute(
            mirror_changes.insert().values(
                source=spec.source,
                object=spec.name,
                record_id=row.record_id,
                op="revert",
                origin="writeback",
                author=row.author,
                fields={"error": [answer.error_code, answer.message]},
                at=now,
            )
        )
        self._settle(conn, spec, row.record_id)
        if self.on_change is not None:
            self.on_change(conn, spec.name, [row.record_id])
