"""Property history: each value a record's property took, when and from which source.

HubSpot answers ``propertiesWithHistory`` (on a record, a list or a batch read) with, per
property, its values newest first, each with its ``timestamp``, ``sourceType``, ``sourceId``
and, for a person, ``updatedByUserId``. The sandbox keeps every value a write set: API writes
come from the portal's private app (``INTEGRATION``), test controls from a user in the CRM
(``CRM_UI``), and values the sandbox derives itself (``CALCULATED``). Generated records have
no stored history: their current values are shown as set when they were created (``IMPORT``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sandboxes.hubspot.store import Store
from sandboxes.hubspot.values import ms_to_iso

_TABLE = """
CREATE TABLE IF NOT EXISTS hs_history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, id INTEGER NOT NULL,
    property TEXT NOT NULL, ts_ms INTEGER NOT NULL, value TEXT, source_type TEXT NOT NULL,
    source_id TEXT, user_id INTEGER);
CREATE INDEX IF NOT EXISTS hs_history_record ON hs_history (type, id, property, seq);
"""
CRM_USER_ID = 9_000_001
PRIVATE_APP_ID = "3141592"


@dataclass(frozen=True)
class Source:
    """Who set a value, as a history entry names it."""

    type: str
    id: str | None = None
    user_id: int | None = None


INTEGRATION = Source("INTEGRATION", PRIVATE_APP_ID)
CRM_USER = Source("CRM_UI", f"userId:{CRM_USER_ID}", CRM_USER_ID)
CALCULATED = Source("CALCULATED")
IMPORT = Source("IMPORT")


class History:
    """The property history of a portal's records, in its store."""

    def __init__(self, store: Store) -> None:
        """Keep the history in ``store`` (its table is created when missing)."""
        self.store = store
        with store.lock:
            store.conn.executescript(_TABLE)

    def record(
        self,
        type_name: str,
        record_id: int,
        values: Mapping[str, str | None],
        stamp: int,
        source: Source,
    ) -> None:
        """Note that a write at ``stamp`` set ``values`` (``None``: cleared)."""
        rows = [
            (type_name, record_id, name, stamp, value, source.type, source.id, source.user_id)
            for name, value in values.items()
        ]
        if not rows:
            return
        with self.store.transaction() as conn:
            conn.executemany(
                "INSERT INTO hs_history (type, id, property, ts_ms, value, source_type, "
                "source_id, user_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def forget(self, type_name: str, record_id: int) -> None:
        """Drop a purged record's history."""
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM hs_history WHERE type = ? AND id = ?", (type_name, record_id))

    def of(
        self, type_name: str, row: Mapping[str, Any], names: Sequence[str]
    ) -> dict[str, list[dict[str, Any]]]:
        """``propertiesWithHistory`` of one record: per property in ``names``, newest first."""
        if not names:
            return {}
        marks = ", ".join("?" for _ in names)
        stored = self.store.query(
            "SELECT property, ts_ms, value, source_type, source_id, user_id FROM hs_history "
            f"WHERE type = ? AND id = ? AND property IN ({marks}) ORDER BY seq DESC",
            (type_name, row["id"], *names),
        )
        found: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for name, ts_ms, value, source_type, source_id, user_id in stored:
            found[name].append(_entry(value, ts_ms, Source(source_type, source_id, user_id)))
        for name in names:
            current = row["props"].get(name)
            newest = found[name][0]["value"] if found[name] else None
            if found[name] and newest == (current or ""):
                continue
            if current is None and not found[name]:
                continue
            # a value the history does not explain: generated with the record, or derived
            moment, source = (
                (row["modified_ms"], CALCULATED) if found[name] else (row["created_ms"], IMPORT)
            )
            found[name].insert(0, _entry(current, moment, source))
        return found


def _entry(value: str | None, ts_ms: int, source: Source) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "value": value if value is not None else "",
        "timestamp": ms_to_iso(ts_ms),
        "sourceType": source.type,
    }
    if source.id is not None:
        entry["sourceId"] = source.id
    if source.user_id is not None:
        entry["updatedByUserId"] = source.user_id
    return entry
