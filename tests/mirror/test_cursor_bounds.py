"""The change cursor's boundaries (``mirror.cursor``): the fence and the checkpoint at, just
before and just after each comparison they make."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mirror.cursor import AnswerTime, ChangeCursor, StampCodec, fence_of, handover
from mirror.types import Checkpoint

CODEC: StampCodec[int] = StampCodec(int, str)
SECOND = timedelta(seconds=1)
DATE = datetime(2030, 1, 1, 12, 0, 10, tzinfo=UTC)


def test_a_negative_round_trip_does_not_move_the_start_later() -> None:
    assert AnswerTime(DATE, timedelta(seconds=-3)).earliest_start() == DATE
    assert AnswerTime(DATE, timedelta(seconds=2)).earliest_start() == DATE - 2 * SECOND


def test_the_fence_is_floored_to_the_resolution_after_the_margin() -> None:
    answer = AnswerTime(DATE + timedelta(milliseconds=900), timedelta(milliseconds=100))
    assert fence_of(answer, SECOND) == DATE
    assert fence_of(answer, SECOND, SECOND) == DATE - SECOND
    assert fence_of(answer, timedelta(milliseconds=10)) == DATE + timedelta(milliseconds=800)
    late = AnswerTime(DATE + timedelta(milliseconds=999), timedelta(0))
    assert fence_of(late, SECOND) == DATE


def test_the_fence_moves_up_only_until_a_row_reaches_it() -> None:
    cursor = ChangeCursor(CODEC)
    assert (cursor.fence, cursor.held) == (None, False)
    cursor.began(None)
    assert cursor.fence is None
    cursor.began(10)
    cursor.began(8)
    cursor.began(None)
    assert cursor.fence == 10
    cursor.began(12)
    assert cursor.fence == 12
    cursor.take(11, "a")  # before the fence: still catching up
    assert (cursor.held, cursor.value, cursor.ids) == (False, 11, ("a",))
    cursor.take(12, "b")  # at the fence: held
    cursor.began(20)
    assert (cursor.fence, cursor.held, cursor.value, cursor.ids) == (12, True, 11, ("a",))


def test_without_a_fence_no_row_moves_the_checkpoint() -> None:
    cursor = ChangeCursor(CODEC, 5, ["x"])
    cursor.take(6, "a")
    assert (cursor.value, cursor.ids, cursor.held) == (5, ("x",), True)
    assert (cursor.position, cursor.position_ids) == (6, ("a",))


def test_rows_at_one_stamp_gather_and_an_older_one_moves_nothing() -> None:
    cursor = ChangeCursor(CODEC)
    cursor.began(100)
    cursor.take(5, "a")
    cursor.take(5, "b")
    cursor.take(5, "a")
    cursor.take(4, "c")  # older than the position: a re-delivery, nothing moves
    assert (cursor.value, cursor.ids) == (5, ("a", "b"))
    assert (cursor.position, cursor.position_ids) == (5, ("a", "b"))
    cursor.take(6, "d")
    assert (cursor.value, cursor.ids, cursor.position_ids) == (6, ("d",), ("d",))


def test_the_position_runs_ahead_of_the_held_checkpoint() -> None:
    cursor = ChangeCursor(CODEC, 3, ["a"])
    cursor.began(5)
    cursor.take(3, "b")
    cursor.take(7, "c")
    cursor.take(7, "d")
    cursor.take(6, "e")
    assert (cursor.value, cursor.ids) == (3, ("a", "b"))
    assert (cursor.position, cursor.position_ids) == (7, ("c", "d"))


def test_a_cursor_from_the_start_ignores_ids_and_skips_nothing() -> None:
    cursor = ChangeCursor(CODEC, None, ["a"])
    assert (cursor.ids, cursor.position_ids, cursor.position) == ((), (), None)
    assert not cursor.already_applied(0, "a")
    assert ChangeCursor.resume(CODEC, None).value is None
    assert ChangeCursor.resume(CODEC, Checkpoint(None, ("a",))).ids == ()
    resumed = ChangeCursor.resume(CODEC, Checkpoint("7", ("a", "b")))
    assert (resumed.value, resumed.ids, resumed.position, resumed.position_ids) == (
        7,
        ("a", "b"),
        7,
        ("a", "b"),
    )
    assert resumed.already_applied(7, "b") and not resumed.already_applied(8, "b")
    assert not resumed.already_applied(6, "a")


def test_the_skip_set_is_the_one_queried_from_until_a_restart() -> None:
    cursor = ChangeCursor(CODEC, 3, ["a"])
    cursor.began(10)
    cursor.take(3, "b")
    assert not cursor.already_applied(3, "b")
    cursor.restart()
    assert cursor.already_applied(3, "b") and cursor.already_applied(3, "a")


def test_a_checkpoint_carries_the_phase_a_copy_of_the_state_and_the_ids() -> None:
    state = {"k": 1}
    cursor = ChangeCursor(CODEC)
    assert cursor.checkpoint("backfill", state) == Checkpoint(None, (), "backfill", {"k": 1})
    cursor.began(10)
    cursor.take(4, "a")
    saved = cursor.checkpoint("incremental", state)
    state["k"] = 2
    assert saved == Checkpoint("4", ("a",), "incremental", {"k": 1})
    handed = handover(CODEC, 9, "incremental", state)
    state["k"] = 3
    assert handed == Checkpoint("9", (), "incremental", {"k": 2})
