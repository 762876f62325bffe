"""The closed-range change cursor every Salesforce read advances.

Reads ask for ``SystemModstamp >= cursor`` (never ``>``) ordered by ``SystemModstamp, Id``, and
skip the ids already applied at exactly the cursor value, so records sharing a timestamp across
a page boundary (common: Salesforce stamps whole batches at once) are neither lost nor applied
twice. SOQL literals are floored to whole seconds, which only widens the closed range.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from adapters.salesforce_types import format_cursor, parse_datetime, soql_datetime
from mirror.types import Checkpoint


class CursorTracker:
    """The highest cursor value applied so far and the ids applied at exactly that value."""

    def __init__(self, cursor: str | None = None, ids_at_cursor: Iterable[str] = ()) -> None:
        """Start from a checkpoint's ``cursor`` and ``ids_at_cursor``."""
        self.value: datetime | None = parse_datetime(cursor) if cursor else None
        self._ids: dict[str, None] = dict.fromkeys(ids_at_cursor)
        self._skip_value = self.value
        self._skip_ids = frozenset(self._ids)
        self.ceiling: datetime | None = None

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint | None) -> CursorTracker:
        """A tracker resuming after ``checkpoint`` (from the beginning when ``None``)."""
        if checkpoint is None:
            return cls()
        return cls(checkpoint.cursor, checkpoint.ids_at_cursor)

    def already_applied(self, value: datetime, record_id: str) -> bool:
        """Whether the row was applied before this query started (so it is skipped)."""
        return value == self._skip_value and record_id in self._skip_ids

    def advance(self, value: datetime, record_id: str) -> None:
        """Take one delivered row into the cursor (rows arrive in cursor order).

        A row stamped after ``ceiling`` (the org's clock when the query began) was changed
        while the query's locator paged through its snapshot: it arrives in its old place
        with its new stamp, ahead of rows not delivered yet, so it does not move the cursor
        (its new version is read again from the cursor on)."""
        if self.ceiling is not None and value > self.ceiling:
            return
        if self.value is None or value > self.value:
            self.value = value
            self._ids = {record_id: None}
        elif value == self.value:
            self._ids[record_id] = None

    def restart(self) -> None:
        """Skip from now on what has been applied so far: called before re-querying."""
        self._skip_value = self.value
        self._skip_ids = frozenset(self._ids)

    @property
    def ids(self) -> tuple[str, ...]:
        """The ids applied at exactly the cursor value, in delivery order."""
        return tuple(self._ids)

    def where(self, cursor_field: str) -> str:
        """The SOQL condition selecting rows at or after the cursor (empty at the start)."""
        if self.value is None:
            return ""
        return f"{cursor_field} >= {soql_datetime(self.value)}"

    def checkpoint(self, phase: str, state: Mapping[str, Any]) -> Checkpoint:
        """The checkpoint after the rows advanced so far."""
        cursor = format_cursor(self.value) if self.value is not None else None
        return Checkpoint(cursor=cursor, ids_at_cursor=self.ids, phase=phase, state=dict(state))
