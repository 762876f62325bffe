"""The reference portal under load: concurrent partner sessions over HTTP.

``python -m bench.portal --size 1000000 --sessions 50 --seconds 120 --store postgres`` serves a
copy of the seeded sandbox CRM (``bench.sandbox_proc``) and a copy of its prepared mirror
(``bench.portal_data``: backfilled once per store, size and seed, then reused), starts
``prm-mirror portal`` on it in another process (waitress, ``--threads``; its schedule pushes
and syncs every ``--interval`` seconds), then:

1. ``--sessions`` partner users (of as many partners) sign in and browse for ``--seconds``.
   The load is a closed loop with a human's think time: each session views a page, reads it
   for a random time (exponential, mean ``--think`` seconds), then views the next, and keeps
   its page's live event stream open throughout, as a browser does. A partner portal's load
   is a known population of people, each waiting for a page before asking the next, so the
   sessions bound the concurrency; 50 sessions at 5 s are about 10 pages a second.
   ``--think 0`` turns the sessions into a saturating load (a throughput test, not a page
   time a user sees). Pages: their deals (a page, a search with a sort), a deal's page,
   accounts and contacts, and one edit of a deal's next step in ``--edit-every`` requests;
   p50 / p99 page time per kind and the errors (any answer but the expected one) are reported;
2. while they do, CRM edits made through the sandbox's controls are timed until they arrive on
   an open page's event stream (CRM to page), and portal edits until the CRM has them (portal
   to CRM), both with the schedule's interval beside them.

Results go to ``bench/results/portal-<timestamp>.json``, with the load average.
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
from pathlib import Path
from typing import Any

import psutil
import requests

from bench.common import PG_URL, copy_sqlite, print_table, write_results
from bench.portal_data import STORES, config_text, working_copy
from bench.portal_sessions import PASSWORD, Load, Timings, browse, edit, sign_in
from bench.sandbox_process import SandboxProcess, cached_sandbox
from mirror import Mirror


def percentile(values: list[float], share: float) -> float:
    """The ``share`` percentile of ``values`` (nearest rank), 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@contextmanager
def portal_process(
    config: Path, port: int, interval: float, threads: int
) -> Iterator[tuple[str, psutil.Process]]:
    """``prm-mirror portal`` on ``config`` in another process; yields its URL and process once
    it serves."""
    env = {
        **os.environ,
        "PRM_PORTAL_PARTNER_PASSWORD": PASSWORD,
        "PRM_PORTAL_MANAGER_PASSWORD": PASSWORD,
    }
    command = [sys.executable, "-m", "cli", "-c", str(config), "portal"]
    command += ["--port", str(port), "--interval", str(interval), "--threads", str(threads)]
    # the portal's own log (a failed request's traceback) beside the config
    log = (config.parent / "portal.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
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
        yield url, psutil.Process(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


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
    database = working_copy(
        args.store, args.size, args.seed, work, pg_url=args.pg_url, rebuild=args.rebuild
    )
    crm = copy_sqlite(cached_sandbox(args.size, args.seed), work / "sandbox.db")
    with SandboxProcess(crm, args.size, args.seed) as sandbox:
        config = work / "prm-mirror.toml"
        config.write_text(config_text(sandbox.base_url, database))
        with Mirror.open(config) as mirror:
            mirror.sync()  # the copy is current: this adds the indexes of newer code, if any
            users = partner_users(mirror, args.sessions)
        port = args.port or free_port()
        with portal_process(config, port, args.interval, args.threads) as (url, served):
            cpu_before = served.cpu_times()
            timings = Timings()
            load = Load(time.monotonic() + args.seconds, args.think, args.edit_every)
            sessions = [
                threading.Thread(target=browse, args=(url, u["email"], load, timings))
                for u in users
            ]
            for thread in sessions:
                thread.start()
            probe = users[0]
            crm_page = crm_to_page(url, probe["email"], sandbox, probe["deals"][0], args.probes)
            portal_crm = portal_to_crm(url, probe["email"], sandbox, probe["deals"][1], args.probes)
            for thread in sessions:
                thread.join()
            cpu_after = served.cpu_times()
    cpu = cpu_after.user + cpu_after.system - cpu_before.user - cpu_before.system
    return report(args, timings, crm_page, portal_crm, cpu)


def partner_users(mirror: Mirror, sessions: int) -> list[dict[str, Any]]:
    """``sessions`` partner users, one per partner while there are enough (then reused round
    robin), each with two of its deals."""
    found: list[dict[str, Any]] = []
    for partner in mirror.partners():
        if len(found) >= sessions:
            break
        view = mirror.as_partner(partner["id"])
        deals = [d["Id"] for d in view.select("Opportunity", where={"IsClosed": False}, limit=2)]
        for user in view.select("User", fields=["Email", "IsActive"], limit=5):
            if user["Email"] and user["IsActive"] and len(deals) == 2:
                found.append({"email": user["Email"], "deals": deals})
                break
    if not found:
        raise RuntimeError("no partner user has two open deals")
    return [found[i % len(found)] for i in range(sessions)]


def report(
    args: argparse.Namespace,
    timings: Timings,
    crm_page: list[float],
    portal_crm: list[float],
    portal_cpu: float,
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
        "store": args.store,
        "load_model": f"closed loop, {args.sessions} sessions, think time exponential mean "
        f"{args.think} s, one live event stream per session",
        "think_seconds": args.think,
        "server_threads": args.threads,
        "load_average": os.getloadavg(),
        "sessions": args.sessions,
        "seconds": args.seconds,
        "interval_seconds": args.interval,
        "requests": len(every),
        "requests_per_second": len(every) / args.seconds,
        "p50_ms": percentile(every, 0.5) * 1000,
        "p99_ms": percentile(every, 0.99) * 1000,
        # the portal process's CPU over the run: pages, streams and the schedule's rounds
        "portal_cpu_seconds": portal_cpu,
        "portal_cpu_ms_per_request": portal_cpu * 1000 / max(1, len(every)),
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
        f"portal, {args.sessions} sessions, think {args.think} s, {args.size} opportunities",
        ["page", "requests", "p50 ms", "p99 ms"],
        rows,
    )
    median = statistics.median
    print(f"errors: {len(timings.errors)}; schedule every {args.interval}s; {args.store}")
    print(
        f"portal CPU: {portal_cpu:.1f} s, {payload['portal_cpu_ms_per_request']:.1f} ms a request"
    )
    print("load average at the end: " + ", ".join(f"{v:.1f}" for v in os.getloadavg()))
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
    cli.add_argument("--store", choices=STORES, default="sqlite")
    cli.add_argument("--pg-url", default=PG_URL, help="the PostgreSQL server (--store postgres)")
    cli.add_argument("--rebuild", action="store_true", help="backfill the prepared mirror again")
    cli.add_argument("--think", type=float, default=5.0, help="mean think time, seconds")
    cli.add_argument("--threads", type=int, default=128, help="the portal's server threads")
    return cli


if __name__ == "__main__":
    run()
