"""The reference portal under load: concurrent partner sessions over HTTP.

``python -m bench.portal --size 10000 --sessions 50 --seconds 60`` serves a seeded sandbox CRM
(``bench.sandbox_proc``), backfills its mirror into SQLite, starts ``prm-mirror portal`` on it
in another process (its schedule pushes and syncs every ``--interval`` seconds), then:

1. ``--sessions`` partner users sign in and browse for ``--seconds``: their deals (a page, a
   search, a sort), a deal's page, accounts and contacts, and one edit of a deal's next step in
   ``--edit-every`` requests; p50 / p99 page time per kind and the errors (any answer but the
   expected one) are reported;
2. while they do, CRM edits made through the sandbox's controls are timed until they arrive on
   an open page's event stream (CRM to page), and portal edits until the CRM has them (portal
   to CRM), both with the schedule's interval beside them.

Results go to ``bench/results/portal-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import requests

from bench.common import print_table, write_results
from bench.sandbox_process import SandboxProcess
from mirror import Mirror
from sandboxes.kit.configs import config_toml
from sandboxes.salesforce.org import Credentials

PASSWORD = "bench-partner"
TOKEN = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
DEAL_LINK = re.compile(r'href="/deals/(\w+)"')
# partner users are their partner's admins; the same rule as the portal's demo
ROLES = """
[sources.salesforce.visibility.partner_users]
role_field = "UserType"
admin_roles = ["PowerPartner"]
"""


@dataclass
class Timings:
    """Page times in seconds per kind of request, and the errors, shared by the sessions."""

    pages: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, seconds: float, error: str | None = None) -> None:
        """Record one request."""
        with self.lock:
            self.pages.setdefault(kind, []).append(seconds)
            if error:
                self.errors.append(f"{kind}: {error}")


def percentile(values: list[float], share: float) -> float:
    """The ``share`` percentile of ``values`` (nearest rank), 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def config_text(sandbox_url: str, database: str) -> str:
    """The config that mirrors the sandbox process, partner users as admins."""
    credentials = Credentials()
    box = SimpleNamespace(
        base_url=sandbox_url,
        username=credentials.username,
        password=credentials.password,
        security_token=credentials.security_token,
    )
    return config_toml("salesforce", box, database) + ROLES


