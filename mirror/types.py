"""The engine's value types: frozen dataclasses shared by the engine and every adapter.

Records travel as plain ``dict[str, Any]`` keyed by the CRM's own field names, with values already
converted to Python types (``str``, ``int``, ``float``, ``Decimal``, ``bool``, ``date``,
``datetime`` in UTC, or ``None``). Adapters do that conversion; the engine never sees wire formats.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

Record = dict[str, Any]


class FieldType(enum.StrEnum):
    """The engine's column types, onto which every CRM type maps."""

    ID = "id"
    REFERENCE = "reference"
    STRING = "string"
    TEXT = "text"
    BOOLEAN = "boolean"
    INTEGER = "integer"
    FLOAT = "float"
    DECIMAL = "decimal"
    DATE = "date"
    DATETIME = "datetime"
    TIME = "time"
    JSON = "json"


@dataclass(frozen=True)
class FieldSpec:
    """One field of a CRM object, as the CRM's metadata describes it."""

    name: str
    type: FieldType
    crm_type: str = ""
    label: str = ""
    nullable: bool = True
    createable: bool = False
    updateable: bool = False
    length: int | None = None
    precision: int | None = None
    scale: int | None = None
    references: tuple[str, ...] = ()
    relationship_name: str | None = None
    external_id: bool = False
    unique: bool = False


@dataclass(frozen=True)
class Relation:
    """A reference from one object's field to another object (a lookup or master-detail)."""

    field: str
    target: str
    name: str | None = None


@dataclass(frozen=True)
class ObjectSpec:
    """One mirrored CRM object: its fields, key, change cursor and relationships."""

    source: str
    name: str
    key: str
    cursor_field: str
    fields: tuple[FieldSpec, ...]
    relations: tuple[Relation, ...] = ()
    partner_field: str | None = None
    external_id_field: str | None = None
    label: str = ""

    @property
    def table_name(self) -> str:
        """The mirror table that holds this object: ``<source>__<object>``, lower case."""
        return f"{self.source}__{self.name.lower()}"

    @property
    def field_names(self) -> tuple[str, ...]:
        """Every field name, in the CRM's order."""
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> FieldSpec:
        """The field called ``name``; raises ``KeyError`` when the object has none."""
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise KeyError(f"{self.name} has no field {name!r}")

    def has_field(self, name: str) -> bool:
        """Whether the object has a field called ``name``."""
        return any(spec.name == name for spec in self.fields)


@dataclass(frozen=True)
class Checkpoint:
    """Where a sync of one object stands; saved in the same transaction as the page it follows.

    ``cursor`` is the highest change-cursor value applied (an ISO-8601 UTC string) and
    ``ids_at_cursor`` the ids already applied at exactly that value: the next read asks for
    ``cursor >= value`` and skips those ids, so equal timestamps straddling a page boundary are
    never lost. ``phase`` is ``"backfill"`` until the first full read completes, then
    ``"incremental"``. ``state`` carries adapter-specific resume data (a Bulk job id and locator,
    a delta link, a deleted-records watermark) as a JSON-serialisable mapping.
    """

    cursor: str | None = None
    ids_at_cursor: tuple[str, ...] = ()
    phase: str = "backfill"
    state: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Tombstone:
    """A record the CRM reports deleted; ``merged_into`` is the survivor when it lost a merge."""

    id: str
    deleted_at: datetime | None = None
    merged_into: str | None = None


@dataclass(frozen=True)
class Reject:
    """A record the CRM sent that could not be taken as it is, with the reason."""

    record_id: str | None
    reason: str
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Page:
    """One page of a read: upserted records, tombstones and the checkpoint that follows it.

    ``needs_sweep`` is set by an adapter whose CRM can no longer say what was deleted since the
    checkpoint (its deleted-records window has moved past it): the engine then runs the delete
    sweep, comparing ``read_ids`` with the mirror, before it saves that page's checkpoint.
    """

    records: list[Record]
    checkpoint: Checkpoint
    tombstones: list[Tombstone] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    needs_sweep: bool = False
    # how many records the whole read holds, when the CRM says so with its answer (a query's
    # totalSize); progress shows done/total and an ETA from it, never the engine's logic
    total: int | None = None


