"""Association edge objects: each association between two records as a row of its own.

``deal_company_associations`` holds one record per (deal, company, association type), keyed
``"<deal>:<company>:<typeId>"``, with the type's category and label (``Primary``, ``Partner``,
none) and the deal's last-modified value as its cursor. It is read through the deals: a
backfill lists every deal, an incremental read searches the deals changed since the checkpoint
and re-reads their associations. Association changes do not move a deal's last-modified value
and a vanished association leaves no trace to read, so every ``association_sweep_seconds`` the
read lists every edge again and asks the engine for an id sweep, which compares every current
edge with the mirror and marks the vanished ones deleted; a backfill begun afresh asks for that
sweep too (the engine skips it while the mirror holds no edge). Edges are read-only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from adapters.hubspot.assoc import Associations
from adapters.hubspot.catalog import EDGE_OBJECTS, Catalog
from adapters.hubspot.client import HubSpotConnection
from adapters.hubspot.read import PageBuilder, Reader
from adapters.hubspot.settings import HubSpotSettings
from adapters.hubspot.types import KEY, parse_instant
from mirror.types import Checkpoint, ObjectSpec, Page, Record, Tombstone, Write, WriteResult

CURSOR = "hs_lastmodifieddate"


@dataclass
class EdgeBuilder(PageBuilder):
    """Turns the ``from`` records of a page into the edges they have."""

    reader: EdgeReader | None = None

    def take(self, objects: Sequence[Mapping[str, Any]]) -> None:
        """The edges of ``objects`` (their associations read in one batch)."""
        assert self.reader is not None
        stamps = {str(obj["id"]): (obj.get("properties") or {}).get(CURSOR) for obj in objects}
        self.records.extend(self.reader.edges(stamps))


class EdgeReader(Reader):
    """Reads one edge object through its ``from`` object type."""

    def __init__(
        self,
        conn: HubSpotConnection,
        catalog: Catalog,
        settings: HubSpotSettings,
        spec: ObjectSpec,
    ) -> None:
        """A reader of the edge object ``spec``."""
        super().__init__(conn, catalog, settings, spec)
        self.from_type, self.to_type, self.from_field, self.to_field = EDGE_OBJECTS[spec.name]
        self.links = Associations(conn, catalog, self.from_type)
        self.properties = [KEY, CURSOR]

    def _builder(self) -> PageBuilder:
        return EdgeBuilder(self.spec, self.converter, self.associations, reader=self)

    def edges(self, stamps: Mapping[str, Any]) -> list[Record]:
        """The edges of the ``from`` records ``stamps`` names (with their last-modified)."""
        found = self.links.read(self.to_type, list(stamps))
        edges: list[Record] = []
        for record_id, entries in found.items():
            raw = stamps.get(record_id)
            stamp = parse_instant(str(raw)) if raw else datetime.now(UTC)
            for entry in entries:
                target = str(entry["toObjectId"])
                for kind in entry.get("associationTypes") or ():
                    edges.append({
                        "id": f"{record_id}:{target}:{kind['typeId']}",
                        self.from_field: record_id,
                        self.to_field: target,
                        "type_id": int(kind["typeId"]),
                        "category": kind.get("category"),
                        "label": kind.get("label"),
                        CURSOR: stamp,
                    })  # fmt: skip
        return edges

    def archived_since(
        self, state: Mapping[str, Any]
    ) -> tuple[list[Tombstone], bool, dict[str, Any]]:
        """Edges of archived records vanish with them; the periodic sweep finds them."""
        return [], False, {}

    def sweeps_associations(self) -> bool:
        """Edges are associations: they are always swept."""
        return True

    def backfill(self, since: Checkpoint | None) -> Iterator[Page]:
        """Every edge; a backfill begun afresh asks for an id sweep with its first page, so
        that a mirror holding edges already (a restarted backfill) loses those gone since."""
        for position, page in enumerate(super().backfill(since)):
            yield dataclasses.replace(page, needs_sweep=since is None and position == 0)

    def incremental(self, since: Checkpoint) -> Iterator[Page]:
        """Edges of the records changed since ``since``; when a sweep is due, every edge
        again, and an id sweep request so that vanished edges are marked deleted."""
        due = self._sweep_due(since.state)
        for position, page in enumerate(super().incremental(since)):
            yield dataclasses.replace(page, tombstones=[], needs_sweep=due and position == 0)

    def ids(self) -> Iterator[list[str]]:
        """Every current edge id, one batch per page of ``from`` records."""
        for batch in super().ids():
            yield [edge["id"] for edge in self.edges(dict.fromkeys(batch))]

    def fetch(self, ids: Sequence[str]) -> list[Record]:
        """The edges ``ids`` that still exist."""
        wanted = set(ids)
        owners = sorted({edge_id.split(":")[0] for edge_id in ids})
        return [e for e in self.edges(dict.fromkeys(owners)) if e["id"] in wanted]


def read_only(writes: Sequence[Write]) -> list[WriteResult]:
    """Edge objects are read-only: every write fails, naming the fields to write instead."""
    return [
        WriteResult(
            ok=False,
            error_code="READ_ONLY_OBJECT",
            message="association edges are read-only; write the association fields "
            "(partner_company_id, primary_company_id, deal_id) of the records instead",
        )
        for _ in writes
    ]
