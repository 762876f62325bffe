"""``python -m bench.backfill --crm hubspot|dynamics``: the backfill of a HubSpot portal's or a
Dataverse org's whole graph into SQLite against the same CRM's fetch-only bound.

Per size (deals or opportunities; the rest of the graph scales with it), with the sandbox
served from its own process and its request-rate limits raised (page and batch limits stay):

1. ``--rounds`` rounds of the bound (every object's backfill pages read through the adapter and
   thrown away) and a backfill into a fresh SQLite mirror, interleaved (bound then backfill,
   backfill then bound, ...), each in a fresh process whose peak RSS is reported;
2. ``--changes`` deal edits made in the sandbox, then ``Mirror.sync()`` into the last mirror.

Reported: records/s of the bound and the backfill (the best round of each), the share of the
bound, read calls against the minimum at the CRM's maxima (``bench.crm_sources``), peak RSS,
the incremental sync's time and, when 10k is among the sizes, its ratio to 10k's.
"""

from __future__ import annotations

import argparse
import os
import random
from typing import Any

from bench import crm_jobs
from bench.backfill import _step, rate
from bench.common import cache_dir, copy_sqlite, print_table, remove_sqlite, write_results
from bench.crm_sources import (
    DEALS,
    OBJECT_ARGUMENT,
    edit_deals,
    minimum_calls,
    open_limits,
    source_settings,
)
from bench.sandbox_process import SandboxProcess, cached_sandbox

SMALL = 10_000
TARGET_SHARE, TARGET_EXTRA_CALLS, TARGET_RATIO, TARGET_RSS_MB = 80.0, 5.0, 1.5, 50.0


def sandbox_code(crm: str) -> tuple[str, ...]:
    """The code a generated sandbox database depends on (its cache is stale when it changes)."""
    return ("sandboxes/dataset/*.py", f"sandboxes/{crm}/load.py", f"sandboxes/{crm}/schema.py",
            f"sandboxes/{crm}/tables.py")  # fmt: skip


def run_size(crm: str, size: int, args: argparse.Namespace) -> dict[str, Any]:
    """Every step at one size."""
    pristine = cached_sandbox(size, args.seed, crm, sandbox_code(crm))
    work = cache_dir() / f"work-{crm}-sandbox-{size}.db"
    mirror_db = cache_dir() / f"work-{crm}-mirror-{size}.db"
    copy_sqlite(pristine, work)
    result: dict[str, Any] = {"crm": crm, "size": size, "load_average": os.getloadavg()}
    with SandboxProcess(work, size, args.seed, crm) as sandbox:
        open_limits(crm, sandbox.admin)
        source = source_settings(crm, sandbox.base_url, sandbox.admin)
        result["settings"] = {k: v for k, v in source.items() if "secret" not in k and
                              "token" not in k}  # fmt: skip
        database = f"sqlite:///{mirror_db}"
        bounds, backfills = [], []
        for round_ in range(args.rounds):
            for step in ("bound", "sync") if round_ % 2 == 0 else ("sync", "bound"):
                if step == "bound":
                    bounds.append(_step(sandbox, crm_jobs.fetch_only, source))
                else:
                    remove_sqlite(mirror_db)
                    backfills.append(_step(sandbox, crm_jobs.sync_all, database, source))
        result["bounds"], result["backfills"] = bounds, backfills
        bound = min(bounds, key=lambda b: b["seconds"])
        records = {name: o["records"] for name, o in bound["objects"].items()}
        targets = {name: o["targets"] for name, o in bound["objects"].items()}
        deals = records.get(DEALS[crm], 0)
        for name, linked in targets.items():
            if linked < 0:  # read through the deals' listing: that listing is its minimum
                records[name] = deals
        result["minimum_calls"] = minimum_calls(crm, records, targets)
        if args.changes:
            ids = sandbox.admin("ids", **{OBJECT_ARGUMENT[crm]: DEALS[crm]})
            edit_deals(crm, sandbox.admin, ids, args.changes, random.Random(args.seed))
            result["incremental"] = _step(sandbox, crm_jobs.sync_all, database, source)
            result["incremental"]["changes"] = args.changes
    remove_sqlite(work)
    remove_sqlite(mirror_db)
    return result


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of one size (the fastest bound and backfill of the rounds)."""
    bound = min(result["bounds"], key=lambda b: b["seconds"])
    engine = min(result["backfills"], key=lambda b: b["seconds"])
    records = sum(o["records"] for o in engine["objects"].values())
    calls = sum(o["api_calls"] for o in engine["objects"].values())
    minimum = sum(result["minimum_calls"].values())
    summary = {
        "crm": result["crm"],
        "size": result["size"],
        "records": records,
        "bound_rps": rate(records, bound["seconds"]),
        "sqlite_rps": rate(records, engine["seconds"]),
        "sqlite_calls": calls,
        "bound_calls": bound["api_calls_total"],
        "minimum_calls": minimum,
        "calls_over_minimum_pct": 100.0 * (calls - minimum) / minimum if minimum else 0.0,
        "sqlite_peak_rss_mb": max(b["peak_rss_mb"] for b in result["backfills"]),
        "bound_peak_rss_mb": max(b["peak_rss_mb"] for b in result["bounds"]),
        "sandbox_cpu_s": engine["sandbox_cpu_s"],
        "engine_cpu_s": engine["cpu_s"],
        "bound_sandbox_cpu_s": bound["sandbox_cpu_s"],
        "bound_cpu_s": bound["cpu_s"],
        "load_average": result["load_average"][0],
    }
    summary["sqlite_pct_of_bound"] = 100.0 * summary["sqlite_rps"] / summary["bound_rps"]
    summary["cpu_pct_of_bound"] = cpu_share(summary)
    if "incremental" in result:
        summary["incremental_s"] = result["incremental"]["seconds"]
        summary["incremental_calls"] = result["incremental"]["api_calls_total"]
    return summary


def cpu_share(summary: dict[str, Any]) -> float:
    """The share of the bound from CPU seconds alone, as on an idle machine with a core each
    for the CRM and the engine: the bound reads page after page (its CPU and the CRM's add
    up), the backfill's prefetch overlaps the CRM's work with the engine's (the larger one
    sets the pace)."""
    bound = summary["bound_cpu_s"] + summary["bound_sandbox_cpu_s"]
    backfill = max(summary["engine_cpu_s"], summary["sandbox_cpu_s"])
    return 100.0 * bound / backfill if backfill else 0.0


def targets(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target of issue 27 with its figure and whether it is met."""
    by_size = {s["size"]: s for s in summaries}
    checks = []
    for s in summaries:
        size = f"{s['size']:,}"
        share, extra = s["sqlite_pct_of_bound"], s["calls_over_minimum_pct"]
        checks.append(_check(f"backfill >= 80% of bound ({size})", share,
                             share >= TARGET_SHARE, "%"))  # fmt: skip
        checks.append(_check(f"read calls within 5% of minimum ({size})", extra,
                             extra <= TARGET_EXTRA_CALLS, "%"))  # fmt: skip
    small = by_size.get(SMALL)
    for s in summaries:
        if small is not None and s["size"] > SMALL and "incremental_s" in small:
            ratio = s["incremental_s"] / small["incremental_s"]
            label = f"incremental 1k changes {s['size']:,} / 10k <= 1.5x"
            checks.append(_check(label, ratio, ratio <= TARGET_RATIO, "x"))
    if 100_000 in by_size and 1_000_000 in by_size:
        growth = by_size[1_000_000]["sqlite_peak_rss_mb"] - by_size[100_000]["sqlite_peak_rss_mb"]
        checks.append(_check("peak RSS 1M - 100k <= 50 MB", growth, growth <= TARGET_RSS_MB, " MB"))
    return checks


