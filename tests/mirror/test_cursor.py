"""The engine's fenced closed-range cursor (``mirror.cursor``) against a model CRM.

The model CRM stamps changes with whole seconds, so many records share a stamp, and answers
reads the two ways CRMs page: a snapshot (the ids fixed when the query began, each row read
with its current values when its page is fetched, as a Salesforce query locator does) or live
keyset paging (every page a query of its own after the last row's sort values, as Dataverse's
paging cookie does). Records change between pages, reads are cut off after any page (the
checkpoint of the last page applied is what a crash leaves), and snapshots are re-queried from
the checkpoint as an expired locator is. A request's answer is dated with the CRM's clock,
whole seconds, when the answer was produced, after the query began; the fence comes from that
date less the request's round trip, exactly as adapters compute it.

Invariants: every saved checkpoint keeps its promise (each record whose newest change is
stamped before the cursor, or at it with its id listed, is in the replica at that version),
cursors never go back, and after a final quiet read every record's newest version has been
delivered and a later read delivers nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from mirror.cursor import AnswerTime, ChangeCursor, StampCodec, fence_of, handover
from mirror.types import Checkpoint

T = TypeVar("T")

SECOND = timedelta(seconds=1)
CODEC: StampCodec[int] = StampCodec(int, str)
BUSY_PAGES = 6  # pages of a read during which the CRM changes (a live read chases changes)


def fence_at(date: int, elapsed: float) -> int | None:
    """The fence of an answer dated ``date`` (whole seconds) after ``elapsed`` seconds."""
    answer = AnswerTime(datetime.fromtimestamp(date, UTC), timedelta(seconds=elapsed))
    fence = fence_of(answer, SECOND)
    return int(fence.timestamp()) if fence is not None else None


Row = tuple[str, int, int]  # id, stamp, version as read


@dataclass
class Crm:
    """Records as ``id -> (stamp, version)``, and a clock in seconds (stamps floor it)."""

    records: dict[str, tuple[int, int]]
    now: float

    def change(self, record_id: str) -> None:
        """A change of ``record_id`` now."""
        _, version = self.records[record_id]
        self.records[record_id] = (math.floor(self.now), version + 1)

    def matching(self, since: int | None) -> list[str]:
        """Ids at or after ``since`` in ``(stamp, id)`` order."""
        rows = sorted((stamp, rid) for rid, (stamp, _) in self.records.items())
        return [rid for stamp, rid in rows if since is None or stamp >= since]

    def after(self, key: tuple[int, str] | None, since: int | None) -> list[tuple[int, str]]:
        """``(stamp, id)`` keys at or after ``since`` and after ``key``, in order."""
        rows = sorted((stamp, rid) for rid, (stamp, _) in self.records.items())
        return [r for r in rows if (since is None or r[0] >= since) and (key is None or r > key)]

    def rows(self, ids: list[str]) -> list[Row]:
        """The records ``ids`` as they are now."""
        return [(rid, *self.records[rid]) for rid in ids]


@dataclass
class Replica:
    """What the mirror holds: ``id -> version`` of the last delivery."""

    versions: dict[str, int] = field(default_factory=dict)
    deliveries: int = 0

    def apply(self, record_id: str, version: int) -> None:
        """Deliver ``record_id`` at ``version``."""
        self.versions[record_id] = version
        self.deliveries += 1


def changes(crm: Crm, data: st.DataObject, busy: bool) -> None:
    """Time passes (often less than a second) and, when ``busy``, some records change."""
    if not busy:
        return
    for _ in range(data.draw(st.integers(0, 3), label="changes")):
        crm.now += data.draw(st.floats(0, 1.5), label="pause")
        crm.change(data.draw(st.sampled_from(sorted(crm.records)), label="changed"))


def request(crm: Crm, data: st.DataObject, busy: bool, handle: Callable[[], T]) -> tuple[T, int]:
    """One request: the CRM handles it (``handle``) a little after it is sent, records may
    change before it dates its answer (whole seconds), and the answer takes a while to
    arrive; the result and the fence the adapter derives."""
    sent = crm.now
    crm.now += data.draw(st.floats(0, 0.6), label="to handle")
    handled = crm.now
    result = handle()
    changes(crm, data, busy)
    crm.now += data.draw(st.floats(0, 0.6), label="to answer")
    date = math.floor(crm.now)
    crm.now += data.draw(st.floats(0, 0.6), label="to receive")
    fence = fence_at(date, crm.now - sent)
    assert fence is not None and fence <= math.floor(handled)
    return result, fence


def take(cursor: ChangeCursor[int], replica: Replica, rows: list[Row]) -> None:
    """Apply a page's rows as an adapter and the engine do."""
    for record_id, stamp, version in rows:
        if not cursor.already_applied(stamp, record_id):
            cursor.take(stamp, record_id)
            replica.apply(record_id, version)


