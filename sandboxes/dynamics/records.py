"""Row operations of the Dataverse sandbox: payload checks, binds, stamps, row versions.

Web API payloads name columns by their property names; lookups are written only through
``<navigation property>@odata.bind`` (``"/accounts(<guid>)"``, or ``null`` to clear), and a
payload that writes ``_x_value`` directly is refused the way Dataverse refuses it. Unknown
properties are 400s; values of columns that cannot be written (``createdon``, ``fullname``...)
are ignored, as Dataverse ignores them. Every create or update stamps ``modifiedon`` from the
sandbox clock and takes the next organisation-wide ``versionnumber`` (the row's etag is
``W/"<versionnumber>"``); a delete leaves a tombstone for change tracking.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from sandboxes.dynamics.errors import REFERENCE_WRITE, DataverseError, not_found
from sandboxes.dynamics.odata import query_error
from sandboxes.dynamics.schema import INTEGRATION_USER_ID, Attribute, Entity
from sandboxes.dynamics.store import DataverseStore, RowChange
from sandboxes.dynamics.values import format_datetime, normalize_guid, python_value, stored_value
from sandboxes.kit.clock import SandboxClock
from sandboxes.kit.writelog import log_write

_BIND_TARGET = re.compile(r"^(?:.*/)?(?P<set>[A-Za-z_][A-Za-z0-9_]*)\((?P<key>[^)]+)\)$")


def etag(row: Mapping[str, Any]) -> str:
    """The weak etag of a stored row."""
    return f'W/"{row["versionnumber"]}"'


class Records:
    """Creates, updates and deletes rows of the sandbox's tables."""

    def __init__(self, store: DataverseStore, clock: SandboxClock) -> None:
        """Work on ``store`` with timestamps from ``clock``."""
        self.store = store
        self.schema = store.schema
        self.clock = clock

    def entity(self, name: str) -> Entity:
        """A table by logical or entity set name; 404 when there is none."""
        try:
            return self.schema.entity(name)
        except KeyError:
            raise DataverseError(
                404, "0x80060888", f"Resource not found for the segment '{name}'."
            ) from None

    def row(self, entity: Entity, record_id: str) -> dict[str, Any] | None:
        """The stored row, or ``None``."""
        guid = normalize_guid(record_id)
        return self.store.fetch(entity, guid) if guid else None

    def now(self) -> int:
        """The sandbox clock as epoch seconds."""
        return int(self.clock.now().timestamp())

    # --- payloads ------------------------------------------------------------------------

    def parse_payload(self, entity: Entity, body: Any, *, creating: bool) -> dict[str, Any]:
        """Stored column values from a Web API payload (binds resolved and checked)."""
        if not isinstance(body, Mapping):
            raise query_error("The request body must be a JSON object.")
        values: dict[str, Any] = {}
        for key, value in body.items():
            if key.endswith("@odata.bind"):
                self._bind(entity, key.removesuffix("@odata.bind"), value, values)
            elif key.startswith("@") or "@" in key:
                continue
            elif key in entity.by_wire_name:
                self._column(entity, entity.by_wire_name[key], value, values, creating)
            else:
                raise query_error(
                    f"The property '{key}' does not exist on type 'Microsoft.Dynamics.CRM."
                    f"{entity.name}'. Make sure to only use property names that are defined by "
                    "the type or mark the type as open type."
                )
        return values

    def _column(
        self,
        entity: Entity,
        attribute: Attribute,
        value: Any,
        values: dict[str, Any],
        creating: bool,
    ) -> None:
        if attribute.is_lookup:
            raise DataverseError(
                400,
                REFERENCE_WRITE,
                "CRM do not support direct update of Entity Reference properties, Use "
                "Navigation properties instead.",
            )
        writable = attribute.create if creating else attribute.update
        if attribute.primary_id and creating:
            writable = True
        if writable:
            values[attribute.name] = stored_value(entity, attribute, value)

    def _bind(self, entity: Entity, nav: str, value: Any, values: dict[str, Any]) -> None:
        found = entity.nav_properties.get(nav)
        if found is None:
            raise query_error(
                f"An undeclared property '{nav}' which only has property annotations in the "
                "payload but no property value was found in the payload. In OData, only "
                "declared navigation properties and declared named streams can be represented "
                "as properties without values."
            )
        attribute, targets = found
        if value is None:
            values[attribute.name] = None
            if attribute.polymorphic:
                values[f"{attribute.name}type"] = None
            return
        match = _BIND_TARGET.match(str(value)) if isinstance(value, str) else None
        guid = normalize_guid(match["key"]) if match else None
        if match is None or guid is None:
            raise query_error(f"Invalid value '{value}' for the navigation property '{nav}'.")
        target_entity = self.schema.by_set.get(match["set"])
        if target_entity is None or target_entity.name not in targets:
            raise query_error(
                f"The entity set '{match['set']}' does not match the type of the navigation "
                f"property '{nav}' ('Microsoft.Dynamics.CRM.{targets[0]}')."
            )
        target = target_entity.name
        if self.store.fetch(target_entity, guid) is None:
            raise not_found(target, guid)
        values[attribute.name] = guid
        if attribute.polymorphic:
            values[f"{attribute.name}type"] = target

    # --- writes --------------------------------------------------------------------------

    def create(
        self,
        entity: Entity,
        values: Mapping[str, Any],
        *,
        record_id: str | None = None,
        caller: str = INTEGRATION_USER_ID,
    ) -> dict[str, Any]:
        """Insert a row from stored ``values``; returns the stored row."""
        with self.store.transaction():
            return self._insert(entity, values, record_id, caller)

    def _insert(
        self, entity: Entity, values: Mapping[str, Any], record_id: str | None, caller: str
    ) -> dict[str, Any]:
        row = dict(values)
        key = record_id or row.get(entity.primary_id) or str(uuid.uuid4())
        row[entity.primary_id] = normalize_guid(key) or key
        if self.store.fetch(entity, row[entity.primary_id]) is not None:
            raise DataverseError(
                400, "0x80040237", "Cannot insert duplicate key exception when executing "
                "non-query: " + row[entity.primary_id],
            )  # fmt: skip
        now = self.now()
        row.update(createdon=now, modifiedon=now, versionnumber=self.store.next_version())
        if "ownerid" in entity.by_name and not row.get("ownerid"):
            row.update(ownerid=caller, owneridtype="systemuser")
        for column, default in (("statecode", 0), ("statuscode", 1)):
            if column in entity.by_name and row.get(column) is None:
                row[column] = default
        self._full_name(entity, row, {})
        self.store.insert(entity, row)
        self.log("create", entity, row[entity.primary_id], values, now, row)
        return row

    def update(self, entity: Entity, record_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Apply stored ``values`` to an existing row; returns the new stored row."""
        with self.store.transaction():
            current = self.store.fetch(entity, record_id)
            if current is None:
                raise not_found(entity.name, record_id)
            changes = {k: v for k, v in values.items() if k != entity.primary_id}
            self._full_name(entity, changes, current)
            changes.update(modifiedon=self.now(), versionnumber=self.store.next_version())
            self.store.update(entity, record_id, changes)
            self.log("update", entity, record_id, values, changes["modifiedon"], changes)
            return {**current, **changes}

    def delete(self, entity: Entity, record_id: str, *, tombstone: bool = True) -> None:
        """Delete a row (reported by change tracking unless ``tombstone`` is false)."""
        with self.store.transaction():
            if self.store.fetch(entity, record_id) is None:
                raise not_found(entity.name, record_id)
            version = self.store.next_version() if tombstone else None
            self.store.delete(entity, record_id, version, self.now())
            self.log("delete" if tombstone else "hard_delete", entity, record_id, {}, self.now())

    def log(
        self,
        op: str,
        entity: Entity,
        record_id: str,
        fields: Mapping[str, Any],
        at: int,
        written: Mapping[str, Any] | None = None,
    ) -> None:
        """Append a committed write to the write log (``sandboxes.kit.writelog``) and note it
        for the event pipeline (``written``: every stored value the write set, stamps
        included; default ``fields``)."""
        moment = datetime.fromtimestamp(at, UTC).isoformat()
        log_write(self.store.conn, op, entity.name, record_id, fields, moment)
        values = dict(fields if written is None else written)
        self.store.note_change(RowChange(op, entity, str(record_id), values, at))

    def _full_name(
        self, entity: Entity, changes: dict[str, Any], current: Mapping[str, Any]
    ) -> None:
        if "fullname" not in entity.by_name or not ({"firstname", "lastname"} & set(changes)):
            return
        first = changes.get("firstname", current.get("firstname"))
        last = changes.get("lastname", current.get("lastname"))
        changes["fullname"] = " ".join(part for part in (first, last) if part) or None

    # --- controls ------------------------------------------------------------------------

    def control_values(self, entity: Entity, values: Mapping[str, Any]) -> dict[str, Any]:
        """Stored values from a control's mapping (wire or logical names, Python values)."""
        stored: dict[str, Any] = {}
        for key, value in values.items():
            attribute = entity.by_wire_name.get(key) or entity.by_name.get(key)
            if attribute is None:
                raise KeyError(f"{entity.name} has no column {key!r}")
            if attribute.is_lookup:
                stored.update(self._control_lookup(attribute, value))
                continue
            stored[attribute.name] = stored_value(entity, attribute, _as_json(value))
        return stored

    def _control_lookup(self, attribute: Attribute, value: Any) -> dict[str, Any]:
        if value is None:
            return {attribute.name: None}
        guid = normalize_guid(str(value))
        if guid is None:
            raise ValueError(f"{attribute.name}: {value!r} is not a guid")
        found = {attribute.name: guid}
        if attribute.polymorphic:
            target = next(
                (t for t in attribute.targets
                 if t in self.schema.entities
                 and self.store.fetch(self.schema.entities[t], guid) is not None),
                attribute.targets[0],
            )  # fmt: skip
            found[f"{attribute.name}type"] = target
        return found

    def as_python(self, entity: Entity, row: Mapping[str, Any]) -> dict[str, Any]:
        """A stored row keyed by wire names, with Python values."""
        return {
            attribute.wire_name: python_value(attribute, row.get(attribute.name))
            for attribute in entity.attributes
        }


def _as_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    return value
