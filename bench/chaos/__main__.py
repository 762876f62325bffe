"""``python -m bench.chaos``: run the chaos harness (see the package docstring)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bench.chaos.checker import CHANGE_KINDS, EDIT_KINDS, RECORD_KINDS
from bench.chaos.run import Options, run
from bench.common import PG_URL, console, machine, print_table, write_results
from bench.postgres import pg_available

CRMS = ("salesforce", "hubspot", "dynamics")


def main(argv: list[str] | None = None) -> int:
    """Run the asked scenarios, print their tables, write the JSON; 1 if any count is not 0."""
    parser = argparse.ArgumentParser(description="The engine under a nemesis, then checked.")
    parser.add_argument("--crm", choices=(*CRMS, "all"), default="salesforce")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of chaos")
    parser.add_argument("--size", type=int, default=200, help="sandbox opportunities")
    parser.add_argument("--kills", type=int, default=20, help="engine processes killed")
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--keep", type=Path, default=None, help="keep each run's files here")
    parser.add_argument(
        "--streams", action="store_true", help="Salesforce's change stream on, and its faults"
    )
    args = parser.parse_args(argv)
    if args.store == "postgresql" and not pg_available(args.pg_url):
        parser.error(f"PostgreSQL does not answer at {args.pg_url}")
    runs: list[dict[str, Any]] = []
    try:
        for crm in CRMS if args.crm == "all" else (args.crm,):
            options = Options(crm, args.store, args.seed, args.duration, args.size, args.kills,
                              args.pg_url, args.keep, args.streams)  # fmt: skip
            runs.append(run(options))
            report(runs[-1])
    finally:
        if runs:  # what ran is kept even when a later run breaks off
            path = write_results("chaos", {"machine": machine(), "runs": runs})
            console.print(f"results: {path}")
    return 0 if all(r["clean"] for r in runs) else 1


def report(result: dict[str, Any]) -> None:
    """Print one run: what the nemesis did, the counts, and the first examples of each."""
    title = f"chaos: {result['crm']} on {result['store']}, seed {result['seed']}"
    did = [
        [
            "chaos",
            f"{result['duration_s']} s, then quiesced in {result['quiesce_s']} s "
            f"({result['quiesce_rounds']} rounds)",
        ],
        ["processes started", _pairs(result["processes"])],
        ["signals sent", _pairs(result["kills"])],
        ["CRM changes", _pairs(result["crm_changes"])],
        ["faults injected", _pairs(result["faults"])],
        ["portal edits accepted", _pairs(result["portal_edits"])],
        ["portal attempts", _pairs(result["portal_attempts"])],
        ["edit outcomes", _pairs({k: v for k, v in result["compared"].items() if "edit" in k})],
        [
            "records compared",
            _pairs({k: v for k, v in result["compared"].items() if "edit" not in k}),
        ],
        ["left after quiescence", _pairs(result["leftovers"])],
    ]
    for source, counts in result.get("streams", {}).items():
        did.append([f"stream of {source}", _pairs(counts)])
    for error, count in result["process_errors"].items():
        did.append(["engine error", f"{count} x {error}"])
    if result["quiesce_exits"]:
        did.append(["quiescence failures", "; ".join(result["quiesce_exits"])])
    print_table(title, ["", ""], did)
    counts = [["records", kind, result["records"][kind]] for kind in RECORD_KINDS]
    counts += [["edits", kind, result["edits"][kind]] for kind in EDIT_KINDS]
    counts += [["CRM changes", kind, result["changes"][kind]] for kind in CHANGE_KINDS]
    print_table("counts (each must be 0)", ["", "kind", "count"], counts)
    for key, examples in sorted(result["examples"].items()):
        console.print(f"[bold]{key}[/bold] (first {len(examples)}):")
        for example in examples:
            console.print(f"  {example}", markup=False, highlight=False)
    console.print("[green]clean[/green]" if result["clean"] else "[red]NOT CLEAN[/red]")


def _pairs(counts: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(counts.items())) or "-"


if __name__ == "__main__":
    sys.exit(main())
