"""``daemon``: the scheduled syncs, pushes, sweeps and audits, forever or ``--once`` for cron with
an exit code that tells what happened."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click
from rich.markup import escape

from cli import output
from cli.app import config_path, exit_on_errors, main, open_mirror
from mirror import ConfigError, Daemon, configure_logging, cron_problems, load_config

DAEMON_EXIT_CODES = {"ok": 0, "config": 2, "some_failed": 3, "all_failed": 4}


@main.command()
@click.option("--once", is_flag=True, help="Run every sync and push once, then exit.")
@click.option("--worker-id", default=None, help="This worker's name (default: host-pid).")
@click.pass_context
def daemon(ctx: click.Context, once: bool, worker_id: str | None) -> None:
    """Run the scheduled syncs, pushes, sweeps and audits until SIGTERM.

    With --once (for cron) the exit code tells what happened: 0 every job ok, 2 the config is
    invalid (nothing ran), 3 some jobs failed, 4 every sync failed (nothing was mirrored, e.g.
    the CRM is unreachable or refuses the login).
    """
    with exit_on_errors():
        problems = cron_problems(load_config(config_path(ctx)))
        if problems:
            raise ConfigError(problems)
    with open_mirror(ctx) as mirror:
        if not once:
            fmt = ctx.obj["log_format"] or mirror.config.daemon.log_format
            configure_logging(fmt, min(ctx.obj["log_level"], logging.INFO))
        worker = Daemon(mirror, worker_id=worker_id)
        if not once:
            worker.run()
            return
        jobs = worker.run_once()["jobs"]
    for job, state in sorted(jobs.items()):
        outcome = "[red]failed[/red]" if "error" in state else "ok"
        detail = escape(state.get("error") or state.get("note") or "")
        output.console.print(f"{job}: {outcome} {detail}")
    sys.exit(DAEMON_EXIT_CODES[_once_outcome(jobs)])


def _once_outcome(jobs: dict[str, dict[str, Any]]) -> str:
    """``ok``, ``some_failed`` or ``all_failed`` (no sync job succeeded) for one round."""
    failed = {job for job, state in jobs.items() if "error" in state}
    if not failed:
        return "ok"
    syncs = {job for job in jobs if job.startswith("sync:")}
    return "all_failed" if syncs <= failed else "some_failed"
