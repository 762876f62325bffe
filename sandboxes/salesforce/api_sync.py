"""Read endpoints a sync uses: query / queryAll with snapshot paging, getUpdated, getDeleted.

Query pages hold up to 2,000 records (``Sforce-Query-Options: batchSize=N`` chooses 200-2,000);
``nextRecordsUrl`` is root-relative, ``/services/data/vXX.X/query/<locator>-<offset>``; every
page repeats ``totalSize``. A locator idle for 15 minutes of sandbox time is gone
(INVALID_QUERY_LOCATOR). getUpdated and getDeleted work on whole minutes, like Salesforce, and
answer ``latestDateCovered``; getDeleted only reaches back ``deleted_window_days``.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import orjson
from werkzeug.wrappers import Request, Response

from sandboxes.kit.server import json_response
from sandboxes.salesforce.errors import SfError, bad_request
from sandboxes.salesforce.org import Org
from sandboxes.salesforce.query import RecordRenderer, Snapshots, plan_query
from sandboxes.salesforce.store import quote
from sandboxes.salesforce.values import datetime_to_storage, parse_wire_datetime, wire_datetime

DEFAULT_BATCH = 2_000
MIN_BATCH = 200
LOCATOR_IDLE_SECONDS = 15 * 60
UPDATED_WINDOW_DAYS = 30
MAX_REPLICATION_IDS = 600_000


def _batch_size(request: Request, default: int = DEFAULT_BATCH) -> int:
    options = request.headers.get("Sforce-Query-Options", "")
    match = re.search(r"batchSize\s*=\s*(\d+)", options)
    if match is None:
        return default
    return min(max(int(match.group(1)), MIN_BATCH), DEFAULT_BATCH)


def query(org: Org, request: Request, version: str) -> Response:
    """``GET .../query/?q=``."""
    return _first_page(org, request, version, query_all=False)


def query_all(org: Org, request: Request, version: str) -> Response:
    """``GET .../queryAll/?q=``: also deleted and merged records."""
    return _first_page(org, request, version, query_all=True)


def _first_page(org: Org, request: Request, version: str, *, query_all: bool) -> Response:
    soql = request.args.get("q", "")
    if not soql.strip():
        raise bad_request("MALFORMED_QUERY", "A query string has to be specified")
    now = org.clock.now()
    plan = plan_query(soql, org.schema, query_all=query_all, now=now)
    if plan.is_count:
        total = org.store.scalar(plan.compiled.sql, plan.compiled.params)
        return json_response({"totalSize": total, "done": True, "records": []})
    if plan.is_aggregate:
        value = org.store.scalar(plan.compiled.sql, plan.compiled.params)
        record = {"attributes": {"type": "AggregateResult"}, "expr0": value}
        return json_response({"totalSize": 1, "done": True, "records": [record]})
    batch = _batch_size(request)
    _expire_locators(org)
    locator = Snapshots.new_locator()
    ids, total, stored = org.snapshots.take(plan, now, locator, batch)
    if stored:
        state = {"soql": soql, "query_all": query_all, "batch": batch, "total": total}
        with org.store.transaction() as conn:
            conn.execute(
                "INSERT INTO sandbox_locators (locator, state, total, last_used) VALUES (?,?,?,?)",
                (locator, orjson.dumps(state).decode(), total, now.timestamp()),
            )
    return _page(org, plan, version, ids, total, locator if stored else None, len(ids), now)


def query_more(org: Org, request: Request, version: str, locator: str) -> Response:
    """``GET .../query/<locator>-<offset>``: the next page of a snapshot."""
    key, _, offset_text = locator.rpartition("-")
    state = org.store.json_state("sandbox_locators", key) if offset_text.isdigit() else None
    now = org.clock.now()
    last_used = org.store.scalar("SELECT last_used FROM sandbox_locators WHERE locator = ?", (key,))
    if state is None or now.timestamp() - last_used > LOCATOR_IDLE_SECONDS:
        raise bad_request("INVALID_QUERY_LOCATOR", "invalid query locator")
    offset = int(offset_text)
    if offset > state["total"]:
        raise bad_request("INVALID_QUERY_LOCATOR", "invalid query locator")
    with org.store.transaction() as conn:
        conn.execute(
            "UPDATE sandbox_locators SET last_used = ? WHERE locator = ?", (now.timestamp(), key)
        )
    batch = _batch_size(request, state["batch"])
    plan = plan_query(state["soql"], org.schema, query_all=state["query_all"], now=now)
    ids = org.snapshots.page_ids(key, offset, batch)
    return _page(org, plan, version, ids, state["total"], key, offset + len(ids), now)


def _page(
    org: Org,
    plan: Any,
    version: str,
    ids: list[str],
    total: int,
    locator: str | None,
    next_offset: int,
    now: datetime,
) -> Response:
    renderer = RecordRenderer(plan, org.schema, version)
    records = [renderer.render(row) for row in org.snapshots.rows(plan, ids, now)]
    done = locator is None or next_offset >= total
    body: dict[str, Any] = {"totalSize": total, "done": done}
    if not done:
        body["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}-{next_offset}"
    body["records"] = records
    return json_response(body)


def _expire_locators(org: Org) -> None:
    cutoff = org.clock.now().timestamp() - LOCATOR_IDLE_SECONDS
    stale = [row[0] for row in org.store.query(
        "SELECT locator FROM sandbox_locators WHERE last_used < ?", (cutoff,)
    )]  # fmt: skip
    if stale:
        org.snapshots.drop(stale)
        with org.store.transaction() as conn:
            conn.executemany(
                "DELETE FROM sandbox_locators WHERE locator = ?", [(k,) for k in stale]
            )


def _floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _window(org: Org, request: Request) -> tuple[datetime, datetime, datetime]:
    """The (start, end, now) of a replication call, as Salesforce validates them."""
    bounds = []
    for name in ("start", "end"):
        text = request.args.get(name)
        if text is None:
            raise bad_request("MISSING_ARGUMENT", f"{name} parameter is required")
        try:
            bounds.append(_floor_minute(parse_wire_datetime(text)))
        except ValueError:
            raise bad_request("INVALID_REPLICATION_DATE", f"Invalid {name} date: {text}") from None
    start, end = bounds
    now = org.clock.now()
    if end - start < timedelta(minutes=1):
        raise bad_request(
            "INVALID_REPLICATION_DATE",
            "startDate must chronologically precede endDate by more than one minute",
        )
    return start, min(end, _floor_minute(now)), now


def updated(org: Org, request: Request, version: str, sobject: str) -> Response:
    """``GET .../sobjects/{Type}/updated/?start=&end=``: ids by SystemModstamp."""
    obj = org.records.sobject(sobject)
    start, end, now = _window(org, request)
    if start < now - timedelta(days=UPDATED_WINDOW_DAYS):
        raise bad_request("INVALID_REPLICATION_DATE", "startDate cannot be more than 30 days ago")
    rows = org.store.query(
        f'SELECT "Id" FROM {quote(obj.sql_table)} WHERE "IsDeleted" = 0'
        ' AND "SystemModstamp" >= ? AND "SystemModstamp" < ? ORDER BY "Id"',
        (datetime_to_storage(start), datetime_to_storage(end)),
    )
    if len(rows) > MAX_REPLICATION_IDS:
        raise SfError(400, "EXCEEDED_ID_LIMIT", "record limit reached. narrow the time window")
    latest = wire_datetime(datetime_to_storage(max(end, start)))
    return json_response({"ids": [row[0] for row in rows], "latestDateCovered": latest})


def deleted(org: Org, request: Request, version: str, sobject: str) -> Response:
    """``GET .../sobjects/{Type}/deleted/?start=&end=``: soft deletes still in the window."""
    obj = org.records.sobject(sobject)
    start, end, now = _window(org, request)
    earliest = _floor_minute(now - timedelta(days=org.deleted_window_days))
    rows = org.store.query(
        "SELECT record_id, deleted_date FROM sandbox_deleted WHERE sobject = ?"
        " AND deleted_date >= ? AND deleted_date < ? ORDER BY deleted_date, record_id",
        (obj.name, datetime_to_storage(max(start, earliest)), datetime_to_storage(end)),
    )
    return json_response(
        {
            "deletedRecords": [{"id": r[0], "deletedDate": wire_datetime(r[1])} for r in rows],
            "earliestDateAvailable": wire_datetime(datetime_to_storage(earliest)),
            "latestDateCovered": wire_datetime(datetime_to_storage(max(end, start))),
        }
    )
