"""The two sides of ``bench.peers`` as processes: dlt's own virtual environment, each measured
step in a fresh process whose process tree's RSS is sampled, and the prm-mirror step itself.

``python -m bench.peers_steps mirror --db PATH --base-url URL --objects A,B`` runs one
``Mirror.sync()`` of those objects (a backfill on a new database, else incremental) and prints
one JSON line; ``bench.peers`` starts it, and ``bench/peers_dlt.py`` under dlt's interpreter,
through :func:`measured`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from bench.common import BENCH_DIR, ROOT
from bench.isolation import peak_rss_mb
from sandboxes.salesforce.org import Credentials

DLT_REQUIREMENTS = ("dlt[sqlalchemy]==1.31.0", "simple-salesforce==1.12.10")
DLT_SCRIPT = BENCH_DIR / "peers_dlt.py"
SAMPLE_SECONDS = 0.05


class PeerUnavailable(RuntimeError):
    """dlt's virtual environment could not be made (no network, no matching wheels)."""


def venvs_dir() -> Path:
    """Where dlt's virtual environment is kept: ``$XDG_CACHE_HOME/prm-mirror`` (by default
    ``~/.cache/prm-mirror``), outside the source tree so no tool of the project reads it."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "prm-mirror"


def dlt_python(requirements: tuple[str, ...] = DLT_REQUIREMENTS) -> Path:
    """The interpreter of dlt's own virtual environment (``venvs_dir``), created (and its
    packages installed) on first use, so dlt's pins never touch the project's environment."""
    digest = hashlib.sha1("\n".join(requirements).encode()).hexdigest()[:10]
    venv = venvs_dir() / f"peers-venv-{digest}"
    python = venv / "bin" / "python"
    if (venv / "ready").exists():
        return python
    steps = (
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", *requirements],
    )
    for command in steps:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise PeerUnavailable(f"{' '.join(command[:4])} failed: {' / '.join(tail)}")
    (venv / "ready").write_text("\n".join(requirements) + "\n")
    return python


def dlt_env(workers: int = 2) -> dict[str, str]:
    """The dlt process's environment: the sandbox's credentials, no telemetry, quiet logs and
    the pipeline settings the peer runs with (``dlt_settings``)."""
    credentials = Credentials()
    return {
        **os.environ,
        "PEERS_SF_USERNAME": credentials.username,
        "PEERS_SF_PASSWORD": credentials.password,
        "PEERS_SF_TOKEN": credentials.security_token,
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        "RUNTIME__LOG_LEVEL": "ERROR",
        **dlt_settings(workers),
    }


def dlt_settings(workers: int = 2) -> dict[str, str]:
    """dlt's documented performance settings: ``workers`` normalize processes (one per core),
    its default extract workers, intermediate files of at most 100,000 items so the normalize
    workers have several files to share, and one load worker: SQLite takes one writer at a
    time, and dlt's default of 20 load workers fails on it with "database is locked"."""
    return {
        "NORMALIZE__WORKERS": str(workers),
        "EXTRACT__WORKERS": "5",
        "LOAD__WORKERS": "1",
        "DATA_WRITER__FILE_MAX_ITEMS": "100000",
        "DATA_WRITER__BUFFER_MAX_ITEMS": "5000",
    }


def measured(command: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``command`` (it prints one JSON line last); its answer plus the wall time and the
    peak RSS of its whole process tree (sampled every 50 ms) and its start-to-end load."""
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    peak = [0.0]
    sampler = threading.Thread(target=_sample, args=(process.pid, peak), daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - started
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{command[1]} failed ({process.returncode}):\n{stderr[-3000:]}")
    answer: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    answer["wall_s"] = round(wall, 3)
    answer["tree_peak_rss_mb"] = round(max(peak[0], answer.get("peak_rss_mb", 0.0)), 1)
    answer["load_avg"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return answer


def _sample(pid: int, peak: list[float]) -> None:
    """Keep the highest sum of RSS over ``pid`` and its descendants until it exits."""
    try:
        root = psutil.Process(pid)
        while root.is_running() and root.status() != psutil.STATUS_ZOMBIE:
            total = 0
            for process in [root, *root.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    continue
            peak[0] = max(peak[0], total / 2**20)
            time.sleep(SAMPLE_SECONDS)
    except psutil.Error:
        return


def mirror_command(database: Path, base_url: str, objects: list[str]) -> list[str]:
    """The prm-mirror step's command line."""
    return [sys.executable, "-m", "bench.peers_steps", "mirror", "--db", str(database),
            "--base-url", base_url, "--objects", ",".join(objects)]  # fmt: skip


def dlt_command(
    python: Path, action: str, workdir: Path, base_url: str, objects: list[str], api: str
) -> list[str]:
    """The dlt step's command line (``action`` is ``run`` or ``inspect``)."""
    return [str(python), str(DLT_SCRIPT), action, "--base-url", base_url, "--workdir",
            str(workdir), "--objects", ",".join(objects), "--api", api]  # fmt: skip


def mirror_step(database: str, base_url: str, objects: list[str]) -> dict[str, Any]:
    """One ``Mirror.sync()`` with the adapter's default settings; its figures and peak RSS."""
    from bench.jobs import sync_all
    from bench.sandbox_process import adapter_settings

    started = time.perf_counter()
    result = sync_all(f"sqlite:///{database}", base_url, adapter_settings(), objects)
    rows = {name: figures["records"] for name, figures in result["objects"].items()}
    return {"seconds": round(time.perf_counter() - started, 3), "sync_s": result["seconds"],
            "rows": rows, "objects": result["objects"],
            "peak_rss_mb": round(peak_rss_mb(), 1)}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """``mirror``: one prm-mirror step; prints one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("mirror",))
    parser.add_argument("--db", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--objects", required=True)
    args = parser.parse_args(argv)
    answer = mirror_step(args.db, args.base_url, args.objects.split(","))
    sys.stdout.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
