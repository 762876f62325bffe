"""The first hour: the documented paths work as written (sandbox configs, check, exit codes,
the small commands)."""

from __future__ import annotations

import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

import cli.output
from cli import main
from mirror import Mirror
from mirror.config import DaemonConfig, load_config, parse_config
from mirror.errors import ConfigError
from mirror.store.database import Store
from sandboxes.kit.lifecycle import SandboxLifecycle
from sandboxes.salesforce.sandbox import SalesforceSandbox

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages printed in full, as on a wide terminal."""
    monkeypatch.setattr(cli.output, "console", Console(width=250, force_terminal=False))


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


@pytest.fixture(scope="module")
def tiny_box(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with SalesforceSandbox(tmp_path_factory.mktemp("fh") / "sf.db", size="tiny") as box:
        yield box


def sandbox_config(folder: Path, login_url: str, extra: str = "", objects: str = "") -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / "prm-mirror.toml"
    path.write_text(
        f"""
{extra}
[store]
database = "sqlite:///{folder / "mirror.db"}"

[sources.salesforce]
crm = "salesforce"
{objects}
login_url = "{login_url}"
username = "{SalesforceSandbox.username}"
password = "{SalesforceSandbox.password}"
security_token = "{SalesforceSandbox.security_token}"
max_retries = 0
"""
    )
    return path


BROKEN = """
[daemon]
sweep_cron = "every night"
metrics_port = 0
"""
BAD_RULES = """
[sources.salesforce.visibility.fields.Opportunity]
visible = ["Name", "Amont"]
[sources.salesforce.visibility.fields.Opportunty]
visible = ["Name"]
"""


def test_check_lists_every_problem_against_the_crm_and_creates_no_store(
    tmp_path: Path, tiny_box: SalesforceSandbox
) -> None:
    objects = 'objects = ["Account", "Acount", "Opportunity"]'
    config = sandbox_config(tmp_path, tiny_box.base_url, BROKEN, objects)
    config.write_text(config.read_text() + BAD_RULES)
    result = CliRunner().invoke(main, ["-c", str(config), "check"], env={})
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "daemon.sweep_cron: 'every night' is not a crontab expression" in text
    assert "objects: 'Acount'" in text
    assert "Opportunity has no field 'Amont'" in text
    assert "no object 'Opportunty'" in text
    assert "config ok" not in text
    assert not (tmp_path / "mirror.db").exists()


def test_check_says_what_it_could_not_check_when_the_crm_is_unreachable(tmp_path: Path) -> None:
    config = sandbox_config(tmp_path, f"http://127.0.0.1:{free_port()}")
    result = CliRunner().invoke(main, ["-c", str(config), "check"], env={})
    assert result.exit_code == 1
    assert "not checked against the CRM" in " ".join(result.output.split())
    assert not (tmp_path / "mirror.db").exists()


def test_check_of_a_sound_config_says_ok(tmp_path: Path, tiny_box: SalesforceSandbox) -> None:
    config = sandbox_config(tmp_path, tiny_box.base_url)
    result = CliRunner().invoke(main, ["-c", str(config), "check"], env={})
    assert result.exit_code == 0, result.output
    assert "config ok" in result.output


def daemon_once(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "-c", str(config), "daemon", "--once"],
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_daemon_once_exit_codes_tell_cron_what_happened(
    tmp_path: Path, tiny_box: SalesforceSandbox
) -> None:
    quiet = "[daemon]\nmetrics_port = 0\n"
    runs = {
        "config": sandbox_config(tmp_path / "a", tiny_box.base_url, BROKEN),
        "one_bad_object": sandbox_config(
            tmp_path / "c", tiny_box.base_url, quiet, 'objects = ["User", "Acount"]'
        ),
        "fine": sandbox_config(tmp_path / "d", tiny_box.base_url, quiet, 'objects = ["User"]'),
    }
    codes = {
        name: CliRunner().invoke(main, ["-c", str(config), "daemon", "--once"], env={}).exit_code
        for name, config in runs.items()
    }
    assert codes == {"config": 2, "one_bad_object": 3, "fine": 0}


def test_daemon_once_against_an_unreachable_crm_exits_4(tmp_path: Path) -> None:
    quiet = "[daemon]\nmetrics_port = 0\n"
    config = sandbox_config(tmp_path, f"http://127.0.0.1:{free_port()}", quiet)
    finished = daemon_once(config)
    assert finished.returncode == 4, finished.stdout + finished.stderr
    assert "failed" in finished.stdout


def test_a_missing_postgres_driver_is_a_config_error_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(ConfigError, match=r"prm-mirror\[postgres\]"):
        Store("postgresql+psycopg://prm@127.0.0.1:1/prm")


def test_the_container_publishes_metrics_it_serves_and_runs_where_it_can_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines = (ROOT / "deploy" / "Containerfile").read_text().splitlines()
    directives = [line.split(None, 1) for line in lines if line and not line.startswith("#")]
    env = dict(d[1].split("=", 1) for d in directives if d[0] == "ENV")
    user = [d[1] for d in directives if d[0] == "USER"][-1]
    workdir = [d[1] for d in directives if d[0] == "WORKDIR"][-1]
    exposed = [d[1] for d in directives if d[0] == "EXPOSE"]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    example = load_config(
        ROOT / "config" / "example.toml", environ={**env, "SF_USERNAME": "u", "SF_PASSWORD": "p"}
    )
    assert exposed == [str(example.daemon.metrics_port)]
    assert example.daemon.metrics_host == "0.0.0.0" and DaemonConfig().metrics_host == "0.0.0.0"
    assert user != "nobody" and f"--home-dir {workdir} --create-home {user}" in "\n".join(lines)
    assert example.store.database == "sqlite:///prm-mirror.db"  # relative: the working directory


def test_the_container_copies_every_package_the_build_installs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    wanted = {name.split(".")[0] for name in project["packages"]} - {"mirror"}
    wanted |= {"mirror", *project["package-dir"].values()}
    lines = (ROOT / "deploy" / "Containerfile").read_text().splitlines()
    copied = {
        word.rstrip("/")
        for line in lines
        if line.startswith("COPY ")
        for word in line.split()[1:-1]
    }
    assert wanted <= copied, sorted(wanted - copied)


def test_the_systemd_unit_may_write_where_the_default_store_lands() -> None:
    unit = dict(
        line.split("=", 1)
        for line in (ROOT / "deploy" / "prm-mirror.service").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert unit["ProtectSystem"] == "strict"
    assert unit["WorkingDirectory"] == f"/var/lib/{unit['StateDirectory']}"


def test_version_and_short_help() -> None:
    version = CliRunner().invoke(main, ["--version"])
    assert version.exit_code == 0 and version.output.startswith("prm-mirror, version ")
    for args in (["-h"], ["sync", "-h"]):
        shown = CliRunner().invoke(main, args)
        assert shown.exit_code == 0 and "Usage:" in shown.output


def test_init_writes_the_config_named_by_c(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.toml"
    result = CliRunner().invoke(main, ["-c", str(target), "init"], env={})
    assert result.exit_code == 0, result.output
    assert target.read_text() == (ROOT / "config" / "example.toml").read_text()


def test_status_lists_objects_never_synced_and_backfill_says_it_reads_changes(
    tmp_path: Path, tiny_box: SalesforceSandbox
) -> None:
    config = sandbox_config(tmp_path, tiny_box.base_url, "", 'objects = ["User", "Product2"]')
    invoke = CliRunner().invoke
    assert invoke(main, ["-c", str(config), "backfill", "--object", "User"], env={}).exit_code == 0
    status = invoke(main, ["-c", str(config), "status"], env={})
    assert status.exit_code == 0, status.output
    rows = {
        name: line
        for line in status.output.splitlines()
        for name in ("salesforce.Product2", "salesforce.User")
        if name in line
    }
    assert "never synced" in rows["salesforce.Product2"]
    assert "incremental" in rows["salesforce.User"]
    again = invoke(main, ["-c", str(config), "backfill", "--object", "User"], env={})
    assert again.exit_code == 0
    text = " ".join(again.output.split())
    assert "salesforce.User: backfilled already" in text and "--restart" in text