def _check(name: str, value: float, met: bool, unit: str) -> dict[str, Any]:
    return {"target": name, "value": round(value, 2), "unit": unit.strip(), "met": met}


def print_size(result: dict[str, Any]) -> None:
    """The per-object table of one size."""
    bound = min(result["bounds"], key=lambda b: b["seconds"])["objects"]
    engine = min(result["backfills"], key=lambda b: b["seconds"])["objects"]
    rows = []
    for name, o in engine.items():
        bound_rps = rate(o["records"], bound[name]["seconds"])
        engine_rps = rate(o["records"], o["seconds"])
        share = 100 * engine_rps / bound_rps if bound_rps else 0.0
        rows.append([name, o["records"], bound_rps, engine_rps, share, o["api_calls"],
                     result["minimum_calls"].get(name)])  # fmt: skip
    s = summarize(result)
    rows.append(["all (wall clock)", s["records"], s["bound_rps"], s["sqlite_rps"],
                 s["sqlite_pct_of_bound"], s["sqlite_calls"], s["minimum_calls"]])  # fmt: skip
    headers = ["object", "records", "bound rec/s", "SQLite rec/s", "% of bound", "read calls",
               "minimum"]  # fmt: skip
    print_table(f"{result['crm']} backfill, {result['size']:,} deals", headers, rows)


def print_summary(summaries: list[dict[str, Any]], checks: list[dict[str, Any]]) -> None:
    """The cross-size table and the targets."""
    headers = ["size", "records", "bound rec/s", "SQLite rec/s", "% bound", "calls", "minimum",
               "peak RSS MB", "incr. 1k s", "CPU s: bound / CRM", "CPU s: backfill / CRM",
               "% bound by CPU", "load avg"]  # fmt: skip
    rows = [[s["size"], s["records"], s["bound_rps"], s["sqlite_rps"], s["sqlite_pct_of_bound"],
             s["sqlite_calls"], s["minimum_calls"], s["sqlite_peak_rss_mb"],
             s.get("incremental_s"), f"{s['bound_cpu_s']} / {s['bound_sandbox_cpu_s']}",
             f"{s['engine_cpu_s']} / {s['sandbox_cpu_s']}", s["cpu_pct_of_bound"],
             s["load_average"]]
            for s in summaries]  # fmt: skip
    print_table("backfill summary", headers, rows)
    print_table(
        "targets",
        ["target", "value", "met"],
        [[c["target"], f"{c['value']:,}{c['unit']}", "yes" if c["met"] else "NO"] for c in checks],
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark of ``args.crm``, print its tables, write its JSON."""
    sizes: list[dict[str, Any]] = []
    path = None
    for size in args.sizes:
        sizes.append(run_size(args.crm, size, args))
        print_size(sizes[-1])
        # written after every size, so a long run stopped early keeps what it measured
        payload = _payload(args.crm, sizes)
        if path is not None:
            path.unlink(missing_ok=True)
        path = write_results(f"backfill-{args.crm}", payload)
    payload = _payload(args.crm, sizes)
    print_summary(payload["summary"], payload["targets"])
    payload["path"] = str(path)
    return payload


def _payload(crm: str, sizes: list[dict[str, Any]]) -> dict[str, Any]:
    summaries = [summarize(s) for s in sizes]
    return {"crm": crm, "sizes": sizes, "summary": summaries, "targets": targets(summaries)}