@contextmanager
def portal_process(config: Path, port: int, interval: float) -> Iterator[str]:
    """``prm-mirror portal`` on ``config`` in another process; yields its URL once it serves."""
    env = {
        **os.environ,
        "PRM_PORTAL_PARTNER_PASSWORD": PASSWORD,
        "PRM_PORTAL_MANAGER_PASSWORD": PASSWORD,
    }
    command = [sys.executable, "-m", "cli", "-c", str(config), "portal"]
    command += ["--port", str(port), "--interval", str(interval)]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/login", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        else:
            raise RuntimeError("the portal did not start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def sign_in(url: str, email: str) -> requests.Session:
    """A signed-in HTTP session of the partner user with this e-mail."""
    http = requests.Session()
    http.trust_env = False
    token = TOKEN.search(http.get(f"{url}/login", timeout=30).text)
    assert token, "no sign-in form"
    answer = http.post(
        f"{url}/login",
        data={"csrf_token": token.group(1), "login": email, "password": PASSWORD},
        allow_redirects=False,
        timeout=30,
    )
    if answer.status_code != 302:
        raise RuntimeError(f"{email} could not sign in")
    return http


def browse(url: str, email: str, until: float, edit_every: int, timings: Timings) -> None:
    """One partner session's loop of page views and edits until ``until``."""
    started = time.perf_counter()
    try:
        http = sign_in(url, email)
    except (RuntimeError, AssertionError, requests.RequestException) as exc:
        timings.add("sign-in", time.perf_counter() - started, str(exc))
        return
    rng = random.Random(email)
    deals: list[str] = []
    count = 0
    while time.monotonic() < until:
        count += 1
        if deals and count % edit_every == 0:
            edit(http, url, rng.choice(deals), timings)
            continue
        kind, path = rng.choice(
            [
                ("deals", f"/deals?page={rng.randint(1, 3)}"),
                ("deal search", "/deals?q=a&sort=-Amount"),
                ("accounts", "/accounts"),
                ("contacts", f"/contacts?page={rng.randint(1, 2)}"),
                ("deal", f"/deals/{rng.choice(deals)}" if deals else "/deals"),
            ]
        )
        page = timed(http, "GET", f"{url}{path}", kind, timings)
        if page is not None and not deals:
            deals = DEAL_LINK.findall(page)


def edit(http: requests.Session, url: str, deal: str, timings: Timings) -> None:
    """Change a deal's next step from its page's form."""
    page = timed(http, "GET", f"{url}/deals/{deal}", "deal", timings)
    token = TOKEN.search(page or "")
    fields = dict(re.findall(r'name="(\w+)"[^>]*value="([^"]*)"', page or ""))
    stage = re.search(r'<option selected value="([^"]+)"', page or "")
    if not token or not stage:
        return
    data = {
        "csrf_token": token.group(1),
        "StageName": stage.group(1),
        "Amount": fields.get("Amount", ""),
        "CloseDate": fields.get("CloseDate", ""),
        "NextStep": f"bench {time.time():.3f}",
    }
    timed(http, "POST", f"{url}/deals/{deal}", "edit", timings, data=data, expect=302)


def timed(
    http: requests.Session,
    method: str,
    address: str,
    kind: str,
    timings: Timings,
    data: dict[str, str] | None = None,
    expect: int = 200,
) -> str | None:
    """One request, timed; its body when it answered as expected."""
    started = time.perf_counter()
    try:
        answer = http.request(method, address, data=data, allow_redirects=False, timeout=60)
    except requests.RequestException as exc:
        timings.add(kind, time.perf_counter() - started, type(exc).__name__)
        return None
    seconds = time.perf_counter() - started
    error = None if answer.status_code == expect else f"HTTP {answer.status_code}"
    timings.add(kind, seconds, error)
    return answer.text if error is None else None


def crm_to_page(
    url: str, email: str, sandbox: SandboxProcess, deal: str, rounds: int
) -> list[float]:
    """Seconds from a CRM edit of ``deal`` to its arrival on an open page's event stream."""
    http = sign_in(url, email)
    page = http.get(f"{url}/deals/{deal}", timeout=30).text
    cursor = re.search(r'data-feed-cursor="(\d+)"', page)
    assert cursor, "no feed cursor on the page"
    arrived: dict[str, float] = {}
    stop = threading.Event()

    def listen() -> None:
        try:
            with http.get(
                f"{url}/events", params={"since": cursor.group(1)}, stream=True, timeout=120
            ) as stream:
                for line in stream.iter_lines(decode_unicode=True):
                    for marker in re.findall(r"crm-(\d+)", str(line or "")):
                        arrived.setdefault(marker, time.monotonic())
                    if stop.is_set():
                        return
        except requests.RequestException:
            return  # the portal stopped, or the stream ended: the rounds time out on their own

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    delays = []
    for number in range(rounds):
        marker = f"{number}{random.randint(1000, 9999)}"
        made = time.monotonic()
        sandbox.admin(
            "update", sobject="Opportunity", record_id=deal, values={"NextStep": f"crm-{marker}"}
        )
        while marker not in arrived and time.monotonic() - made < 120:
            time.sleep(0.05)
        if marker in arrived:
            delays.append(arrived[marker] - made)
    stop.set()
    return delays


def portal_to_crm(
    url: str, email: str, sandbox: SandboxProcess, deal: str, rounds: int
) -> list[float]:
    """Seconds from a portal edit of ``deal`` until the CRM has it."""
    http = sign_in(url, email)
    timings = Timings()
    delays = []
    for _ in range(rounds):
        made = time.monotonic()
        edit(http, url, deal, timings)
        page = http.get(f"{url}/deals/{deal}", timeout=30).text
        wanted = re.search(r'data-field="NextStep">([^<]*)<', page)
        while wanted and time.monotonic() - made < 120:
            record = sandbox.admin("get", sobject="Opportunity", record_id=deal)
            if record and record.get("NextStep") == wanted.group(1):
                delays.append(time.monotonic() - made)
                break
            time.sleep(0.1)
    return delays


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns (and writes) its results."""
    args = parser().parse_args(argv)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    with SandboxProcess(work / "sandbox.db", args.size, args.seed) as sandbox:
        config = work / "prm-mirror.toml"
        config.write_text(config_text(sandbox.base_url, f"sqlite:///{work / 'mirror.db'}"))
        with Mirror.open(config) as mirror:
            mirror.sync()
            users = partner_users(mirror, args.sessions)
        with portal_process(config, args.port or free_port(), args.interval) as url:
            timings = Timings()
            until = time.monotonic() + args.seconds
            sessions = [
                threading.Thread(
                    target=browse, args=(url, u["email"], until, args.edit_every, timings)
                )
                for u in users
            ]
            for thread in sessions:
                thread.start()
            probe = users[0]
            crm_page = crm_to_page(url, probe["email"], sandbox, probe["deals"][0], args.probes)
            portal_crm = portal_to_crm(url, probe["email"], sandbox, probe["deals"][1], args.probes)
            for thread in sessions:
                thread.join()
    return report(args, timings, crm_page, portal_crm)


def partner_users(mirror: Mirror, sessions: int) -> list[dict[str, Any]]:
    """``sessions`` partner users (partners reused round robin), each with two of its deals."""
    found = []
    for partner in mirror.partners():
        view = mirror.as_partner(partner["id"])
        deals = [d["Id"] for d in view.select("Opportunity", where={"IsClosed": False}, limit=2)]
        for user in view.select("User", fields=["Email", "IsActive"], limit=5):
            if user["Email"] and user["IsActive"] and len(deals) == 2:
                found.append({"email": user["Email"], "deals": deals})
    if not found:
        raise RuntimeError("no partner user has two open deals")
    return [found[i % len(found)] for i in range(sessions)]


def report(
    args: argparse.Namespace, timings: Timings, crm_page: list[float], portal_crm: list[float]
) -> dict[str, Any]:
    """Print and write the results."""
    every = [s for values in timings.pages.values() for s in values]
    kinds = {
        kind: {
            "requests": len(values),
            "p50_ms": percentile(values, 0.5) * 1000,
            "p99_ms": percentile(values, 0.99) * 1000,
        }
        for kind, values in sorted(timings.pages.items())
    }
    payload = {
        "size": args.size,
        "sessions": args.sessions,
        "seconds": args.seconds,
        "interval_seconds": args.interval,
        "requests": len(every),
        "requests_per_second": len(every) / args.seconds,
        "p50_ms": percentile(every, 0.5) * 1000,
        "p99_ms": percentile(every, 0.99) * 1000,
        "errors": len(timings.errors),
        "first_errors": timings.errors[:10],
        "kinds": kinds,
        "crm_to_page_seconds": crm_page,
        "portal_to_crm_seconds": portal_crm,
    }
    rows = [
        [k, v["requests"], f"{v['p50_ms']:.1f}", f"{v['p99_ms']:.1f}"] for k, v in kinds.items()
    ]
    rows.append(["all", len(every), f"{payload['p50_ms']:.1f}", f"{payload['p99_ms']:.1f}"])
    print_table(
        f"portal, {args.sessions} sessions, {args.size} opportunities",
        ["page", "requests", "p50 ms", "p99 ms"],
        rows,
    )
    median = statistics.median
    print(f"errors: {len(timings.errors)}; schedule every {args.interval}s")
    if crm_page:
        print(f"CRM change to open page: median {median(crm_page):.2f}s over {len(crm_page)}")
    if portal_crm:
        print(f"portal edit to CRM: median {median(portal_crm):.2f}s over {len(portal_crm)}")
    write_results("portal", payload)
    return payload


def parser() -> argparse.ArgumentParser:
    """The command line."""
    cli = argparse.ArgumentParser(prog="python -m bench.portal", description=__doc__)
    cli.add_argument("--size", type=int, default=10_000, help="sandbox opportunities")
    cli.add_argument("--seed", type=int, default=7)
    cli.add_argument("--sessions", type=int, default=50)
    cli.add_argument("--seconds", type=float, default=60)
    cli.add_argument("--interval", type=float, default=5.0, help="push-and-sync schedule")
    cli.add_argument("--edit-every", type=int, default=10, help="one edit in this many requests")
    cli.add_argument("--probes", type=int, default=5, help="timed CRM-to-page and edit rounds")
    cli.add_argument("--port", type=int, default=0, help="the portal's port (0: a free one)")
    cli.add_argument("--workdir", default="bench/.cache/portal")
    return cli


if __name__ == "__main__":
    run()
