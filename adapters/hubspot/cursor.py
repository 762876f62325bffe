"""The keyset that walks HubSpot search past its 10,000-result cap, on the engine's cursor.

HubSpot search sorts by one property only, leaves ties in no stated order, and refuses to page
past the 10,000th result of a query. So every page is a fresh query anchored at the read's
position, and ``after`` offsets are never used:

- *advance*: ``modified > c`` OR (``modified = c`` AND ``hs_object_id > last``), sorted by the
  last-modified property. In a full page the records at its newest instant may be only part
  of that instant's records (ties come in any order), so they are held back and the next
  query starts again just before them; every older record of the page is complete.
- *tie*: when a whole page shares one instant, that instant is read on its own, sorted by
  ``hs_object_id`` and paged by id (``modified = c`` AND ``hs_object_id > last``), which is
  exact however many records share it.

The position and the checkpoint are the engine's fenced closed-range cursor
(``mirror.cursor``), in epoch milliseconds: each search is a query of its own and brings its
fence (its answer's ``Date`` less the request's time, less ``SEARCH_INDEX_LAG``: search is
eventually consistent, and a change indexed late must not be passed by the checkpoint). The
position (newest instant delivered, ids delivered at it) anchors the next search; the
checkpoint saved is ``cursor``, the newest instant delivered before the fence, and
``ids_at_cursor``, the ids delivered at it: always a prefix of that instant's records in id
order (all of them, or those read so far in tie mode), so ``last`` is their highest id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from adapters.hubspot.types import KEY, format_cursor, parse_instant, to_ms
from mirror.cursor import AnswerTime, ChangeCursor, StampCodec, fence_of
from mirror.types import Checkpoint

RESOLUTION = timedelta(milliseconds=1)
SEARCH_INDEX_LAG = timedelta(seconds=5)
"""How long a change may take to reach search (HubSpot documents "a few seconds", no bound):
the checkpoint stays this far behind each search's start, so those changes are read again."""


def _parse_ms(text: str) -> int:
    return to_ms(parse_instant(text))


def format_cursor_ms(ms: int) -> str:
    """An epoch-ms instant in checkpoint form."""
    return format_cursor(parse_instant(str(ms)))


STAMPS: StampCodec[int] = StampCodec(_parse_ms, format_cursor_ms)


def search_fence(answered: AnswerTime | None) -> int | None:
    """The fence (epoch ms) of a search answered at ``answered``."""
    fence = fence_of(answered, RESOLUTION, SEARCH_INDEX_LAG)
    return to_ms(fence) if fence is not None else None


def list_fence(answered: AnswerTime | None) -> int | None:
    """The fence (epoch ms) of a listing answered at ``answered`` (listings read records, not
    the search index)."""
    fence = fence_of(answered, RESOLUTION)
    return to_ms(fence) if fence is not None else None


class Keyset:
    """A search read's position and checkpoint (``mirror.cursor.ChangeCursor`` in epoch ms)."""

    def __init__(self, cursor: ChangeCursor[int] | None = None) -> None:
        """Walk from ``cursor`` (from the start when ``None``)."""
        self.cursor: ChangeCursor[int] = cursor if cursor is not None else ChangeCursor(STAMPS)

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint | None) -> Keyset:
        """Resume after ``checkpoint``."""
        return cls(ChangeCursor.resume(STAMPS, checkpoint))

    @property
    def value(self) -> int | None:
        """The newest instant delivered (the position)."""
        return self.cursor.position

    @property
    def ids(self) -> tuple[str, ...]:
        """The ids delivered at exactly the position's instant."""
        return self.cursor.position_ids

    @property
    def last_id(self) -> int | None:
        """The highest id delivered at the position's instant."""
        return max((int(i) for i in self.ids), default=None)

    def began(self, answered: AnswerTime | None) -> None:
        """A search answered at ``answered`` is about to be taken in."""
        self.cursor.began(search_fence(answered))

    def advance(self, stamp: int, record_id: str) -> None:
        """Take one applied record (records come in (instant, id) order)."""
        self.cursor.take(stamp, record_id)

    def checkpoint(self, phase: str, state: Mapping[str, Any]) -> Checkpoint:
        """The checkpoint after the records advanced so far."""
        return self.cursor.checkpoint(phase, state)

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


def split_full_page(stamped: Iterable[tuple[int, Any]]) -> tuple[list[Any], int, bool]:
    """A full advance page's complete part: the items older than its newest instant, that
    instant, and whether the whole page shares it."""
    items = sorted(stamped, key=lambda pair: pair[0])
    newest = items[-1][0]
    older = [item for stamp, item in items if stamp < newest]
    return older, newest, not older
