"""The port every CRM adapter satisfies; the engine talks to CRMs only through it, with what an
adapter's write needs from the engine: whether the fields a write sets still hold the values
the portal edited (``changed_fields``, see ``mirror.push.preconditions``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from mirror.push.diff import field_changes
from mirror.store.records import field_value
from mirror.types import (
    Checkpoint,
    ObjectSpec,
    Page,
    Record,
    StreamEvent,
    StreamGap,
    Write,
    WriteResult,
)


@runtime_checkable
class CrmAdapter(Protocol):
    """A CRM as the engine sees it: metadata, paged reads with checkpoints, and batched writes.

    Adapters raise only ``MirrorError`` subclasses, mapping their CRM's status and error codes
    in one table, and handle session renewal and throttling themselves (a ``TransientError``
    escapes only when waiting no longer helps).
    """

    name: str

    def check(self) -> None:
        """Authenticate and reach the CRM; raise ``AuthError`` or ``TransientError`` if not."""
        ...

    def list_objects(self) -> list[str]:
        """The names of the objects this CRM can mirror."""
        ...

    def describe(self, object_name: str) -> ObjectSpec:
        """Fields, types, keys and relations of one object, from the CRM's metadata."""
        ...

    def read(self, spec: ObjectSpec, since: Checkpoint | None) -> Iterator[Page]:
        """Pages of records and tombstones after ``since`` (``None``: full backfill).

        Every page carries the checkpoint that follows it; resuming from any page's checkpoint
        loses nothing. The last page of a backfill carries a checkpoint in phase
        ``"incremental"``.
        """
        ...

    def read_ids(self, spec: ObjectSpec) -> Iterator[list[str]]:
        """Every live id of the object, in batches: the delete sweep's input."""
        ...

    def fetch(self, spec: ObjectSpec, ids: Sequence[str]) -> list[Record]:
        """The CRM's current version of the records ``ids`` (missing ones left out)."""
        ...

    def write(self, spec: ObjectSpec, writes: Sequence[Write]) -> list[WriteResult]:
        """Apply writes with their preconditions; one result per write, in order."""
        ...

    def api_calls(self) -> int:
        """How many HTTP requests this adapter has made to the CRM so far."""
        ...


@dataclass(frozen=True)
class RangePlan:
    """One object's backfill split into ranges that workers can read independently.

    ``bounds`` holds each range's ``(lower, upper)`` in the adapter's own terms (ids, dates;
    ``None``: open). ``after`` is the object's checkpoint once every range has been read: it
    starts the incremental phase from the watermark the ranges were bounded by, so a change
    made during the backfill is read then. ``state`` carries what every range read needs.
    """

    bounds: tuple[tuple[str | None, str | None], ...]
    after: Checkpoint
    state: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class RangeReader(Protocol):
    """Optional: an adapter that can split one object's backfill into ranges.

    The engine checks for it with ``isinstance``; adapters without it backfill every object
    in one read.
    """

    def plan_ranges(self, spec: ObjectSpec, parts: int, min_records: int) -> RangePlan | None:
        """Split the backfill of ``spec`` into about ``parts`` ranges, or ``None`` when the
        object has fewer than ``min_records`` records (a single read is cheaper)."""
        ...

    def read_range(
        self, spec: ObjectSpec, plan: RangePlan, index: int, since: Checkpoint | None
    ) -> Iterator[Page]:
        """Pages of range ``index`` of ``plan`` after ``since`` (``None``: from its start).

        Every page carries the range's own checkpoint; the last one is in phase ``"done"``.
        """
        ...


@runtime_checkable
class KeyedIds(Protocol):
    """Optional: an adapter whose CRM lets a create choose the new record's id, and which
    derives it from the write's idempotency key.

    The engine checks for it with ``isinstance``; a pulled record whose id is the one a
    pending portal create would get is recognised as that create (its answer was lost).
    Adapters of CRMs that keep the key in an external-id field (``ObjectSpec.
    external_id_field``) need not implement it.
    """

    def created_id(self, spec: ObjectSpec, idempotency_key: str) -> str | None:
        """The id a create of ``spec`` with ``idempotency_key`` gives its record, or
        ``None`` when the CRM assigns it."""
        ...


StreamItem = StreamEvent | StreamGap


@runtime_checkable
class StreamListener(Protocol):
    """Optional: an adapter that subscribes to its CRM's change stream over a connection it
    opens itself (Salesforce Change Data Capture). The engine checks for it with
    ``isinstance``; polling stays the backstop either way.
    """

    def listen(
        self, specs: Sequence[ObjectSpec], position: str | None, stop: threading.Event
    ) -> Iterator[StreamItem]:
        """The changes of ``specs``' objects after ``position`` (``None``: from now), as they
        come, until ``stop`` is set (checked at least every few seconds; the iterator then
        ends). Yields a ``StreamGap`` where it cannot vouch for completeness; a position the
        CRM no longer retains is such a gap, after which the stream resumes from now. Raises
        ``TransientError`` when the connection fails and reconnecting no longer helps.
        """
        ...


@runtime_checkable
class WebhookReceiver(Protocol):
    """Optional: an adapter whose CRM posts its changes to a URL of ours (HubSpot webhook
    subscriptions, Dataverse service endpoints). The engine serves that URL, hands each
    delivery to ``receive`` and answers the CRM once the changes are stored, so a delivery
    the engine could not keep is retried by the CRM.
    """

    def receive(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> list[StreamItem]:
        """The changes one delivery tells of. Raises ``StreamSignatureError`` when the
        delivery's signature or key cannot be verified (the engine refuses it and polls)."""
        ...


def changed_fields(
    spec: ObjectSpec, expected: Mapping[str, Any] | None, current: Mapping[str, Any]
) -> list[str]:
    """The fields of ``expected`` (an edit's base) whose value in ``current`` (the record as
    the adapter's check read found it, in Python values) is another one, in name order.
    Fields ``current`` does not hold are not compared."""
    if not expected:
        return []
    names = sorted(name for name in expected if name in current)
    before = {name: normalized(spec, name, expected[name]) for name in names}
    now = {name: normalized(spec, name, current[name]) for name in names}
    return sorted(field_changes(before, now, names))


def normalized(spec: ObjectSpec, name: str, value: Any) -> Any:
    """``value`` converted to the type of field ``name``; ``None`` for no value or ``""``."""
    return field_value(spec, name, value, lenient=True)
