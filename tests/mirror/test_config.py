"""Config loading: env references, every problem reported at once, secrets kept out of errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirror.config import load_config, parse_config, redact
from mirror.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prm-mirror.toml"
    path.write_text(text)
    return path


def test_env_references_are_resolved(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[sources.salesforce]
crm = "salesforce"
username = "${SF_USER}"
password = "${SF_PASS}"
security_token = "${SF_TOKEN:-}"
""",
    )
    config = load_config(path, environ={"SF_USER": "ann@acme.test", "SF_PASS": "s3cret"})
    source = config.sources["salesforce"]
    assert (source.username, source.password, source.security_token) == (
        "ann@acme.test",
        "s3cret",
        "",
    )
    assert config.store.database == "sqlite:///prm-mirror.db"


def test_every_problem_is_reported_at_once_without_secrets(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[store]
database = "mysql://nope"
[sync]
prefetch_pages = 99
[sources.salesforce]
crm = "salesforce"
auth = "client_credentials"
consumer_key = "${MISSING_KEY}"
pasword = "typo"
[sources.Bad-Name]
crm = "zoho"
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    problems = "\n".join(caught.value.problems)
    for expected in (
        "store.database",
        "sync.prefetch_pages",
        "MISSING_KEY is not set",
        "pasword: unknown option",
        "sources.Bad-Name.crm",
    ):
        assert expected in problems
    assert len(caught.value.problems) >= 5


def test_missing_credentials_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"sources": {"sf": {"crm": "salesforce", "auth": "password"}}})
    assert any("username: required" in p for p in caught.value.problems)
    assert any("password: required" in p for p in caught.value.problems)


def test_a_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="prm-mirror init"):
        load_config(tmp_path / "absent.toml")


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[store\n"))


def test_redact_hides_secret_values() -> None:
    shown = redact({"username": "ann", "password": "s3cret", "session_id": None})
    assert shown == {"username": "ann", "password": "***", "session_id": None}
