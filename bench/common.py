"""What the benchmarks share: the machine, cached sandboxes, processes, peak RSS and results.

The sandbox runs in its own process (``bench.sandbox_proc``) and every measured engine step runs
in a fresh spawned process (``run_isolated``), so neither the sandbox's CPU nor the driver's
memory is counted as the engine's. Peak RSS is the kernel's high-water mark of that process
(``VmHWM``), which a fresh ``exec`` starts from zero.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import multiprocessing
import os
import platform
import resource
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil
import requests
from rich import box
from rich.console import Console
from rich.table import Table

from bench.sandbox_proc import ADMIN_TOKEN_ENV

BENCH_DIR = Path(__file__).resolve().parent
CACHE_DIR = BENCH_DIR / ".cache"
RESULTS_DIR = BENCH_DIR / "results"
SOURCE = "salesforce"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ROOT = BENCH_DIR.parent
SANDBOX_CODE = (
    "sandboxes/dataset*.py",
    "sandboxes/salesforce*.py",
    "sandboxes/salesforce/specs/*.json",
)
MIRROR_CODE = (*SANDBOX_CODE, "mirror/*.py", "adapters/salesforce*.py", "schemas/salesforce.toml")
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


def cached_sandbox(size: int, seed: int = 7) -> Path:
    """The pristine sandbox database of ``size`` opportunities, generated on first use (and
    again whenever the sandbox's code has changed)."""
    path = cached_file(f"sandbox-salesforce-{size}-seed{seed}", SANDBOX_CODE)
    if not path.exists():
        partial = path.with_suffix(".partial")
        remove_sqlite(partial)
        started = time.perf_counter()
        with SandboxProcess(partial, size, seed):
            pass
        for origin, final in zip(sqlite_files(partial), sqlite_files(path), strict=True):
            if origin.exists():
                origin.rename(final)
        keep_only(path)
        console.print(f"generated {path.name} in {time.perf_counter() - started:.0f} s")
    return path


# -- the sandbox process ---------------------------------------------------------------------


class SandboxControls:
    """A running sandbox's admin controls over HTTP (from any process that has its token)."""

    def __init__(self, base_url: str, admin_token: str) -> None:
        self.base_url = base_url
        self.admin_token = admin_token
        self._http = requests.Session()
        self._http.trust_env = False

    def admin(self, control: str, **kwargs: Any) -> Any:
        """Call ``POST /__sandbox/<control>`` with the admin token; returns its ``result``."""
        response = self._http.post(
            f"{self.base_url}/__sandbox/{control}",
            data=json.dumps(kwargs, default=str),
            headers={"X-Sandbox-Admin": self.admin_token, "Content-Type": "application/json"},
            timeout=600,
        )
        if response.status_code >= 300:
            raise RuntimeError(f"sandbox control {control} failed: {response.text[:300]}")
        return response.json()["result"]

    def close(self) -> None:
        """Release the HTTP session."""
        self._http.close()


class SandboxProcess:
    """``bench.sandbox_proc`` serving ``db_path`` (a Salesforce sandbox unless ``crm`` names
    another); ``admin`` drives its controls over HTTP."""

    def __init__(self, db_path: Path, size: int, seed: int = 7, crm: str = SOURCE) -> None:
        self.db_path = db_path
        self.size = size
        self.seed = seed
        self.crm = crm
        self.admin_token = secrets.token_urlsafe(24)
        self.process: subprocess.Popen[str] | None = None
        self.port = 0
        self._controls: SandboxControls | None = None

    def start(self) -> SandboxProcess:
        """Start the process and wait until it serves (generation may take minutes)."""
        command = [sys.executable, "-m", "bench.sandbox_proc", "--db", str(self.db_path)]
        command += ["--size", str(self.size), "--seed", str(self.seed), "--crm", self.crm]
        env = {**os.environ, ADMIN_TOKEN_ENV: self.admin_token}
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=BENCH_DIR.parent,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the sandbox process exited with {self.process.wait()}")
        self.port = int(json.loads(line)["port"])
        return self

    def stop(self) -> None:
        """Close its stdin (it stops and saves its clock) and wait for it."""
        if self.process is None:
            return
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None
        if self._controls is not None:
            self._controls.close()
            self._controls = None

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def admin(self, control: str, **kwargs: Any) -> Any:
        """Call ``POST /__sandbox/<control>`` with the admin token; returns its ``result``."""
        if self._controls is None:
            self._controls = SandboxControls(self.base_url, self.admin_token)
        return self._controls.admin(control, **kwargs)

    def cpu_seconds(self) -> float:
        """CPU time the sandbox process has used so far (user + system)."""
        assert self.process is not None
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)


