"""prm-mirror against a peer, dlt, on the same Salesforce sandbox and the same dataset.

``python -m bench.peers --size 100k --rounds 2`` serves the seeded sandbox from its own process
and, per round, backfills the objects (``--objects``, default the whole graph prm-mirror keeps)
with prm-mirror into a fresh SQLite mirror, then with a dlt pipeline (``bench/peers_dlt.py``,
in dlt's own virtual environment, loading into SQLite through dlt's ``sqlalchemy`` destination)
into a fresh SQLite database: A B A B. Then, in the sandbox, ``--changes`` opportunities and
contacts are edited and ``--deletes`` of each deleted (soft deletes, into the recycle bin), and
each side runs once more, incrementally, from its last backfill. Reported per side: wall time,
records per API call (the sandbox's call log), peak RSS of the step's whole process tree, and,
after the incremental run, how its tables differ from the sandbox: rows of deleted records it
still holds (and how many of those say they are deleted), live records it lacks, and edited
records with an old ``SystemModstamp``. Prints the tables, writes JSON to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import statistics
from pathlib import Path
from typing import Any

from bench.common import cache_dir, parse_sizes, print_table, write_results
from bench.peers_steps import (
    DLT_REQUIREMENTS,
    PeerUnavailable,
    dlt_command,
    dlt_env,
    dlt_python,
    dlt_settings,
    measured,
    mirror_command,
)
from bench.sandbox_process import SandboxProcess, adapter_settings, cached_sandbox
from mirror.errors import MirrorError

OBJECTS = (
    "User", "Account", "Contact", "Lead", "Product2", "Opportunity", "OpportunityLineItem",
    "Deal_Registration__c",
)  # fmt: skip
EDITED = ("Opportunity", "Contact")
CLOCK_STEP_SECONDS = 120


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the comparison; returns (and writes) its payload."""
    args = parse_args(argv)
    python = Path(args.dlt_python) if args.dlt_python else dlt_python()
    work = Path(args.workdir) if args.workdir else cache_dir() / "peers-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    sandbox_db = work / "sandbox.db"
    shutil.copyfile(cached_sandbox(args.size, args.seed), sandbox_db)
    objects = list(args.objects)
    payload: dict[str, Any] = {
        "size": args.size, "objects": objects, "rounds": [], "api": args.api,
        "settings": {"prm_mirror": adapter_settings(), "dlt": {
            **dlt_settings(args.dlt_workers), "requirements": list(DLT_REQUIREMENTS),
            "api": args.api, "bulk_page_size": 50_000, "destination": "sqlalchemy (SQLite)"}},
    }  # fmt: skip
    env = dlt_env(args.dlt_workers)
    with SandboxProcess(sandbox_db, args.size, args.seed) as sandbox:
        url = sandbox.base_url
        payload["counts"] = {name: sandbox.admin("count", sobject=name) for name in objects}

        def step(command: list[str], with_env: dict[str, str] | None = None) -> dict[str, Any]:
            sandbox.admin("reset_calls")
            outcome = measured(command, with_env)
            outcome["api_calls"] = int(sandbox.admin("call_count"))
            outcome["records"] = sum(outcome["rows"].values())
            return outcome

        for number in range(args.rounds):
            mirror_db, dlt_dir = work / f"mirror-{number}.db", work / f"dlt-{number}"
            payload["rounds"].append({
                "prm_mirror": step(mirror_command(mirror_db, url, objects)),
                "dlt": step(dlt_command(python, "run", dlt_dir, url, objects, args.api), env),
            })  # fmt: skip
        changed = change_sandbox(sandbox, args.changes, args.deletes, random.Random(args.seed))
        last = args.rounds - 1
        mirror_db, dlt_dir = work / f"mirror-{last}.db", work / f"dlt-{last}"
        payload["incremental"] = {
            "prm_mirror": step(mirror_command(mirror_db, url, objects)),
            "dlt": step(dlt_command(python, "run", dlt_dir, url, objects, args.api), env),
            "changes": {name: len(ids) for name, ids in changed["updated"].items()},
            "deletes": {name: len(ids) for name, ids in changed["deleted"].items()},
        }
        held_dlt = measured(dlt_command(python, "inspect", dlt_dir, url, objects, args.api), env)
        truth = sandbox_truth(sandbox, objects, changed["updated"])
        payload["correctness"] = {
            "prm_mirror": tally(mirror_rows(mirror_db, objects), truth),
            "dlt": tally({name: held_dlt[name] for name in objects}, truth),
        }
    payload["summary"] = summarize(payload)
    payload["load_avg_end"] = [round(value, 2) for value in os.getloadavg()]
    payload["path"] = str(write_results("peers", payload))
    if not args.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    print_report(payload)
    return payload


