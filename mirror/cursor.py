"""The closed-range change cursor every adapter's reads advance, fenced at the query's start.

A read asks the CRM for the records whose change stamp is at or after the checkpoint's
``cursor`` (``>=``, never ``>``), in ``(stamp, id)`` order, and skips the ids the checkpoint
lists as already applied at exactly that stamp (``ids_at_cursor``). A checkpoint promises:
every change stamped before ``cursor``, and the changes at ``cursor`` to those ids, have been
delivered, each at that version or a newer one. The range is closed because CRMs stamp many
records with one value (whole batches in one second, or one millisecond): a page that ends in
the middle of them must leave the rest to be read, not skipped.

**The fence.** A query answers as of the moment it began: a snapshot (a Salesforce query
locator, a Dataverse change-tracking pass) or, for live keyset paging (Dataverse paging
cookies, HubSpot search), each page's own query. A record changed after that moment carries a
stamp at or after it, and the read may not see that change: a snapshot hands the record back
in its old place with its new stamp, ahead of records not delivered yet, and keyset paging
has already moved past the place the new stamp sorts to when it falls in the same second as
the page's last record. So a row moves the checkpoint only when it is stamped strictly before
the *fence*: a lower bound of the CRM's clock when the query began, floored to the resolution
of its stamps (``fence_of``). Rows at or after the fence are delivered like any other (they
are real data), but the checkpoint stays behind them, so the next read (or the resumed one)
reads them again, which the idempotent upsert makes a no-op. Since the cursor then only ever
sits on a stamp older than a moment at which a query had already begun, no later change of a
record can carry that stamp again, which is what makes skipping ``ids_at_cursor`` safe.

The fence comes from the CRM's own clock, never the local one (the two differ, and a test
sandbox's clock is often virtual): the ``Date`` header of the query's answer, less the local
time that request took (the query began no earlier than the answer was dated less the round
trip), floored. Only the query's own answer is used: an earlier answer plus the local time
since would assume the CRM's clock keeps pace with ours, which a stopped sandbox clock or a
different host behind a load balancer does not.

**Holding the fence.** Later queries of the same read bring later fences. A fence may move
up only while no row at or after the current one has been delivered: once one has, the read
has reached changes made after its query began, and a change made since, stamped behind the
read's position, is one this read may never deliver; the checkpoint stays below the fence held
for the rest of the read. While the read is still catching up (every row delivered older than
the fence), a later query's fence is safe to take.

**Position and checkpoint.** The *position* (the newest stamp delivered and the ids delivered
at it) is where the read has got to, and where keyset paging continues from; the *checkpoint*
is what is saved. They differ only for rows at or after the fence. Re-querying the same read
(a locator that expired) starts again from the checkpoint (``restart``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from mirror.types import Checkpoint

S = TypeVar("S", datetime, int)
"""A change stamp: an aware datetime, or an integer such as epoch milliseconds."""

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NO_MARGIN = timedelta(0)


@dataclass(frozen=True)
class AnswerTime:
    """When a CRM answered one request: its ``Date`` header and the local time the request
    took, from sending it to receiving the answer's headers."""

    date: datetime
    elapsed: timedelta

    def earliest_start(self) -> datetime:
        """A moment on the CRM's clock at or before it began handling the request."""
        return self.date - max(self.elapsed, NO_MARGIN)


def fence_of(
    answer: AnswerTime | None, resolution: timedelta, margin: timedelta = NO_MARGIN
) -> datetime | None:
    """The fence of a query whose (first) answer is ``answer``: the earliest moment the CRM
    can have begun it, less ``margin``, floored to ``resolution`` (the CRM's stamp
    resolution); ``None`` when the answer carried no date."""
    if answer is None:
        return None
    bound = answer.earliest_start() - margin
    return EPOCH + ((bound - EPOCH) // resolution) * resolution


@dataclass(frozen=True)
class StampCodec(Generic[S]):
    """How an adapter writes its stamps into checkpoints and reads them back."""

    parse: Callable[[str], S]
    format: Callable[[S], str]


class ChangeCursor(Generic[S]):
    """A read's closed-range cursor: its checkpoint, position, skip set and fence."""

    def __init__(self, codec: StampCodec[S], value: S | None = None, ids: Iterable[str] = ()):
        """Start at the checkpoint ``value`` with ``ids`` applied at it (nothing: the start)."""
        self.codec: StampCodec[S] = codec
        self.value: S | None = value
        self._ids: dict[str, None] = dict.fromkeys(ids) if value is not None else {}
        self.position: S | None = value
        self._position_ids: dict[str, None] = dict(self._ids)
        self.fence: S | None = None
        self.held = False
        self._skip_value: S | None = value
        self._skip_ids = frozenset(self._ids)

    @classmethod
    def resume(cls, codec: StampCodec[S], checkpoint: Checkpoint | None) -> ChangeCursor[S]:
        """A cursor resuming after ``checkpoint`` (from the start when it has no cursor)."""
        if checkpoint is None or checkpoint.cursor is None:
            return cls(codec)
        return cls(codec, codec.parse(checkpoint.cursor), checkpoint.ids_at_cursor)

    @property
    def ids(self) -> tuple[str, ...]:
        """The ids applied at exactly the checkpoint's value, in delivery order."""
        return tuple(self._ids)

    @property
    def position_ids(self) -> tuple[str, ...]:
        """The ids delivered at exactly the position, in delivery order."""
        return tuple(self._position_ids)

    def began(self, fence: S | None) -> None:
        """A query (or a page's own query, in keyset paging) began no earlier than ``fence``.

        The fence moves up to it unless a row at or after the current fence has been
        delivered (then it is held for the rest of the read); ``None`` (the CRM's clock is
        unknown) changes nothing."""
        if fence is None or self.held:
            return
        if self.fence is None or fence > self.fence:
            self.fence = fence

    def restart(self) -> None:
        """Before re-querying from the checkpoint: skip from now on what it says is applied."""
        self._skip_value = self.value
        self._skip_ids = frozenset(self._ids)

    def already_applied(self, stamp: S, record_id: str) -> bool:
        """Whether the query asked from the checkpoint returns this row although the
        checkpoint says it is applied (so the caller skips it)."""
        return stamp == self._skip_value and record_id in self._skip_ids

    def take(self, stamp: S, record_id: str) -> None:
        """Take one delivered row into the position, and into the checkpoint when it is
        stamped before the fence (else the fence is held from now on)."""
        if self.position is None or stamp > self.position:
            self.position, self._position_ids = stamp, {record_id: None}
        elif stamp == self.position:
            self._position_ids[record_id] = None
        if self.fence is None or stamp >= self.fence:
            self.held = True
            return
        if self.value is None or stamp > self.value:
            self.value, self._ids = stamp, {record_id: None}
        elif stamp == self.value:
            self._ids[record_id] = None

    def checkpoint(self, phase: str, state: Mapping[str, Any]) -> Checkpoint:
        """The checkpoint after the rows taken so far."""
        cursor = self.codec.format(self.value) if self.value is not None else None
        return Checkpoint(cursor, self.ids, phase, dict(state))


def handover(
    codec: StampCodec[S], fence: S | None, phase: str, state: Mapping[str, Any]
) -> Checkpoint:
    """The checkpoint of a read that delivered every change stamped before ``fence`` (a
    backfill that listed everything after its fence was taken): the closed range at the
    fence with no id applied at it (``None``: from the start)."""
    cursor = codec.format(fence) if fence is not None else None
    return Checkpoint(cursor, (), phase, dict(state))