ADAPTER_SETTINGS = ("page_size", "bulk_threshold", "bulk_page_size")


def adapter_settings(**overrides: int | None) -> dict[str, int]:
    """The adapter's paging settings: its settings model's defaults unless overridden."""
    from adapters.salesforce.settings import SalesforceSettings

    fields = SalesforceSettings.model_fields
    return {name: int(overrides.get(name) or fields[name].default) for name in ADAPTER_SETTINGS}


def mirror_config(database: str, base_url: str, **adapter_settings: Any) -> Any:
    """The ``MirrorConfig`` that mirrors the sandbox at ``base_url`` into ``database``."""
    from mirror.config import parse_config
    from sandboxes.salesforce.org import Credentials

    credentials = Credentials()
    source = {
        "crm": "salesforce",
        "auth": "password",
        "login_url": base_url,
        "username": credentials.username,
        "password": credentials.password,
        "security_token": credentials.security_token,
        **adapter_settings,
    }
    return parse_config({"store": {"database": database}, "sources": {SOURCE: source}})


# -- isolated engine processes ---------------------------------------------------------------


def rss_mb() -> float:
    """This process's resident set size now, in MB."""
    return _status_field("VmRSS")


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (``VmHWM``), in MB."""
    return _status_field("VmHWM")


def _status_field(name: str) -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{name}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def machine_busy_seconds() -> float:
    """CPU time every process of the machine has used since boot (all cores, not idle)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def cpu_seconds() -> float:
    """CPU time of this process so far (user + system, all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_isolated(
    function: Callable[..., dict[str, Any]], *args: Any, timeout: float | None = None
) -> dict[str, Any]:
    """Run ``function(*args)`` in a fresh spawned process; its result plus its peak RSS.

    ``function`` must be importable (module level). The result gains ``peak_rss_mb``,
    ``start_rss_mb`` (after imports, before the work) and ``cpu_s`` of that process. After
    ``timeout`` seconds the process is terminated and ``TimeoutError`` raised.
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_isolated_main, args=(sender, function, args))
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout):
            process.terminate()
            process.join()
            raise TimeoutError(f"{function.__name__} did not finish in {timeout} s")
        outcome = receiver.recv()
    except EOFError:
        process.join()
        raise RuntimeError(f"the engine process died (exit code {process.exitcode})") from None
    process.join()
    if "error" in outcome:
        raise RuntimeError(f"the engine process failed:\n{outcome['error']}")
    return dict(outcome["result"])


def _isolated_main(
    sender: Connection, function: Callable[..., dict[str, Any]], args: tuple[Any, ...]
) -> None:
    start_rss = rss_mb()
    code = code_fingerprint(MIRROR_CODE)
    try:
        result = function(*args)
        result.update(
            code=code,
            peak_rss_mb=round(peak_rss_mb(), 1),
            start_rss_mb=round(start_rss, 1),
            cpu_s=round(cpu_seconds(), 2),
        )
        sender.send({"result": result})
    except BaseException:
        sender.send({"error": traceback.format_exc()})
    finally:
        sender.close()


# -- PostgreSQL ------------------------------------------------------------------------------


@contextmanager
def pg_schema(base_url: str = PG_URL, *, keep: bool = False) -> Iterator[str]:
    """A fresh PostgreSQL schema for one run; yields its URL and drops it afterwards (unless
    ``keep``)."""
    from sqlalchemy import create_engine, text

    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    separator = "&" if "?" in base_url else "?"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
        yield f"{base_url}{separator}options=-csearch_path%3D{name}"
    finally:
        if not keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        admin.dispose()


def committed_rows(database: str, tables: Sequence[str]) -> dict[str, int]:
    """Rows each existing table of ``database`` holds (what a stopped run had committed)."""
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(database)
    try:
        present = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            return {
                name: int(conn.execute(text(f'SELECT COUNT(*) FROM "{name}"')).scalar_one())
                for name in tables
                if name in present
            }
    finally:
        engine.dispose()


def pg_available(base_url: str = PG_URL) -> bool:
    """Whether the benchmark PostgreSQL server answers."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    engine = create_engine(base_url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except OperationalError:
        return False
    finally:
        engine.dispose()
