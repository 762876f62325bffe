"""The Salesforce sandbox (or another CRM's) in a process of its own, and the pristine sandbox
databases the benchmarks copy: generated once per size and seed, and again when the sandbox's
code changes.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

from bench.common import (
    BENCH_DIR,
    SANDBOX_CODE,
    SOURCE,
    cached_file,
    console,
    keep_only,
    remove_sqlite,
    sqlite_files,
)
from bench.sandbox_proc import ADMIN_TOKEN_ENV
from sandboxes.testing.admin import AdminClient


def cached_sandbox(
    size: int, seed: int = 7, crm: str = SOURCE, code: Sequence[str] = SANDBOX_CODE
) -> Path:
    """The pristine sandbox database of ``crm`` with ``size`` opportunities, generated on
    first use (and again whenever the sandbox's ``code`` has changed)."""
    path = cached_file(f"sandbox-{crm}-{size}-seed{seed}", code)
    if not path.exists():
        partial = path.with_suffix(".partial")
        remove_sqlite(partial)
        started = time.perf_counter()
        with SandboxProcess(partial, size, seed, crm):
            pass
        for origin, final in zip(sqlite_files(partial), sqlite_files(path), strict=True):
            if origin.exists():
                origin.rename(final)
        keep_only(path)
        console.print(f"generated {path.name} in {time.perf_counter() - started:.0f} s")
    return path


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
        self._controls: AdminClient | None = None

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
            self._controls = AdminClient(self.base_url, self.admin_token)
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
