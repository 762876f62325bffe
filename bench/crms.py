"""Backfill, incremental sync and write-back on HubSpot and Dynamics 365 sandboxes.

``python -m bench.crms --size 5000`` runs, for each CRM, against its sandbox (served from a
thread of this process, so the figures include the sandbox's own work and understate the
engine alone): a backfill of the whole object graph into SQLite (records/s, API calls), an
incremental sync after ``--changes`` edits made in the CRM, and a push of ``--edits`` portal
edits (records/s and API calls against the minimum for the CRM's batch size). The backfill at
scale, with the sandbox in its own process and a fetch-only bound beside it, is
``python -m bench.backfill --crm hubspot|dynamics`` (``bench.crm_backfill``).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bench.common import machine, print_table, write_results
from mirror import Mirror
from mirror.config import parse_config

BATCH = {"hubspot": 100, "dynamics": 100}


def _hubspot(folder: Path, size: int) -> tuple[Any, Any, dict[str, Any], str, str, str]:
    from adapters.hubspot.adapter import HubSpotAdapter, HubSpotSettings
    from sandboxes.hubspot.sandbox import HubSpotSandbox
    from sandboxes.testing.settings import hubspot_settings, unthrottled

    box = unthrottled(HubSpotSandbox(folder / "hs.db", size=size).start())
    adapter = HubSpotAdapter(HubSpotSettings(**hubspot_settings(box)))
    source = {"crm": "hubspot", "access_token": "t"}
    return box, adapter, source, "deals", "partner_company_id", "description"


def _dynamics(folder: Path, size: int) -> tuple[Any, Any, dict[str, Any], str, str, str]:
    from adapters.dynamics.adapter import DynamicsAdapter, DynamicsSettings
    from sandboxes.dynamics.sandbox import DynamicsSandbox
    from sandboxes.testing.settings import dynamics_settings

    box = DynamicsSandbox(folder / "dv.db", size=size).start()
    adapter = DynamicsAdapter(DynamicsSettings(**dynamics_settings(box)))
    source = {
        "crm": "dynamics",
        "org_url": "https://x",
        "tenant_id": "t",
        "client_id": "c",
        "client_secret": "s",
    }
    return (
        box,
        adapter,
        source,
        "opportunity",
        "_prm_partneraccountid_value",
        "description",
    )


def run_crm(crm: str, size: int, changes: int, edits: int) -> dict[str, Any]:
    """The three measurements on one CRM."""
    with tempfile.TemporaryDirectory(prefix=f"prm-bench-{crm}-") as work:
        folder = Path(work)
        make = _hubspot if crm == "hubspot" else _dynamics
        box, adapter, source, deals, partner_field, text_field = make(folder, size)
        try:
            config = parse_config(
                {"store": {"database": f"sqlite:///{folder / 'm.db'}"}, "sources": {crm: source}}
            )
            with Mirror(config, adapters={crm: adapter}) as mirror:
                started, calls = time.perf_counter(), adapter.api_calls()
                results = mirror.sync()
                backfill_s = time.perf_counter() - started
                records = sum(r.totals.inserted for r in results)
                backfill_calls = adapter.api_calls() - calls
                ids = box.ids(deals)[:changes]
                for record_id in ids:
                    box.update(deals, record_id, {text_field: "changed in the CRM"})
                started, calls = time.perf_counter(), adapter.api_calls()
                mirror.sync([deals])
                incremental_s = time.perf_counter() - started
                incremental_calls = adapter.api_calls() - calls
                push = _push(mirror, deals, partner_field, text_field, edits, adapter)
        finally:
            box.stop()
    return {
        "crm": crm,
        "size": size,
        "records": records,
        "backfill_s": backfill_s,
        "backfill_rps": records / backfill_s,
        "backfill_calls": backfill_calls,
        "changes": len(ids),
        "incremental_s": incremental_s,
        "incremental_calls": incremental_calls,
        **push,
    }


def _push(
    mirror: Mirror, deals: str, partner_field: str, text_field: str, edits: int, adapter: Any
) -> dict[str, Any]:
    mirrored = mirror.store.mirrored(mirror.default_source, deals)
    t = mirrored.table
    query = select(t.c[partner_field], t.c[mirrored.spec.key]).where(
        t.c[partner_field].is_not(None), t.c._deleted.is_(False)
    )
    with mirror.store.engine.connect() as conn:
        targets = conn.execute(query.limit(edits)).all()
    rule = mirror.visibility().rule(deals)
    texts = sorted(
        f.name
        for f in mirrored.spec.fields
        if rule and f.name in rule.writable and f.type.value in ("string", "text")
    )
    field = text_field if text_field in texts else texts[0]
    for n, (partner, record_id) in enumerate(targets):
        mirror.as_partner(partner).update(deals, record_id, {field: f"portal edit {n}"})
    started, calls = time.perf_counter(), adapter.api_calls()
    result = mirror.push()[mirror.default_source]
    seconds = time.perf_counter() - started
    minimum = math.ceil(len(targets) / BATCH[mirror.config.sources[mirror.default_source].crm])
    return {
        "edits": len(targets),
        "push_s": seconds,
        "push_rps": result.done / seconds,
        "push_calls": adapter.api_calls() - calls,
        "push_minimum_calls": minimum,
        "push_failed": result.failed,
    }


def main(argv: list[str] | None = None) -> None:
    """Run and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=5000)
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--edits", type=int, default=1000)
    args = parser.parse_args(argv)
    rows = [run_crm(crm, args.size, args.changes, args.edits) for crm in ("hubspot", "dynamics")]
    print_table(
        "HubSpot and Dynamics 365",
        [
            "crm",
            "records",
            "backfill rec/s",
            "calls",
            "incr. s",
            "incr. calls",
            "push rec/s",
            "push calls",
            "minimum",
        ],
        [
            [
                r["crm"],
                r["records"],
                round(r["backfill_rps"]),
                r["backfill_calls"],
                round(r["incremental_s"], 2),
                r["incremental_calls"],
                round(r["push_rps"]),
                r["push_calls"],
                r["push_minimum_calls"],
            ]
            for r in rows
        ],
    )
    write_results("crms", {"machine": machine(), "size": args.size, "runs": rows})


if __name__ == "__main__":
    main()
