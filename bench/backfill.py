"""Backfill of opportunities and their graph from the Salesforce sandbox, at several sizes
(``--crm hubspot|dynamics``: the same measurements of those CRMs, ``bench.crm_backfill``).

``python -m bench.backfill --sizes 10000,100000,1000000`` runs, per size (a number of
opportunities; the other objects scale with it):

1. the bound: every object's pages read through the adapter and thrown away;
2. the backfill of the whole graph into a fresh SQLite mirror through ``Mirror.sync``;
3. the same backfill into a fresh PostgreSQL schema (sizes in ``--pg-sizes``), with the time
   it spends after its objects are written (deriving the partner slices);
4. an incremental sync of ``--changes`` opportunity edits made in the sandbox.

``--pg-only`` runs step 3 alone, at every size.

The sandbox serves from its own process, each engine step runs in a fresh process whose peak
RSS is reported. Prints the tables and writes JSON to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from pathlib import Path
from typing import Any

from bench import jobs
from bench.changes import edit_opportunities, population
from bench.common import (
    MIRROR_CODE,
    PG_URL,
    cache_dir,
    cached_file,
    copy_sqlite,
    keep_only,
    parse_sizes,
    print_table,
    remove_sqlite,
    write_results,
)
from bench.isolation import machine_busy_seconds, run_isolated
from bench.postgres import committed_rows, pg_available, pg_schema
from bench.sandbox_process import SandboxProcess, adapter_settings, cached_sandbox

OBJECTS = (
    "User", "Account", "Contact", "Lead", "Product2", "Opportunity", "OpportunityLineItem",
    "Deal_Registration__c",
)  # fmt: skip
BULK_POLLS = 2  # the sandbox's jobs go UploadComplete -> InProgress -> JobComplete


def mirror_cache(size: int, seed: int) -> Path:
    """Where the SQLite mirror of a backfill is kept for ``bench.visibility`` (named after
    the engine's and the sandbox's code, so a mirror made by other code is not reused)."""
    return cached_file(f"mirror-salesforce-{size}-seed{seed}", MIRROR_CODE)


def minimum_calls(records: int, settings: dict[str, Any]) -> int:
    """The fewest API calls that can read ``records`` records of one object.

    REST: one query call per page. Bulk API 2.0 (above ``bulk_threshold``): one job creation,
    the polls until the job completes, and one call per results page.
    """
    if records > settings["bulk_threshold"]:
        return 1 + BULK_POLLS + max(1, math.ceil(records / settings["bulk_page_size"]))
    return max(1, math.ceil(records / settings["page_size"]))


def run_size(size: int, args: argparse.Namespace, settings: dict[str, Any]) -> dict[str, Any]:
    """Every step of the benchmark at one size."""
    pristine = cached_sandbox(size, args.seed)
    kept_mirror = mirror_cache(size, args.seed)
    work = cache_dir() / f"work-sandbox-{size}.db"
    mirror_db = cache_dir() / f"work-mirror-{size}.db"
    copy_sqlite(pristine, work)
    remove_sqlite(mirror_db)
    result: dict[str, Any] = {"size": size, "settings": settings}
    with SandboxProcess(work, size, args.seed) as sandbox:
        result["counts"] = {name: int(sandbox.admin("count", sobject=name)) for name in OBJECTS}
        result["records_total"] = sum(result["counts"].values())
        result["minimum_calls"] = {
            name: minimum_calls(count, settings) for name, count in result["counts"].items()
        }
        url = sandbox.base_url
        sqlite_url = f"sqlite:///{mirror_db}"
        if not args.pg_only:
            result["bound"] = _step(sandbox, jobs.fetch_only, url, settings)
            result["sqlite"] = _step(sandbox, jobs.sync_all, sqlite_url, url, settings)
            if not args.no_mirror_cache:
                copy_sqlite(mirror_db, kept_mirror)
                keep_only(kept_mirror)
        if (args.pg_only or size in args.pg_sizes) and pg_available(args.pg_url):
            with pg_schema(args.pg_url) as pg_url:
                result["postgresql"] = _pg_step(sandbox, pg_url, url, settings, args.pg_timeout)
        if args.changes and not args.pg_only:
            people = population(mirror_db)
            edit_opportunities(sandbox, people, args.changes, random.Random(args.seed))
            result["incremental"] = _step(sandbox, jobs.sync_all, sqlite_url, url, settings)
            result["incremental"]["changes"] = args.changes
    if not args.keep_work:
        remove_sqlite(work)
        remove_sqlite(mirror_db)
    return result


def _pg_step(
    sandbox: SandboxProcess, pg_url: str, url: str, settings: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """The PostgreSQL backfill; when it outlasts ``timeout``, what it had committed by then."""
    try:
        return _step(sandbox, jobs.sync_all, pg_url, url, settings, timeout=timeout)
    except TimeoutError:
        _end_orphans(pg_url)
        tables = {name: f"salesforce__{name.lower()}" for name in OBJECTS}
        rows = committed_rows(pg_url, list(tables.values()))
        return {
            "timed_out": True,
            "seconds": timeout,
            "committed": {name: rows.get(table, 0) for name, table in tables.items()},
        }


def _end_orphans(pg_url: str) -> None:
    """End the sessions still at work in the run's schema. The engine process stopped at the
    timeout leaves its statement running (the server notices a vanished client only when it
    next writes to it), holding locks that counting the committed rows would wait for."""
    from sqlalchemy import create_engine, text

    engine = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM (SELECT DISTINCT l.pid FROM pg_locks l "
                    "JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n "
                    "ON n.oid = c.relnamespace WHERE n.nspname = current_schema() "
                    "AND l.pid <> pg_backend_pid()) AS working"
                )
            )
    finally:
        engine.dispose()


def _step(sandbox: SandboxProcess, job: Any, *args: Any, timeout: float | None = None) -> Any:
    """Run one isolated engine step, noting the CPU the sandbox and everything else used."""
    sandbox_cpu, busy = sandbox.cpu_seconds(), machine_busy_seconds()
    started = time.perf_counter()
    outcome = run_isolated(job, *args, timeout=timeout)
    outcome["wall_s"] = round(time.perf_counter() - started, 3)
    outcome["sandbox_cpu_s"] = round(sandbox.cpu_seconds() - sandbox_cpu, 2)
    outcome["other_cpu_s"] = round(
        machine_busy_seconds() - busy - outcome["sandbox_cpu_s"] - outcome["cpu_s"], 2
    )
    return outcome


def _pg_summary(size_result: dict[str, Any]) -> dict[str, Any]:
    """The PostgreSQL backfill's figures (none when it did not run)."""
    pg = size_result.get("postgresql")
    if pg is None:
        return {}
    timed_out = bool(pg.get("timed_out"))
    done = sum(pg["committed"].values()) if timed_out else size_result["records_total"]
    summary = {
        "postgresql_timed_out": timed_out,
        "postgresql_rps": rate(done, pg["seconds"]),
        "postgresql_peak_rss_mb": pg.get("peak_rss_mb"),
    }
    if not timed_out:
        summary["postgresql_after_objects_s"] = after_objects(pg)
    return summary


