"""Association fields: read for every page of records, written through the v4 batch API.

Reading: one ``batch/read`` (up to 1,000 ids) per target object type per page, following each
record's own paging past 500 associations. Writing: a new value replaces the record's current
association of that kind (the old label is archived, the new one created); a ``None`` value
removes it. Association changes do not move HubSpot's last-modified values, which is why the
reader re-reads them with every page and sweeps them periodically (``hubspot_read``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from adapters.hubspot.catalog import AssociationField, Catalog, pick_targets
from adapters.hubspot.client import HubSpotConnection
from adapters.hubspot.settings import ASSOCIATION_BATCH_MAX
from mirror.types import Record

BATCH_READ_MAX = ASSOCIATION_BATCH_MAX
BATCH_WRITE_MAX = 100


class Associations:
    """Reads and writes the association fields of one object type."""

    def __init__(self, conn: HubSpotConnection, catalog: Catalog, object_name: str) -> None:
        """Association fields of ``object_name``."""
        self.conn = conn
        self.catalog = catalog
        self.object_name = object_name
        self.fields = catalog.association_fields(object_name)
        self.linked = [f for f in self.fields if f.property is None]
        self.copied = [f for f in self.fields if f.property is not None]

    @property
    def names(self) -> frozenset[str]:
        """The association field names (filled in, not read as properties)."""
        return frozenset(f.name for f in self.fields)

    def extra_properties(self) -> list[str]:
        """Record properties the copied fields come from."""
        return [str(f.property) for f in self.copied]

    def fill(self, records: Sequence[Record], raw: Mapping[str, Mapping[str, Any]]) -> None:
        """Set every association field of ``records`` (``raw``: their HubSpot properties)."""
        for field in self.copied:
            for record in records:
                value = (raw.get(record["hs_object_id"]) or {}).get(str(field.property))
                record[field.name] = str(value) if value not in (None, "") else None
        by_target: dict[str, list[AssociationField]] = defaultdict(list)
        for field in self.linked:
            by_target[field.target].append(field)
        ids = [record["hs_object_id"] for record in records]
        for target, fields in by_target.items():
            associated = self.read(target, ids)
            type_ids = {f.name: self.catalog.type_ids(f) for f in fields}
            for record in records:
                record.update(
                    pick_targets(fields, type_ids, associated.get(record["hs_object_id"], []))
                )

    def read(self, target: str, ids: Sequence[str]) -> dict[str, list[Mapping[str, Any]]]:
        """Each record's associations to ``target`` (``toObjectId`` and types), every page."""
        found: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        from_type = self.catalog.api_type(self.object_name)
        to_type = self.catalog.api_type(target)
        pending: list[dict[str, Any]] = [{"id": i} for i in ids]
        while pending:
            chunk, pending = pending[:BATCH_READ_MAX], pending[BATCH_READ_MAX:]
            reply = self.conn.associations(from_type, to_type, "get_page", {"inputs": chunk})
            for result in reply.get("results") or ():
                record_id = str(result["from"]["id"])
                found[record_id].extend(result.get("to") or ())
                after = ((result.get("paging") or {}).get("next") or {}).get("after")
                if after:
                    pending.append({"id": record_id, "after": after})
        return found

    # -- writes -----------------------------------------------------------------------------

    def property_values(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The property writes hidden in association field values (copied fields)."""
        return {str(f.property): values[f.name] for f in self.copied if f.name in values}

    def write(self, changes: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        """Apply association field values: ``changes`` is ``(record_id, values)`` pairs."""
        for field in self.linked:
            wanted = {rid: values[field.name] for rid, values in changes if field.name in values}
            if wanted:
                self._write_field(field, wanted)

    def _write_field(self, field: AssociationField, wanted: Mapping[str, Any]) -> None:
        type_ids = self.catalog.type_ids(field)
        current = self.read(field.target, list(wanted))
        removals: list[dict[str, Any]] = []
        additions: list[dict[str, Any]] = []
        kind = self.catalog.write_type(field)
        for record_id, target in wanted.items():
            target = str(target) if target not in (None, "") else None
            held = {
                str(entry["toObjectId"]): {int(t["typeId"]) for t in entry["associationTypes"]}
                for entry in current.get(record_id, [])
            }
            for other, kinds in held.items():
                dropped = kinds & type_ids
                if other != target and dropped:
                    removals.append(_pair(record_id, other, self._types(field, dropped)))
            if target is not None and not (held.get(target, set()) & type_ids):
                additions.append(_pair(record_id, target, [(kind.category, kind.type_id)]))
        from_type = self.catalog.api_type(self.object_name)
        to_type = self.catalog.api_type(field.target)
        for start in range(0, len(removals), BATCH_WRITE_MAX):
            body = {"inputs": removals[start : start + BATCH_WRITE_MAX]}
            self.conn.associations(from_type, to_type, "archive_labels", body)
        for start in range(0, len(additions), BATCH_WRITE_MAX):
            body = {"inputs": additions[start : start + BATCH_WRITE_MAX]}
            self.conn.associations(from_type, to_type, "create", body)

    def _types(self, field: AssociationField, type_ids: set[int]) -> list[tuple[str, int]]:
        by_id = {t.type_id: t for t in self.catalog.association_types(field.object, field.target)}
        return [(by_id[i].category, i) for i in sorted(type_ids) if i in by_id]


def _pair(record_id: str, target: str, types: Sequence[tuple[str, int]]) -> dict[str, Any]:
    return {
        "from": {"id": record_id},
        "to": {"id": target},
        "types": [{"associationCategory": c, "associationTypeId": t} for c, t in types],
    }
