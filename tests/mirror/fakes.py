"""An in-memory CRM adapter for engine tests: a reference implementation of the adapter port.

It keeps records with a ``Modstamp`` cursor and serves them in closed-range pages exactly as the
design asks of real adapters, so engine behaviour can be tested without HTTP. End-to-end
behaviour against real CRM protocols is tested with the sandboxes in ``tests/adapters``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

from mirror.types import (
    Checkpoint,
    FieldSpec,
    FieldType,
    ObjectSpec,
    Page,
    Reject,
    Tombstone,
    Write,
    WriteResult,
)

BASE_FIELDS = (
    FieldSpec("Id", FieldType.ID),
    FieldSpec("Name", FieldType.STRING, updateable=True),
    FieldSpec("Amount", FieldType.FLOAT, updateable=True),
    FieldSpec("PartnerId", FieldType.REFERENCE, references=("Partner",)),
    FieldSpec("Modstamp", FieldType.DATETIME),
)


def at(seconds: int) -> dt.datetime:
    """A fixed UTC instant ``seconds`` after 2026-01-01."""
    return dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds)


class FakeCrm:
    """Records of one object ``Deal`` plus deletes, served through the adapter port."""

    name = "fake"

    def __init__(
        self, page_size: int = 3, objects: dict[str, tuple[FieldSpec, ...]] | None = None
    ) -> None:
        self.page_size = page_size
        self.schemas = dict(objects or {"Deal": BASE_FIELDS})
        self.stores: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in self.schemas}
        self.tombs: dict[str, dict[str, tuple[dt.datetime, str | None]]] = {
            n: {} for n in self.schemas
        }
        self.calls = 0
        self.bad: dict[str, str] = {}
        self.sweep_next = False

    @property
    def fields(self) -> tuple[FieldSpec, ...]:
        """The fields of ``Deal``."""
        return self.schemas["Deal"]

    @fields.setter
    def fields(self, value: tuple[FieldSpec, ...]) -> None:
        self.schemas["Deal"] = value

    @property
    def records(self) -> dict[str, dict[str, Any]]:
        """The live ``Deal`` records."""
        return self.stores["Deal"]

    def put(self, record_id: str, when: int, obj: str = "Deal", **values: Any) -> None:
        """Create or change a record of ``obj`` at time ``when``."""
        blank = {f.name: None for f in self.schemas[obj]}
        record = self.stores[obj].get(record_id, {**blank, "Id": record_id})
        record.update(values, Modstamp=at(when))
        self.stores[obj][record_id] = record
        self.tombs[obj].pop(record_id, None)

    def remove(
        self, record_id: str, when: int, merged_into: str | None = None, obj: str = "Deal"
    ) -> None:
        """Delete a record of ``obj`` at time ``when``."""
        self.stores[obj].pop(record_id)
        self.tombs[obj][record_id] = (at(when), merged_into)

    def check(self) -> None:
        """Always reachable."""

    def list_objects(self) -> list[str]:
        """The one object."""
        return list(self.schemas)

    def describe(self, object_name: str) -> ObjectSpec:
        """The current field list."""
        return ObjectSpec("fake", object_name, "Id", "Modstamp", self.schemas[object_name])

    def read(self, spec: ObjectSpec, since: Checkpoint | None) -> Iterator[Page]:
        """Closed-range pages ordered by (Modstamp, Id), deletes as tombstones."""
        cursor = dt.datetime.fromisoformat(since.cursor) if since and since.cursor else None
        skip = set(since.ids_at_cursor) if since else set()
        records, deleted = self.stores[spec.name], self.tombs[spec.name]
        events = [(r["Modstamp"], i, r) for i, r in records.items()]
        events += [(when, i, None) for i, (when, _m) in deleted.items()]
        events = sorted(e for e in events if cursor is None or e[0] >= cursor)
        events = [e for e in events if not (e[0] == cursor and e[1] in skip)]
        last_cursor, ids = cursor, list(skip)
        if not events:
            yield Page([], Checkpoint(since.cursor if since else None, tuple(ids), "incremental"))
            return
        for start in range(0, len(events), self.page_size):
            self.calls += 1
            chunk = events[start : start + self.page_size]
            page_records, tombstones, rejects = [], [], []
            for when, record_id, record in chunk:
                if record is None:
                    tombstones.append(Tombstone(record_id, when, deleted[record_id][1]))
                elif record_id in self.bad:
                    rejects.append(Reject(record_id, self.bad[record_id], dict(record)))
                else:
                    page_records.append({k: v for k, v in record.items() if spec.has_field(k)})
                ids = [*ids, record_id] if when == last_cursor else [record_id]
                last_cursor = when
            done = start + self.page_size >= len(events)
            checkpoint = Checkpoint(
                last_cursor.isoformat() if last_cursor else None,
                tuple(ids),
                "incremental" if done else (since.phase if since else "backfill"),
            )
            yield Page(page_records, checkpoint, tombstones, rejects, needs_sweep=self._sweep())

    def _sweep(self) -> bool:
        needed, self.sweep_next = self.sweep_next, False
        return needed

    def read_ids(self, spec: ObjectSpec) -> Iterator[list[str]]:
        """Every live id, two per batch."""
        ids = sorted(self.stores[spec.name])
        for start in range(0, len(ids), 2):
            self.calls += 1
            yield ids[start : start + 2]

    def fetch(self, spec: ObjectSpec, ids: Sequence[str]) -> list[dict[str, Any]]:
        """The live records among ``ids``."""
        return [dict(self.stores[spec.name][i]) for i in ids if i in self.stores[spec.name]]

    def write(self, spec: ObjectSpec, writes: Sequence[Write]) -> list[WriteResult]:
        """Not used by pull tests."""
        raise NotImplementedError

    def api_calls(self) -> int:
        """Pages and id batches served."""
        return self.calls
