"""``prm-mirror portal``: registered on the command line through the ``prm_mirror.commands``
entry point, it starts the demo (sandbox, mirror, schedule) and serves the app."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask

from cli import main
from prm_portal import command
from prm_portal.runner import Schedule
from sandboxes.kit.configs import config_toml
from sandboxes.salesforce.sandbox import SalesforceSandbox


def test_the_portal_command_is_on_the_command_line() -> None:
    result = CliRunner().invoke(main, ["portal", "--help"])
    assert result.exit_code == 0 and "--demo" in result.output


def test_the_demo_starts_a_mirror_and_serves_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: dict[str, Any] = {}

    def run(app: Flask, host: str, port: int, threads: int) -> None:
        client = app.test_client()
        served.update(port=port, threads=threads, login=client.get("/login").status_code)

    monkeypatch.setattr(command, "serve", run)
    options = ["--port", "8123", "--workdir", str(tmp_path), "--interval", "60", "--threads", "40"]
    result = CliRunner().invoke(main, ["portal", "--demo", *options])
    assert result.exit_code == 0, result.output
    assert served["port"] == 8123 and served["threads"] == 40 and served["login"] == 200
    assert "sign in as" in result.output and (tmp_path / "mirror.db").exists()
    assert "pool_size = 32" in (tmp_path / "prm-mirror.toml").read_text()


def test_a_real_config_is_served_the_same_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: dict[str, Any] = {}
    monkeypatch.setattr(command, "serve", lambda app, *where: served.update(app=app))
    monkeypatch.setenv("PRM_PORTAL_MANAGER_PASSWORD", "from-the-environment")
    monkeypatch.delenv("PRM_PORTAL_PARTNER_PASSWORD", raising=False)
    with SalesforceSandbox(tmp_path / "sf.db", seed=7, size="small") as box:
        config = tmp_path / "prm-mirror.toml"
        config.write_text(config_toml("salesforce", box, f"sqlite:///{tmp_path / 'm.db'}"))
        result = CliRunner().invoke(main, ["-c", str(config), "portal", "--interval", "60"])
    assert result.exit_code == 0, result.output
    assert "partner sign-in is off" in result.output
    client = served["app"].test_client()
    page = client.get("/manager/login").get_data(as_text=True)
    token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    signed = client.post(
        "/manager/login",
        data={"csrf_token": token, "login": "m", "password": "from-the-environment"},
    )
    assert signed.status_code == 302
    missing = CliRunner().invoke(main, ["-c", str(tmp_path / "none.toml"), "portal"])
    assert missing.exit_code != 0


def test_a_failing_round_is_logged_and_the_next_one_runs(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def push(self) -> None:
            from mirror import TransientError

            raise TransientError("the CRM is down")

        def sync(self) -> None:
            raise AssertionError("not reached")

    schedule = Schedule(Broken(), 60)  # type: ignore[arg-type]
    schedule.round()
    schedule.round()
    assert schedule.rounds == 2 and "the CRM is down" in caplog.text


def test_the_command_line_loads_without_the_portal_extra() -> None:
    code = (
        "import sys\n"
        "for name in ('flask', 'flask_wtf', 'wtforms', 'waitress'):\n"
        "    sys.modules[name] = None\n"
        "from click.testing import CliRunner\n"
        "from cli import main\n"
        "result = CliRunner().invoke(main, ['portal', '--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "assert 'flask' not in sys.modules or sys.modules['flask'] is None\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
