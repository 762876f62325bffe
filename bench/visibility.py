"""Partner-slice queries and the cost of keeping ``mirror_access`` current, on SQLite.

``python -m bench.visibility --sizes 100000,1000000`` runs, per size (a number of sandbox
opportunities; the SQLite mirror of ``bench.backfill`` is reused from ``bench/.cache`` when it
is there, else the sandbox is backfilled first):

1. latency of a partner's first page of 50 opportunities
   (``Mirror.as_partner(p).select("Opportunity", limit=50)``) and of ``count("Opportunity")``
   over ``--queries`` random partners, after a warm-up; the same for contacts, whose grants
   are their account's, read through ``AccountId`` at query time;
2. beside it, the same page as a plain filtered scan of the opportunity table
   (``WHERE "PartnerAccountId" = ? ORDER BY "Id" LIMIT 50``) with the (partner, Id) index,
   with the partner-only index and with no index;
3. the access upkeep: incremental syncs of ``--changes`` opportunity edits through
   ``Puller`` without hooks and with the grant upkeep's page hook, alternated over ``--rounds``.

Every engine step runs in its own process; the sandbox serves from another.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
from pathlib import Path
from typing import Any

from bench import jobs
from bench.backfill import mirror_cache
from bench.changes import edit_opportunities, population
from bench.common import (
    cache_dir,
    copy_sqlite,
    keep_only,
    parse_sizes,
    print_table,
    remove_sqlite,
    write_results,
)
from bench.isolation import run_isolated
from bench.sandbox_process import SandboxProcess, adapter_settings, cached_sandbox

ORDER = (False, True, True, False)  # without, with, with, without: no drift favours either


def ensure_mirror(size: int, seed: int, settings: dict[str, Any], any_code: bool) -> Path:
    """The cached SQLite mirror of ``size``, backfilled now if no earlier run left one.

    ``any_code`` accepts the newest cached mirror even if the engine's code changed since.
    """
    cached = mirror_cache(size, seed)
    if not cached.exists() and any_code:
        older = sorted(cached.parent.glob(f"{cached.name.rsplit('-', 1)[0]}-*.db"))
        if older:
            return max(older, key=lambda path: path.stat().st_mtime)
    if not cached.exists():
        partial = cached.with_suffix(".partial")
        remove_sqlite(partial)
        work = copy_sqlite(cached_sandbox(size, seed), cache_dir() / f"work-sandbox-{size}.db")
        with SandboxProcess(work, size, seed) as sandbox:
            run_isolated(jobs.sync_all, f"sqlite:///{partial}", sandbox.base_url, settings)
        remove_sqlite(work)
        copy_sqlite(partial, cached)
        remove_sqlite(partial)
        keep_only(cached)
    return cached


def run_size(size: int, args: argparse.Namespace, settings: dict[str, Any]) -> dict[str, Any]:
    """Queries and upkeep at one size."""
    cached = ensure_mirror(size, args.seed, settings, args.any_mirror)
    mirror_db = copy_sqlite(cached, cache_dir() / f"work-visibility-mirror-{size}.db")
    url = f"sqlite:///{mirror_db}"
    result: dict[str, Any] = {"size": size, "mirror": cached.name, "analyzed": args.analyze}
    if args.analyze:
        with sqlite3.connect(mirror_db) as conn:
            conn.execute("ANALYZE")
    result["queries"] = run_isolated(jobs.partner_queries, url, args.queries, args.scans, args.seed)
    if args.changes:
        work = copy_sqlite(cached_sandbox(size, args.seed), cache_dir() / f"work-sandbox-{size}.db")
        rng = random.Random(args.seed)
        runs = []
        with SandboxProcess(work, size, args.seed) as sandbox:
            people = population(mirror_db)
            for _round in range(args.rounds):
                for with_access in ORDER:
                    edit_opportunities(sandbox, people, args.changes, rng)
                    runs.append(
                        run_isolated(
                            jobs.pull_opportunities, url, sandbox.base_url, settings, with_access
                        )
                    )
            one_process = run_isolated(
                jobs.pull_opportunities_in_one_process,
                url,
                str(mirror_db),
                sandbox.base_url,
                sandbox.admin_token,
                settings,
                args.changes,
                args.rounds,
                args.seed + 1,
            )
        remove_sqlite(work)
        result["upkeep"] = {"changes": args.changes, "runs": runs}
        result["upkeep_one_process"] = {"changes": args.changes, "runs": one_process["runs"]}
    remove_sqlite(mirror_db)
    return result


def summarize(size_result: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of one size."""
    queries = size_result["queries"]
    summary: dict[str, Any] = {
        "size": size_result["size"],
        "analyzed": bool(size_result.get("analyzed")),
        "partners": queries["partners"],
        "slice_mean": queries["slice_sizes"]["mean"],
        "first_page_p50_ms": queries["first_page"]["p50_ms"],
        "first_page_p99_ms": queries["first_page"]["p99_ms"],
        "count_p50_ms": queries["count"]["p50_ms"],
        "count_p99_ms": queries["count"]["p99_ms"],
    }
    if "contacts_first_page" in queries:
        summary["contact_slice_mean"] = queries["contact_slice_sizes"]["mean"]
        summary["contacts_page_p50_ms"] = queries["contacts_first_page"]["p50_ms"]
        summary["contacts_page_p99_ms"] = queries["contacts_first_page"]["p99_ms"]
        summary["contacts_count_p50_ms"] = queries["contacts_count"]["p50_ms"]
        summary["contacts_count_p99_ms"] = queries["contacts_count"]["p99_ms"]
    for label, timing in queries.get("plain", {}).items():
        summary[f"plain {label} p50_ms"] = timing["p50_ms"]
    for key, suffix in (("upkeep", ""), ("upkeep_one_process", "_one_process")):
        if key in size_result:
            summary.update(_upkeep(size_result[key], suffix))
    return summary


