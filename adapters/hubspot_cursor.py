"""The keyset cursor that walks HubSpot search past its 10,000-result cap.

HubSpot search sorts by one property only, leaves ties in no stated order, and refuses to page
past the 10,000th result of a query. So every page is a fresh query anchored at the cursor, and
``after`` offsets are never used:

- *advance*: ``modified > c`` OR (``modified = c`` AND ``hs_object_id > last``), sorted by the
  last-modified property. In a full page the records at its newest instant may be only part
  of that instant's records (ties come in any order), so they are held back and the next
  query starts again just before them; every older record of the page is complete.
- *tie*: when a whole page shares one instant, that instant is read on its own, sorted by
  ``hs_object_id`` and paged by id (``modified = c`` AND ``hs_object_id > last``), which is
  exact however many records share it.

The checkpoint is the engine's closed range: ``cursor`` is the newest instant applied and
``ids_at_cursor`` the ids applied at it, always a prefix of that instant's records in id
order (all of them, or those read so far in tie mode), so ``last`` is their highest id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from adapters.hubspot_types import KEY, format_cursor, parse_instant, to_ms
from mirror.types import Checkpoint


@dataclass
class Keyset:
    """The newest instant applied (epoch ms) and the ids applied at exactly that instant."""

    value: int | None = None
    ids: dict[str, None] = field(default_factory=dict)

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint | None) -> Keyset:
        """Resume after ``checkpoint``."""
        if checkpoint is None or checkpoint.cursor is None:
            return cls()
        return cls(to_ms(parse_instant(checkpoint.cursor)), dict.fromkeys(checkpoint.ids_at_cursor))

    @property
    def last_id(self) -> int | None:
        """The highest id applied at the cursor instant."""
        return max((int(i) for i in self.ids), default=None)

    def advance(self, stamp: int, record_id: str) -> None:
        """Take one applied record into the cursor (records come in (instant, id) order)."""
        if self.value is None or stamp > self.value:
            self.value, self.ids = stamp, {record_id: None}
        elif stamp == self.value:
            self.ids[record_id] = None

    def checkpoint(self, phase: str, state: Mapping[str, Any]) -> Checkpoint:
        """The checkpoint after the records advanced so far."""
        cursor = format_cursor_ms(self.value) if self.value is not None else None
        return Checkpoint(cursor, tuple(self.ids), phase, dict(state))

    def advance_filters(self, prop: str) -> list[dict[str, Any]]:
        """The filter groups of the next *advance* query."""
        if self.value is None:
            return []
        later = {"filters": [_filter(prop, "GT", self.value)]}
        last = self.last_id
        if last is None:
            return [{"filters": [_filter(prop, "GTE", self.value)]}]
        same = {"filters": [_filter(prop, "EQ", self.value), _filter(KEY, "GT", last)]}
        return [later, same]

    def tie_filters(self, prop: str, instant: int) -> list[dict[str, Any]]:
        """The filter group of the next *tie* query at ``instant``."""
        filters = [_filter(prop, "EQ", instant)]
        last = self.last_id if self.value == instant else None
        if last is not None:
            filters.append(_filter(KEY, "GT", last))
        return [{"filters": filters}]


def _filter(prop: str, operator: str, value: int) -> dict[str, Any]:
    return {"propertyName": prop, "operator": operator, "value": str(value)}


def format_cursor_ms(ms: int) -> str:
    """An epoch-ms instant in checkpoint form."""
    return format_cursor(parse_instant(str(ms)))


def split_full_page(stamped: Iterable[tuple[int, Any]]) -> tuple[list[Any], int, bool]:
    """A full advance page's complete part: the items older than its newest instant, that
    instant, and whether the whole page shares it."""
    items = sorted(stamped, key=lambda pair: pair[0])
    newest = items[-1][0]
    older = [item for stamp, item in items if stamp < newest]
    return older, newest, not older
