"""Change Data Capture: the org's event bus of change events, as Salesforce keeps it.

Every committed transaction that changed records of a *selected* entity (Setup > Change Data
Capture; ``ChangeBus.selected``) becomes change events: one per record change, each with its
``ChangeEventHeader`` (entityName, recordIds, changeType, changedFields, commitTimestamp,
commitNumber, transactionKey, sequenceNumber, changeOrigin, commitUser) and a replay id that
grows with the bus (not contiguous across entities, so a subscriber must not compute one). A
transaction changing more records than ``overflow_threshold`` (Salesforce: 100,000) gets events
for the first ones and one ``GAP_OVERFLOW`` event per entity for the rest. Events are kept for
``retention`` of sandbox clock (Salesforce: 72 hours); a replay id of an event purged since is
refused (``ReplayRefused``). The injectable faults change what the bus holds: a gap event, the
next event stored twice, the next two swapped, the next one lost, every open subscription
dropped, and the next subscriptions refused as unavailable.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

DEFAULT_RETENTION = timedelta(hours=72)
DEFAULT_OVERFLOW_THRESHOLD = 100_000
DEFAULT_KEEPALIVE_SECONDS = 270.0
CHANGE_TYPES = ("CREATE", "UPDATE", "DELETE", "UNDELETE")
GAP_TYPES = ("GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE", "GAP_OVERFLOW")

_ORIGIN: ContextVar[str] = ContextVar("sandbox_change_origin", default="")


@contextmanager
def change_origin(origin: str) -> Iterator[None]:
    """Around one API request: the ``changeOrigin`` its changes carry (Salesforce:
    ``com/salesforce/api/rest/59.0;client=<Sforce-Call-Options client>``; empty for changes
    made in the UI, which the test controls stand for)."""
    token = _ORIGIN.set(origin)
    try:
        yield
    finally:
        _ORIGIN.reset(token)


class ReplayRefused(Exception):
    """A replay id the bus cannot resume after: malformed, never issued, or purged."""


@dataclass(frozen=True)
class RecordChange:
    """One record's change inside a transaction not committed yet."""

    entity: str
    change_type: str
    record_id: str
    values: Mapping[str, Any]
    changed: tuple[str, ...]
    nulled: tuple[str, ...]
    origin: str


@dataclass(frozen=True)
class ChangeEvent:
    """A change event on the bus: its replay id, header, field values and commit time."""

    replay_id: int
    entity: str
    header: Mapping[str, Any]
    values: Mapping[str, Any]
    committed_at: datetime
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class BusFaults:
    """What the next committed events suffer (``ChangeBus.add_fault``)."""

    duplicate: int = 0
    reorder: int = 0
    lose: int = 0
    unavailable: int = 0


