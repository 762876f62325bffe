"""One chaos run: a sandbox in its own process, the engine's processes, the nemesis and the
portal for ``duration`` seconds, then quiescence and the checker."""

from __future__ import annotations

import json
import logging
import random
import shutil
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench.chaos.checker import check
from bench.chaos.nemesis import Crm, Nemesis
from bench.chaos.portal import Portal, Tokens
from bench.chaos.processes import Processes
from bench.chaos.scenarios import SCENARIOS, write_config
from bench.common import PG_URL
from bench.postgres import pg_schema
from bench.sandbox_process import SandboxProcess
from mirror import Mirror
from mirror.push.outbox import open_entry_filter
from mirror.store.tables import mirror_outbox, mirror_runs

QUIESCE_ROUNDS = 6
MIN_EDITS = 5


@dataclass(frozen=True)
class Options:
    """What to run."""

    crm: str
    store: str = "sqlite"
    seed: int = 1
    duration: float = 30.0
    size: int = 200
    kills: int = 20
    pg_url: str = PG_URL
    keep: Path | None = None
    streams: bool = False


def run(options: Options) -> dict[str, Any]:
    """One run; its figures, counts and examples."""
    with _folder(options) as folder:
        box = SandboxProcess(folder / "crm.db", options.size, options.seed, options.crm).start()
        try:
            with _database(options, folder) as database:
                return _run(options, folder, box, database)
        finally:
            box.stop()


def _run(options: Options, folder: Path, box: SandboxProcess, database: str) -> dict[str, Any]:
    scenario = SCENARIOS[options.crm]
    if options.crm == "hubspot":
        box.admin("set_rate_limits", burst=100_000, daily=100_000_000, search_per_second=50)
    source = scenario.source(box.base_url, box.admin)
    if options.streams:
        source |= stream_source(box, scenario.objects)
    config = write_config(folder / "chaos.toml", database, source, scenario.objects)
    master = random.Random(options.seed)
    tokens = Tokens()
    crm = Crm(options.crm, box.admin)
    nemesis = Nemesis(crm, scenario, random.Random(master.random()), tokens)
    nemesis.streams = options.streams
    nemesis.partners = crm.partners(scenario.partner_object)
    portal = Portal(config, scenario, random.Random(master.random()), tokens, crm.log_head)
    processes = Processes(config, folder)
    started = time.monotonic()
    try:
        _chaos(options, processes, nemesis, portal, random.Random(master.random()))
    finally:
        portal.close()
        nemesis.calm()
        processes.stop_all()
    chaos_s = time.monotonic() - started
    history = {"edits": [asdict(e) for e in portal.edits], "nemesis": nemesis.log}
    (folder / "history.json").write_text(json.dumps(history, indent=1))
    started = time.monotonic()
    rounds, exits = _quiesce(config, folder)
    quiesce_s = time.monotonic() - started
    with Mirror.open(config) as mirror:
        findings = check(mirror, crm, scenario, portal.edits)
        leftovers = _leftovers(mirror)
        streams = {
            s.source: {"received": s.received, "applied": s.applied, "gaps": s.gaps}
            for s in mirror.stream_status()
        }
    return {
        "crm": options.crm,
        "store": options.store,
        "seed": options.seed,
        "size": options.size,
        "duration_s": round(chaos_s, 1),
        "quiesce_rounds": rounds,
        "quiesce_s": round(quiesce_s, 1),
        "quiesce_exits": exits,
        "processes": dict(processes.started),
        "kills": dict(processes.kills),
        "exits": dict(processes.exits),
        "crm_changes": dict(Counter(s["change"] for s in nemesis.log if "change" in s)),
        "faults": dict(Counter(s["fault"] for s in nemesis.log if "fault" in s)),
        "portal_edits": dict(Counter(edit.op for edit in portal.edits)),
        "portal_attempts": dict(portal.outcomes),
        "records": findings.records,
        "edits": findings.edits,
        "changes": findings.changes,
        "compared": dict(findings.compared),
        "examples": dict(findings.examples),
        "leftovers": leftovers,
        "streams": streams,
        "process_errors": dict(processes.errors().most_common(8)),
        "clean": findings.clean,
        "options": {k: str(v) for k, v in asdict(options).items() if k != "pg_url"},
    }


def stream_source(box: SandboxProcess, objects: tuple[str, ...]) -> dict[str, Any]:
    """The objects selected for Change Data Capture in the Salesforce sandbox, and the source
    settings of its stream (every daemon process listens; webhook streams would need a port
    per process, so only Salesforce's listener is run under chaos)."""
    if box.crm != "salesforce":
        raise ValueError("chaos with streams runs on Salesforce only")
    box.admin("cdc_select", entities=list(objects))
    return {"stream": True, "pubsub_endpoint": box.admin("pubsub_endpoint")}


