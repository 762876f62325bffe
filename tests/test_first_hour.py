"""The first hour: the documented paths work as written (sandbox configs, check, exit codes,
the small commands)."""

from __future__ import annotations

import socket
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

import cli
from adapters.sandbox.lifecycle import SandboxLifecycle
from adapters.sandbox.salesforce import SalesforceSandbox
from cli import main
from mirror import Mirror
from mirror.config import parse_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages printed in full, as on a wide terminal."""
    monkeypatch.setattr(cli, "console", Console(width=250, force_terminal=False))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_demo_toml_logs_in_to_the_salesforce_sandbox(tmp_path: Path) -> None:
    raw = tomllib.loads((ROOT / "config" / "demo.toml").read_text())
    with SalesforceSandbox(tmp_path / "sf.db", size="tiny") as box:
        raw["sources"]["salesforce"]["login_url"] = box.base_url
        raw["store"]["database"] = f"sqlite:///{tmp_path / 'mirror.db'}"
        with Mirror.open(parse_config(raw, environ={})) as mirror:
            assert mirror.check() == {"salesforce": None}


@pytest.mark.parametrize("crm", ["salesforce", "hubspot", "dynamics"])
def test_sandbox_serve_writes_a_config_that_logs_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crm: str
) -> None:
    served: list[Any] = []

    def serve_in_background(self: SandboxLifecycle) -> None:
        served.append(self.start())

    monkeypatch.setattr(SandboxLifecycle, "serve_forever", serve_in_background)
    config = tmp_path / "served.toml"
    args = ["sandbox", "serve", "--crm", crm, "--size", "tiny", "--port", str(free_port())]
    args += ["--db", str(tmp_path / "box.db"), "--write-config", str(config)]
    args += ["--mirror-db", f"sqlite:///{tmp_path / 'mirror.db'}"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    try:
        assert result.exit_code == 0, result.output
        assert config.read_text() in result.output
        checked = CliRunner().invoke(main, ["-c", str(config), "check"], env={})
        assert checked.exit_code == 0, checked.output
        assert "{content}" not in checked.output
    finally:
        for box in served:
            box.stop()
