"""Secrets of the config and the environment never reach a log line or a printed error: not in
the message, not in the formatted exception, through any CLI command or the embedded API."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
from cli.app import redacted_traceback
from mirror import Mirror, MirrorError
from mirror.config import parse_config
from mirror.logs import JsonFormatter

PASSWORD = "hunter2-the-password"
TOKEN = "tok-Zq81-security-token"
CLIENT_SECRET = "env-client-secret-77"


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """Two handlers on the root logger, one plain text and one JSON lines."""
    text, lines = io.StringIO(), io.StringIO()
    handlers = [logging.StreamHandler(text), logging.StreamHandler(lines)]
    handlers[0].setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handlers[1].setFormatter(JsonFormatter())
    root = logging.getLogger()
    for handler in handlers:
        root.addHandler(handler)
    yield text, lines
    for handler in handlers:
        root.removeHandler(handler)


def log_a_failure(secret: str) -> None:
    """What an adapter does when a call fails with a secret in the exception's text."""
    log = logging.getLogger("adapters.example.client")
    try:
        raise RuntimeError(f"POST /token?password={secret} refused")
    except RuntimeError:
        log.exception("token request failed for %s", secret)
        log.warning("retrying", exc_info=True, stack_info=True)


def test_the_embedded_api_redacts_config_and_environment_secrets(
    tmp_path: Path, captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DYNAMICS_CLIENT_SECRET", CLIENT_SECRET)
    config = parse_config({
        "store": {"database": f"sqlite:///{tmp_path / 'm.db'}"},
        "sources": {"salesforce": {"crm": "salesforce", "username": "ann",
                                   "password": PASSWORD, "security_token": TOKEN}},
    })  # fmt: skip
    with Mirror(config):
        for secret in (PASSWORD, TOKEN, CLIENT_SECRET):
            log_a_failure(secret)
    text, lines = (stream.getvalue() for stream in captured)
    assert "refused" in text and "Traceback" in text and "***" in text
    for secret in (PASSWORD, TOKEN, CLIENT_SECRET):
        assert secret not in text and secret not in lines
    assert all("***" in json.loads(line)["exc"] for line in lines.splitlines())


def test_every_cli_command_redacts_logs_and_printed_errors(
    tmp_path: Path, captured, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    config = tmp_path / "prm-mirror.toml"
    config.write_text(
        f"""
[store]
database = "sqlite:///{tmp_path / "mirror.db"}"

[sources.salesforce]
crm = "salesforce"
username = "ann"
password = "${{SF_PASSWORD}}"
"""
    )

    def failing(self: Mirror, source: str | None = None) -> list:
        log_a_failure(PASSWORD)
        raise MirrorError(f"could not log in with {PASSWORD}")

    monkeypatch.setattr(Mirror, "partners", failing)
    result = CliRunner().invoke(
        cli.main, ["-c", str(config), "partners"], env={"SF_PASSWORD": PASSWORD}
    )
    assert result.exit_code == 1 and "could not log in with ***" in result.output
    assert PASSWORD not in result.output
    text, lines = (stream.getvalue() for stream in captured)
    assert "Traceback" in text and PASSWORD not in text and PASSWORD not in lines
    # an uncaught exception's traceback too
    try:
        raise RuntimeError(f"crashed holding {PASSWORD}")
    except RuntimeError as exc:
        redacted_traceback(RuntimeError, exc, exc.__traceback__)
    printed = capsys.readouterr().err
    assert "crashed holding ***" in printed and PASSWORD not in printed
