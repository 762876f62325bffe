"""What the benchmarks share: where they keep files, the machine, tables and results.

The sandbox runs in its own process (``bench.sandbox_process``) and every measured engine step
runs in a fresh spawned process (``bench.isolation``), so neither the sandbox's CPU nor the
driver's memory is counted as the engine's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import sqlite3
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil
from rich import box
from rich.console import Console
from rich.table import Table

BENCH_DIR = Path(__file__).resolve().parent
CACHE_DIR = BENCH_DIR / ".cache"
RESULTS_DIR = BENCH_DIR / "results"
SOURCE = "salesforce"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ROOT = BENCH_DIR.parent
SANDBOX_CODE = (
    "sandboxes/dataset/*.py",
    "sandboxes/kit/*.py",
    "sandboxes/salesforce/*.py",
    "sandboxes/salesforce/specs/*.json",
)
MIRROR_CODE = (
    *SANDBOX_CODE,
    "mirror/**/*.py",
    "adapters/_kit/*.py",
    "adapters/salesforce/*.py",
    "schemas/salesforce.toml",
)
console = Console(width=160)


# -- machine and results ---------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """The machine the figures come from: cores, memory, CPU model, Python, SQLite, date."""
    model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = psutil.virtual_memory()
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "memory_total_gib": round(memory.total / 2**30, 1),
        "memory_available_gib": round(memory.available / 2**30, 1),
        "cpu_model": model,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "commit": _git_head(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _git_head() -> str | None:
    try:
        answer = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return None
    return answer.stdout.strip() or None


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus the machine) to ``bench/results/<name>-<timestamp>.json``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    path.write_text(
        json.dumps({"benchmark": name, "machine": machine(), **payload}, indent=2, default=str)
    )
    return path


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print one table of figures."""
    table = Table(*headers, title=title, box=box.MARKDOWN)
    for row in rows:
        table.add_row(*(_cell(value) for value in row))
    console.print(table)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "-" if value is None else str(value)


def parse_sizes(text: str) -> list[int]:
    """``"10000,100k,1M"`` -> ``[10000, 100000, 1000000]``."""
    sizes = []
    for raw in text.split(","):
        part = raw.strip().lower().replace("_", "")
        if not part:
            continue
        factor = {"k": 1_000, "m": 1_000_000}.get(part[-1:], 1)
        sizes.append(int(float(part.rstrip("km")) * factor))
    return sizes


# -- files -----------------------------------------------------------------------------------


def cache_dir() -> Path:
    """``bench/.cache``, created (and kept out of git) on first use."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    ignore = CACHE_DIR / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    return CACHE_DIR


def sqlite_files(path: Path) -> list[Path]:
    """A SQLite database file with its WAL and shared-memory files."""
    return [path, Path(f"{path}-wal"), Path(f"{path}-shm")]


def remove_sqlite(path: Path) -> None:
    """Delete a SQLite database and its WAL files, if present."""
    for file in sqlite_files(path):
        file.unlink(missing_ok=True)


def copy_sqlite(source: Path, target: Path) -> Path:
    """Copy a closed SQLite database (and any WAL files) to ``target``."""
    remove_sqlite(target)
    for origin, copy in zip(sqlite_files(source), sqlite_files(target), strict=True):
        if origin.exists():
            shutil.copyfile(origin, copy)
    return target


def code_fingerprint(patterns: Sequence[str]) -> str:
    """A short hash of the files matching ``patterns``: a cache made by other code is stale."""
    digest = hashlib.sha1()
    for pattern in patterns:
        for path in sorted(ROOT.glob(pattern)):
            digest.update(path.relative_to(ROOT).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def cached_file(stem: str, patterns: Sequence[str]) -> Path:
    """``bench/.cache/<stem>-<fingerprint of the code matching patterns>.db``."""
    return cache_dir() / f"{stem}-{code_fingerprint(patterns)}.db"


def keep_only(path: Path) -> None:
    """Remove the cached files of ``path``'s stem made by other code (other fingerprints)."""
    stem = path.name.rsplit("-", 1)[0]
    for stale in path.parent.glob(f"{stem}-*.db"):
        if stale != path:
            remove_sqlite(stale)
