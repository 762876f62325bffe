"""Bulk API 2.0 reads: large backfills and id lists, one page per results locator.

A backfill of a large object runs one ``query`` job (a snapshot as of the job's creation) and
downloads its CSV results ``bulk_page_size`` rows at a time. Each page's checkpoint holds the job
id and the next locator, so a crash resumes at that locator; when the job is gone (404, or its
locator is refused) the backfill starts a new job, remembering when the first one started. The
last page hands over to incremental reads at the job's ``createdDate`` minus one second, with
``deleted_checked`` at the first job's start so deletes made during the backfill are found.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from typing import Any

from adapters.salesforce_client import SalesforceConnection
from adapters.salesforce_read import select_soql
from adapters.salesforce_types import (
    KEY_FIELD,
    RecordConverter,
    format_cursor,
    minus_one_second,
    parse_datetime,
    to_18,
)
from mirror.errors import CrmError
from mirror.types import Checkpoint, ObjectSpec, Page, Record, Reject

MAX_JOB_RESTARTS = 3
POLL_FIRST = 0.05
POLL_MAX = 5.0
FINISHED_STATES = frozenset({"JobComplete", "Failed", "Aborted"})


class BulkJobGone(CrmError):
    """The Bulk job of a checkpoint no longer exists or refuses its locator."""


def create_query_job(conn: SalesforceConnection, soql: str, object_name: str) -> dict[str, Any]:
    """Start a Bulk API 2.0 ``query`` job and wait until its results are ready."""
    job = conn.rest(
        f"starting a Bulk API 2.0 job for {object_name}",
        "jobs/query",
        method="POST",
        json={
            "operation": "query",
            "query": soql,
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
        },
    )
    return wait_for_job(conn, job, object_name)


def wait_for_job(
    conn: SalesforceConnection, job: Mapping[str, Any], object_name: str
) -> dict[str, Any]:
    """Poll ``job`` with growing pauses until it finishes; ``CrmError`` if it failed."""
    pause = POLL_FIRST
    current = dict(job)
    while current.get("state") not in FINISHED_STATES:
        conn.sleep(pause)
        pause = min(pause * 2, POLL_MAX)
        current = conn.rest(
            f"waiting for the Bulk API 2.0 job for {object_name}", f"jobs/query/{job['id']}"
        )
    if current["state"] != "JobComplete":
        raise CrmError(
            f"Salesforce Bulk API job for {object_name} ended {current['state']}: "
            f"{current.get('errorMessage') or 'no reason given'}",
            code=str(current["state"]),
        )
    return current


def results_page(
    conn: SalesforceConnection, job_id: str, locator: str | None, max_records: int
) -> tuple[list[str], list[list[str]], str | None]:
    """``(header, rows, next_locator)`` of one results page; ``BulkJobGone`` if it vanished."""
    try:
        text, following = conn.bulk_results(job_id, locator, max_records)
    except CrmError as error:
        if error.status == 404 or error.code in ("INVALID_QUERY_LOCATOR", "INVALIDJOB"):
            raise BulkJobGone(str(error), status=error.status, code=error.code) from error
        raise
    reader = csv.reader(io.StringIO(text))
    header = next(reader, [])
    return header, [row for row in reader if row], following


def bulk_backfill(
    conn: SalesforceConnection, spec: ObjectSpec, since: Checkpoint | None
) -> Iterator[Page]:
    """Backfill pages of ``spec`` through Bulk API 2.0, resuming at ``since``'s locator."""
    converter = RecordConverter(spec)
    state: Mapping[str, Any] = since.state if since is not None else {}
    job_id, locator = state.get("bulk_job"), state.get("locator")
    started, first_started = state.get("started"), state.get("backfill_started")
    restarts = 0
    while True:
        if not job_id:
            job = create_query_job(conn, select_soql(spec, order=False), spec.name)
            job_id, locator = job["id"], None
            started = format_cursor(parse_datetime(job["createdDate"]))
            first_started = first_started or started
        try:
            header, rows, locator = results_page(
                conn, job_id, locator, conn.settings.bulk_page_size
            )
        except BulkJobGone:
            restarts += 1
            if restarts > MAX_JOB_RESTARTS:
                raise
            job_id = None
            continue
        records, rejects = convert_rows(converter, header, rows)
        yield Page(
            records=records,
            rejects=rejects,
            checkpoint=_checkpoint(job_id, locator, str(started), str(first_started)),
        )
        if locator is None:
            return


def _checkpoint(job_id: str, locator: str | None, started: str, first_started: str) -> Checkpoint:
    if locator is not None:
        return Checkpoint(
            phase="backfill",
            state={
                "bulk_job": job_id,
                "locator": locator,
                "started": started,
                "backfill_started": first_started,
            },
        )
    return Checkpoint(
        cursor=minus_one_second(started),
        ids_at_cursor=(),
        phase="incremental",
        state={"deleted_checked": minus_one_second(first_started)},
    )


def convert_rows(
    converter: RecordConverter, header: list[str], rows: list[list[str]]
) -> tuple[list[Record], list[Reject]]:
    """Records and rejects of CSV ``rows`` under ``header``."""
    records: list[Record] = []
    rejects: list[Reject] = []
    for row in rows:
        try:
            records.append(converter.from_csv(header, row))
        except ValueError as error:
            payload = dict(zip(header, row, strict=False))
            record_id = payload.get(KEY_FIELD)
            rejects.append(Reject(to_18(record_id) if record_id else None, str(error), payload))
    return records, rejects


def bulk_ids(conn: SalesforceConnection, spec: ObjectSpec) -> Iterator[list[str]]:
    """Every live id of ``spec`` through one Bulk query job, one batch per results page."""
    job = create_query_job(conn, f"SELECT {KEY_FIELD} FROM {spec.name}", spec.name)
    locator: str | None = None
    while True:
        header, rows, locator = results_page(conn, job["id"], locator, conn.settings.bulk_page_size)
        position = header.index(KEY_FIELD) if KEY_FIELD in header else 0
        batch = [to_18(row[position]) for row in rows]
        if batch:
            yield batch
        if locator is None:
            return