def check_promise(crm: Crm, replica: Replica, checkpoint: Checkpoint) -> None:
    """The checkpoint's promise holds against the CRM as it is now."""
    if checkpoint.cursor is None:
        return
    cursor = int(checkpoint.cursor)
    for record_id, (stamp, version) in crm.records.items():
        if stamp < cursor or (stamp == cursor and record_id in checkpoint.ids_at_cursor):
            assert replica.versions.get(record_id) == version, (record_id, checkpoint)


def snapshot_read(
    crm: Crm, replica: Replica, since: Checkpoint | None, data: st.DataObject, cut: int | None
) -> list[Checkpoint]:
    """A query locator's read: the checkpoints of the pages applied (up to ``cut`` pages; the
    CRM stands still during a read that is not ``cut``, the final quiet ones)."""
    cursor = ChangeCursor.resume(CODEC, since)
    size = data.draw(st.integers(1, 3), label="page size")
    saved: list[Checkpoint] = []

    def query() -> tuple[list[str], list[Row]]:
        ids = crm.matching(cursor.value)
        return ids[size:], crm.rows(ids[:size])

    (ids, rows), fence = request(crm, data, cut is not None, query)
    cursor.began(fence)
    while True:
        take(cursor, replica, rows)
        saved.append(cursor.checkpoint("incremental" if not ids else "backfill", {}))
        check_promise(crm, replica, saved[-1])
        if not ids or (cut is not None and len(saved) >= cut):
            return saved
        busy = cut is not None and len(saved) < BUSY_PAGES
        changes(crm, data, busy)
        if busy and data.draw(st.integers(0, 5), label="locator expires") == 0:
            cursor.restart()
            (ids, rows), fence = request(crm, data, busy, query)
            cursor.began(fence)
        else:
            page, ids = ids[:size], ids[size:]
            rows, _ = request(crm, data, busy, lambda page=page: crm.rows(page))


def keyset_read(
    crm: Crm, replica: Replica, since: Checkpoint | None, data: st.DataObject, cut: int | None
) -> list[Checkpoint]:
    """Live keyset paging: every page a query after the last row the CRM sent."""
    cursor = ChangeCursor.resume(CODEC, since)
    size = data.draw(st.integers(1, 3), label="page size")
    start, key = cursor.value, None
    saved: list[Checkpoint] = []

    def query() -> list[Row]:
        return crm.rows([rid for _, rid in crm.after(key, start)])

    while True:
        busy = cut is not None and len(saved) < BUSY_PAGES
        rows, fence = request(crm, data, busy, query)
        page, more = rows[:size], len(rows) > size
        cursor.began(fence)
        take(cursor, replica, page)
        key = (page[-1][1], page[-1][0]) if page else key
        saved.append(cursor.checkpoint("incremental" if not more else "backfill", {}))
        check_promise(crm, replica, saved[-1])
        if not more or (cut is not None and len(saved) >= cut):
            return saved
        changes(crm, data, busy)


READS = {"snapshot": snapshot_read, "keyset": keyset_read}


@settings(max_examples=200, deadline=None, phases=[p for p in Phase if p is not Phase.explain])
@given(data=st.data(), mode=st.sampled_from(sorted(READS)))
def test_every_newest_version_is_delivered_whatever_the_interruptions(data, mode) -> None:
    read = READS[mode]
    count = data.draw(st.integers(1, 10), label="records")
    stamps = data.draw(st.lists(st.integers(0, 3), min_size=count, max_size=count))
    crm = Crm({f"r{n:02}": (stamp, 0) for n, stamp in enumerate(stamps)}, 3.0)
    crm.now += data.draw(st.floats(0, 0.99), label="start")
    replica = Replica()
    since: Checkpoint | None = None
    for _ in range(data.draw(st.integers(1, 4), label="reads")):
        cut = data.draw(st.integers(1, 8), label="cut after")
        saved = read(crm, replica, since, data, cut)
        for before, after in zip([since, *saved], saved, strict=False):
            if before is not None and before.cursor is not None:
                assert after.cursor is not None and int(after.cursor) >= int(before.cursor)
        since = saved[-1]
        changes(crm, data, True)
    crm.now += 3
    saved = read(crm, replica, since, data, None)
    assert replica.versions == {rid: version for rid, (_, version) in crm.records.items()}
    crm.now += 3
    quiet = Replica(dict(replica.versions))
    read(crm, quiet, saved[-1], data, None)
    assert quiet.deliveries == 0


