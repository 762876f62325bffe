"""What every record write of the HubSpot portal builds on: finding live records, checking
property values (every problem at once, unique values kept unique), applying one change with
its calculated properties and history, the write log, and the changes handed to the webhook
subscriptions (``events``, a ``changes.ChangeSink``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sandboxes.hubspot.changes import Change, ChangeSink
from sandboxes.hubspot.derived import derive, record_json
from sandboxes.hubspot.errors import HsError, invalid_values, not_found, validation
from sandboxes.hubspot.history import CALCULATED, History, Source
from sandboxes.hubspot.schema import ObjectType, PortalSchema
from sandboxes.hubspot.store import Store
from sandboxes.hubspot.values import InvalidValue, canonical, ms_to_iso
from sandboxes.kit.clock import MillisecondClock
from sandboxes.kit.writelog import create_table, log_write


class RecordBase:
    """Reading a portal's records, checking property values and applying one change."""

    def __init__(self, store: Store, schema: PortalSchema, clock: MillisecondClock) -> None:
        """Operate on ``store`` with ``schema``'s types, stamping with ``clock``."""
        self.store = store
        self.schema = schema
        self.clock = clock
        self.history = History(store)
        self.events: ChangeSink | None = None
        with store.lock:
            create_table(store.conn)

    def object_type(self, name: str) -> ObjectType:
        """The object type called ``name`` (any alias); 400 when there is none."""
        found = self.schema.object_type(name)
        if found is None:
            raise validation(f"Unable to infer object type from: {name}")
        return found

    # -- reading ------------------------------------------------------------------------

    def live(self, object_type: ObjectType, record_id: Any) -> dict[str, Any] | None:
        """A live record, or ``None``."""
        row = self.store.fetch(object_type.name, as_id(record_id))
        if row is None or row["archived"] or row["merged_into"]:
            return None
        return row

    def resolve(
        self, object_type: ObjectType, record_id: Any, archived: bool = False
    ) -> dict[str, Any] | None:
        """The record an id names: a merged-away id leads to its survivor; an archived one
        only when ``archived`` is asked for (and only then)."""
        row = self.store.fetch(object_type.name, as_id(record_id))
        for _ in range(10):
            if row is None or not row["merged_into"]:
                break
            row = self.store.fetch(object_type.name, row["merged_into"])
        if row is None or row["archived"] != archived:
            return None
        return row

    def require(self, object_type: ObjectType, record_id: Any) -> dict[str, Any]:
        """A live record; 404 when it is missing or archived."""
        row = self.live(object_type, record_id)
        if row is None:
            raise not_found()
        return row

    # -- property values ----------------------------------------------------------------

    def checked(
        self, object_type: ObjectType, values: Mapping[str, Any], *, system: bool = False
    ) -> dict[str, str | None]:
        """Canonical strings for ``values``; every invalid one reported in one 400."""
        problems: list[InvalidValue] = []
        result: dict[str, str | None] = {}
        for name, value in values.items():
            prop = object_type.property(name)
            if prop is None:
                problems.append(
                    InvalidValue(name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist')
                )
                continue
            if not prop.writable and not system:
                problems.append(
                    InvalidValue(
                        name,
                        "READ_ONLY_VALUE",
                        f'"{name}" is a read only property; its value cannot be set.',
                    )
                )
                continue
            try:
                result[name] = canonical(prop, value)
            except InvalidValue as problem:
                problems.append(problem)
        if problems:
            raise invalid_values(problems)
        return result

    def _check_unique(
        self, object_type: ObjectType, values: Mapping[str, str | None], record_id: int | None
    ) -> None:
        for prop in object_type.unique_properties:
            value = values.get(prop)
            if not value:
                continue
            owner = self.store.unique_owner(object_type.name, prop, value)
            if owner is not None and owner != record_id:
                if object_type.name == "contacts" and prop == "email":
                    message = f"Contact already exists. Existing ID: {owner}"
                else:
                    message = (
                        f"A {object_type.singular.lower()} with {prop} {value!r} already exists. "
                        f"Existing ID: {owner}"
                    )
                raise HsError(409, "CONFLICT", message)

    def _store_unique(self, object_type: ObjectType, row: dict[str, Any]) -> None:
        names = object_type.unique_properties
        if names:
            self.store.set_unique(
                object_type.name, row["id"], {n: row["props"].get(n) for n in names}
            )

    def _apply(
        self,
        object_type: ObjectType,
        row: dict[str, Any],
        changes: Mapping[str, str | None],
        stamp: int | None = None,
        source: Source = CALCULATED,
    ) -> dict[str, Any]:
        for name, value in changes.items():
            if value is None:
                row["props"].pop(name, None)
            else:
                row["props"][name] = value
        row["modified_ms"] = stamp if stamp is not None else self.clock.stamp()
        derive(object_type, row)
        with self.store.transaction():
            self.store.write(object_type.name, row)
            self._store_unique(object_type, row)
            self.history.record(object_type.name, row["id"], changes, row["modified_ms"], source)
        return row

    def _log(
        self, op: str, object_type: ObjectType, record_id: Any, fields: Mapping[str, Any], ms: int
    ) -> None:
        log_write(self.store.conn, op, object_type.name, record_id, fields, ms_to_iso(ms))

    def _emit(
        self,
        kind: str,
        object_type: ObjectType,
        record_id: Any,
        ms: int,
        property_name: str | None = None,
        **details: Any,
    ) -> None:
        if self.events is not None:
            change = Change(kind, object_type, as_id(record_id), ms, details, property_name)
            self.events(change)

    def to_json(
        self,
        object_type: ObjectType,
        row: Mapping[str, Any],
        properties: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """A record as a ``SimplePublicObject`` (``derived.record_json``)."""
        return record_json(object_type, row, properties)


def as_id(value: Any) -> int:
    """A record id from a path or body (404 when it is not a number)."""
    try:
        return int(str(value).strip())
    except ValueError:
        raise not_found() from None
