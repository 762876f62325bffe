"""The adapters' side of the engine's closed-range change cursor (``mirror.cursor``).

Stamps a CRM gives as datetimes are kept in checkpoints in one form (``values.format_cursor``:
ISO-8601 UTC with milliseconds); a query's fence is read from the ``Date`` of the answer the
calling thread has just received (``RequestLog.answer_time``), floored to the resolution of
the CRM's stamps. A row whose change stamp is missing or does not parse is a ``Reject`` with
the same reason in every adapter (``unstamped``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from adapters._kit.http_retry import RequestLog
from adapters._kit.values import format_cursor
from mirror.cursor import StampCodec, fence_of

SECOND = timedelta(seconds=1)


def datetime_stamps(parse: Callable[[str], datetime]) -> StampCodec[datetime]:
    """Datetime stamps read with the CRM's own ``parse`` and written in checkpoint form."""
    return StampCodec(parse, format_cursor)


def answer_fence(log: RequestLog, resolution: timedelta = SECOND) -> datetime | None:
    """The fence of the query this thread has just asked, from its answer's ``Date``, floored
    to ``resolution`` (``None``: the answer carried no date)."""
    return fence_of(log.answer_time(), resolution)


def unstamped(field: str, value: Any) -> str:
    """The reason a row whose change stamp ``field`` holds ``value`` is rejected."""
    return f"field {field}: {value!r} is not a datetime"
