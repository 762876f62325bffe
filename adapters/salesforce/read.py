"""REST reads of one Salesforce object: paged SOQL with closed-range cursors, getDeleted, ids.

Backfill and incremental reads are the same query, ``SELECT <fields> FROM X WHERE
SystemModstamp >= c ORDER BY SystemModstamp, Id``, one ``Page`` per REST batch, always through
``queryAll``: a record deleted or merged away since the mirror took it (before a backfill was
resumed or started again, or since an earlier read) comes back as a tombstone instead of
silently staying in the mirror. The checkpoint is the engine's fenced
closed-range cursor (``mirror.cursor``, ``salesforce_cursor``): a record changed while the pages
go by comes back in its old place with its new stamp, at or after the query's fence, and
leaves the checkpoint where it was. An expired query locator re-queries from the checkpoint
and the read goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from adapters._kit.cursor import unstamped
from adapters._kit.paging import Restarts
from adapters.salesforce.client import SalesforceConnection
from adapters.salesforce.cursor import Cursor, query_fence, where
from adapters.salesforce.errors import QueryLocatorExpired
from adapters.salesforce.types import (
    KEY_FIELD,
    RecordConverter,
    format_cursor,
    parse_datetime,
    to_18,
)
from mirror.errors import CrmError
from mirror.types import Checkpoint, ObjectSpec, Page, Record, Reject, Tombstone

MAX_LOCATOR_RESTARTS = 5
DELETED_WINDOW_CODES = frozenset({"INVALID_REPLICATION_DATE"})


@dataclass
class PageBuilder:
    """Sorts the rows of one batch into records, tombstones and rejects, advancing the cursor
    (when there is one)."""

    spec: ObjectSpec
    converter: RecordConverter
    cursor: Cursor | None = None
    records: list[Record] = field(default_factory=list)
    tombstones: list[Tombstone] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)

    def add(self, row: Mapping[str, Any]) -> None:
        """Take one REST row (``IsDeleted`` rows become tombstones)."""
        record_id = to_18(str(row.get(KEY_FIELD) or ""))
        try:
            stamp = parse_datetime(row[self.spec.cursor_field])
        except (KeyError, TypeError, ValueError):
            field = self.spec.cursor_field
            self._reject(record_id, unstamped(field, row.get(field)), row)
            return
        if self.cursor is not None:
            if self.cursor.already_applied(stamp, record_id):
                return
            self.cursor.take(stamp, record_id)
        if row.get("IsDeleted") is True:
            master = row.get("MasterRecordId")
            self.tombstones.append(
                Tombstone(
                    record_id, deleted_at=stamp, merged_into=to_18(master) if master else None
                )
            )
            return
        try:
            self.records.append(self.converter.from_json(row))
        except ValueError as error:
            self._reject(record_id, str(error), row)

    def _reject(self, record_id: str, reason: str, row: Mapping[str, Any]) -> None:
        payload = {name: value for name, value in row.items() if name != "attributes"}
        self.rejects.append(Reject(record_id or None, reason, payload))

    def page(
        self,
        checkpoint: Checkpoint,
        extra_tombstones: list[Tombstone] | None = None,
        needs_sweep: bool = False,
        total: int | None = None,
    ) -> Page:
        """The page of the rows added so far, then start a new one."""
        seen = {tombstone.id for tombstone in self.tombstones}
        seen.update(record[KEY_FIELD] for record in self.records)
        extra = [t for t in extra_tombstones or () if t.id not in seen]
        page = Page(
            records=self.records,
            checkpoint=checkpoint,
            tombstones=extra + self.tombstones,
            rejects=self.rejects,
            needs_sweep=needs_sweep,
            total=total,
        )
        self.records, self.tombstones, self.rejects = [], [], []
        return page


@dataclass
class DeletedCheck:
    """What getDeleted said since the last check."""

    tombstones: list[Tombstone] = field(default_factory=list)
    needs_sweep: bool = False
    checked_until: str | None = None


def select_soql(spec: ObjectSpec, where: str = "", order: bool = True) -> str:
    """``SELECT <every field> FROM X [WHERE ...] [ORDER BY cursor, Id]``."""
    soql = f"SELECT {', '.join(spec.field_names)} FROM {spec.name}"
    if where:
        soql += f" WHERE {where}"
    if order:
        soql += f" ORDER BY {spec.cursor_field}, {KEY_FIELD}"
    return soql


def rest_pages(
    conn: SalesforceConnection,
    spec: ObjectSpec,
    cursor: Cursor,
    *,
    phase: str,
    include_deleted: bool,
    state: Mapping[str, Any],
    deleted_check: Callable[[datetime | None], DeletedCheck] | None = None,
    first_answer: Mapping[str, Any] | None = None,
) -> Iterator[Page]:
    """Pages of ``spec`` from the cursor's checkpoint on; the last one is phase ``incremental``.

    ``deleted_check``, if given, runs once the first batch has been taken in and gets the
    newest cursor value seen (the org's clock is at least that); its tombstones and sweep flag
    go on the first page and its ``checked_until`` into every checkpoint's ``deleted_checked``.
    ``first_answer`` is the query's first answer when the caller has already asked it (through
    ``first_query``, which gave the cursor the query's fence).
    """
    builder = PageBuilder(spec, RecordConverter(spec), cursor)

    def again() -> Mapping[str, Any]:
        cursor.restart()
        answer = conn.query(
            select_soql(spec, where(cursor, spec.cursor_field)),
            include_deleted=True,
            action=f"re-reading {spec.name}",
        )
        cursor.began(query_fence(conn))
        return answer

    first = first_answer or first_query(conn, spec, cursor, include_deleted)
    extra: list[Tombstone] = []
    sweep = False
    for number, result in enumerate(answers(conn, spec, first, again)):
        for row in result["records"]:
            builder.add(row)
        if number == 0 and deleted_check is not None:
            deleted = deleted_check(cursor.position)
            extra, sweep = deleted.tombstones, deleted.needs_sweep
            if deleted.checked_until:
                state = {**state, "deleted_checked": deleted.checked_until}
        checkpoint = cursor.checkpoint("incremental" if is_last(result) else phase, state)
        yield builder.page(checkpoint, extra, sweep, total_of(result))
        extra, sweep = [], False


def total_of(answer: Mapping[str, Any]) -> int | None:
    """How many records the whole query holds (every page of its answer repeats it)."""
    total = answer.get("totalSize")
    return int(total) if total is not None else None


def is_last(answer: Mapping[str, Any]) -> bool:
    """Whether a query answer is the query's last page."""
    return bool(answer.get("done", True)) or not answer.get("nextRecordsUrl")


def answers(
    conn: SalesforceConnection,
    spec: ObjectSpec,
    first: Mapping[str, Any],
    again: Callable[[], Mapping[str, Any]],
) -> Iterator[Mapping[str, Any]]:
    """A query's answers page by page, following ``nextRecordsUrl``. When the query locator
    has expired, ``again`` asks anew from where the pages taken so far end (read when it is
    called, so after the caller has taken in every answer yielded before)."""
    result = first
    restarts = Restarts(MAX_LOCATOR_RESTARTS)
    while True:
        yield result
        if is_last(result):
            return
        try:
            result = conn.query_more(result["nextRecordsUrl"], action=f"paging {spec.name}")
        except QueryLocatorExpired:
            if not restarts.allowed():
                raise
            result = again()


def first_query(
    conn: SalesforceConnection, spec: ObjectSpec, cursor: Cursor, include_deleted: bool
) -> Mapping[str, Any]:
    """The first answer of the object's paged query from the cursor's checkpoint on (its
    ``totalSize`` says how many records the whole query holds); the cursor takes the query's
    fence from it."""
    answer = conn.query(
        select_soql(spec, where(cursor, spec.cursor_field)),
        include_deleted=include_deleted,
        action=f"reading {spec.name}",
    )
    cursor.began(query_fence(conn))
    return answer


def check_deleted(
    conn: SalesforceConnection,
    spec: ObjectSpec,
    since: Checkpoint,
    clock_at_least: datetime | None = None,
) -> DeletedCheck:
    """Ids getDeleted reports since ``deleted_checked`` (default: the cursor), as tombstones.

    The window ends at the org's clock: its last ``Date`` header, or ``clock_at_least`` when
    that is later. getDeleted works on whole minutes and needs more than one, so a check less
    than a minute after the last one is skipped. ``needs_sweep`` is set when Salesforce no
    longer remembers deletes that far back.
    """
    start_text = since.state.get("deleted_checked") or since.cursor
    if not start_text:
        return DeletedCheck()
    start = parse_datetime(start_text)
    end = conn.server_now()
    if clock_at_least is not None and clock_at_least > end:
        end = clock_at_least
    if _floor_minute(end) - _floor_minute(start) <= timedelta(minutes=1):
        return DeletedCheck(checked_until=start_text)
    try:
        answer = conn.call(
            f"listing deleted {spec.name} records",
            lambda sf: getattr(sf, spec.name).deleted(start, end),
        )
    except CrmError as error:
        if error.code in DELETED_WINDOW_CODES:
            return DeletedCheck(needs_sweep=True, checked_until=format_cursor(end))
        raise
    return _deleted_check(answer, start)


def _floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _deleted_check(answer: Mapping[str, Any], start: datetime) -> DeletedCheck:
    tombstones = [
        Tombstone(
            to_18(entry["id"]),
            deleted_at=parse_datetime(entry["deletedDate"]) if entry.get("deletedDate") else None,
        )
        for entry in answer.get("deletedRecords") or ()
    ]
    earliest = answer.get("earliestDateAvailable")
    needs_sweep = bool(earliest) and parse_datetime(str(earliest)) > start
    latest = answer.get("latestDateCovered")
    checked_until = format_cursor(parse_datetime(latest)) if latest else format_cursor(start)
    return DeletedCheck(tombstones, needs_sweep, checked_until)


def rest_ids(conn: SalesforceConnection, spec: ObjectSpec) -> Iterator[list[str]]:
    """Every live id of ``spec``, one batch per REST page, in id order."""
    last: str | None = None
    restarts = Restarts(MAX_LOCATOR_RESTARTS)
    while True:
        where = f" WHERE {KEY_FIELD} > '{last}'" if last else ""
        result = conn.query(
            f"SELECT {KEY_FIELD} FROM {spec.name}{where} ORDER BY {KEY_FIELD}",
            action=f"listing {spec.name} ids",
        )
        try:
            while True:
                batch = [to_18(row[KEY_FIELD]) for row in result["records"]]
                if batch:
                    last = batch[-1]
                    yield batch
                if result.get("done", True) or not result.get("nextRecordsUrl"):
                    return
                result = conn.query_more(result["nextRecordsUrl"], action=f"paging {spec.name} ids")
        except QueryLocatorExpired:
            if not restarts.allowed():
                raise
