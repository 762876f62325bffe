"""Bulk API 2.0 query jobs: create, poll, page the CSV results, abort, delete.

A job answers JSON even when the client asks for CSV, moves UploadComplete -> InProgress ->
JobComplete over two polls, and takes its result snapshot (ordered ids) when it completes.
Results are CSV with a header row and every value quoted; ``Sforce-Locator`` names the next
page (the literal ``null`` on the last) and ``Sforce-NumberOfRecords`` counts this page.
Compound fields are refused as Salesforce's Bulk API refuses them.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from werkzeug.wrappers import Request, Response

from sandboxes.kit.server import empty_response, json_response, read_json
from sandboxes.salesforce.errors import SfError, bad_request, not_found
from sandboxes.salesforce.org import Org
from sandboxes.salesforce.query import QueryPlan, Snapshots, plan_query
from sandboxes.salesforce.schema import COMPOUND_TYPES
from sandboxes.salesforce.values import csv_value, wire_datetime

DEFAULT_MAX_RECORDS = 100_000
DELIMITERS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^",
              "BACKQUOTE": "`"}  # fmt: skip
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
_STATES_AFTER_POLL = {"UploadComplete": "InProgress", "InProgress": "JobComplete"}
_PUBLIC_KEYS = (
    "id", "operation", "object", "createdById", "createdDate", "systemModstamp", "state",
    "concurrencyMode", "contentType", "apiVersion", "jobType", "lineEnding", "columnDelimiter",
)  # fmt: skip


def _load(org: Org, job_id: str) -> dict[str, Any]:
    job = org.store.json_state("sandbox_bulk_jobs", job_id)
    if job is None:
        raise not_found()
    return job


def _save(org: Org, job: dict[str, Any]) -> None:
    with org.store.transaction() as conn:
        conn.execute(
            "INSERT OR REPLACE INTO sandbox_bulk_jobs (id, state) VALUES (?, ?)",
            (job["id"], orjson.dumps(job).decode()),
        )


def _public(job: dict[str, Any], *, detail: bool) -> dict[str, Any]:
    answer = {key: job[key] for key in _PUBLIC_KEYS}
    if detail:
        answer.update(
            numberRecordsProcessed=job.get("processed", 0),
            retries=0,
            totalProcessingTime=job.get("processing_ms", 0),
        )
        if job["state"] == "Failed":
            answer["errorMessage"] = job.get("error", "")
    return answer


def _plan(org: Org, job: dict[str, Any]) -> QueryPlan:
    return plan_query(
        job["query"], org.schema, query_all=job["operation"] == "queryAll", now=org.clock.now()
    )


def jobs(org: Org, request: Request, version: str) -> Response:
    """``POST .../jobs/query`` creates a job; ``GET`` lists them."""
    if request.method == "GET":
        rows = org.store.query("SELECT state FROM sandbox_bulk_jobs ORDER BY id")
        records = [_public(orjson.loads(row[0]), detail=False) for row in rows]
        return json_response({"done": True, "records": records, "nextRecordsUrl": None})
    body = read_json(request)
    if not isinstance(body, dict) or body.get("operation") not in ("query", "queryAll"):
        raise bad_request("INVALIDJOB", "operation must be query or queryAll")
    delimiter = body.get("columnDelimiter", "COMMA")
    line_ending = body.get("lineEnding", "LF")
    if delimiter not in DELIMITERS or line_ending not in LINE_ENDINGS:
        raise bad_request("INVALIDJOB", "unsupported columnDelimiter or lineEnding")
    if body.get("contentType", "CSV") != "CSV":
        raise bad_request("INVALIDJOB", "contentType must be CSV")
    now = wire_datetime(org.records.stamp())
    job = {
        "id": Snapshots.new_locator("750"), "operation": body["operation"],
        "query": str(body.get("query", "")), "createdById": org.records.user_id,
        "createdDate": now, "systemModstamp": now, "state": "UploadComplete",
        "concurrencyMode": "Parallel", "contentType": "CSV", "apiVersion": float(version),
        "jobType": "V2Query", "lineEnding": line_ending, "columnDelimiter": delimiter,
    }  # fmt: skip
    plan = _plan(org, job)
    _refuse_unsupported(plan)
    job["object"] = plan.sobject
    _save(org, job)
    return json_response(_public(job, detail=False))


def _refuse_unsupported(plan: QueryPlan) -> None:
    if plan.is_count or plan.is_aggregate:
        raise bad_request("INVALIDJOB", "Aggregate queries are not supported by Bulk API 2.0")
    compound = [".".join(c.path) for c in plan.columns if c.soql_type in COMPOUND_TYPES]
    if compound:
        raise bad_request(
            "INVALIDJOB",
            f"FUNCTIONALITY_NOT_ENABLED: Selecting compound data not supported in Bulk Query"
            f" ({', '.join(compound)})",
        )


def job(org: Org, request: Request, version: str, job_id: str) -> Response:
    """``GET`` polls a job, ``PATCH`` aborts it, ``DELETE`` removes it."""
    current = _load(org, job_id)
    if request.method == "DELETE":
        org.snapshots.drop([job_id])
        with org.store.transaction() as conn:
            conn.execute("DELETE FROM sandbox_bulk_jobs WHERE id = ?", (job_id,))
        return empty_response()
    if request.method == "PATCH":
        wanted = read_json(request)
        if not isinstance(wanted, dict) or wanted.get("state") != "Aborted":
            raise bad_request("INVALIDJOB", "A query job can only be set to Aborted")
        if current["state"] in ("JobComplete", "Failed", "Aborted"):
            raise bad_request("INVALIDJOB", f"Job is already {current['state']}")
        current["state"] = "Aborted"
        _save(org, current)
        return json_response(_public(current, detail=False))
    _advance(org, current)
    return json_response(_public(current, detail=True))


def _advance(org: Org, current: dict[str, Any]) -> None:
    following = _STATES_AFTER_POLL.get(current["state"])
    if following is None:
        return
    if following == "JobComplete":
        _, total, _ = org.snapshots.take(_plan(org, current), org.clock.now(), current["id"], None)
        current["processed"] = total
        current["processing_ms"] = 5 + total // 1000
    current["state"] = following
    current["systemModstamp"] = wire_datetime(org.records.stamp())
    _save(org, current)


def _locator_offset(locator: str | None) -> int:
    if not locator:
        return 0
    try:
        offset = int(base64.b64decode(locator, validate=True).decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad_request("INVALIDLOCATOR", f"Invalid locator: {locator}") from None
    if offset < 0:
        raise bad_request("INVALIDLOCATOR", f"Invalid locator: {locator}")
    return offset


def results(org: Org, request: Request, version: str, job_id: str) -> Response:
    """``GET .../jobs/query/{id}/results``: one CSV page of the snapshot."""
    current = _load(org, job_id)
    if current["state"] != "JobComplete":
        raise SfError(412, "JOB_NOT_COMPLETE", f"Job {job_id} is not complete")
    if float(version) != current["apiVersion"]:
        raise SfError(409, "API_VERSION_MISMATCH", "Request the results with the job's version")
    offset = _locator_offset(request.args.get("locator"))
    try:
        max_records = int(request.args.get("maxRecords", DEFAULT_MAX_RECORDS))
    except ValueError:
        raise bad_request("INVALIDJOB", "maxRecords must be a number") from None
    if max_records <= 0:
        raise bad_request("INVALIDJOB", "maxRecords must be greater than 0")
    plan = _plan(org, current)
    now = org.clock.now()
    ids = org.snapshots.page_ids(job_id, offset, max_records)
    rows = org.snapshots.rows(plan, ids, now)
    next_offset = offset + len(ids)
    more = next_offset < current.get("processed", 0)
    headers = {
        "Sforce-Locator": base64.b64encode(str(next_offset).encode()).decode() if more else "null",
        "Sforce-NumberOfRecords": str(len(rows)),
    }
    body = _csv(
        plan, rows, DELIMITERS[current["columnDelimiter"]], LINE_ENDINGS[current["lineEnding"]]
    )
    return Response(body, headers=headers, content_type="text/csv")


def _csv(plan: QueryPlan, rows: list[tuple[Any, ...]], delimiter: str, line_end: str) -> str:
    def quoted(text: str) -> str:
        return '"' + text.replace('"', '""') + '"'

    lines = [delimiter.join(quoted(".".join(c.path)) for c in plan.columns)]
    for row in rows:
        values = (csv_value(c.soql_type, row[i]) for i, c in enumerate(plan.columns))
        lines.append(delimiter.join(quoted(v) for v in values))
    return line_end.join(lines) + line_end
