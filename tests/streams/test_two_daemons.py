"""Two daemons on one host with a webhook stream: the second finds the webhook port taken, keeps
running (applying what the first stores), and takes the port over when the first stops, so
deliveries go on reaching the mirror."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench.common import ROOT
from bench.stream_rig import StreamRig, wait_for


def test_a_second_daemon_waits_for_the_webhook_port_and_takes_it_over(tmp_path: Path) -> None:
    with StreamRig("hubspot", tmp_path, sync_interval=3600.0) as rig:
        second = subprocess.Popen(
            [sys.executable, "-m", "cli", "-c", str(rig.config_path), "daemon"],
            stdout=(tmp_path / "second.log").open("wb"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        first, rig.process = rig.process, second  # the rig stops the second one at the end
        time.sleep(6.0)
        log = (tmp_path / "second.log").read_text()
        assert second.poll() is None, log
        assert "webhook deliveries not received here" in log

        assert first is not None
        first.terminate()
        first.wait(timeout=30)
        (record_id, _), *_ = rig.records(1)
        applied = rig.stream().applied
        rig.crm_update(record_id, "received by the second daemon")
        field = rig.target.field
        wait_for(lambda: rig.row(record_id).get(field) == "received by the second daemon", 30, "")
        wait_for(lambda: rig.stream().applied > applied, 10, "applied from the stream")
        assert "webhook port taken over" in (tmp_path / "second.log").read_text()
