"""Bulk API 2.0 reads: large backfills and id lists, one page per results locator.

A backfill of a large object runs one ``queryAll`` job (a snapshot as of the job's creation) and
downloads its CSV results ``bulk_page_size`` rows at a time; its deleted rows (the recycle bin,
merge losers) become tombstones, so a backfill started again over a mirror that holds them does
not leave them live. Each page's checkpoint holds the job
id and the next locator, so a crash resumes at that locator; when the job is gone (404, or its
locator is refused) the backfill starts a new job, remembering when the first one started. The
last page hands over to incremental reads at the job's ``createdDate`` minus one second (the
engine's ``handover``: every change before it delivered, nothing applied at it), with
``deleted_checked`` at the first job's start so deletes made during the backfill are found.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, TypeVar

from adapters._kit.paging import Restarts
from adapters.salesforce.client import SalesforceConnection
from adapters.salesforce.cursor import RESOLUTION, STAMPS
from adapters.salesforce.read import select_soql
from adapters.salesforce.types import (
    KEY_FIELD,
    RecordConverter,
    format_cursor,
    minus_one_second,
    parse_datetime,
    to_18,
)
from mirror.cursor import handover
from mirror.errors import CrmError
from mirror.types import Checkpoint, ObjectSpec, Page, Record, Tombstone

T = TypeVar("T")

MAX_JOB_RESTARTS = 3
POLL_FIRST = 0.05
POLL_MAX = 5.0
FINISHED_STATES = frozenset({"JobComplete", "Failed", "Aborted"})


class BulkJobGone(CrmError):
    """The Bulk job of a checkpoint no longer exists or refuses its locator."""


def create_query_job(
    conn: SalesforceConnection, soql: str, object_name: str, operation: str = "query"
) -> dict[str, Any]:
    """Start a Bulk API 2.0 ``operation`` job (``query``, or ``queryAll`` with deleted rows)
    and wait until its results are ready."""
    job = conn.rest(
        f"starting a Bulk API 2.0 job for {object_name}",
        "jobs/query",
        method="POST",
        json={
            "operation": operation,
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
    conn: SalesforceConnection,
    job_id: str,
    locator: str | None,
    max_records: int,
    consume: Callable[[list[str], Iterator[list[str]]], T],
) -> tuple[T, str | None]:
    """``(consume(header, rows), next_locator)`` of one results page, its rows handed over
    as they download; ``BulkJobGone`` if the job vanished."""

    def page(reader: Iterator[list[str]]) -> T:
        return consume(next(reader, []), (row for row in reader if row))

    try:
        return conn.bulk_results(job_id, locator, max_records, page)
    except CrmError as error:
        if error.status == 404 or error.code in ("INVALID_QUERY_LOCATOR", "INVALIDJOB"):
            raise BulkJobGone(str(error), status=error.status, code=error.code) from error
        raise


def bulk_backfill(
    conn: SalesforceConnection,
    spec: ObjectSpec,
    since: Checkpoint | None,
    total: int | None = None,
) -> Iterator[Page]:
    """Backfill pages of ``spec`` through Bulk API 2.0, resuming at ``since``'s locator."""
    converter = RecordConverter(spec)
    state: Mapping[str, Any] = since.state if since is not None else {}
    job_id, locator = state.get("bulk_job"), state.get("locator")
    started, first_started = state.get("started"), state.get("backfill_started")
    restarts = Restarts(MAX_JOB_RESTARTS)
    while True:
        if not job_id:
            soql = select_soql(spec, order=False)
            job = create_query_job(conn, soql, spec.name, operation="queryAll")
            job_id, locator = job["id"], None
            started = format_cursor(parse_datetime(job["createdDate"]))
            first_started = first_started or started
        try:
            (records, rejects), locator = results_page(
                conn, job_id, locator, conn.settings.bulk_page_size, converter.page
            )
        except BulkJobGone:
            if not restarts.allowed():
                raise
            job_id = None
            continue
        live, tombstones = split_deleted(spec, records)
        yield Page(
            records=live,
            tombstones=tombstones,
            rejects=rejects,
            checkpoint=_checkpoint(job_id, locator, str(started), str(first_started)),
            total=total,
        )
        if locator is None:
            return


def split_deleted(spec: ObjectSpec, rows: list[Record]) -> tuple[list[Record], list[Tombstone]]:
    """``rows`` of a ``queryAll`` job as live records and tombstones (``IsDeleted`` rows; a
    merge loser's points at its ``MasterRecordId``)."""
    live: list[Record] = []
    tombstones: list[Tombstone] = []
    for row in rows:
        if row.get("IsDeleted") is not True:
            live.append(row)
            continue
        master = row.get("MasterRecordId")
        stamp = row.get(spec.cursor_field)
        tombstones.append(
            Tombstone(
                to_18(str(row[KEY_FIELD])),
                deleted_at=stamp if isinstance(stamp, datetime) else None,
                merged_into=to_18(str(master)) if master else None,
            )
        )
    return live, tombstones


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
    # the last job's snapshot holds every record as of some moment after its createdDate: a
    # change made after it is stamped no earlier (a second's margin for the hosts' clocks)
    fence = parse_datetime(started) - RESOLUTION
    return handover(
        STAMPS, fence, "incremental", {"deleted_checked": minus_one_second(first_started)}
    )


def bulk_ids(conn: SalesforceConnection, spec: ObjectSpec) -> Iterator[list[str]]:
    """Every live id of ``spec`` through one Bulk query job, one batch per results page."""
    job = create_query_job(conn, f"SELECT {KEY_FIELD} FROM {spec.name}", spec.name)
    locator: str | None = None
    while True:
        batch, locator = results_page(
            conn, job["id"], locator, conn.settings.bulk_page_size, _ids_of
        )
        if batch:
            yield batch
        if locator is None:
            return


def _ids_of(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    position = header.index(KEY_FIELD) if KEY_FIELD in header else 0
    return [to_18(row[position]) for row in rows]
