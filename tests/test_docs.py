"""The docs are held to account: the README's commands and the config reference (the layering:
test_layout.py)."""

from __future__ import annotations

import re
from pathlib import Path

from mirror.config import DaemonConfig, SourceConfig, StoreConfig, SyncConfig, load_config

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(python3 -m venv[^\n]+)\n```", text)


def test_readme_has_the_two_commands_and_ci_runs_the_test_one_exactly() -> None:
    demo, tests = readme_commands()
    assert demo.endswith("prm-mirror demo")
    assert "pytest" in tests
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci


def test_example_config_documents_every_source_option() -> None:
    text = (ROOT / "config" / "example.toml").read_text()
    options = [
        *SourceConfig.model_fields,
        *SyncConfig.model_fields,
        *StoreConfig.model_fields,
        *DaemonConfig.model_fields,
    ]
    for option in options:
        pattern = rf"^#? ?({option} =|\[sources\.\w+\.{option}\])"
        assert re.search(pattern, text, re.MULTILINE), option


def test_example_and_demo_configs_load(monkeypatch) -> None:
    monkeypatch.setenv("SF_USERNAME", "u")
    monkeypatch.setenv("SF_PASSWORD", "p")
    assert load_config(ROOT / "config" / "example.toml").sources["salesforce"].username == "u"
    assert load_config(ROOT / "config" / "demo.toml").sources["salesforce"].login_url
