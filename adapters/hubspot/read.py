"""Reads of one HubSpot object: backfill by list paging, incremental by keyset search.

- Backfill: listed in id order, 100 a call, ``read_page`` a page, resumable at ``after``. The
  first page's answer fixes the listing's fence (its ``Date`` less the request's time): every
  record changed before it is listed at that version or a newer one, so the last page's
  checkpoint starts the incremental reads at the fence with no id applied at it (the engine's
  ``handover``: nothing changed during the backfill is lost, nothing older re-read).
- Incremental: keyset search on the last-modified property (``hubspot_cursor``) with the
  engine's fenced cursor, so any number of changes since the checkpoint, past the
  10,000-result cap, are all read, and a change that shares a millisecond with the read, or
  reaches the search index late, is read again by the next one.
- Deletes: search never returns archived records, so each incremental read lists the recycle
  bin (``archived=true``) and turns records archived since the last check into tombstones
  (``archived_checked``, ``archived_recent`` and ``archived_listed`` in the state). A backfill
  lists the bin before its first page and sends every record in it as a tombstone with that
  page (but those the page lists live: restored since), so a backfill started again over a
  mirror that holds records archived since is not left with them live. HubSpot
  keeps archived records 90 days; a check older than that asks the engine for an id sweep.
  Hard deletes (GDPR) are found by that sweep.
- Merges: a survivor's ``hs_merged_object_ids`` turns each merged id into a tombstone pointing
  at the survivor.
- Associations: association fields are read with every page. Changing an association does
  not move HubSpot's last-modified values, so objects with association fields are also
  re-listed in full every ``association_sweep_seconds`` (records the engine already holds
  unchanged cost it a hash comparison), resumable at ``sweep_after``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters._kit.cursor import unstamped
from adapters._kit.paging import Progress
from adapters.hubspot.assoc import Associations
from adapters.hubspot.catalog import Catalog
from adapters.hubspot.client import HubSpotConnection, Reply
from adapters.hubspot.cursor import STAMPS, Keyset, format_cursor_ms, list_fence, split_full_page
from adapters.hubspot.settings import HubSpotSettings
from adapters.hubspot.types import KEY, MERGED_IDS, RecordConverter, parse_instant, to_ms
from mirror.cursor import handover
from mirror.types import Checkpoint, ObjectSpec, Page, Record, Reject, Tombstone

RECYCLE_BIN = timedelta(days=90)
BACKFILL_KEYS = ("after", "backfill_cursor", "backfill_ids", "backfill_started")
SWEEP_KEYS = ("sweep_after", "sweep_started")


@dataclass
class PageBuilder:
    """Turns HubSpot objects into one page's records, tombstones and rejects."""

    spec: ObjectSpec
    converter: RecordConverter
    associations: Associations
    records: list[Record] = field(default_factory=list)
    tombstones: list[Tombstone] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)

    def take(self, objects: Sequence[Mapping[str, Any]]) -> None:
        """Convert ``objects``, fill their association fields, note merged ids."""
        raw: dict[str, Mapping[str, Any]] = {}
        taken: list[Record] = []
        for obj in objects:
            record_id = str(obj.get("id"))
            props = obj.get("properties") or {}
            try:
                record = self.converter.from_json(obj)
            except ValueError as error:
                self.rejects.append(Reject(record_id, str(error), dict(props)))
                continue
            taken.append(record)
            raw[record_id] = props
            for merged in str(props.get(MERGED_IDS) or "").split(";"):
                if merged.strip() and merged.strip() != record_id:
                    self.tombstones.append(Tombstone(merged.strip(), merged_into=record_id))
        if taken and self.associations.fields:
            self.associations.fill(taken, raw)
        self.records.extend(taken)

    def page(
        self, checkpoint: Checkpoint, extra: Sequence[Tombstone] = (), needs_sweep: bool = False
    ) -> Page:
        """The page of everything taken so far, then start a new one."""
        page = Page(
            records=self.records,
            checkpoint=checkpoint,
            tombstones=[*extra, *self.tombstones],
            rejects=self.rejects,
            needs_sweep=needs_sweep,
        )
        self.records, self.tombstones, self.rejects = [], [], []
        return page


