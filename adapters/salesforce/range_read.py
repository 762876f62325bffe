"""Split backfills on Salesforce: record-id ranges (PK chunking), bounded by a watermark.

Ids of one object sort in creation order and their last twelve characters are a base-62
number, so the id space between the first and the last id can be cut with plain SOQL: each cut
is found by bisecting that number with ``SELECT COUNT() FROM X WHERE Id < '<id>'`` until the
count is within a few percent of its share, a handful of calls per range whatever the size of
the object.

Every range reads ``WHERE Id >= lower AND Id < upper AND SystemModstamp <= watermark ORDER BY
Id``, where the watermark is the object's newest SystemModstamp when the plan was made, and
resumes after the last id it applied. A record changed during the backfill gets a later
SystemModstamp, so the ranges leave it to the incremental phase, which starts at the watermark
with a closed range (``>=``). SOQL literals are whole seconds, so the ranges stop at the
watermark's second and the incremental read starts at it: a change is never lost, and a record
stamped in that second may be read by both, which the idempotent upsert turns into one write.
The ranges are read with ``queryAll``: records deleted or merged away before the plan come as
tombstones, so a backfill started again over a mirror that holds them does not leave them live.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from itertools import pairwise
from typing import Any

from adapters.salesforce.client import SalesforceConnection
from adapters.salesforce.cursor import STAMPS
from adapters.salesforce.read import PageBuilder, answers, is_last
from adapters.salesforce.types import (
    KEY_FIELD,
    RecordConverter,
    format_cursor,
    parse_datetime,
    soql_datetime,
    to_18,
)
from mirror.adapter import RangePlan
from mirror.cursor import handover
from mirror.types import Checkpoint, ObjectSpec, Page

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PREFIX_LENGTH = 3
NUMBER_DIGITS = 12
MAX_PROBES = 40
TOLERANCE_SHARE = 20


def id_number(record_id: str) -> int:
    """The base-62 number after an id's key prefix (its position in creation order)."""
    value = 0
    for char in record_id[PREFIX_LENGTH:15]:
        value = value * 62 + BASE62.index(char)
    return value


def id_at(prefix: str, number: int) -> str:
    """The 18-char id with key ``prefix`` and base-62 ``number`` (a valid filter bound)."""
    digits = []
    for _ in range(NUMBER_DIGITS):
        number, digit = divmod(number, 62)
        digits.append(BASE62[digit])
    return to_18(prefix + "".join(reversed(digits)))


def split_ids(
    count_below: Callable[[str], int], first: str, last: str, total: int, parts: int
) -> list[str]:
    """Ids cutting ``[first, last]`` into ``parts`` ranges of about ``total / parts`` records.

    ``count_below(id)`` is how many records have a smaller id. Each cut bisects the id number
    until its count is within ``total / (parts * TOLERANCE_SHARE)`` of the target; cuts that
    fall together are merged, so fewer ranges come back when the records are few.
    """
    prefix = first[:PREFIX_LENGTH]
    low, high = id_number(first), id_number(last) + 1
    tolerance = max(1, total // (parts * TOLERANCE_SHARE))
    cuts: list[str] = []
    for part in range(1, parts):
        target = total * part // parts
        lo, hi = low, high
        middle = (lo + hi) // 2
        for _ in range(MAX_PROBES):
            middle = (lo + hi) // 2
            if middle <= lo:
                break
            below = count_below(id_at(prefix, middle))
            if abs(below - target) <= tolerance:
                break
            if below < target:
                lo = middle
            else:
                hi = middle
        cut = id_at(prefix, middle)
        if middle > low:
            cuts.append(cut)
            low = middle
    return cuts


def plan_ranges(
    conn: SalesforceConnection, spec: ObjectSpec, parts: int, min_records: int
) -> RangePlan | None:
    """Id ranges of ``spec`` for ``parts`` workers, or ``None`` below ``min_records``."""
    total = conn.count(spec.name)
    if parts < 2 or total < max(min_records, 2 * parts):
        return None
    newest = _first(conn, spec, spec.cursor_field, f"{spec.cursor_field} DESC")
    first = _first(conn, spec, KEY_FIELD, f"{KEY_FIELD} ASC")
    last = _first(conn, spec, KEY_FIELD, f"{KEY_FIELD} DESC")
    if newest is None or first is None or last is None:
        return None
    watermark = format_cursor(parse_datetime(newest))

    def count_below(record_id: str) -> int:
        where = f"{KEY_FIELD} < '{record_id}'"
        answer = conn.query(
            f"SELECT COUNT() FROM {spec.name} WHERE {where}", action=f"splitting {spec.name}"
        )
        return int(answer["totalSize"])

    cuts = split_ids(count_below, to_18(first), to_18(last), total, parts)
    edges: list[str | None] = [None, *cuts, None]
    bounds = tuple(pairwise(edges))
    # a change made after this plan is stamped at or after the watermark (the newest stamp
    # then): the incremental phase starts at it, nothing applied at it
    after = handover(STAMPS, parse_datetime(watermark), "incremental", {})
    return RangePlan(bounds, after, {"watermark": watermark})


def range_pages(
    conn: SalesforceConnection,
    spec: ObjectSpec,
    plan: RangePlan,
    index: int,
    since: Checkpoint | None,
) -> Iterator[Page]:
    """Pages of range ``index`` in id order after ``since``; the last one in phase ``done``."""
    lower, upper = plan.bounds[index]
    watermark = parse_datetime(str(plan.state["watermark"]))
    last = since.cursor if since is not None else None
    builder = PageBuilder(spec, RecordConverter(spec))

    def ask() -> Mapping[str, Any]:
        return conn.query(
            _range_soql(spec, lower, upper, watermark, last),
            include_deleted=True,
            action=f"reading {spec.name}",
        )

    for result in answers(conn, spec, ask(), ask):
        for row in result["records"]:
            builder.add(row)
        if result["records"]:
            last = to_18(str(result["records"][-1][KEY_FIELD]))
        phase = "done" if is_last(result) else "backfill"
        yield builder.page(Checkpoint(cursor=last, phase=phase))


def _range_soql(
    spec: ObjectSpec,
    lower: str | None,
    upper: str | None,
    watermark: datetime,
    after: str | None,
) -> str:
    conditions = [f"{spec.cursor_field} <= {soql_datetime(watermark)}"]
    if after is not None:
        conditions.append(f"{KEY_FIELD} > '{after}'")
    elif lower is not None:
        conditions.append(f"{KEY_FIELD} >= '{lower}'")
    if upper is not None:
        conditions.append(f"{KEY_FIELD} < '{upper}'")
    fields = ", ".join(spec.field_names)
    return f"SELECT {fields} FROM {spec.name} WHERE {' AND '.join(conditions)} ORDER BY {KEY_FIELD}"


def _first(conn: SalesforceConnection, spec: ObjectSpec, field: str, order: str) -> str | None:
    answer = conn.query(
        f"SELECT {field} FROM {spec.name} ORDER BY {order} LIMIT 1",
        action=f"splitting {spec.name}",
    )
    records = answer["records"]
    return str(records[0][field]) if records and records[0].get(field) else None
