"""``demo`` and ``sandbox serve``: a seeded local CRM to try prm-mirror on, found through the
``prm_mirror.demos`` entry point (each CRM's demo package publishes one), so the command line
offers whichever are installed and names none itself."""

from __future__ import annotations

import tempfile
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click

from cli import output
from cli.app import exit_on_errors, main
from cli.plugins import needs_extra

DEMO_GROUP = "prm_mirror.demos"


@cache
def installed_demos() -> dict[str, Any]:
    """The installed demos by CRM name, in the order their packages list them."""
    loaded = [entry.load() for entry in entry_points(group=DEMO_GROUP)]
    return {demo.crm: demo for demo in sorted(loaded, key=lambda d: (d.order, d.crm))}


def default_crm() -> str | None:
    """The demo to run when none is named: the one marked default, else the first listed."""
    demos = installed_demos()
    marked = [name for name, demo in demos.items() if demo.default]
    listed = marked or list(demos)
    return listed[0] if listed else None


def crm_option(help_text: str) -> Any:
    """``--crm``, choosing among the installed demos."""
    return click.option(
        "--crm",
        type=click.Choice(list(installed_demos())),
        default=default_crm(),
        show_default=True,
        help=help_text,
    )


def size_value(size: str) -> str | int:
    """A size name (tiny|small|medium|large) or a number of opportunities."""
    return int(size) if size.isdigit() else size


@main.group()
def sandbox() -> None:
    """Local CRM sandboxes that speak the real wire protocols."""


@sandbox.command("serve")
@crm_option("Which CRM the sandbox speaks.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--size",
    default="small",
    show_default=True,
    help="tiny|small|medium|large, or a number of opportunities.",
)
@click.option("--seed", default=7, show_default=True)
@click.option("--db", "db_path", default=None, help="The sandbox's own SQLite file.")
@click.option(
    "--write-config",
    "config_out",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Also write the config that mirrors this sandbox to this file.",
)
@click.option(
    "--mirror-db",
    default="sqlite:///prm-mirror-demo.db",
    show_default=True,
    help="The mirror's database in the printed config.",
)
def sandbox_serve(
    crm: str,
    port: int,
    size: str,
    seed: int,
    db_path: str | None,
    config_out: str | None,
    mirror_db: str,
) -> None:
    """Serve a seeded sandbox CRM in the foreground (Ctrl-C stops it).

    It prints the config that mirrors it (credentials included: they are the sandbox's own).
    """
    demo = installed_demos()[crm]
    path = db_path or f"prm-sandbox-{crm}-{size}-{seed}.db"
    output.console.print(f"generating or opening {path} ...")
    try:
        box = demo.serve(path, seed, size_value(size), port)
    except ImportError as exc:
        raise needs_extra("sandbox", exc) from exc
    text = demo.config_for(box, mirror_db)
    click.echo(f"{crm} sandbox on {box.base_url}; a config that mirrors it:\n")
    click.echo(text)
    if config_out:
        Path(config_out).write_text(text, encoding="utf-8")
        click.echo(f"wrote {config_out}: `prm-mirror -c {config_out} sync` mirrors it")
    box.serve_forever()


@main.command()
@click.option("--db", "db_path", default="prm-mirror-demo.db", show_default=True)
@click.option("--size", default="small", show_default=True, help="Sandbox size.")
@click.option("--seed", default=7, show_default=True)
@crm_option("Which CRM the demo mirrors.")
def demo(db_path: str, size: str, seed: int, crm: str) -> None:
    """Start a seeded sandbox CRM, mirror it into SQLite and show what happened."""
    with exit_on_errors(), tempfile.TemporaryDirectory(prefix="prm-demo-") as workdir:
        run = installed_demos()[crm].run
        try:
            run(output.console, Path(db_path), Path(workdir), size_value(size), seed)
        except ImportError as exc:
            raise needs_extra("sandbox", exc) from exc