def _upkeep(upkeep: dict[str, Any], suffix: str) -> dict[str, Any]:
    """Medians of the syncs with and without the access hook, and the overhead."""
    runs = upkeep["runs"]
    without = statistics.median(r["seconds"] for r in runs if not r["with_access"])
    with_hook = statistics.median(r["seconds"] for r in runs if r["with_access"])
    hook = statistics.median(r["hook_seconds"] for r in runs if r["with_access"])
    return {
        f"sync_without_access_s{suffix}": without,
        f"sync_with_access_s{suffix}": with_hook,
        f"hook_s{suffix}": hook,
        f"upkeep_overhead_pct{suffix}": 100.0 * (with_hook - without) / without,
        "changes": upkeep["changes"],
    }


def targets(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target with its figure and whether it is met."""
    checks = []
    by_size = {s["size"]: s for s in summaries}
    for s in summaries:
        p50 = s["first_page_p50_ms"]
        checks.append(_check(f"first page p50 < 5 ms ({s['size']:,})", p50, p50 < 5, " ms"))
        for suffix, where in (("", "a process per sync"), ("_one_process", "one process")):
            overhead = s.get(f"upkeep_overhead_pct{suffix}")
            if overhead is not None:
                name = f"access upkeep <= +25% ({s['size']:,}, {where})"
                checks.append(_check(name, overhead, overhead <= 25, "%"))
    if 100_000 in by_size and 1_000_000 in by_size:
        for key in ("first_page_p50_ms", "first_page_p99_ms", "count_p50_ms"):
            ratio = by_size[1_000_000][key] / by_size[100_000][key]
            name = key.removesuffix("_ms").replace("_", " ")
            checks.append(_check(f"{name} 1M / 100k <= 1.5x", ratio, ratio <= 1.5, "x"))
    return checks


def _check(name: str, value: float, met: bool, unit: str) -> dict[str, Any]:
    return {"target": name, "value": round(value, 2), "unit": unit.strip(), "met": met}


def print_results(summaries: list[dict[str, Any]], checks: list[dict[str, Any]]) -> None:
    """The tables: latencies, plain scans, upkeep and targets."""
    headers = ["size", "partners", "mean slice", "page p50 ms", "page p99 ms", "count p50 ms",
               "count p99 ms"]  # fmt: skip
    rows = [
        [s["size"], s["partners"], s["slice_mean"], s["first_page_p50_ms"],
         s["first_page_p99_ms"], s["count_p50_ms"], s["count_p99_ms"]]
        for s in summaries
    ]  # fmt: skip
    print_table("partner first page (50 opportunities) and count", headers, rows)
    rows = [
        [s["size"], s["partners"], s["contact_slice_mean"], s["contacts_page_p50_ms"],
         s["contacts_page_p99_ms"], s["contacts_count_p50_ms"], s["contacts_count_p99_ms"]]
        for s in summaries
        if "contacts_page_p50_ms" in s
    ]  # fmt: skip
    print_table("partner first page (50 contacts, through their account) and count", headers, rows)
    labels = list(jobs.OPPORTUNITY_INDEXES)
    rows = [[s["size"], *(s.get(f"plain {label} p50_ms") for label in labels)] for s in summaries]
    print_table("plain filtered scan, p50 ms", ["size", *labels], rows)
    headers = ["size", "changes", "sync without access s", "with access s", "in the hook s",
               "overhead %"]  # fmt: skip
    for suffix, where in (("", "a process per sync"), ("_one_process", "one long-lived process")):
        rows = [
            [s["size"], s["changes"], s[f"sync_without_access_s{suffix}"],
             s[f"sync_with_access_s{suffix}"], s[f"hook_s{suffix}"],
             s[f"upkeep_overhead_pct{suffix}"]]
            for s in summaries
            if f"hook_s{suffix}" in s
        ]  # fmt: skip
        print_table(f"access upkeep (medians, {where})", headers, rows)
    print_table(
        "targets",
        ["target", "value", "met"],
        [[c["target"], f"{c['value']:,}{c['unit']}", "yes" if c["met"] else "NO"] for c in checks],
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.visibility", description=__doc__)
    parser.add_argument("--sizes", type=parse_sizes, default=parse_sizes("100k,1M"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--scans", type=int, default=20, help="Queries of the no-index scan.")
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=8, help="Rounds of 2 syncs with, 2 without.")
    parser.add_argument(
        "--any-mirror",
        action="store_true",
        help="Reuse the newest cached mirror even if the engine's code changed since it was made.",
    )
    parser.add_argument(
        "--analyze",
        action="store_true",
        help="Run SQLite's ANALYZE on the mirror copy first (planner statistics).",
    )
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print its tables, write its JSON; returns what was written."""
    args = parse_args(argv)
    settings = adapter_settings()
    sizes = [run_size(size, args, settings) for size in args.sizes]
    summaries = [summarize(s) for s in sizes]
    checks = targets(summaries)
    print_results(summaries, checks)
    payload: dict[str, Any] = {"sizes": sizes, "summary": summaries, "targets": checks}
    payload["path"] = str(write_results("visibility", payload))
    return payload


if __name__ == "__main__":
    run()
