"""Starting out: ``init`` writes a documented config, ``check`` validates one against the CRM."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.markup import escape

from cli import output
from cli.app import config_path, exit_on_errors, main
from mirror import (
    ConfigError,
    build_adapter,
    check_config,
    data_dir,
    load_config,
    redacted,
    register_secrets,
    secret_values,
)

EXAMPLE_CONFIG = data_dir("config") / "example.toml"


@main.command()
@click.option("--path", default=None, help="Where to write it (default: the -c config file).")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.pass_context
def init(ctx: click.Context, path: str | None, force: bool) -> None:
    """Write a documented config file to start from."""
    target = Path(path or config_path(ctx))
    if target.exists() and not force:
        raise click.ClickException(f"{target} exists; pass --force to overwrite it")
    target.write_text(EXAMPLE_CONFIG.read_text(encoding="utf-8"), encoding="utf-8")
    output.console.print(
        f"wrote {target}: set the SF_* environment variables, then `prm-mirror check`"
    )


@main.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """Validate the config, log in to every CRM source and check the config against what it
    describes; lists every problem at once and writes nothing.

    Exits 0 when all is well, 2 when the config has problems, 1 when a source cannot log in.
    """
    with exit_on_errors():
        config = load_config(config_path(ctx))
        register_secrets(secret_values(config))
        report = check_config(
            config, lambda name, s: build_adapter(s.crm, name, s.adapter_settings())
        )
    for source, problem in report.logins.items():
        if problem is None:
            output.console.print(
                f"[green]ok[/green]   {source}: logged in, objects and fields checked"
            )
        else:
            output.console.print(
                f"[red]fail[/red] {source}: {escape(redacted(problem))}\n"
                f"     (could not log in: its objects and fields were not checked against the CRM)"
            )
    if report.problems:
        output.console.print(escape(str(ConfigError(report.problems))), style="red")
        sys.exit(2)
    if report.ok:
        output.console.print("config ok")
    else:
        output.console.print("config ok as far as it could be checked without the CRM")
        sys.exit(1)
