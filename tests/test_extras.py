"""A plain install (no extras) keeps the whole command line working: a command whose optional
dependencies are missing says which extra to install instead of breaking every command."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

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


def test_the_demo_without_the_sandbox_extra_names_it(tmp_path: Path) -> None:
    # a fresh interpreter in which the sandboxes' parser library is not installed
    without_lark = "import sys; sys.modules['lark'] = None; from cli import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", without_lark, "demo", "--size", "tiny"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "pip install 'prm-mirror[sandbox]'" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_the_installed_portal_command_loads() -> None:
    assert "portal" in main.commands
    assert "needs:" not in (main.commands["portal"].help or "")
