"""`prm-mirror status` shows each stream's state, replay position, last event, lag and inbox;
`prm-mirror check` lists a stream the adapter cannot run with the config's other problems."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from cli import main
from mirror.types import StreamEvent, StreamGap
from tests.adapters.fourth.adapter import CRM
from tests.adapters.fourth.crm import seeded
from tests.mirror.stream.world import deliver, registered, world


def config_file(tmp_path: Path, address: str, kind: str, port: int = 9465) -> Path:
    path = tmp_path / "prm-mirror.toml"
    path.write_text(
        f'[store]\ndatabase = "sqlite:///{tmp_path}/mirror.db"\n'
        f"[daemon]\nmetrics_port = 0\nwebhook_port = {port}\n"
        f'[sources.tiny]\ncrm = "{CRM}"\nurl = "{address}"\napi_key = "tiny-key"\n'
        f'stream = true\nstream_kind = "{kind}"\n'
    )
    return path


def test_status_shows_each_stream(tmp_path: Path) -> None:
    with world(f"sqlite:///{tmp_path}/mirror.db", "listen") as w:
        w.crm.update("deals", w.deal(), {"name": "told"})
        deliver(w)
        w.mirror.record_stream("tiny", [StreamEvent("deals", changed=(w.deal(1),))])
        w.mirror.record_stream("tiny", [StreamGap("deals", "overflow")])
        config = config_file(tmp_path, w.crm.address, "listen")
        result = CliRunner().invoke(main, ["-c", str(config), "status"], terminal_width=250)
        assert result.exit_code == 0, result.output
        [line] = [line for line in result.output.splitlines() if "│ tiny " in line]
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        assert cells[0:3] == ["tiny", "gap", "1"]
        assert cells[5:7] == ["2", "2/0"]
        result = CliRunner().invoke(main, ["-c", str(config), "status", "--json"])
        [stream] = json.loads(result.output)["streams"]
        assert (stream["state"], stream["position"], stream["waiting"]) == ("gap", "1", 2)
        assert (stream["detail"], stream["polls_requested"]) == ("overflow", ["deals"])


def test_check_lists_a_stream_the_adapter_cannot_run(tmp_path: Path) -> None:
    crm = seeded(partners=1, deals_each=1)
    try:
        with registered():
            config = config_file(tmp_path, crm.address, "")
            result = CliRunner().invoke(main, ["-c", str(config), "check"])
            assert result.exit_code != 0
            assert "sources.tiny.stream: the tinycrm adapter has no change stream" in result.output
            config = config_file(tmp_path, crm.address, "webhook", port=0)
            result = CliRunner().invoke(main, ["-c", str(config), "check"])
            assert "daemon.webhook_port: 0, but sources.tiny" in result.output
            config = config_file(tmp_path, crm.address, "listen")
            result = CliRunner().invoke(main, ["-c", str(config), "check"])
            assert result.exit_code == 0, result.output
    finally:
        crm.stop()