def _chaos(
    options: Options, processes: Processes, nemesis: Nemesis, portal: Portal, rng: random.Random
) -> None:
    """The timed part: processes started and killed, the CRM changed and broken, partners
    editing, until ``duration`` has passed (and partners made ``MIN_EDITS`` updates, or three
    times ``duration``, at least 90 s, has passed). Until partners see records to edit (the
    first backfill has ended) or half the time is gone, the CRM's API only fails the odd burst
    of reads: kills, CRM changes and those bursts hit that backfill; every fault on top would
    keep it from ever finishing on a slow machine."""
    start = time.monotonic()
    kills = sorted(rng.uniform(0.03, 0.95) * options.duration for _ in range(options.kills))
    processes.start("sync")
    plan: list[str] = []
    while (elapsed := time.monotonic() - start) < options.duration or (
        sum(e.op == "update" for e in portal.edits) < MIN_EDITS and elapsed < _edit_wait(options)
    ):
        if kills and elapsed >= kills[0] and _kill(processes, rng):
            kills.pop(0)
        _keep_busy(processes, rng, plan)
        roll = rng.random()
        recent = portal.edits[-10:]
        nemesis.react()
        if roll < 0.5:
            edit = portal.act()
            if edit is not None and edit.op == "update" and rng.random() < 0.25:
                nemesis.mutate([edit])
            elif edit is not None and edit.op == "create" and rng.random() < 0.3:
                nemesis.drop_a_write()
        elif roll < 0.8:
            nemesis.mutate(recent)
        elif roll < 0.86 and (portal.ready or elapsed > options.duration / 2):
            nemesis.fault(recent)
        elif roll < 0.86 and rng.random() < 0.3:
            nemesis.fail_reads()
        elif roll < 0.88:
            nemesis.crm.admin("advance_clock", seconds=1)
        time.sleep(rng.uniform(0.0, 0.15))


def _edit_wait(options: Options) -> float:
    """How long the run waits for partners' first edits: on a loaded machine the first backfill
    alone can take longer than a short run's ``duration``."""
    return max(3 * options.duration, 90.0)


def _kill(processes: Processes, rng: random.Random) -> bool:
    """Kill one engine process that has been running a while; ``False`` when none has."""
    settled = [p for p in processes.reap() if time.monotonic() - p.started > 1.0]
    if not settled:
        return False
    victim = rng.choice(settled)
    signum = signal.SIGTERM if rng.random() < 0.2 else signal.SIGKILL
    return processes.kill(victim, signum)


def _keep_busy(processes: Processes, rng: random.Random, plan: list[str]) -> None:
    """Start the next puller (sync, sweep or a daemon, chosen in advance) and a pusher whenever
    there is room for them; no pusher starts while a daemon waits for the room it needs."""
    if not plan:
        plan.append(rng.choice(["sync"] * 5 + ["daemon"] * 3 + ["sweep"]))
    if rng.random() < 0.3 and not processes.busy(plan[0]):
        processes.start(plan.pop())
    if plan and plan[0] == "daemon":
        return
    if rng.random() < 0.3 and not processes.busy("push"):
        processes.start("push")


def _quiesce(config: Path, folder: Path) -> tuple[int, list[str]]:
    """Faults are off: a sync, then a push and a sync (which confirms what the push wrote)
    until no portal edit is left open or a round changed nothing, then a sweep. Returns the
    rounds and the steps that failed. The steps run in this process, through the same calls the
    commands make (their logs go to ``quiesce.log``): nothing is killed any more, and a
    process's start-up, many times over, would only make the wait longer."""
    failures: list[str] = []
    handler = logging.FileHandler(folder / "quiesce.log")
    logging.getLogger().addHandler(handler)
    try:
        _step(config, "sync", failures)
        before: Any = None
        rounds = 0
        while rounds < QUIESCE_ROUNDS:
            rounds += 1
            _step(config, "push", failures)
            _step(config, "sync", failures)
            with Mirror.open(config) as mirror, mirror.store.engine.connect() as conn:
                o = mirror_outbox.c
                query = select(o.seq, o.status, o.attempts).where(open_entry_filter())
                now = sorted(tuple(row) for row in conn.execute(query))
            if not now or now == before:
                break
            before = now
            time.sleep(1.0)  # retries of failed writes wait a moment before they are due
        _step(config, "sweep", failures)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    return rounds, failures


def _step(config: Path, kind: str, failures: list[str]) -> None:
    """``Mirror.sync()``, ``push()`` or ``sweep()``, as ``prm-mirror <kind>`` runs it; a
    failure is noted, not raised (it is one of the findings)."""
    try:
        with Mirror.open(config) as mirror:
            getattr(mirror, kind)()
    except Exception as error:  # whatever the engine raises is one of the findings
        first = (str(error).splitlines() or [""])[0]
        failures.append(f"{kind}: {type(error).__name__}: {first[:160]}")


def _leftovers(mirror: Mirror) -> dict[str, int]:
    """What quiescence left behind that is not counted as a failure: open outbox entries,
    runs still marked running."""
    with mirror.store.engine.connect() as conn:
        open_entries = conn.execute(
            select(func.count()).select_from(mirror_outbox).where(open_entry_filter())
        ).scalar_one()
        running = conn.execute(
            select(func.count()).select_from(mirror_runs).where(mirror_runs.c.status == "running")
        ).scalar_one()
    return {"open_outbox_entries": int(open_entries), "runs_left_running": int(running)}


@contextmanager
def _folder(options: Options) -> Iterator[Path]:
    if options.keep is not None:
        folder = options.keep / f"{options.crm}-{options.store}-{options.seed}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix=f"prm-chaos-{options.crm}-") as work:
        yield Path(work)


@contextmanager
def _database(options: Options, folder: Path) -> Iterator[str]:
    if options.store == "postgresql":
        with pg_schema(options.pg_url, keep=options.keep is not None) as url:
            (folder / "mirror.url").write_text(url + "\n")
            yield url
    else:
        yield f"sqlite:///{folder / 'mirror.db'}"