class Reader:
    """Reads one object of one portal."""

    def __init__(
        self,
        conn: HubSpotConnection,
        catalog: Catalog,
        settings: HubSpotSettings,
        spec: ObjectSpec,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """A reader of ``spec`` from the portal behind ``conn``."""
        self.conn = conn
        self.catalog = catalog
        self.settings = settings
        self.spec = spec
        self.api_type = catalog.api_type(spec.name)
        self.associations = Associations(conn, catalog, spec.name)
        self.converter = RecordConverter(spec, self.associations.names)
        self.properties = [*self.converter.property_names(), *self.associations.extra_properties()]
        self.wall_clock = wall_clock

    def _builder(self) -> PageBuilder:
        return PageBuilder(self.spec, self.converter, self.associations)

    def _now(self) -> str:
        return datetime.fromtimestamp(self.wall_clock(), UTC).isoformat()

    # -- backfill -------------------------------------------------------------------------

    def backfill(self, since: Checkpoint | None) -> Iterator[Page]:
        """Every live record by list paging; the last page starts the incremental reads."""
        state = (
            dict(since.state) if since is not None and since.state.get("backfill_started") else {}
        )
        binned: list[Tombstone] = []
        if not state:
            # the mirror may hold records from before (a restarted backfill): those in the
            # recycle bin now are tombstones, and later archives the incremental reads find
            binned, _, archived = self.archived_since({})
            state = {"backfill_started": self._now(), **archived}
        builder = self._builder()
        after = state.get("after")
        while True:
            replies, after = self._list_pages(after)
            if "backfill_cursor" not in state:
                fence = list_fence(replies[0].answered)
                state["backfill_cursor"] = format_cursor_ms(fence) if fence is not None else None
            builder.take([obj for reply in replies for obj in reply.get("results") or ()])
            # a record listed live was restored after the bin was listed: the listing wins
            listed = {str(record.get(self.spec.key)) for record in builder.records}
            extra, binned = [t for t in binned if t.id not in listed], []
            if after:
                checkpoint = Checkpoint(None, (), "backfill", {**state, "after": after})
                yield builder.page(checkpoint, extra)
                continue
            final = {
                "archived_checked": state.get("archived_checked"),
                "archived_recent": state.get("archived_recent") or [],
                "archived_listed": state.get("archived_listed"),
                "assoc_swept": state.get("backfill_started"),
            }
            cursor = state.get("backfill_cursor")
            fence = STAMPS.parse(str(cursor)) if cursor else None
            yield builder.page(handover(STAMPS, fence, "incremental", final), extra)
            return

    def _list_pages(self, after: str | None) -> tuple[list[Reply], str | None]:
        """List replies from ``after`` up to ``settings.read_page`` records; the next ``after``."""
        replies: list[Reply] = []
        listed = 0
        while True:
            reply = self._list(after)
            replies.append(reply)
            listed += len(reply.get("results") or ())
            after = _next_after(reply)
            if not after or listed + self.settings.list_limit > self.settings.read_page:
                return replies, after

    def _list(self, after: str | None, archived: bool = False, ids_only: bool = False) -> Reply:
        properties = [KEY] if ids_only else self.properties
        if archived:
            properties = [KEY]
        return self.conn.list_page(
            self.api_type, properties, after, self.settings.list_limit, archived
        )

    # -- incremental ----------------------------------------------------------------------

    def incremental(self, since: Checkpoint) -> Iterator[Page]:
        """Changes after ``since``: searched changes, recycle-bin deletes, association sweep."""
        state = {k: v for k, v in since.state.items() if k not in BACKFILL_KEYS}
        tombstones, needs_sweep, following = self.archived_since(state)
        state.update(following)
        keyset = Keyset.from_checkpoint(since)
        first = True
        for builder, last in self._search_pages(keyset):
            sweep_due = last and self._sweep_due(state)
            phase = "incremental"
            checkpoint = keyset.checkpoint(phase, state)
            extra = tombstones if first else ()
            yield builder.page(checkpoint, extra, needs_sweep and first)
            first = False
            if sweep_due:
                yield from self._association_sweep(keyset, state)

    def _search_pages(self, keyset: Keyset) -> Iterator[tuple[PageBuilder, bool]]:
        """Pages of changed records after ``keyset``; the flag marks the last one."""
        prop = self.spec.cursor_field
        limit = self.settings.search_limit
        tie_at: int | None = None
        while True:
            builder = self._builder()
            if tie_at is not None:
                body = self._search_body(keyset.tie_filters(prop, tie_at), KEY, limit)
            else:
                body = self._search_body(keyset.advance_filters(prop), prop, limit)
            reply = self.conn.search(self.api_type, body)
            keyset.began(reply.answered)
            results = reply.get("results") or []
            stamped = [(self._stamp(obj), obj) for obj in results]
            full = len(results) >= limit
            if tie_at is None and full:
                older, newest, all_tied = split_full_page(
                    (s, o) for s, o in stamped if s is not None
                )
                if all_tied:
                    tie_at = newest
                    continue
                stamped = [(self._stamp(o), o) for o in older]
            progress = Progress((keyset.value, len(keyset.ids)))
            self._take(builder, keyset, stamped)
            progress.check(
                (keyset.value, len(keyset.ids)),
                full,
                lambda: (
                    f"HubSpot search of {self.spec.name} did not move past "
                    f"{format_cursor_ms(keyset.value or 0)}: its answers contradict its filters"
                ),
            )
            if tie_at is not None and not full:
                tie_at = None
                yield builder, False
                continue
            done = not full and tie_at is None
            yield builder, done
            if done:
                return

    def _search_body(self, groups: list[dict[str, Any]], sort: str, limit: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
            "properties": self.properties,
            "limit": limit,
        }
        if groups:
            body["filterGroups"] = groups
        return body

    def _stamp(self, obj: Mapping[str, Any]) -> int | None:
        value = (obj.get("properties") or {}).get(self.spec.cursor_field)
        try:
            return to_ms(parse_instant(str(value))) if value else None
        except ValueError:
            return None

    def _take(
        self, builder: PageBuilder, keyset: Keyset, stamped: list[tuple[int | None, Any]]
    ) -> None:
        ordered = sorted(
            ((s, o) for s, o in stamped if s is not None), key=lambda p: (p[0], int(p[1]["id"]))
        )
        for obj in (o for s, o in stamped if s is None):
            prop = self.spec.cursor_field
            value = (obj.get("properties") or {}).get(prop)
            builder.rejects.append(
                Reject(
                    str(obj.get("id")),
                    unstamped(prop, value),
                    dict(obj.get("properties") or {}),
                )
            )
        for stamp, obj in ordered:
            keyset.advance(stamp, str(obj["id"]))
        builder.take([obj for _, obj in ordered])

    # -- deletes --------------------------------------------------------------------------

    def archived_since(
        self, state: Mapping[str, Any]
    ) -> tuple[list[Tombstone], bool, dict[str, Any]]:
        """Tombstones for records archived since the last check, whether the recycle bin no
        longer reaches back that far, and the state of the next check.

        The next check starts a little before the newest archive seen (by how long this
        listing took, plus a second), which no record archived behind the listing can
        precede; the archives already reported in that overlap are remembered by id and
        instant (``archived_recent``), so none is reported twice.
        """
        checked = state.get("archived_checked")
        since_ms = to_ms(parse_instant(checked)) if checked else None
        reported = set(state.get("archived_recent") or ())
        started = time.monotonic()
        seen: list[tuple[str, int | None]] = []
        after: str | None = None
        while True:
            reply = self._list(after, archived=True)
            for obj in reply.get("results") or ():
                archived_at = obj.get("archivedAt")
                stamp = to_ms(parse_instant(str(archived_at))) if archived_at else None
                seen.append((str(obj["id"]), stamp))
            after = _next_after(reply)
            if not after:
                break
        tombstones = [
            Tombstone(i, deleted_at=datetime.fromtimestamp(s / 1000, UTC) if s else None)
            for i, s in seen
            if (since_ms is None or s is None or s >= since_ms) and f"{i}@{s}" not in reported
        ]
        newest = max((s for _, s in seen if s is not None), default=since_ms)
        margin = int((time.monotonic() - started) * 1000) + 1000
        mark = None if newest is None else max(newest - margin, since_ms or 0)
        recent = sorted(
            f"{i}@{s}" for i, s in seen if mark is not None and s is not None and s >= mark
        )
        following = {
            "archived_checked": format_cursor_ms(mark) if mark is not None else None,
            "archived_recent": recent,
            "archived_listed": self._now(),
        }
        return tombstones, self._bin_passed(state.get("archived_listed")), following

    def _bin_passed(self, listed: str | None) -> bool:
        if not listed:
            return False
        oldest_kept = self.wall_clock() - RECYCLE_BIN.total_seconds()
        return datetime.fromisoformat(listed).timestamp() < oldest_kept

    # -- association sweep ------------------------------------------------------------------

    def sweeps_associations(self) -> bool:
        """Whether this object's records carry association fields to sweep."""
        return bool(self.associations.linked)

    def _sweep_due(self, state: Mapping[str, Any]) -> bool:
        if not self.sweeps_associations():
            return False
        if state.get("sweep_after"):
            return True
        swept = state.get("assoc_swept")
        if not swept:
            return True
        age = self.wall_clock() - datetime.fromisoformat(str(swept)).timestamp()
        return age >= self.settings.association_sweep_seconds

    def _association_sweep(self, keyset: Keyset, state: dict[str, Any]) -> Iterator[Page]:
        """Re-list every record (association fields fresh), the cursor standing still."""
        started = state.get("sweep_started") or self._now()
        after = state.get("sweep_after")
        builder = self._builder()
        while True:
            replies, after = self._list_pages(after)
            builder.take([obj for reply in replies for obj in reply.get("results") or ()])
            if after:
                progress = {**state, "sweep_after": after, "sweep_started": started}
                yield builder.page(keyset.checkpoint("incremental", progress))
                continue
            for key in SWEEP_KEYS:
                state.pop(key, None)
            state["assoc_swept"] = started
            yield builder.page(keyset.checkpoint("incremental", state))
            return

    # -- ids and fetch --------------------------------------------------------------------

    def ids(self) -> Iterator[list[str]]:
        """Every live id, one batch per list page."""
        after: str | None = None
        while True:
            reply = self._list(after, ids_only=True)
            batch = [str(obj["id"]) for obj in reply.get("results") or ()]
            if batch:
                yield batch
            after = _next_after(reply)
            if not after:
                return

    def fetch(self, ids: Sequence[str]) -> list[Record]:
        """The current records ``ids`` (missing ones left out), 100 per batch read."""
        builder = self._builder()
        for start in range(0, len(ids), 100):
            chunk = ids[start : start + 100]
            body = {"properties": self.properties, "inputs": [{"id": i} for i in chunk]}
            reply = self.conn.batch(self.api_type, "read", body)
            builder.take([r for r in reply.get("results") or () if str(r.get("id")) in chunk])
        return builder.records


def _next_after(reply: Reply) -> str | None:
    after = ((reply.get("paging") or {}).get("next") or {}).get("after")
    return str(after) if after else None
