"""Scale-out: one large object's backfill into PostgreSQL by 1, 2 and 4 daemon workers.

``python -m bench.workers --size 20000 --workers 1,2,4`` starts the Salesforce sandbox in its
own process, then for each worker count a fresh PostgreSQL schema and that many
``prm-mirror daemon`` processes sharing it, and times until the backfill of every object in
``--objects`` (default: the ``size`` opportunities) is done (its checkpoint is in phase
``incremental``). The backfill is split into ``--ranges`` record-id ranges
(``[sync] backfill_ranges``) that the workers share out by leases; ``--ranges 1`` reads each
object in one piece, so only whole objects are shared out (``--objects`` with the whole graph
and ``--ranges 1`` measures that). The machine's core count is stated with the figures: the
sandbox, PostgreSQL and the workers share those cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from sqlalchemy import create_engine, text

from bench.common import PG_URL, copy_sqlite, machine, print_table, write_results
from bench.postgres import pg_schema
from bench.sandbox_process import SandboxProcess, cached_sandbox

OBJECTS = [
    "User",
    "Account",
    "Contact",
    "Lead",
    "Product2",
    "Opportunity",
    "OpportunityLineItem",
    "Deal_Registration__c",
]
GRAPH = "graph"


def config_text(
    database: str, base_url: str, objects: list[str], ranges: int, min_records: int
) -> str:
    """A daemon config mirroring ``objects`` of the sandbox into ``database``, splitting
    backfills of ``min_records`` records or more into ``ranges``."""
    from sandboxes.salesforce.org import Credentials

    c = Credentials()
    return f"""
[store]
database = "{database}"
[sync]
backfill_ranges = {ranges}
backfill_range_min_records = {min_records}
[daemon]
sync_interval = 3600.0
range_interval = 1.0
jitter = 0.0
metrics_port = 0
lease_seconds = 60.0
log_format = "text"
[sources.salesforce]
crm = "salesforce"
objects = {json.dumps(objects)}
login_url = "{base_url}"
username = "{c.username}"
password = "{c.password}"
security_token = "{c.security_token}"
"""


def run(
    size: int,
    counts: list[int],
    objects: list[str],
    ranges: tuple[int, int],
    timeout: float,
) -> list[dict[str, float]]:
    """Seconds and records per second to backfill ``objects`` with each worker count."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="prm-bench-workers-") as work:
        sandbox_db = copy_sqlite(cached_sandbox(size), Path(work) / "sandbox.db")
        with SandboxProcess(sandbox_db, size) as box:
            for count in counts:
                with pg_schema() as database:
                    config = Path(work) / f"w{count}.toml"
                    config.write_text(config_text(database, box.base_url, objects, *ranges))
                    assert box.process is not None
                    sandbox = psutil.Process(box.process.pid)
                    sandbox_before = sum(sandbox.cpu_times()[:2])
                    seconds = _time(config, database, count, len(objects), timeout)
                    sandbox_cpu = sum(sandbox.cpu_times()[:2]) - sandbox_before
                    records = _records(database, objects)
                    rows.append(
                        {
                            "workers": count,
                            "seconds": seconds,
                            "records": records,
                            "records_per_s": records / seconds,
                            "sandbox_cpu_s": sandbox_cpu,
                        }
                    )
    return rows


def _records(database: str, objects: list[str]) -> int:
    engine = create_engine(database)
    try:
        with engine.connect() as conn:
            return sum(
                int(
                    conn.execute(
                        text(f"SELECT COUNT(*) FROM salesforce__{name.lower()}")
                    ).scalar_one()
                )
                for name in objects
            )
    finally:
        engine.dispose()


def _time(config: Path, database: str, count: int, objects: int, timeout: float) -> float:
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "cli", "-c", str(config), "daemon"]
    started = time.perf_counter()
    workers = [
        subprocess.Popen(
            [*command, "--worker-id", f"w{i}"],
            cwd=root,
            env=dict(os.environ),
            stderr=subprocess.DEVNULL,
        )
        for i in range(count)
    ]
    engine = create_engine(database)
    try:
        while time.perf_counter() - started < timeout and _done(engine) < objects:
            time.sleep(0.2)
        return time.perf_counter() - started
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(120)
        engine.dispose()


def _done(engine: object) -> int:
    try:
        with engine.connect() as conn:  # type: ignore[attr-defined]
            return int(
                conn.execute(
                    text("SELECT COUNT(*) FROM mirror_checkpoints WHERE phase = 'incremental'")
                ).scalar()
            )
    except Exception:
        return 0


def main(argv: list[str] | None = None) -> None:
    """Run and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--objects", default="Opportunity", help=f"comma list, or: {GRAPH}")
    parser.add_argument("--ranges", type=int, default=8, help="[sync] backfill_ranges")
    parser.add_argument("--min-records", type=int, default=10_000, help="smaller: not split")
    parser.add_argument("--timeout", type=float, default=1200.0)
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.workers.split(",")]
    objects = OBJECTS if args.objects == GRAPH else args.objects.split(",")
    rows = run(args.size, counts, objects, (args.ranges, args.min_records), args.timeout)
    base = rows[0]["seconds"]
    cores = os.cpu_count()
    print_table(
        f"backfill of {', '.join(objects)} (size {args.size}, {args.ranges} ranges) into "
        f"PostgreSQL ({PG_URL}); os.cpu_count() = {cores}, shared with the sandbox",
        ["workers", "seconds", "records", "records/s", "speed-up", "sandbox CPU s"],
        [
            [
                r["workers"],
                round(r["seconds"], 1),
                r["records"],
                round(r["records_per_s"]),
                round(base / r["seconds"], 2),
                round(r["sandbox_cpu_s"], 1),
            ]
            for r in rows
        ],
    )
    write_results(
        "workers",
        {
            "machine": machine(),
            "cpu_count": cores,
            "size": args.size,
            "objects": objects,
            "ranges": args.ranges,
            "min_records": args.min_records,
            "runs": rows,
        },
    )


if __name__ == "__main__":
    main()