def after_objects(step: dict[str, Any]) -> float:
    """Seconds of a sync spent outside its objects' runs: after the last object is written,
    deriving the partner slices of the objects it backfilled (and before the first, reading
    their descriptions)."""
    return round(step["seconds"] - sum(o["seconds"] for o in step["objects"].values()), 3)


def rate(records: int, seconds: float) -> float:
    """Records per second (0 when nothing was timed)."""
    return records / seconds if seconds > 0 else 0.0


def summarize(size_result: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of one size: throughput vs bound, calls vs minimum, memory."""
    records = size_result["records_total"]
    if "sqlite" not in size_result:
        return {"size": size_result["size"], "records": records, **_pg_summary(size_result)}
    bound, engine = size_result["bound"], size_result["sqlite"]
    engine_calls = sum(o["api_calls"] for o in engine["objects"].values())
    minimum = sum(size_result["minimum_calls"].values())
    summary = {
        "size": size_result["size"],
        "records": records,
        "bound_rps": rate(records, bound["seconds"]),
        "sqlite_rps": rate(records, engine["seconds"]),
        "sqlite_calls": engine_calls,
        "minimum_calls": minimum,
        "calls_over_minimum_pct": 100.0 * (engine_calls - minimum) / minimum,
        "sqlite_after_objects_s": after_objects(engine),
        "sqlite_peak_rss_mb": engine["peak_rss_mb"],
        "bound_peak_rss_mb": bound["peak_rss_mb"],
    }
    summary["sqlite_pct_of_bound"] = 100.0 * summary["sqlite_rps"] / summary["bound_rps"]
    summary.update(_pg_summary(size_result))
    if "postgresql_rps" in summary:
        summary["postgresql_pct_of_bound"] = (
            100.0 * summary["postgresql_rps"] / summary["bound_rps"]
        )
    if "incremental" in size_result:
        incremental = size_result["incremental"]
        summary["incremental_s"] = incremental["seconds"]
        summary["incremental_opportunity_s"] = incremental["objects"]["Opportunity"]["seconds"]
        summary["incremental_updated"] = sum(o["updated"] for o in incremental["objects"].values())
    return summary


def targets(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target with its figure and whether it is met."""
    summaries = [s for s in summaries if "sqlite_rps" in s]
    by_size = {s["size"]: s for s in summaries}
    checks = []
    for s in summaries:
        share, extra = s["sqlite_pct_of_bound"], s["calls_over_minimum_pct"]
        size = f"{s['size']:,}"
        checks.append(_check(f"throughput >= 60% of bound ({size})", share, share >= 60, "%"))
        checks.append(_check(f"API calls within 5% of minimum ({size})", extra, extra <= 5, "%"))
    if 100_000 in by_size and 1_000_000 in by_size:
        growth = by_size[1_000_000]["sqlite_peak_rss_mb"] - by_size[100_000]["sqlite_peak_rss_mb"]
        checks.append(_check("peak RSS 1M - 100k <= 50 MB", growth, growth <= 50, " MB"))
    if 10_000 in by_size and 1_000_000 in by_size and "incremental_s" in by_size[10_000]:
        for key, what in (("incremental_s", "whole sync"), ("incremental_opportunity_s", "Opp.")):
            ratio = by_size[1_000_000][key] / by_size[10_000][key]
            checks.append(_check(f"incremental 1M / 10k <= 2x ({what})", ratio, ratio <= 2, "x"))
    return checks


def _check(name: str, value: float, met: bool, unit: str) -> dict[str, Any]:
    return {"target": name, "value": round(value, 2), "unit": unit.strip(), "met": met}


def print_size(size_result: dict[str, Any]) -> None:
    """The per-object table of one size."""
    if "sqlite" not in size_result:
        _print_pg_size(size_result)
        return
    bound, engine = size_result["bound"]["objects"], size_result["sqlite"]["objects"]
    pg = size_result.get("postgresql", {}).get("objects", {})
    rows = []
    for name, count in size_result["counts"].items():
        bound_rps = rate(count, bound[name]["seconds"])
        engine_rps = rate(count, engine[name]["seconds"])
        rows.append([
            name, count, bound_rps, engine_rps, 100 * engine_rps / bound_rps if bound_rps else 0.0,
            rate(count, pg[name]["seconds"]) if name in pg else None,
            engine[name]["api_calls"], size_result["minimum_calls"][name],
        ])  # fmt: skip
    s = summarize(size_result)
    rows.append(["all (wall clock)", s["records"], s["bound_rps"], s["sqlite_rps"],
                 s["sqlite_pct_of_bound"], s.get("postgresql_rps"), s["sqlite_calls"],
                 s["minimum_calls"]])  # fmt: skip
    headers = ["object", "records", "bound rec/s", "SQLite rec/s", "% of bound", "PG rec/s",
               "API calls", "minimum"]  # fmt: skip
    print_table(f"backfill, {size_result['size']:,} opportunities", headers, rows)


def _print_pg_size(size_result: dict[str, Any]) -> None:
    pg = size_result["postgresql"]
    objects = pg.get("objects", {})
    rows: list[list[Any]] = [
        [name, count, rate(count, objects[name]["seconds"]) if name in objects else None]
        for name, count in size_result["counts"].items()
    ]
    rows.append(
        ["all (wall clock)", size_result["records_total"], _pg_cell(summarize(size_result))]
    )
    title = f"PostgreSQL backfill, {size_result['size']:,} opportunities"
    print_table(title, ["object", "records", "PG rec/s"], rows)


def print_summary(summaries: list[dict[str, Any]], checks: list[dict[str, Any]]) -> None:
    """The cross-size table and the targets."""
    headers = ["size", "records", "bound rec/s", "SQLite rec/s", "% bound", "PG rec/s",
               "PG after objects s", "peak RSS MB", "incr. 1k s", "incr. Opp. s"]  # fmt: skip
    rows = [
        [s["size"], s["records"], s.get("bound_rps"), s.get("sqlite_rps"),
         s.get("sqlite_pct_of_bound"), _pg_cell(s), s.get("postgresql_after_objects_s"),
         s.get("sqlite_peak_rss_mb"),
         s.get("incremental_s"), s.get("incremental_opportunity_s")]
        for s in summaries
    ]  # fmt: skip
    print_table("backfill summary", headers, rows)
    print_table(
        "targets",
        ["target", "value", "met"],
        [[c["target"], f"{c['value']:,}{c['unit']}", "yes" if c["met"] else "NO"] for c in checks],
    )


def _pg_cell(summary: dict[str, Any]) -> str | float | None:
    rps = summary.get("postgresql_rps")
    if rps is not None and summary.get("postgresql_timed_out"):
        return f"{rps:,.0f} (stopped, unfinished)"
    return rps


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.backfill", description=__doc__)
    parser.add_argument(
        "--crm",
        choices=("salesforce", "hubspot", "dynamics"),
        default="salesforce",
        help="HubSpot and Dynamics: bench.crm_backfill (bound, backfill, incremental).",
    )
    parser.add_argument("--sizes", type=parse_sizes, default=parse_sizes("10k,100k,1M"))
    parser.add_argument("--size", type=parse_sizes, dest="sizes", help="Same as --sizes.")
    parser.add_argument(
        "--rounds", type=int, default=1, help="HubSpot/Dynamics: interleaved bound+backfill."
    )
    parser.add_argument("--pg-sizes", type=parse_sizes, default=parse_sizes("100k"))
    parser.add_argument("--pg-url", default=PG_URL, help="PostgreSQL server for --pg-sizes.")
    parser.add_argument(
        "--pg-only",
        action="store_true",
        help="Only the PostgreSQL backfill, at every size (no bound, SQLite or incremental).",
    )
    parser.add_argument(
        "--pg-timeout", type=float, default=3600, help="Stop a PostgreSQL backfill after this."
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--page-size", type=int, help="Default: the engine's config default.")
    parser.add_argument("--bulk-threshold", type=int, help="Default: as --page-size.")
    parser.add_argument("--bulk-page-size", type=int, help="Default: as --page-size.")
    parser.add_argument("--keep-work", action="store_true", help="Keep the work databases.")
    parser.add_argument(
        "--no-mirror-cache", action="store_true", help="Do not keep the mirror for visibility."
    )
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print its tables, write its JSON; returns what was written."""
    args = parse_args(argv)
    if args.crm != "salesforce":
        from bench import crm_backfill

        return crm_backfill.run(args)
    settings = adapter_settings(
        page_size=args.page_size,
        bulk_threshold=args.bulk_threshold,
        bulk_page_size=args.bulk_page_size,
    )
    sizes = []
    for size in args.sizes:
        sizes.append(run_size(size, args, settings))
        print_size(sizes[-1])
    summaries = [summarize(s) for s in sizes]
    checks = targets(summaries)
    print_summary(summaries, checks)
    payload: dict[str, Any] = {"sizes": sizes, "summary": summaries, "targets": checks}
    payload["path"] = str(write_results("backfill", payload))
    return payload


if __name__ == "__main__":
    run()
