"""Markdown tables of benchmark results, for docs/benchmarks.md.

``python -m bench.report bench/results/backfill-....json bench/results/visibility-....json``
prints, per file, the machine and the figure tables in Markdown (no figure is retyped by hand).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; numbers with thousands separators."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "-" if value is None else str(value)


def machine_block(machine: dict[str, Any]) -> str:
    """The machine a result file comes from."""
    return (
        f"{machine['nproc']} cores ({machine['cpu_model']}), "
        f"{machine['memory_total_gib']} GiB RAM, Python {machine['python']}, "
        f"SQLite {machine['sqlite']}, {machine['date']}"
    )


def backfill_tables(data: dict[str, Any]) -> str:
    """Per-size object tables, the summary and the targets of a backfill result."""
    parts = []
    for size in data["sizes"]:
        bound, engine = size["bound"]["objects"], size["sqlite"]["objects"]
        pg = size.get("postgresql", {}).get("objects", {})
        rows = []
        for name, count in size["counts"].items():
            b = count / bound[name]["seconds"] if bound[name]["seconds"] else 0.0
            e = count / engine[name]["seconds"] if engine[name]["seconds"] else 0.0
            p = count / pg[name]["seconds"] if name in pg and pg[name]["seconds"] else None
            calls, least = engine[name]["api_calls"], size["minimum_calls"][name]
            rows.append([name, count, round(b), round(e), 100 * e / b if b else 0.0,
                         round(p) if p else None, calls, least])  # fmt: skip
        parts.append(f"**{size['size']:,} opportunities** ({size['records_total']:,} records)\n")
        headers = ["object", "records", "bound rec/s", "SQLite rec/s", "% of bound", "PG rec/s",
                   "API calls", "minimum"]  # fmt: skip
        parts.append(markdown_table(headers, rows) + "\n")
    rows = [
        [s["size"], s["records"], round(s["bound_rps"]), round(s["sqlite_rps"]),
         s["sqlite_pct_of_bound"], _pg(s), s["sqlite_calls"], s["minimum_calls"],
         s["sqlite_peak_rss_mb"], s.get("incremental_s"), s.get("incremental_opportunity_s")]
        for s in data["summary"]
    ]  # fmt: skip
    headers = ["opportunities", "records", "bound rec/s", "SQLite rec/s", "% of bound",
               "PG rec/s", "API calls", "minimum", "peak RSS MB", "incremental s",
               "of which Opportunity s"]  # fmt: skip
    parts.append(markdown_table(headers, rows) + "\n")
    parts.append(targets_table(data["targets"]))
    return "\n".join(parts)


def _pg(summary: dict[str, Any]) -> str | int | None:
    rps = summary.get("postgresql_rps")
    if rps is None:
        return None
    return f"{rps:,.0f} (unfinished)" if summary.get("postgresql_timed_out") else round(rps)


def visibility_tables(data: dict[str, Any]) -> str:
    """Latency, plain-scan, upkeep and target tables of a visibility result."""
    summaries = data["summary"]
    rows = [
        [s["size"], s["partners"], s["slice_mean"], s["first_page_p50_ms"],
         s["first_page_p99_ms"], s["count_p50_ms"], s["count_p99_ms"]]
        for s in summaries
    ]  # fmt: skip
    headers = ["opportunities", "partners", "mean slice", "first page p50 ms",
               "first page p99 ms", "count p50 ms", "count p99 ms"]  # fmt: skip
    parts = [markdown_table(headers, rows) + "\n"]
    labels = ["index (partner, Id)", "no index"]
    rows = [[s["size"], *(s.get(f"plain {label} p50_ms") for label in labels)] for s in summaries]
    parts.append(markdown_table(["opportunities", *[f"{x} p50 ms" for x in labels]], rows) + "\n")
    rows = [
        [s["size"], s["changes"], s["sync_without_access_s"], s["sync_with_access_s"],
         s["hook_s"], s["upkeep_overhead_pct"]]
        for s in summaries
        if "changes" in s
    ]  # fmt: skip
    headers = ["opportunities", "changes", "sync without access s", "with access s",
               "in the access hook s", "overhead %"]  # fmt: skip
    parts.append(markdown_table(headers, rows) + "\n")
    parts.append(targets_table(data["targets"]))
    return "\n".join(parts)


def targets_table(targets: list[dict[str, Any]]) -> str:
    """Each target, its figure and whether it is met."""
    rows = [[t["target"], f"{t['value']:,}{t['unit']}", t["met"]] for t in targets]
    return markdown_table(["target", "measured", "met"], rows) + "\n"


def main(paths: list[str]) -> None:
    """Print the Markdown of each result file."""
    for path in paths:
        data = json.loads(Path(path).read_text())
        print(f"<!-- {Path(path).name} -->\n")
        print(
            f"Machine: {machine_block(data['machine'])}, commit {data['machine'].get('commit')}\n"
        )
        if data["benchmark"] == "backfill":
            print(backfill_tables(data))
        else:
            print(visibility_tables(data))


if __name__ == "__main__":
    main(sys.argv[1:])
