"""A plain install (no extras) keeps the whole command line working: a command whose optional
dependencies are missing says which extra to install instead of breaking every command."""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint

import click
import pytest
from click.testing import CliRunner

from cli import main
from cli.plugins import plugin_command


def test_a_plugin_command_that_cannot_import_names_its_extra() -> None:
    entry = EntryPoint("portal", "no_such_package.command:portal", "prm_mirror.commands")
    command = plugin_command(entry)
    group = click.Group(commands={"portal": command})
    result = CliRunner().invoke(group, ["portal", "--demo"])
    assert result.exit_code == 1
    assert "pip install 'prm-mirror[portal]'" in result.output
    assert "no_such_package" in result.output


def test_a_plugin_entry_that_is_not_a_command_is_refused() -> None:
    entry = EntryPoint("odd", "cli.output:plain", "prm_mirror.commands")
    with pytest.raises(TypeError, match="not a click command"):
        plugin_command(entry)


def test_the_demo_without_the_sandbox_extra_names_it(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in [m for m in sys.modules if m == "lark" or m.startswith("sandboxes.salesforce")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "lark", None)
    result = CliRunner().invoke(main, ["demo", "--size", "tiny"])
    assert result.exit_code == 1, result.output
    assert "pip install 'prm-mirror[sandbox]'" in result.output
    assert "Traceback" not in result.output


def test_the_installed_portal_command_loads() -> None:
    assert "portal" in main.commands
    assert "needs:" not in (main.commands["portal"].help or "")