def change_sandbox(
    sandbox: SandboxProcess, changes: int, deletes: int, rng: random.Random
) -> dict[str, dict[str, list[str]]]:
    """Advance the sandbox clock, edit ``changes`` and soft-delete ``deletes`` other records of
    each edited object, through the sandbox's admin path; the ids of both, per object."""
    sandbox.admin("advance_clock", seconds=CLOCK_STEP_SECONDS)
    updated: dict[str, list[str]] = {}
    deleted: dict[str, list[str]] = {}
    for name in EDITED:
        live = sandbox.admin("ids", sobject=name)
        chosen = rng.sample(live, min(len(live), changes + deletes))
        updated[name], deleted[name] = chosen[:changes], chosen[changes:]
        for record_id in updated[name]:
            values = {"Description": f"peer benchmark edit {rng.randint(0, 10**9)}"}
            sandbox.admin("update", sobject=name, record_id=record_id, values=values)
        for record_id in deleted[name]:
            sandbox.admin("delete", sobject=name, record_id=record_id)
    return {"updated": updated, "deleted": deleted}


def sandbox_truth(
    sandbox: SandboxProcess, objects: list[str], updated: dict[str, list[str]]
) -> dict[str, Any]:
    """The sandbox's live ids per object, and the edited records' ``SystemModstamp``."""
    stamps = {
        record_id: stamp_text(sandbox.admin("get", sobject=name, record_id=record_id)
                              ["SystemModstamp"])
        for name, ids in updated.items()
        for record_id in ids
    }  # fmt: skip
    return {"live": {name: set(sandbox.admin("ids", sobject=name)) for name in objects},
            "stamps": stamps}  # fmt: skip


def mirror_rows(database: Path, objects: list[str]) -> dict[str, list[list[Any]]]:
    """``[Id, deleted, SystemModstamp]`` of every row of the prm-mirror tables."""
    held: dict[str, list[list[Any]]] = {}
    with sqlite3.connect(database) as conn:
        for name in objects:
            sql = f'SELECT "Id", _deleted, "SystemModstamp" FROM salesforce__{name.lower()}'
            held[name] = [[row[0], bool(row[1]), str(row[2])] for row in conn.execute(sql)]
    return held


def stamp_text(value: Any) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM:SS`` (whole seconds, UTC), whatever its notation."""
    return str(value).replace("T", " ")[:19]


def tally(held: dict[str, list[list[Any]]], truth: dict[str, Any]) -> dict[str, Any]:
    """How one side's tables differ from the sandbox, per object and in total.

    ``stale_rows``: rows of records the sandbox no longer has live (a plain ``SELECT`` of the
    table returns them unless the reader filters on the deleted flag); ``flagged``: those of
    them marked deleted; ``missing``: live records without a row; ``old_values``: edited
    records whose row still has the ``SystemModstamp`` from before the edit.
    """
    per_object: dict[str, dict[str, int]] = {}
    for name, rows in held.items():
        live = truth["live"][name]
        ids = {row[0] for row in rows}
        gone = [row for row in rows if row[0] not in live]
        old = sum(1 for row in rows if row[0] in truth["stamps"]
                  and stamp_text(row[2]) != truth["stamps"][row[0]])  # fmt: skip
        per_object[name] = {
            "rows": len(rows),
            "live": len(live),
            "stale_rows": len(gone),
            "flagged": sum(1 for row in gone if row[1]),
            "unflagged_stale": sum(1 for row in gone if not row[1]),
            "missing": len(live - ids),
            "old_values": old,
        }
    totals = {
        key: sum(o[key] for o in per_object.values()) for key in next(iter(per_object.values()))
    }
    return {"objects": per_object, "total": totals,
            "exact_when_filtered": totals["unflagged_stale"] + totals["missing"]
            + totals["old_values"] == 0}  # fmt: skip


def summarize(payload: dict[str, Any]) -> dict[str, Any]:
    """Medians over the rounds and the ratios dlt / prm-mirror; the goal's checks."""
    sides = ("prm_mirror", "dlt")
    medians: dict[str, dict[str, float]] = {}
    for side in sides:
        steps = [r[side] for r in payload["rounds"]]
        medians[side] = {
            "wall_s": statistics.median(s["wall_s"] for s in steps),
            "peak_rss_mb": statistics.median(s["tree_peak_rss_mb"] for s in steps),
            "records_per_call": statistics.median(s["records"] / s["api_calls"] for s in steps),
            "api_calls": statistics.median(s["api_calls"] for s in steps),
            "records": statistics.median(s["records"] for s in steps),
        }
    mirror, dlt = medians["prm_mirror"], medians["dlt"]
    wall_ratio = dlt["wall_s"] / mirror["wall_s"]
    rss_ratio = mirror["peak_rss_mb"] / dlt["peak_rss_mb"]
    correct = payload["correctness"]
    mirror_exact = correct["prm_mirror"]["exact_when_filtered"]
    return {
        "medians": medians,
        "round_wall_ratios": [
            round(r["dlt"]["wall_s"] / r["prm_mirror"]["wall_s"], 2) for r in payload["rounds"]
        ],
        "wall_ratio": round(wall_ratio, 2),
        "rss_ratio": round(rss_ratio, 2),
        "incremental_wall_ratio": round(
            payload["incremental"]["dlt"]["wall_s"]
            / payload["incremental"]["prm_mirror"]["wall_s"],
            2,
        ),
        "goals": {
            "backfill at least 3x dlt's speed": wall_ratio >= 3,
            "at most half dlt's peak RSS": rss_ratio <= 0.5,
            "prm-mirror exact": mirror_exact,
            "dlt's tables hold deleted records": correct["dlt"]["total"]["stale_rows"] > 0,
            "dlt exact when filtered on is_deleted": correct["dlt"]["exact_when_filtered"],
        },
    }


