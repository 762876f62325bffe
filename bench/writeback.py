"""Write-back: portal edits pushed to the Salesforce sandbox (issue: 10,000 edits).

``python -m bench.writeback --edits 10000`` measures, against a sandbox in its own process:

- how fast PartnerView.update queues edits (mirror row + outbox entry, one transaction each);
- the push of all of them: records/s and API calls, against the minimum for 200-record
  collection calls (``ceil(edits / 200)``);
- the latency from an edit to the CRM's acknowledgement with the pusher running every
  ``--interval`` seconds (as the daemon runs it), p50 and p99.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bench.common import copy_sqlite, machine, print_table, write_results
from bench.sandbox_process import SandboxProcess, cached_sandbox, mirror_config
from mirror import Mirror
from mirror.store.tables import mirror_outbox


def run(edits: int, latency_edits: int, interval: float) -> dict[str, Any]:
    """One measurement; returns the figures."""
    size = max(2 * edits, 2000)
    with tempfile.TemporaryDirectory(prefix="prm-bench-wb-") as folder:
        work = Path(folder)
        sandbox_db = copy_sqlite(cached_sandbox(size), work / "sandbox.db")
        with SandboxProcess(sandbox_db, size) as box:
            config = mirror_config(f"sqlite:///{work / 'mirror.db'}", box.base_url)
            config = config.model_copy(
                update={
                    "sources": {
                        name: source.model_copy(update={"objects": ["Opportunity"]})
                        for name, source in config.sources.items()
                    }
                }
            )
            with Mirror.open(config) as mirror:
                mirror.sync()
                targets = _targets(mirror, edits + latency_edits)
                queued = _queue_edits(mirror, targets[:edits], "bench push")
                pushed = _push_all(mirror)
                latency = _latency(mirror, targets[edits:], interval)
    minimum = math.ceil(edits / 200)
    return {
        "machine": machine(),
        "edits": edits,
        "queue_per_s": edits / queued,
        "push_seconds": pushed["seconds"],
        "push_records_per_s": edits / pushed["seconds"],
        "push_api_calls": pushed["api_calls"],
        "minimum_api_calls": minimum,
        "calls_vs_minimum": pushed["api_calls"] / minimum,
        "latency_edits": latency_edits,
        "push_interval_s": interval,
        "latency_p50_s": latency["p50"],
        "latency_p99_s": latency["p99"],
    }


def _targets(mirror: Mirror, count: int) -> list[tuple[str, str]]:
    """(partner, opportunity) pairs, each opportunity once."""
    pairs: list[tuple[str, str]] = []
    table = mirror.store.mirrored(mirror.default_source, "Opportunity").table
    query = select(table.c.PartnerAccountId, table.c.Id).where(
        table.c.PartnerAccountId.is_not(None), table.c._deleted.is_(False)
    )
    with mirror.store.engine.connect() as conn:
        pairs = [(p, i) for p, i in conn.execute(query.limit(count))]
    if len(pairs) < count:
        raise SystemExit(f"the sandbox has only {len(pairs)} partner opportunities")
    return pairs


def _queue_edits(mirror: Mirror, targets: list[tuple[str, str]], note: str) -> float:
    views: dict[str, Any] = {}
    started = time.perf_counter()
    for n, (partner, record_id) in enumerate(targets):
        view = views.setdefault(partner, mirror.as_partner(partner))
        view.update("Opportunity", record_id, {"NextStep": f"{note} {n}"})
    return time.perf_counter() - started


def _push_all(mirror: Mirror) -> dict[str, float]:
    started = time.perf_counter()
    calls = 0
    while True:
        result = mirror.push()[mirror.default_source]
        calls += result.api_calls
        if result.sent == 0:
            break
    return {"seconds": time.perf_counter() - started, "api_calls": calls}


def _latency(mirror: Mirror, targets: list[tuple[str, str]], interval: float) -> dict[str, float]:
    stop = threading.Event()

    def pusher() -> None:
        while not stop.is_set():
            mirror.push()
            stop.wait(interval)

    thread = threading.Thread(target=pusher, daemon=True)
    thread.start()
    _queue_edits_spaced(mirror, targets)
    deadline = time.monotonic() + 120
    o = mirror_outbox.c
    while time.monotonic() < deadline:
        with mirror.store.engine.connect() as conn:
            waiting = conn.execute(select(o.seq).where(o.status != "done").limit(1)).first()
        if waiting is None:
            break
        time.sleep(0.2)
    stop.set()
    thread.join()
    with mirror.store.engine.connect() as conn:
        rows = conn.execute(
            select(o.created_at, o.updated_at).order_by(o.seq.desc()).limit(len(targets))
        ).all()
    delays = sorted((done - made).total_seconds() for made, done in rows)
    return {
        "p50": statistics.median(delays),
        "p99": delays[min(len(delays) - 1, math.ceil(0.99 * len(delays)) - 1)],
    }


def _queue_edits_spaced(mirror: Mirror, targets: list[tuple[str, str]]) -> None:
    for n, (partner, record_id) in enumerate(targets):
        mirror.as_partner(partner).update("Opportunity", record_id, {"NextStep": f"live {n}"})
        time.sleep(0.02)


def main(argv: list[str] | None = None) -> None:
    """Run and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=10_000)
    parser.add_argument("--latency-edits", type=int, default=200)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args(argv)
    figures = run(args.edits, args.latency_edits, args.interval)
    print_table(
        "write-back",
        ["edits", "queued/s", "push rec/s", "API calls", "minimum", "x min", "p50 s", "p99 s"],
        [
            [
                figures["edits"],
                round(figures["queue_per_s"]),
                round(figures["push_records_per_s"]),
                figures["push_api_calls"],
                figures["minimum_api_calls"],
                round(figures["calls_vs_minimum"], 2),
                round(figures["latency_p50_s"], 2),
                round(figures["latency_p99_s"], 2),
            ]
        ],
    )
    write_results("writeback", figures)


if __name__ == "__main__":
    main()
