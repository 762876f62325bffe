"""Change events as the engine sees them: Avro payloads decoded, headers mapped, positions kept.

A change event's payload is Avro binary written with the schema its ``schema_id`` names
(fetched once per id with GetSchema, decoded with fastavro). Its ``ChangeEventHeader`` says
what happened: ``CREATE``/``UPDATE``/``UNDELETE`` become ``StreamEvent.changed``, ``DELETE``
becomes ``StreamEvent.deleted`` and every ``GAP_*`` (``GAP_OVERFLOW`` included) a
``StreamGap`` of the object, since Salesforce could not say what the change was. The header's
``changedFields`` is a bitmap over the schema's top-level fields (``0x...``), with
``<parent>-0x...`` entries for the parts of a compound field; no maintained library decodes
it, so ``bitmap_fields`` does, after Salesforce's "Event Deserialization Considerations".

A stream position is the last replay id delivered on each channel, as JSON text
(``{"/data/AccountChangeEvent": "<hex>"}``): opaque to the engine, complete enough to resume
every channel where it stopped.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import fastavro

from mirror.errors import CrmError
from mirror.types import StreamEvent, StreamGap

GAP_PREFIX = "GAP_"


def topic_of(object_name: str) -> str:
    """The change event channel of an object: ``/data/AccountChangeEvent``,
    ``/data/Thing__ChangeEvent`` for ``Thing__c``."""
    base = object_name[:-1] if object_name.endswith("__c") else object_name
    return f"/data/{base}ChangeEvent"


def encode_position(replays: Mapping[str, bytes]) -> str:
    """The position string of the replay ids delivered per channel."""
    return json.dumps({topic: raw.hex() for topic, raw in sorted(replays.items())})


def decode_position(position: str | None) -> dict[str, bytes]:
    """The replay ids of a position string (empty for ``None`` or one this adapter did not
    write, which then resumes from now)."""
    if not position:
        return {}
    try:
        raw = json.loads(position)
        return {str(topic): bytes.fromhex(value) for topic, value in dict(raw).items()}
    except (ValueError, TypeError, AttributeError):
        return {}


class Schemas:
    """Avro schemas by id, fetched once each."""

    def __init__(self, fetch: Callable[[str], str]) -> None:
        """Fetch unknown schemas with ``fetch(schema_id) -> schema JSON``."""
        self.fetch = fetch
        self._parsed: dict[str, Any] = {}
        self._names: dict[str, list[dict[str, Any]]] = {}

    def decode(self, schema_id: str, payload: bytes) -> tuple[dict[str, Any], list[Any]]:
        """The event record of ``payload`` and its schema's top-level fields."""
        if schema_id not in self._parsed:
            schema = json.loads(self.fetch(schema_id))
            self._parsed[schema_id] = fastavro.parse_schema(schema)
            self._names[schema_id] = list(schema.get("fields", ()))
        record = fastavro.schemaless_reader(io.BytesIO(payload), self._parsed[schema_id], None)
        if not isinstance(record, dict):
            raise CrmError(f"a change event of schema {schema_id} is not a record")
        return record, self._names[schema_id]


def bitmap_fields(bitmaps: Sequence[str], fields: Sequence[Mapping[str, Any]]) -> list[str]:
    """Field names of a Pub/Sub header bitmap list; plain names (as CometD sends) pass."""
    names: list[str] = []
    for entry in bitmaps:
        if entry.startswith("0x"):
            names += _bits(entry, [str(f.get("name")) for f in fields])
        elif "-" in entry and entry.split("-", 1)[0].isdigit():
            index, bitmap = entry.split("-", 1)
            parent = fields[int(index)] if int(index) < len(fields) else {}
            children = _record_fields(parent.get("type"))
            names += [f"{parent.get('name')}.{name}" for name in _bits(bitmap, children)]
        else:
            names.append(entry)
    return names


def _bits(bitmap: str, names: Sequence[str]) -> list[str]:
    value = int(bitmap, 16)
    return [name for i, name in enumerate(names) if value >> i & 1]


def _record_fields(kind: Any) -> list[str]:
    """The field names of a (possibly optional) record type."""
    options = kind if isinstance(kind, list) else [kind]
    for option in options:
        if isinstance(option, dict) and option.get("type") == "record":
            return [str(f.get("name")) for f in option.get("fields", ())]
    return []


def stream_item(
    object_name: str,
    record: Mapping[str, Any],
    fields: Sequence[Mapping[str, Any]],
    position: str,
) -> StreamEvent | StreamGap:
    """The engine's view of one decoded change event of ``object_name``."""
    header = record.get("ChangeEventHeader") or {}
    kind = str(header.get("changeType", ""))
    ids = tuple(str(i) for i in header.get("recordIds") or ())
    if kind.startswith(GAP_PREFIX):
        what = f"{len(ids)} record(s)" if ids else "an unknown number of records"
        return StreamGap(object_name, f"{kind} event for {what}", position)
    committed = header.get("commitTimestamp")
    committed_at = (
        datetime.fromtimestamp(committed / 1000, UTC) if isinstance(committed, int) else None
    )
    if kind == "DELETE":
        return StreamEvent(object_name, deleted=ids, committed_at=committed_at, position=position)
    if kind not in ("CREATE", "UPDATE", "UNDELETE"):
        return StreamGap(object_name, f"change event of unknown type {kind!r}", position)
    changed = bitmap_fields(list(header.get("changedFields") or ()), fields)
    return StreamEvent(
        object_name,
        changed=ids,
        committed_at=committed_at,
        position=position,
        changed_fields=tuple(changed),
    )
