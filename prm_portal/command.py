"""``prm-mirror portal``: the partner portal with everything it needs, in one process.

``--demo`` starts a seeded sandbox CRM, mirrors it into SQLite and serves the portal over it;
without it the portal serves the mirror of the config (``prm-mirror -c <file> portal``). Both
push portal edits and sync CRM changes every ``--interval`` seconds in the same process. The
app is served by waitress with ``--threads`` threads; ``--debug`` serves it with Flask's
development server and debugger instead (never on a reachable address).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import click

from mirror import ConfigError, Mirror, MirrorError
from prm_portal.runner import DEFAULT_THREADS, Schedule, demo, serve, sign_in_hint
from prm_portal.settings import MANAGER_PASSWORD_ENV, PARTNER_PASSWORD_ENV, PortalSettings


@click.command()
@click.option("--demo", "with_demo", is_flag=True, help="Serve a seeded sandbox CRM's mirror.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--interval", default=5.0, show_default=True, help="Seconds between push-and-sync rounds."
)
@click.option("--size", default="small", show_default=True, help="The demo sandbox's size.")
@click.option("--seed", default=7, show_default=True, help="The demo sandbox's seed.")
@click.option("--workdir", default=None, help="Where the demo keeps its files (default: temp).")
@click.option(
    "--threads",
    default=DEFAULT_THREADS,
    show_default=True,
    type=click.IntRange(4, 4096),
    help="Server threads: each open page's live stream holds one.",
)
@click.option("--debug", is_flag=True, help="Flask's development server and debugger.")
@click.pass_context
def portal(
    ctx: click.Context,
    with_demo: bool,
    host: str,
    port: int,
    interval: float,
    size: str,
    seed: int,
    workdir: str | None,
    threads: int,
    debug: bool,
) -> None:
    """Serve the partner portal (partners' pages and the channel manager's).

    Partner users sign in with their e-mail and $PRM_PORTAL_PARTNER_PASSWORD, the channel
    manager with $PRM_PORTAL_MANAGER_PASSWORD (both "demo" with --demo).
    """
    server = Serving(host, port, interval, threads, debug)
    try:
        if with_demo:
            _serve_demo(server, size, seed, workdir)
        else:
            config = (ctx.obj or {}).get("config", "prm-mirror.toml")
            with Mirror.open(config) as mirror:
                _serve(mirror, PortalSettings.from_environment(), server)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except MirrorError as exc:
        raise click.ClickException(str(exc)) from None


@dataclass(frozen=True)
class Serving:
    """Where and how the portal is served, as the command line says."""

    host: str
    port: int
    interval: float
    threads: int
    debug: bool


def _serve_demo(server: Serving, size: str, seed: int, workdir: str | None) -> None:
    with tempfile.TemporaryDirectory(prefix="prm-portal-") as temporary:
        where = Path(workdir or temporary)
        click.echo(f"starting the sandbox CRM and mirroring it into {where} ...")
        sized: str | int = int(size) if size.isdigit() else size
        with demo(where, sized, seed) as started:
            settings = PortalSettings.from_environment(demo=True)
            for name, emails in sign_in_hint(started.mirror):
                click.echo(f"  partner {name}: sign in as {emails}")
            if settings.partner_password == settings.manager_password == "demo":
                click.echo("  password: demo (the channel manager signs in at /manager/login)")
            _serve(started.mirror, settings, server)


def _serve(mirror: Mirror, settings: PortalSettings, server: Serving) -> None:
    if not settings.partner_password:
        click.echo(f"partner sign-in is off: set {PARTNER_PASSWORD_ENV}")
    if not settings.manager_password:
        click.echo(f"channel manager sign-in is off: set {MANAGER_PASSWORD_ENV}")
    from prm_portal.app import create_app  # flask: the portal extra, loaded when serving

    schedule = Schedule(mirror, server.interval).start()
    app = create_app(mirror, settings)
    click.echo(f"the portal is on http://{server.host}:{server.port}/ (Ctrl-C stops it)")
    try:
        if server.debug:
            app.run(server.host, server.port, debug=True, threaded=True, use_reloader=False)
        else:
            serve(app, server.host, server.port, server.threads)
    finally:
        schedule.stop()