class ChangeBus:
    """The org's change events, their retention and the subscribers' wake-ups."""

    def __init__(self, clock: Callable[[], datetime], user_id: str) -> None:
        """A bus stamping events with ``clock`` (the sandbox clock); ``user_id`` is the
        ``commitUser`` of changes made inside the CRM."""
        self.clock = clock
        self.user_id = user_id
        self.selected: set[str] = set()
        self.retention = DEFAULT_RETENTION
        self.overflow_threshold = DEFAULT_OVERFLOW_THRESHOLD
        self.keepalive_seconds = DEFAULT_KEEPALIVE_SECONDS
        self.faults = BusFaults()
        self.condition = threading.Condition()
        self.events: list[ChangeEvent] = []
        self.offset = 0
        self.purged_through = 0
        self.drops = 0
        self._last_replay = 0
        self._commit_number = 0
        self._pending: list[RecordChange] = []
        self._held: list[ChangeEvent] = []

    # -- staging inside a transaction -------------------------------------------------------

    def stage(
        self,
        entity: str,
        change_type: str,
        record_id: str,
        values: Mapping[str, Any] | None = None,
        changed: Sequence[str] = (),
    ) -> None:
        """Note one record's change of the transaction under way (published on commit)."""
        values = dict(values or {})
        nulled = tuple(name for name in changed if values.get(name) is None)
        self._pending.append(
            RecordChange(entity, change_type, record_id, values, tuple(changed), nulled,
                         _ORIGIN.get())
        )  # fmt: skip

    def mark(self) -> int:
        """Where the transaction's staged changes stand (for a savepoint)."""
        return len(self._pending)

    def rollback_to(self, mark: int) -> None:
        """Forget the changes staged after ``mark`` (their savepoint was rolled back)."""
        del self._pending[mark:]

    def discard(self) -> None:
        """Forget every staged change (the transaction rolled back)."""
        self._pending.clear()

    def commit(self) -> None:
        """Publish the committed transaction's changes of selected entities."""
        pending, self._pending = self._pending, []
        changes = [change for change in pending if change.entity in self.selected]
        if not changes:
            return
        now = self.clock()
        self._commit_number += 1
        key = str(uuid.uuid4())
        kept, overflow = changes[: self.overflow_threshold], changes[self.overflow_threshold :]
        published = [(self._header(change, now, key), change.values) for change in kept]
        for entity in sorted({change.entity for change in overflow}):
            origin = next(c.origin for c in overflow if c.entity == entity)
            gap = RecordChange(entity, "GAP_OVERFLOW", "", {}, (), (), origin)
            published.append((self._header(gap, now, key), {}))
        with self.condition:
            for number, (header, values) in enumerate(published, start=1):
                header["sequenceNumber"] = number
                self._publish(header["entityName"], header, values, now)
            self.condition.notify_all()

    def _header(self, change: RecordChange, now: datetime, key: str) -> dict[str, Any]:
        return {
            "entityName": change.entity,
            "recordIds": [change.record_id] if change.record_id else [],
            "changeType": change.change_type,
            "changeOrigin": change.origin,
            "transactionKey": key,
            "sequenceNumber": 0,
            "commitTimestamp": int(now.timestamp() * 1000),
            "commitNumber": self._commit_number,
            "commitUser": self.user_id,
            "nulledFields": list(change.nulled),
            "diffFields": [],
            "changedFields": list(change.changed) if change.change_type == "UPDATE" else [],
        }

    # -- the log ----------------------------------------------------------------------------

    def _publish(
        self, entity: str, header: Mapping[str, Any], values: Mapping[str, Any], now: datetime
    ) -> None:
        """Give the event a replay id and store it, as the injected faults say."""
        self._last_replay += 1
        event = ChangeEvent(self._last_replay, entity, header, values, now)
        if self.faults.lose:
            self.faults.lose -= 1
            return
        if self._held:
            self.events.append(event)
            self.events.extend(self._held)
            self._held.clear()
            return
        if self.faults.reorder:
            self.faults.reorder -= 1
            self._held.append(event)
            return
        self.events.append(event)
        if self.faults.duplicate:
            self.faults.duplicate -= 1
            self.events.append(event)

    def inject_gap(self, entity: str, record_ids: Sequence[str], change_type: str) -> int:
        """Publish a gap event (``GAP_CREATE`` ... ``GAP_OVERFLOW``) as its own transaction;
        returns its replay id."""
        if change_type not in GAP_TYPES:
            raise ValueError(f"not a gap change type: {change_type!r}")
        now = self.clock()
        self._commit_number += 1
        change = RecordChange(entity, change_type, "", {}, (), (), "")
        header = self._header(change, now, str(uuid.uuid4()))
        header.update(recordIds=list(record_ids), sequenceNumber=1)
        with self.condition:
            self._publish(entity, header, {}, now)
            self.condition.notify_all()
            return self._last_replay

    def purge(self) -> None:
        """Drop the events older than the retention window."""
        horizon = self.clock() - self.retention
        with self.condition:
            keep = 0
            while keep < len(self.events) and self.events[keep].committed_at < horizon:
                self.purged_through = max(self.purged_through, self.events[keep].replay_id)
                keep += 1
            del self.events[:keep]
            self.offset += keep

    def expire_all(self) -> None:
        """Purge every event now, as if the retention window had passed over all of them."""
        with self.condition:
            for event in self.events:
                self.purged_through = max(self.purged_through, event.replay_id)
            self.offset += len(self.events)
            self.events.clear()

    def latest(self) -> int:
        """The replay id of the newest event published (0: none yet)."""
        return self._last_replay

    def start_after(self, replay_id: int | None, earliest: bool = False) -> int:
        """The position (absolute index on the bus) a subscription resumes at: after
        ``replay_id``, at the earliest retained event, or (both unset) at the tip.
        ``ReplayRefused`` when ``replay_id`` was never issued or its event is past retention."""
        self.purge()
        with self.condition:
            if replay_id is None:
                return self.offset if earliest else self.offset + len(self.events)
            if replay_id <= 0 or replay_id > self._last_replay or replay_id <= self.purged_through:
                raise ReplayRefused(replay_id)
            for index in range(len(self.events) - 1, -1, -1):
                if self.events[index].replay_id == replay_id:
                    return self.offset + index + 1
            # an id whose event was lost: resume at the next one
            return self.offset + next(
                (i for i, event in enumerate(self.events) if event.replay_id > replay_id),
                len(self.events),
            )

    def read(
        self, position: int, entities: set[str] | None, limit: int
    ) -> tuple[list[ChangeEvent], int, int | None]:
        """Up to ``limit`` events of ``entities`` (``None``: all) from ``position`` on (hold
        the condition); returns them, the position after the last event looked at, and that
        event's replay id (``None`` when none was looked at)."""
        found: list[ChangeEvent] = []
        index = max(position, self.offset)
        last: int | None = None
        while index < self.offset + len(self.events) and len(found) < limit:
            event = self.events[index - self.offset]
            last = event.replay_id
            if entities is None or event.entity in entities:
                found.append(event)
            index += 1
        return found, index, last

    def clear_faults(self) -> None:
        """Forget the injected faults; an event held back for reordering is stored now."""
        with self.condition:
            self.faults = BusFaults()
            self.events.extend(self._held)
            self._held.clear()
            self.condition.notify_all()

    def drop_subscriptions(self) -> None:
        """Every open subscription ends with UNAVAILABLE (its client must resubscribe)."""
        with self.condition:
            self.drops += 1
            self.condition.notify_all()


def encode_replay(replay_id: int) -> bytes:
    """A replay id on the wire: 8 bytes, big-endian."""
    return replay_id.to_bytes(8, "big")


def decode_replay(raw: bytes) -> int:
    """A replay id from the wire; ``ReplayRefused`` when it is not one of ours."""
    if len(raw) != 8:
        raise ReplayRefused(raw)
    return int.from_bytes(raw, "big")
