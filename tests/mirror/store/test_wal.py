"""SQLite checkpoints run by the store's own thread, not by the committing writer."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from mirror.store.database import Store
from mirror.store.wal import BACKSTOP_PAGES, database_file


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:////tmp/mirror.db", "/tmp/mirror.db"),
        ("sqlite://", None),
        ("sqlite:///:memory:", None),
        ("sqlite:///file:mem?mode=memory&uri=true", None),
        ("postgresql+psycopg://u@h/db", None),
    ],
)
def test_only_a_database_file_gets_a_checkpoint_thread(url: str, expected: str | None) -> None:
    assert database_file(make_url(url)) == expected


def wait_for(condition, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_commits_leave_the_checkpoint_to_the_store_thread(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'mirror.db'}")
    try:
        assert store.checkpointer is not None
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == BACKSTOP_PAGES
        done = store.checkpointer.checkpoints
        with store.transaction() as conn:
            conn.execute(text("CREATE TABLE blobs (id INTEGER PRIMARY KEY, body BLOB)"))
            # well past SQLite's default of 1,000 pages before a commit checkpoints itself
            rows = [{"id": i, "body": bytes(4000)} for i in range(3000)]
            conn.execute(text("INSERT INTO blobs VALUES (:id, :body)"), rows)
        assert wait_for(lambda: store.checkpointer.checkpoints > done)
        # the database file alone, without its log, holds what was committed
        alone = tmp_path / "alone.db"
        shutil.copyfile(tmp_path / "mirror.db", alone)
        with sqlite3.connect(alone) as copy:
            assert copy.execute("SELECT count(*) FROM blobs").fetchone() == (3000,)
    finally:
        store.close()
    assert not store.checkpointer._thread.is_alive()
