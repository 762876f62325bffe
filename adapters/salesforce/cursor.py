"""Salesforce's side of the engine's closed-range change cursor (``mirror.cursor``).

Reads ask for ``SystemModstamp >= cursor`` (never ``>``) ordered by ``SystemModstamp, Id``, and
skip the ids already applied at exactly the cursor value, so records sharing a timestamp across
a page boundary (common: Salesforce stamps whole batches at once) are neither lost nor applied
twice. SOQL literals are floored to whole seconds, which only widens the closed range.

SystemModstamp has whole seconds, so a query's fence is the ``Date`` of its first answer less
the time that request took, floored to the second: a row stamped at or after it may have
changed after the query's snapshot began and does not move the checkpoint.
"""

from __future__ import annotations

from datetime import datetime

from adapters._kit.cursor import SECOND, answer_fence, datetime_stamps
from adapters.salesforce.client import SalesforceConnection
from adapters.salesforce.types import parse_datetime, soql_datetime
from mirror.cursor import ChangeCursor, StampCodec
from mirror.types import Checkpoint

STAMPS: StampCodec[datetime] = datetime_stamps(parse_datetime)
RESOLUTION = SECOND

Cursor = ChangeCursor[datetime]


def resume(checkpoint: Checkpoint | None) -> Cursor:
    """A cursor resuming after ``checkpoint`` (from the beginning when ``None``)."""
    return ChangeCursor.resume(STAMPS, checkpoint)


def where(cursor: Cursor, cursor_field: str) -> str:
    """The SOQL condition selecting rows at or after the checkpoint (empty at the start)."""
    if cursor.value is None:
        return ""
    return f"{cursor_field} >= {soql_datetime(cursor.value)}"


def query_fence(conn: SalesforceConnection) -> datetime | None:
    """The fence of the query this thread has just asked (from its answer's ``Date``)."""
    return answer_fence(conn.log, RESOLUTION)
