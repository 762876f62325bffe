"""Reads of one Dataverse table: change tracking, a ``modifiedon`` cursor, ids and fetches.

Tables with change tracking are read through it. A backfill is the first tracked read (every
row, paged with ``odata.maxpagesize``); its last page carries the ``@odata.deltaLink`` that the
next incremental read follows, getting the rows changed since and ``$deletedEntity`` tombstones.
Each page's checkpoint keeps, in ``state``, the ``delta_link`` of the last completed pass and
the ``next_link`` of the pass in progress, so a resumed read continues after the page it stopped
at. An expired delta token (``0x80044352``) starts a resync: a new full tracked read whose first
page asks the engine for a delete sweep (rows deleted while the token was stale are no longer
reported); rows already mirrored come back unchanged and the engine recognises them by content
hash, so nothing is duplicated. A backfill begun afresh (no checkpoint) asks for that sweep too:
the mirror may hold rows from before it (a backfill started again), and a first pass reports
no deletes (the engine skips the sweep while the mirror holds no row).

Tables without change tracking are read by the engine's closed-range cursor
(``mirror.cursor``): ``modifiedon ge <cursor>`` ordered by ``modifiedon`` and key, skipping the
ids already applied at the cursor value; their deletes are found by the delete sweep (also
asked for by a backfill begun afresh). Each page
is a query of its own (the paging cookie holds the last row's sort values), so each page's
answer brings a fence, held once a row at or after it has been delivered. ``modifiedon`` has
whole seconds; the checkpoint only stands on a second that was over before its query began, so
a row changed twice in one second, with a read between, is read again by the next read.

In both modes the checkpoint's ``cursor`` is the highest ``modifiedon`` applied before the
fence and ``ids_at_cursor`` the ids applied at exactly that value, so a table whose change
tracking is turned off continues from it by cursor.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from adapters._kit.cursor import answer_fence, datetime_stamps, unstamped
from adapters.dynamics.client import DataverseConnection
from adapters.dynamics.errors import DeltaTokenExpired
from adapters.dynamics.types import (
    CURSOR_FIELD,
    RecordConverter,
    TableInfo,
    format_datetime,
    parse_datetime,
)
from mirror.cursor import ChangeCursor, StampCodec
from mirror.errors import CrmError
from mirror.types import Checkpoint, ObjectSpec, Page, Record, Reject, Tombstone

DELETED_CONTEXT = "$deletedEntity"
LOOKUP_ANNOTATION = "@Microsoft.Dynamics.CRM.lookuplogicalname"
ID_PAGE_SIZE = 5000
MAX_REMEMBERED_TARGETS = 200_000  # lookup targets kept; the writer asks Dataverse for the rest


STAMPS: StampCodec[datetime] = datetime_stamps(parse_datetime)


class PageBuilder:
    """Sorts the rows of one Web API page into records, tombstones and rejects."""

    def __init__(
        self,
        spec: ObjectSpec,
        cursor: ChangeCursor[datetime],
        *,
        skip_applied: bool,
        targets: dict[str, str] | None = None,
    ) -> None:
        """Rows of ``spec``; ``skip_applied`` drops rows a cursor read already delivered;
        ``targets`` collects the target table of each annotated lookup value."""
        self.spec = spec
        self.cursor = cursor
        self.skip_applied = skip_applied
        self.targets = targets
        self.converter = RecordConverter(spec)
        self._annotated = [
            (f"{name}{LOOKUP_ANNOTATION}", name)
            for name in spec.field_names
            if name.startswith("_") and name.endswith("_value")
        ]

    def build(
        self, rows: Iterable[Mapping[str, Any]], checkpoint_of: Any, needs_sweep: bool = False
    ) -> Page:
        """The page of ``rows``; ``checkpoint_of(cursor)`` gives its checkpoint."""
        records: list[Record] = []
        tombstones: list[Tombstone] = []
        rejects: list[Reject] = []
        for row in rows:
            if str(row.get("@odata.context", "")).endswith(DELETED_CONTEXT):
                tombstones.append(Tombstone(str(row["id"]).lower()))
                continue
            self._take(row, records, rejects)
        return Page(records, checkpoint_of(self.cursor), tombstones, rejects, needs_sweep)

    def _take(self, row: Mapping[str, Any], records: list[Record], rejects: list[Reject]) -> None:
        record_id = str(row.get(self.spec.key) or "").lower()
        try:
            stamp = parse_datetime(str(row[CURSOR_FIELD]))
        except (KeyError, TypeError, ValueError):
            reason = unstamped(CURSOR_FIELD, row.get(CURSOR_FIELD))
            rejects.append(Reject(record_id or None, reason, _payload(row)))
            return
        if self.skip_applied and self.cursor.already_applied(stamp, record_id):
            return
        if self.targets is not None:
            self._note_targets(row)
        try:
            record = self.converter.from_json(row)
        except ValueError as error:
            rejects.append(Reject(record_id or None, str(error), _payload(row)))
            self.cursor.take(stamp, record_id)
            return
        self.cursor.take(stamp, record_id)
        records.append(record)

    def _note_targets(self, row: Mapping[str, Any]) -> None:
        assert self.targets is not None
        for key, name in self._annotated:
            value = row.get(key)
            if value:
                record_id = row.get(name)
                if record_id:
                    if len(self.targets) >= MAX_REMEMBERED_TARGETS:
                        self.targets.clear()
                    self.targets[str(record_id).lower()] = str(value)


def _payload(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith("@")}


def _select(spec: ObjectSpec) -> str:
    return ",".join(spec.field_names)


def _prefer(page_size: int, tracking: bool, annotate: bool = False) -> str:
    preferences = [f"odata.maxpagesize={page_size}"]
    if tracking:
        preferences.insert(0, "odata.track-changes")
    if annotate:
        preferences.append(f'odata.include-annotations="{LOOKUP_ANNOTATION.lstrip("@")}"')
    return ",".join(preferences)


def _query(table: TableInfo, options: Mapping[str, str]) -> str:
    return f"{table.set_name}?" + urlencode(options, safe="$,'():", quote_via=quote)


# --- change tracking ----------------------------------------------------------------------------


def tracked_pages(
    conn: DataverseConnection,
    spec: ObjectSpec,
    table: TableInfo,
    since: Checkpoint | None,
    page_size: int,
    targets: dict[str, str] | None = None,
) -> Iterator[Page]:
    """Pages of a tracked table after ``since`` (see the module docstring); ``targets``
    collects the tables polymorphic lookup values point at."""
    backfill = since is None or since.phase == "backfill"
    state = dict(since.state) if since else {}
    cursor = ChangeCursor.resume(STAMPS, since)
    builder = PageBuilder(spec, cursor, skip_applied=False, targets=targets)
    prefer = _prefer(page_size, True, targets is not None)
    initial = _query(table, {"$select": _select(spec)})
    link, kind, sweep = _starting_link(state, initial, backfill)
    # a pass begun afresh reports no deletes: the mirror may hold records from before it
    sweep = sweep or since is None
    recovering = bool(state.get("next_link"))
    # a pass resumed at a next link began before this read: its fence is unknown, so its rows
    # leave the cursor where it was
    pass_start = not recovering
    while True:
        try:
            body = conn.get_json(link, action=f"reading changes of {spec.name}", prefer=prefer)
        except DeltaTokenExpired:
            if kind == "initial":
                raise
            link, kind, sweep, recovering, pass_start = initial, "initial", True, False, True
            continue
        except CrmError as error:
            if not (recovering and error.status == 400):
                raise
            link, kind, sweep = _starting_link({"delta_link": state.get("delta_link")},
                                               initial, backfill)  # fmt: skip
            recovering, pass_start = False, True
            continue
        if pass_start:
            # a pass is one snapshot, begun no earlier than its first answer's fence
            cursor.began(answer_fence(conn.log))
        recovering = pass_start = False
        next_link, delta_link = body.get("@odata.nextLink"), body.get("@odata.deltaLink")
        if next_link:
            state = {**state, "mode": "track", "next_link": next_link, "pass": kind}
            phase = "backfill" if backfill else "incremental"
        else:
            state = {"mode": "track", "delta_link": delta_link or state.get("delta_link")}
            phase = "incremental"
        page_state = dict(state)
        yield builder.build(body.get("value") or (),
                            lambda t, p=phase, s=page_state: t.checkpoint(p, s), sweep)  # fmt: skip
        sweep = False
        if not next_link:
            return
        link = next_link


def _starting_link(state: Mapping[str, Any], initial: str, backfill: bool) -> tuple[str, str, bool]:
    """``(link, pass kind, needs_sweep)`` to start or resume a tracked read from ``state``."""
    if state.get("next_link"):
        return str(state["next_link"]), str(state.get("pass") or "initial"), False
    if state.get("delta_link") and not backfill:
        return str(state["delta_link"]), "delta", False
    return initial, "initial", not backfill


# --- the modifiedon cursor ---------------------------------------------------------------------


def cursor_pages(
    conn: DataverseConnection,
    spec: ObjectSpec,
    table: TableInfo,
    since: Checkpoint | None,
    page_size: int,
    targets: dict[str, str] | None = None,
) -> Iterator[Page]:
    """Pages of a table read by the closed-range ``modifiedon`` cursor."""
    backfill = since is None or since.phase == "backfill"
    mid_pass = since is not None and bool(since.state.get("next_link"))
    cursor = ChangeCursor.resume(STAMPS, None if mid_pass else since)
    builder = PageBuilder(spec, cursor, skip_applied=True, targets=targets)
    prefer = _prefer(page_size, False, targets is not None)
    options = {"$select": _select(spec), "$orderby": f"{CURSOR_FIELD} asc,{spec.key} asc"}
    if cursor.value is not None:
        options["$filter"] = f"{CURSOR_FIELD} ge {format_datetime(cursor.value)}"
    link = _query(table, options)
    state = {"mode": "cursor"}
    sweep = (mid_pass and not backfill) or since is None
    while True:
        body = conn.get_json(link, action=f"reading {spec.name}", prefer=prefer)
        # every page is a query of its own, after the paging cookie's last row
        cursor.began(answer_fence(conn.log))
        next_link = body.get("@odata.nextLink")
        phase = "backfill" if backfill and next_link else "incremental"
        yield builder.build(body.get("value") or (),
                            lambda t, p=phase: t.checkpoint(p, state), sweep)  # fmt: skip
        sweep = False
        if not next_link:
            return
        link = next_link


# --- ids and fetches ---------------------------------------------------------------------------


def read_ids(conn: DataverseConnection, spec: ObjectSpec, table: TableInfo) -> Iterator[list[str]]:
    """Every live id, one batch per page of up to 5,000, in id order."""
    link = _query(table, {"$select": spec.key, "$orderby": f"{spec.key} asc"})
    while True:
        body = conn.get_json(
            link, action=f"listing {spec.name} ids", prefer=f"odata.maxpagesize={ID_PAGE_SIZE}"
        )
        batch = [str(row[spec.key]).lower() for row in body.get("value") or ()]
        if batch:
            yield batch
        following = body.get("@odata.nextLink")
        if not following:
            return
        link = str(following)