@dataclass(frozen=True)
class StreamEvent:
    """Records of one object that the CRM's change stream says changed.

    The engine never applies an event's payload as it is: it reads the current version of
    ``changed`` with ``CrmAdapter.fetch`` and applies that through the page path, so an event
    repeated, reordered or late cannot put an older version in the mirror. ``deleted`` ids
    were deleted (``merged_into`` names the survivor of a merge, by deleted id).
    ``committed_at`` is when the CRM committed the change (the stream's lag is measured from
    it); ``position`` is the replay position to resume after this event (``None`` for streams
    without replay, such as webhooks); ``changed_fields`` are the fields the CRM says changed,
    when it says.
    """

    object: str
    changed: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    merged_into: Mapping[str, str] = field(default_factory=dict)
    committed_at: datetime | None = None
    position: str | None = None
    changed_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class StreamGap:
    """The stream can no longer vouch that it told of every change of ``object`` (``None``:
    of every object it serves): a gap or overflow event, a replay position past the CRM's
    retention, a delivery whose signature cannot be verified, a broken connection. The engine
    answers with an incremental poll of the object; ``position`` is where the stream resumes.
    """

    object: str | None
    reason: str
    position: str | None = None


class ChangeOrigin(enum.StrEnum):
    """Who made a change of the change feed (the value stored in ``mirror_changes.origin``)."""

    CRM = "crm"  # a pull (or the delete sweep) brought it from the CRM
    PORTAL = "portal"  # a portal edit, on its way to the CRM through the outbox
    WRITEBACK = "writeback"  # the CRM refused a portal edit for good: the mirror row reverted
    ACCESS = "access"  # a record entered or left a partner's (or one rep's) slice


@dataclass(frozen=True)
class Change:
    """One entry of the change feed: one change to one record, with field-level before and after
    values (``fields`` maps a field to ``(before, after)``; ``None`` when the change has none,
    a delete or a slice's membership event).

    ``partner_id`` (and ``owner_id``, one rep of that partner) mark a membership event of a
    partner's slice; a data change has neither. ``run_id`` is the sync run that pulled it.
    """

    source: str
    object: str
    record_id: str
    op: str
    origin: ChangeOrigin
    fields: Mapping[str, Any] | None = None
    author: str | None = None
    at: datetime | None = None
    run_id: int | None = None
    partner_id: str | None = None
    owner_id: str | None = None


class WriteOp(enum.StrEnum):
    """What a write does to a CRM record."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


@dataclass(frozen=True)
class Write:
    """One portal change to push to the CRM.

    ``expected_version`` is the version the portal edited (the record's change-cursor value or
    ETag); the adapter sends it as a precondition: the write fails when the record changed
    after it. ``expected_values`` (with ``expected_version``, updates only) are the values the
    portal saw of the fields the write sets, its edit's base: a version at the CRM's stamp
    resolution cannot tell a change made in the same second (or millisecond) as that version,
    so the adapter also reads these fields in its version check and fails the write
    (``precondition_failed``) when one of them holds another value
    (``mirror.push.preconditions.changed_fields``); a field missing from them is not compared.
    ``idempotency_key`` makes a retried create land once. ``synced_through`` is the object's
    checkpoint cursor when the write was read from the outbox: every CRM change up to it has
    already been reconciled with the edit, so an adapter that must look changes up itself need
    only look after it. ``in_doubt``: an earlier attempt of this write went out and no answer
    was recorded (lost, or the pusher died waiting for it), so it may have landed; a create by
    key then looks its record up before sending anything that could overwrite a change made
    since.
    """

    op: WriteOp
    object: str
    values: Mapping[str, Any]
    record_id: str | None = None
    expected_version: str | None = None
    idempotency_key: str | None = None
    synced_through: str | None = None
    expected_values: Mapping[str, Any] | None = None
    in_doubt: bool = False


@dataclass(frozen=True)
class WriteResult:
    """The CRM's answer to one ``Write``, in the same order as the writes."""

    ok: bool
    record_id: str | None = None
    version: str | None = None
    created: bool = False
    error_code: str | None = None
    message: str | None = None
    retryable: bool = False
    precondition_failed: bool = False