def print_report(payload: dict[str, Any]) -> None:
    """The rounds, the incremental run, the correctness tally and the goals."""
    rows = []
    for number, result in enumerate(payload["rounds"], 1):
        for side in ("prm_mirror", "dlt"):
            step = result[side]
            rows.append([number, side, step["wall_s"], step["records"], step["api_calls"],
                         step["records"] / step["api_calls"], step["tree_peak_rss_mb"],
                         f"{step['load_avg'][0]} / {step['load_avg'][1]}"])  # fmt: skip
    headers = ["round", "side", "wall s", "records", "API calls", "records/call",
               "peak RSS MB (tree)", "load avg start / end"]  # fmt: skip
    print_table(f"backfill, {payload['size']:,} opportunities", headers, rows)
    incremental = payload["incremental"]
    correct = payload["correctness"]
    rows = [
        [side, incremental[side]["wall_s"], incremental[side]["records"],
         incremental[side]["api_calls"], incremental[side]["tree_peak_rss_mb"],
         *(correct[side]["total"][key] for key in
           ("stale_rows", "flagged", "missing", "old_values"))]
        for side in ("prm_mirror", "dlt")
    ]  # fmt: skip
    headers = ["side", "wall s", "records", "API calls", "peak RSS MB", "stale rows",
               "of which flagged deleted", "missing", "old values"]  # fmt: skip
    print_table(f"incremental after edits {incremental['changes']} and deletes "
                f"{incremental['deletes']}", headers, rows)  # fmt: skip
    summary = payload["summary"]
    print_table("dlt / prm-mirror", ["figure", "value"], [
        ["backfill wall time ratio (median)", summary["wall_ratio"]],
        ["per round", ", ".join(map(str, summary["round_wall_ratios"]))],
        ["peak RSS prm-mirror / dlt", summary["rss_ratio"]],
        ["incremental wall time ratio", summary["incremental_wall_ratio"]],
        *[[goal, "yes" if met else "NO"] for goal, met in summary["goals"].items()],
    ])  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__)
    parser.add_argument("--size", type=lambda text: parse_sizes(text)[0], default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--objects", type=lambda text: text.split(","), default=list(OBJECTS))
    parser.add_argument("--changes", type=int, default=1000, help="Edits per edited object.")
    parser.add_argument("--deletes", type=int, default=200, help="Deletes per edited object.")
    parser.add_argument(
        "--api",
        choices=("bulk", "rest"),
        default="bulk",
        help="dlt's read: Bulk API queryAll (as its verified source) or REST.",
    )
    parser.add_argument(
        "--dlt-python",
        help="An interpreter with dlt and simple-salesforce "
        "(default: a virtual environment made under ~/.cache/prm-mirror).",
    )
    parser.add_argument("--dlt-workers", type=int, default=2, help="dlt's normalize workers.")
    parser.add_argument("--workdir", help="Where the databases go (default bench/.cache).")
    parser.add_argument("--keep-work", action="store_true")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main() -> None:
    """Entry point: exit 2 with the reason when dlt's environment cannot be made."""
    try:
        run()
    except (PeerUnavailable, MirrorError) as error:
        raise SystemExit(f"bench.peers: {error}") from None


if __name__ == "__main__":
    main()
