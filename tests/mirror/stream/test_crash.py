"""A process killed while it applies the stream's inbox loses nothing: the inbox rows stay until
the transaction that applies them commits, and a restart applies them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mirror import Mirror
from mirror.types import StreamEvent
from tests.mirror.stream.crash_child import changed_crm
from tests.mirror.stream.world import config_for, registered

ROOT = Path(__file__).resolve().parents[3]


def test_a_kill_inside_the_apply_loses_no_event(db_url: str, tmp_path: Path) -> None:
    crm = changed_crm()
    deals = sorted(crm.records["deals"])[:3]
    try:
        with registered(), Mirror(config_for(db_url, crm, "listen")) as mirror:
            mirror.sync()
            for deal in deals:
                crm.update("deals", deal, {"name": "newer"})
            # the mirror is behind: what the child fetches is its own CRM's "changed" values
            with mirror.store.transaction() as conn:
                table = mirror.store.mirrored("tiny", "deals").table
                conn.execute(table.update().values(name="stale", _hash=None, _modstamp=None))
            mirror.record_stream("tiny", [StreamEvent("deals", changed=tuple(deals))])
            signal_file = tmp_path / "in-transaction"
            child = subprocess.Popen(
                [sys.executable, "-m", "tests.mirror.stream.crash_child", db_url, str(signal_file)],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            try:
                deadline = time.monotonic() + 60
                while not signal_file.exists():
                    assert child.poll() is None, "the child ended before its transaction"
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
                os.kill(child.pid, signal.SIGKILL)
            finally:
                child.wait(timeout=30)
            assert child.returncode == -signal.SIGKILL
            assert mirror.stream_waiting() == {("tiny", "deals"): 3}
            with mirror.store.engine.connect() as conn:
                names = {r.name for r in conn.execute(table.select()) if r.id in deals}
            assert names == {"stale"}
            [applied] = mirror.apply_stream("tiny")
            assert (applied.taken, applied.written) == (3, 3)
            assert mirror.stream_waiting() == {}
            with mirror.store.engine.connect() as conn:
                names = {r.name for r in conn.execute(table.select()) if r.id in deals}
            assert names == {"newer"}
    finally:
        crm.stop()
