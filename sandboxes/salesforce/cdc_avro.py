"""Change events in Avro, as the Pub/Sub API delivers them.

Each entity's change event has its own schema (``<Entity>ChangeEvent`` in namespace
``com.sforce.eventbus``): the ``ChangeEventHeader`` record first, then every field of the
object as an optional value. The schema id is a fingerprint of the schema text, so a field added
to the object makes a new schema (subscribers fetch it with GetSchema). In the Pub/Sub API the
header's ``changedFields``, ``nulledFields`` and ``diffFields`` are bitmaps: a hex string whose
bit ``i`` stands for the schema's top-level field ``i`` (Salesforce's "Event Deserialization
Considerations"). Compound fields (addresses) travel as their JSON text here, not as nested
records, so no nested bitmaps are emitted.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

import fastavro

from sandboxes.salesforce.cdc import ChangeEvent
from sandboxes.salesforce.schema import SObject
from sandboxes.salesforce.values import to_python

NAMESPACE = "com.sforce.eventbus"
_STRINGS = {"type": "array", "items": "string"}
HEADER: dict[str, Any] = {
    "type": "record",
    "name": "ChangeEventHeader",
    "namespace": NAMESPACE,
    "fields": [
        {"name": "entityName", "type": "string"},
        {"name": "recordIds", "type": _STRINGS},
        {
            "name": "changeType",
            "type": {
                "type": "enum",
                "name": "ChangeType",
                "namespace": NAMESPACE,
                "symbols": [
                    "CREATE",
                    "UPDATE",
                    "DELETE",
                    "UNDELETE",
                    "GAP_CREATE",
                    "GAP_UPDATE",
                    "GAP_DELETE",
                    "GAP_UNDELETE",
                    "GAP_OVERFLOW",
                    "SNAPSHOT",
                ],
            },
        },
        {"name": "changeOrigin", "type": "string"},
        {"name": "transactionKey", "type": "string"},
        {"name": "sequenceNumber", "type": "int"},
        {"name": "commitTimestamp", "type": "long"},
        {"name": "commitNumber", "type": "long"},
        {"name": "commitUser", "type": "string"},
        {"name": "nulledFields", "type": _STRINGS},
        {"name": "diffFields", "type": _STRINGS},
        {"name": "changedFields", "type": _STRINGS},
    ],
}
_AVRO_TYPES = {
    "boolean": "boolean",
    "int": "int",
    "double": "double",
    "currency": "double",
    "percent": "double",
    "datetime": "long",
    "date": {"type": "int", "logicalType": "date"},
}


class EventSchema:
    """One entity's change event schema: its JSON, id, field order and encoder."""

    def __init__(self, obj: SObject) -> None:
        """The schema of ``obj``'s change events as its fields stand now."""
        self.types = {f["name"]: f["type"] for f in obj.stored_fields()}
        fields: list[dict[str, Any]] = [{"name": "ChangeEventHeader", "type": HEADER}]
        for name, kind in self.types.items():
            avro = _AVRO_TYPES.get(kind, "string")
            fields.append({"name": name, "type": ["null", avro], "default": None})
        self.schema = {
            "type": "record",
            "name": f"{obj.name}ChangeEvent",
            "namespace": NAMESPACE,
            "fields": fields,
        }
        self.json = json.dumps(self.schema, separators=(",", ":"))
        digest = hashlib.md5(self.json.encode(), usedforsecurity=False).digest()
        self.id = base64.urlsafe_b64encode(digest).decode().rstrip("=")
        self.positions = {f["name"]: i for i, f in enumerate(fields)}
        self._parsed = fastavro.parse_schema(self.schema)

    def bitmap(self, names: Sequence[str]) -> list[str]:
        """Field names as the Pub/Sub API's bitmap list (empty when there are none)."""
        bits = 0
        for name in names:
            if name in self.positions:
                bits |= 1 << self.positions[name]
        return [f"0x{bits:X}"] if bits else []

    def encode(self, event: ChangeEvent) -> bytes:
        """The event's Avro payload (schemaless binary, as in ``ProducerEvent.payload``)."""
        header = dict(event.header)
        for key in ("changedFields", "nulledFields", "diffFields"):
            header[key] = self.bitmap(header[key])
        record: dict[str, Any] = {"ChangeEventHeader": header}
        for name, stored in event.values.items():
            if name in self.types:
                record[name] = _avro_value(self.types[name], stored)
        out = io.BytesIO()
        fastavro.schemaless_writer(out, self._parsed, record)
        return out.getvalue()


def _avro_value(kind: str, stored: Any) -> Any:
    value = to_python(kind, stored)
    if value is None:
        return None
    if kind == "datetime" and isinstance(value, datetime):
        return int(value.astimezone(UTC).timestamp() * 1000)
    if kind == "date" and isinstance(value, date):
        return value
    if kind == "boolean" and isinstance(value, bool):
        return value
    if kind == "int" and isinstance(value, int | float):
        return int(value)
    if _AVRO_TYPES.get(kind) == "double" and isinstance(value, int | float):
        return float(value)
    if kind in _AVRO_TYPES:
        return None  # a value stored by ``corrupt()`` that does not fit its type
    if isinstance(value, Mapping | list):
        return json.dumps(value)
    return str(value)
