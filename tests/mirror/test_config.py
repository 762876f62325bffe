"""Config loading: env references, every problem reported at once (the engine's and each
adapter's settings model's), secrets kept out of errors, adapters found by their CRM's name."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from mirror import Mirror
from mirror.config import MirrorConfig, load_config, parse_config, redact, secret_values
from mirror.config_check import check_config
from mirror.errors import ConfigError
from mirror.registry import register_adapter, unregister_adapter


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


def test_an_unknown_crm_lists_the_installed_adapters() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"sources": {"crm": {"crm": "zoho"}}})
    [problem] = caught.value.problems
    assert "sources.crm.crm: no adapter for CRM 'zoho' (available: " in problem
    assert {"salesforce", "hubspot", "dynamics"} <= set(problem[:-1].split(": ")[-1].split(", "))


def test_the_engine_keeps_its_keys_and_hands_the_rest_to_the_adapter() -> None:
    source = {"crm": "hubspot", "access_token": "pat-1", "objects": ["deals"], "page_size": 50}
    config = parse_config({"sources": {"hs": source}})
    assert config.sources["hs"].objects == ["deals"]
    assert config.sources["hs"].adapter_settings() == {"access_token": "pat-1", "page_size": 50}


def test_secrets_are_the_ones_each_adapter_declares() -> None:
    source = {"crm": "hubspot", "access_token": "pat-1", "host": "http://127.0.0.1:9"}
    database = "postgresql+psycopg://ann:pw@db/mirror"
    config = parse_config({"store": {"database": database}, "sources": {"hs": source}})
    assert secret_values(config) == ["pat-1", "pw"]


def test_a_bare_factory_registers_as_an_adapter_with_nothing_to_check(tmp_path: Path) -> None:
    def factory(source: str, settings: Mapping[str, Any]) -> Any:
        return (source, dict(settings))

    register_adapter("bare", factory)
    try:
        store = {"database": f"sqlite:///{tmp_path}/mirror.db"}
        config = parse_config({"store": store, "sources": {"b": {"crm": "bare", "anything": 1}}})
        with Mirror(config) as mirror:
            assert mirror.adapter("b") == ("b", {"anything": 1})
    finally:
        unregister_adapter("bare")
    with pytest.raises(ConfigError, match="no adapter for CRM 'bare'"):
        parse_config({"sources": {"b": {"crm": "bare"}}})


def test_check_asks_the_adapter_plugin_for_the_settings_problems() -> None:
    unchecked = MirrorConfig.model_validate(
        {"sources": {"sf": {"crm": "salesforce", "pasword": "x"}, "z": {"crm": "zoho"}}}
    )
    report = check_config(unchecked, lambda name, settings: pytest.fail("built an adapter"))
    problems = "\n".join(report.problems)
    assert "sources.sf: salesforce.pasword: unknown option" in problems
    assert "sources.sf: salesforce.username: required" in problems
    assert "sources.z.crm: no adapter for CRM 'zoho'" in problems


def test_the_store_keeps_as_many_connections_open_as_configured(tmp_path: Path) -> None:
    def factory(source: str, settings: Mapping[str, Any]) -> Any:
        return source

    register_adapter("pooled", factory)
    try:
        store = {"database": f"sqlite:///{tmp_path}/m.db", "pool_size": 24, "max_overflow": 3}
        config = parse_config({"store": store, "sources": {"p": {"crm": "pooled"}}})
        with Mirror(config) as mirror:
            pool: Any = mirror.store.engine.pool
            assert (pool.size(), pool._max_overflow) == (24, 3)
    finally:
        unregister_adapter("pooled")
    with pytest.raises(ConfigError, match="pool_size"):
        parse_config({"store": {"pool_size": 0}, "sources": {}})