def test_a_row_at_or_after_the_fence_holds_it_for_the_rest_of_the_read() -> None:
    cursor = ChangeCursor(CODEC)
    cursor.began(10)
    cursor.take(4, "a")
    cursor.began(20)  # still catching up: a later query's fence is taken
    cursor.take(15, "b")
    assert (cursor.value, cursor.ids) == (15, ("b",))
    cursor.take(20, "c")  # a row stamped at the fence: changed after the query began
    cursor.began(30)
    cursor.take(25, "d")
    assert (cursor.value, cursor.ids, cursor.fence, cursor.held) == (15, ("b",), 20, True)
    assert (cursor.position, cursor.position_ids) == (25, ("d",))


def test_a_change_behind_a_keyset_position_is_not_passed_by_the_checkpoint() -> None:
    crm = Crm({"r02": (3, 0), "r05": (10, 0), "r07": (2, 0), "r09": (10, 0)}, 10.2)
    replica = Replica()
    cursor = ChangeCursor(CODEC)

    def page(fence: int, key: tuple[int, str] | None) -> tuple[int, str]:
        cursor.began(fence)
        stamp, record_id = crm.after(key, None)[0]
        cursor.take(stamp, record_id)
        replica.apply(record_id, crm.records[record_id][1])
        return stamp, record_id

    key = page(9, None)  # 10.2 s: r07
    key = page(9, key)  # 10.3 s: r02
    key = page(9, key)  # 10.4 s: r05, stamped in the second its query began
    crm.now = 10.5
    crm.change("r02")  # stamped 10, sorting behind the position (10, r05): this read misses it
    crm.now = 11.5
    crm.change("r07")
    key = page(11, key)  # 12.6 s: r09
    page(12, key)  # 13.6 s: r07
    checkpoint = cursor.checkpoint("incremental", {})
    check_promise(crm, replica, checkpoint)
    assert checkpoint.cursor == "3" and cursor.held and cursor.fence == 9
    resumed = ChangeCursor.resume(CODEC, checkpoint)
    assert "r02" in crm.matching(resumed.value) and not resumed.already_applied(10, "r02")


def test_a_requery_skips_what_the_checkpoint_holds_by_then() -> None:
    cursor = ChangeCursor(CODEC, 3, ["a"])
    cursor.began(10)
    assert cursor.already_applied(3, "a") and not cursor.already_applied(3, "b")
    cursor.take(3, "b")
    cursor.take(5, "c")
    assert not cursor.already_applied(5, "c")
    cursor.restart()
    assert cursor.already_applied(5, "c") and not cursor.already_applied(3, "a")


def test_the_fence_is_the_answers_date_less_the_round_trip_floored() -> None:
    date = datetime(2030, 1, 1, 12, 0, 10, tzinfo=UTC)
    assert fence_of(AnswerTime(date, timedelta(0)), SECOND) == date
    assert fence_of(AnswerTime(date, timedelta(milliseconds=1)), SECOND) == date - SECOND
    assert fence_of(
        AnswerTime(date, timedelta(milliseconds=250)), timedelta(milliseconds=1), SECOND * 5
    ) == date - timedelta(seconds=5, milliseconds=250)
    assert fence_of(None, SECOND) is None


def test_a_handover_reads_the_fence_again_with_nothing_applied_at_it() -> None:
    checkpoint = handover(CODEC, 42, "incremental", {"k": 1})
    assert checkpoint == Checkpoint("42", (), "incremental", {"k": 1})
    cursor = ChangeCursor.resume(CODEC, checkpoint)
    assert cursor.value == 42 and not cursor.already_applied(42, "a")
    assert handover(CODEC, None, "incremental", {}).cursor is None
