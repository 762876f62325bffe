"""What every HubSpot write shares: the object being written, a write's properties as HubSpot
takes them, a record's version, batch reads of current records, and a batch retried record by
record when HubSpot refuses it as a whole (400, 409), so one bad record never blocks the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from adapters._kit.writes import Item, chunked, failed
from adapters.hubspot.assoc import Associations
from adapters.hubspot.catalog import Catalog
from adapters.hubspot.client import HubSpotConnection, Reply
from adapters.hubspot.types import KEY, RecordConverter, format_cursor, parse_instant, to_wire
from mirror.errors import CrmError
from mirror.types import ObjectSpec, Write, WriteResult

BATCH_SIZE = 100
GONE = "OBJECT_NOT_FOUND"

Send = Callable[[list[Item]], Mapping[int, WriteResult]]


class WriterBase:
    """One object's writes through the batch APIs: state and helpers of every operation."""

    def __init__(self, conn: HubSpotConnection, catalog: Catalog, spec: ObjectSpec) -> None:
        """A writer for ``spec``."""
        self.conn = conn
        self.spec = spec
        self.api_type = catalog.api_type(spec.name)
        self.associations = Associations(conn, catalog, spec.name)
        self.fields = {f.name: f for f in spec.fields}
        self.converter = RecordConverter(spec, self.associations.names)

    def _properties(self, write: Write) -> dict[str, str]:
        linked = {f.name for f in self.associations.linked}
        values = {
            name: to_wire(self.fields.get(name), value)
            for name, value in write.values.items()
            if name != KEY and name not in self.associations.names
        }
        copied = self.associations.property_values(write.values)
        values.update({name: to_wire(None, value) for name, value in copied.items()})
        return {k: v for k, v in values.items() if k not in linked}

    def _linked_values(self, write: Write) -> dict[str, Any]:
        return {
            f.name: write.values[f.name] for f in self.associations.linked if f.name in write.values
        }

    def _link(
        self,
        items: Sequence[Item],
        results: Mapping[int, WriteResult],
        record_id: Callable[[Item], str],
    ) -> None:
        """Write the association fields of the ``items`` whose record was written (the
        record of ``record_id(item)``)."""
        linked = [
            (record_id(i), self._linked_values(i.write))
            for i in items
            if results[i.index].ok and self._linked_values(i.write)
        ]
        if linked:
            self.associations.write(linked)

    def _version(self, obj: Mapping[str, Any]) -> str | None:
        value = (obj.get("properties") or {}).get(self.spec.cursor_field) or obj.get("updatedAt")
        try:
            return format_cursor(parse_instant(str(value))) if value else None
        except ValueError:
            return None

    def _current(
        self, ids: Sequence[str], properties: Sequence[str] = ()
    ) -> dict[str, Mapping[str, Any]]:
        found: dict[str, Mapping[str, Any]] = {}
        names = list(dict.fromkeys([self.spec.cursor_field, *properties]))
        for chunk in chunked(ids, BATCH_SIZE):
            body = {"properties": names, "inputs": [{"id": i} for i in chunk]}
            reply = self.conn.batch(self.api_type, "read", body)
            found |= {str(r["id"]): r for r in reply.get("results") or () if str(r["id"]) in chunk}
        return found

    def _isolated(self, items: list[Item], send: Send) -> dict[int, WriteResult]:
        """``send(items)``; when HubSpot refuses the whole batch, each record on its own."""
        try:
            return dict(send(items))
        except CrmError as error:
            if len(items) == 1 or error.status not in (400, 409):
                if len(items) == 1:
                    return {items[0].index: _record_failure(error)}
                raise
        results: dict[int, WriteResult] = {}
        for item in items:
            try:
                results |= send([item])
            except CrmError as error:
                results[item.index] = _record_failure(error)
        return results


def gone(record_id: str) -> WriteResult:
    """The failure of a write whose record no longer exists."""
    return failed(GONE, "the record no longer exists in HubSpot", record_id=record_id)


def errors_by_id(reply: Reply) -> dict[str, tuple[str, str]]:
    """``{record id: (category, message)}`` of a 207 answer's errors."""
    found: dict[str, tuple[str, str]] = {}
    for error in reply.get("errors") or ():
        category = str(error.get("category") or "ERROR")
        message = str(error.get("message") or "")
        for record_id in (error.get("context") or {}).get("ids") or ():
            found[str(record_id)] = (category, message)
    return found


def _record_failure(error: CrmError) -> WriteResult:
    return failed(error.code or f"HTTP_{error.status}", str(error))
