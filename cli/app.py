"""The ``prm-mirror`` command group and what every command shares: the config path, the logging
set up once for all commands, opening the mirror, and turning engine errors into exit codes."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from cli import output
from mirror import ConfigError, Mirror, MirrorError, configure_logging, redacted

LEVELS = {0: logging.WARNING, 1: logging.INFO}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="prm-mirror", prog_name="prm-mirror")
@click.option(
    "-c",
    "--config",
    default=lambda: os.environ.get("PRM_MIRROR_CONFIG", "prm-mirror.toml"),
    show_default="prm-mirror.toml or $PRM_MIRROR_CONFIG",
    help="Config file.",
)
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Log what the engine does: -v each run and retry, -vv every request and page.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=lambda: os.environ.get("PRM_MIRROR_LOG_FORMAT"),
    help="Log lines on stderr as text or JSON (default: text; the daemon: its config's).",
)
@click.pass_context
def main(ctx: click.Context, config: str, verbose: int, log_format: str | None) -> None:
    """Mirror a CRM into a local database, partner by partner, both ways."""
    level = LEVELS.get(verbose, logging.DEBUG)
    configure_logging("json" if log_format == "json" else "text", level)
    sys.excepthook = redacted_traceback
    ctx.ensure_object(dict)
    ctx.obj.update(config=config, log_level=level, log_format=log_format)


def config_path(ctx: click.Context) -> str:
    """The config file this invocation reads (``-c``, ``$PRM_MIRROR_CONFIG`` or the default)."""
    return str(ctx.obj["config"])


def redacted_traceback(kind: type[BaseException], error: BaseException, trace: Any) -> None:
    """An uncaught exception's traceback, printed with the config's secrets masked."""
    text = "".join(traceback.format_exception(kind, error, trace))
    sys.stderr.write(redacted(text))


@contextmanager
def open_mirror(ctx: click.Context) -> Iterator[Mirror]:
    """The mirror the config describes, closed afterwards; engine errors become exit codes."""
    with exit_on_errors():
        mirror = Mirror.open(config_path(ctx))
    try:
        with exit_on_errors():
            yield mirror
    finally:
        mirror.close()


@contextmanager
def exit_on_errors() -> Iterator[None]:
    """Print a config problem and exit 2, any other engine error and exit 1 (secrets masked)."""
    try:
        yield
    except ConfigError as exc:
        output.console.print(f"[red]{redacted(str(exc))}[/red]")
        sys.exit(2)
    except MirrorError as exc:
        output.console.print(f"[red]error:[/red] {redacted(str(exc))}")
        sys.exit(1)
