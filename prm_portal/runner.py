"""Running the portal: the in-process schedule that syncs and pushes, the demo's sandbox CRM
and mirror, and the production WSGI server (waitress; also used by the browser tests)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.background import BackgroundScheduler

from mirror import Mirror, MirrorError
from sandboxes.kit.configs import config_toml
from sandboxes.salesforce.sandbox import SalesforceSandbox

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger("prm_portal")
# the demo's partner users are admins of their partner (the CRM's partner-user licence), and
# partners may add contacts at their accounts
DEMO_SETTINGS = """
[sources.salesforce.visibility.partner_users]
role_field = "UserType"
admin_roles = ["PowerPartner"]

[sources.salesforce.visibility.slices.Contact]
paths = ["AccountId -> Account"]
creatable = true

[sources.salesforce.visibility.fields.Contact]
visible = [
    "Id", "AccountId", "Salutation", "FirstName", "LastName", "Name", "Title", "Department",
    "Email", "Phone", "MobilePhone", "MailingStreet", "MailingCity", "MailingState",
    "MailingPostalCode", "MailingCountry", "CreatedDate", "LastModifiedDate",
]
writable = ["AccountId", "FirstName", "LastName", "Email", "Phone", "Title"]
"""


class Schedule:
    """Pushes portal edits and syncs CRM changes every ``interval`` seconds on a background
    thread, through the public ``Mirror`` API (one round never overlaps the next)."""

    def __init__(self, mirror: Mirror, interval: float) -> None:
        self.mirror = mirror
        self.interval = interval
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self.rounds = 0
        self.lock = threading.Lock()
        self.stop_waking: Callable[[], None] | None = None

    def start(self) -> Schedule:
        """Start the rounds (the first one at once)."""
        self.scheduler.add_job(
            self.round,
            "interval",
            seconds=self.interval,
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
        )
        self.scheduler.start()
        # an edit leaves for the CRM within the wake-up window, not at the next round
        self.stop_waking = self.mirror.push_on_write()
        return self

    def round(self) -> None:
        """One push then one sync; errors are logged and the next round tries again."""
        with self.lock:
            try:
                self.mirror.push()
                self.mirror.sync()
            except MirrorError as exc:
                log.warning("sync round failed: %s", exc)
            self.rounds += 1

    def stop(self) -> None:
        """Stop after the round under way."""
        if self.stop_waking is not None:
            self.stop_waking()
            self.stop_waking = None
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)


@dataclass
class Demo:
    """The demo's sandbox CRM, its mirror and the config file that joins them."""

    box: SalesforceSandbox
    mirror: Mirror
    config: Path


def demo_config(box: Any, database: str) -> str:
    """The config (TOML) mirroring the demo sandbox, partner users signed in as admins, with
    the store's connections kept open for the pages and live streams served at once."""
    text = config_toml("salesforce", box, database)
    return (
        text.replace("[store]\n", "[store]\npool_size = 32\nmax_overflow = 32\n", 1) + DEMO_SETTINGS
    )


@contextmanager
def demo(workdir: Path, size: str | int = "small", seed: int = 7) -> Iterator[Demo]:
    """A seeded sandbox CRM served on 127.0.0.1 and a first sync of it into SQLite."""
    workdir.mkdir(parents=True, exist_ok=True)
    with SalesforceSandbox(workdir / "sandbox.db", seed=seed, size=size) as box:
        config = workdir / "prm-mirror.toml"
        config.write_text(demo_config(box, f"sqlite:///{workdir / 'mirror.db'}"))
        with Mirror.open(config) as mirror:
            mirror.sync()
            add_reps(box, mirror)
            mirror.sync()
            yield Demo(box, mirror, config)


def add_reps(box: SalesforceSandbox, mirror: Mirror, deals: int = 3) -> None:
    """Give each partner a rep in the CRM (``rep.<admin's e-mail>``, no partner licence, so
    the demo's role rule makes it a rep) owning ``deals`` of the partner's open deals."""
    for partner in mirror.partners():
        view = mirror.as_partner(partner["id"])
        admins = view.select("User", fields=["Email"], order_by="Id", limit=1)
        if not admins or not admins[0]["Email"]:
            continue
        email = f"rep.{admins[0]['Email']}"
        rep = box.create(
            "User",
            {
                "Username": f"{email}.sandbox",
                "Email": email,
                "FirstName": "Rep",
                "LastName": str(partner["name"]),
                "Alias": "rep",
                "IsActive": True,
                "AccountId": partner["id"],
            },
        )
        owned = view.select("Opportunity", where={"IsClosed": False}, order_by="Id", limit=deals)
        for deal in owned:
            box.update("Opportunity", deal["Id"], {"OwnerId": rep})


def sign_in_hint(mirror: Mirror, limit: int = 3) -> list[tuple[str, str]]:
    """(partner name, its users' e-mails) for a few partners, to print at start."""
    hints = []
    for partner in mirror.partners()[:limit]:
        view = mirror.as_partner(partner["id"])
        users = view.select("User", fields=["Email"], order_by="Id", limit=5)
        emails = ", ".join(str(u["Email"]) for u in users if u["Email"])
        if emails:
            hints.append((str(partner["name"]), emails))
    return hints


# each open page holds a thread for its live stream (``events``), so the threads are the open
# pages the portal serves at once plus those rendering pages
DEFAULT_THREADS = 128


def wsgi_server(app: Flask, host: str, port: int, threads: int = DEFAULT_THREADS) -> Any:
    """The production WSGI server (waitress) for ``app``, bound and not yet serving.

    Waitress 3 sends what the app yields at once (its ``send_bytes`` is 1; older releases held
    18 kB back, which kept a live stream's events from the browser). The connection limit
    leaves room for a page and a stream per session."""
    from waitress import create_server

    return create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        connection_limit=max(100, 4 * threads),
        channel_timeout=120,
        ident="prm-portal",
    )


def serve(app: Flask, host: str, port: int, threads: int = DEFAULT_THREADS) -> None:
    """Serve ``app`` with waitress until interrupted."""
    server = wsgi_server(app, host, port, threads)
    try:
        server.run()
    finally:
        server.close()


class Server:
    """The app on the production WSGI server in a background thread (``url`` once started)."""

    def __init__(
        self, app: Flask, host: str = "127.0.0.1", port: int = 0, threads: int = 32
    ) -> None:
        self.server = wsgi_server(app, host, port, threads)
        self.url = f"http://{host}:{self.server.effective_port}"
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> Server:
        """Serve in the background."""
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: the worker threads finish (a live stream ends when its connection
        closes) and the listening socket and connections close, which ends the loop."""
        from waitress import wasyncore

        self.server.task_dispatcher.shutdown(timeout=2)
        wasyncore.close_all(self.server._map, ignore_all=True)
        self.thread.join(timeout=10)
