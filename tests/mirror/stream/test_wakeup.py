"""The pusher's wake-up (``mirror.push.wakeup``): this process's portal writes are told once
committed (never when rolled back), other processes' are found by NOTIFY (PostgreSQL) or by
looking at the outbox (SQLite), and a burst within the window is pushed once."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select

from mirror.portal.writes import apply_update
from mirror.push import wakeup
from mirror.push.wakeup import PushWaker
from mirror.store.tables import mirror_outbox
from tests.mirror.stream.world import World, world


def edit(w: World, amount: float) -> None:
    partner = w.mirror.partners()[0]["id"]
    view = w.mirror.as_partner(partner)
    deal = view.select("deals", limit=1)[0]["id"]
    view.update("deals", deal, {"amount": amount})


def entries(w: World) -> int:
    with w.mirror.store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(mirror_outbox)).scalar_one())


def test_a_committed_write_is_told_after_its_commit_and_a_rolled_back_one_never(
    db_url: str,
) -> None:
    with world(db_url, "") as w:
        told: list[tuple[str, int]] = []
        stop = wakeup.subscribe(lambda source: told.append((source, entries(w))))
        try:
            edit(w, 5.0)
            assert told == [("tiny", 1)]
            partner = w.mirror.partners()[0]["id"]
            view = w.mirror.as_partner(partner)
            deal = view.select("deals", limit=1)[0]["id"]
            with pytest.raises(ZeroDivisionError), w.mirror.store.transaction() as conn:
                mirrored = w.mirror.store.mirrored("tiny", "deals")
                apply_update(conn, mirrored, deal, {"amount": 6.0}, partner, None)
                raise ZeroDivisionError
            assert entries(w) == 1
            edit(w, 7.0)
            assert told == [("tiny", 1), ("tiny", 2)]
        finally:
            stop()


def test_another_processs_write_wakes_the_pusher_once(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With this process's own news switched off, only NOTIFY (PostgreSQL) or the outbox
    look (SQLite) can find the writes; a burst within the window is pushed once."""
    monkeypatch.setattr(wakeup, "subscribe", lambda _callback: lambda: None)
    with world(db_url, "") as w:
        pushed: list[tuple[str, float]] = []
        stop = threading.Event()
        waker = PushWaker(
            w.mirror.store,
            lambda source: pushed.append((source, time.monotonic())),
            ["tiny"],
            stop,
            window=0.3,
            poll=0.05,
        ).start()
        try:
            time.sleep(0.3)  # the listener is connected
            started = time.monotonic()
            edit(w, 11.0)
            edit(w, 12.0)
            deadline = time.monotonic() + 5
            while not pushed and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.5)
            assert [source for source, _ in pushed] == ["tiny"]
            assert 0.3 <= pushed[0][1] - started < 1.5
        finally:
            stop.set()
            waker.close()


def test_an_embedding_application_pushes_on_write_without_the_daemon(db_url: str) -> None:
    """``Mirror.push_on_write``: a portal edit reaches the CRM within the wake-up window with
    no push scheduled, and nothing is pushed once it is stopped."""
    with world(db_url, "") as w:
        stop = w.mirror.push_on_write()
        try:
            edit(w, 21.0)
            deadline = time.monotonic() + 10
            while w.outbox()[-1].status != "done" and time.monotonic() < deadline:
                time.sleep(0.02)
            assert w.outbox()[-1].status == "done"
            assert 21.0 in {r.get("amount") for r in w.crm.records["deals"].values()}
        finally:
            stop()
        edit(w, 22.0)
        time.sleep(1.0)
        assert w.outbox()[-1].status == "pending"
