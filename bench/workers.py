"""Scale-out: a backfill of the whole graph into PostgreSQL by 1, 2 and 4 daemon workers.

``python -m bench.workers --size 20000 --workers 1,2,4`` starts the Salesforce sandbox in its
own process, then for each worker count a fresh PostgreSQL schema and that many
``prm-mirror daemon`` processes sharing it, and times until every object's backfill is done
(its checkpoint is in phase ``incremental``). Objects are shared out by leases, so the
speed-up is bounded by the number of objects and by the machine's cores (stated in the results).
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

from sqlalchemy import create_engine, text

from bench.common import (
    PG_URL,
    SandboxProcess,
    cached_sandbox,
    copy_sqlite,
    machine,
    pg_schema,
    print_table,
    write_results,
)

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


def config_text(database: str, base_url: str) -> str:
    """A daemon config mirroring the sandbox into ``database``."""
    from adapters.sandbox.salesforce_org import Credentials

    c = Credentials()
    return f"""
[store]
database = "{database}"
[daemon]
sync_interval = 3600.0
jitter = 0.0
metrics_port = 0
lease_seconds = 60.0
log_format = "text"
[sources.salesforce]
crm = "salesforce"
objects = {json.dumps(OBJECTS)}
login_url = "{base_url}"
username = "{c.username}"
password = "{c.password}"
security_token = "{c.security_token}"
"""


def run(size: int, counts: list[int], timeout: float) -> list[dict[str, float]]:
    """Seconds to backfill with each worker count."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="prm-bench-workers-") as work:
        sandbox_db = copy_sqlite(cached_sandbox(size), Path(work) / "sandbox.db")
        with SandboxProcess(sandbox_db, size) as box:
            for count in counts:
                with pg_schema() as database:
                    config = Path(work) / f"w{count}.toml"
                    config.write_text(config_text(database, box.base_url))
                    rows.append(
                        {"workers": count, "seconds": _time(config, database, count, timeout)}
                    )
    return rows


def _time(config: Path, database: str, count: int, timeout: float) -> float:
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
        while time.perf_counter() - started < timeout and _done(engine) < len(OBJECTS):
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
    parser.add_argument("--timeout", type=float, default=1200.0)
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.workers.split(",")]
    rows = run(args.size, counts, args.timeout)
    base = rows[0]["seconds"]
    print_table(
        f"backfill of {args.size} opportunities' graph into PostgreSQL ({PG_URL})",
        ["workers", "seconds", "speed-up"],
        [[r["workers"], round(r["seconds"], 1), round(base / r["seconds"], 2)] for r in rows],
    )
    write_results("workers", {"machine": machine(), "size": args.size, "runs": rows})


if __name__ == "__main__":
    main()
