"""A CRM sandbox in its own process, the daemon in another with the source's change stream on,
and this process as the portal: what the stream tests (``tests/streams``) and ``bench.latency``
drive.

``StreamRig(crm, folder).start()`` serves the sandbox (``bench.sandbox_proc``), registers the
stream the way an operator does in the CRM (Salesforce: the objects selected for Change Data
Capture; HubSpot: the app's target URL and subscriptions; Dataverse: a webhook endpoint and
its steps, with a key), writes the daemon's config (the daemon's default settings but
``sync_interval`` and the ports), backfills the mirror, then runs ``python -m cli daemon``
and waits until a change made in the CRM comes through the stream.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select

from bench.chaos.nemesis import Crm
from bench.chaos.scenarios import SCENARIOS
from bench.common import ROOT
from bench.sandbox_process import SandboxProcess
from mirror import Mirror
from mirror.config import MirrorConfig, load_config
from mirror.status import StreamStatus


@dataclass(frozen=True)
class Target:
    """The partner-visible object a rig edits, and the text field both sides edit."""

    object: str
    field: str
    partner_field: str


TARGETS = {
    "salesforce": Target("Opportunity", "NextStep", "PartnerAccountId"),
    "hubspot": Target("deals", "hs_next_step", "partner_company_id"),
    "dynamics": Target("opportunity", "stepname", "_prm_partneraccountid_value"),
}


def free_port() -> int:
    """A port of 127.0.0.1 nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(check: Callable[[], Any], timeout: float, what: str, step: float = 0.01) -> float:
    """Wait until ``check()`` is true; the seconds it took (``TimeoutError`` naming ``what``)."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(step)
    return time.monotonic() - started


class StreamRig:
    """One CRM's sandbox, the daemon with its stream on, and the mirror read from here."""

    def __init__(
        self,
        crm: str,
        folder: Path,
        *,
        size: int = 40,
        sync_interval: float = 3600.0,
        daemon: dict[str, Any] | None = None,
    ) -> None:
        """``daemon``: ``[daemon]`` settings besides the defaults (and the ports)."""
        self.crm = crm
        self.folder = folder
        self.size = size
        self.scenario = SCENARIOS[crm]
        self.target = TARGETS[crm]
        self.sync_interval = sync_interval
        self.daemon_settings = daemon or {}
        self.box = SandboxProcess(folder / "sandbox.db", size, crm=crm)
        self.crm_controls = Crm(crm, self.box.admin)
        self.webhook_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.mirror: Mirror | None = None
        self.config_path = folder / "prm-mirror.toml"
        self._log: IO[bytes] | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> StreamRig:
        """Serve the sandbox, register the stream, backfill, run the daemon, wait for it."""
        self.box.start()
        source = self.scenario.source(self.box.base_url, self.box.admin)
        source |= {"objects": list(self.scenario.objects), "stream": True}
        source |= self._register()
        self._write_config(source)
        self.mirror = Mirror.open(self.config_path)
        self.mirror.sync()
        self._start_daemon()
        self._wait_until_streaming()
        return self

    def stop(self) -> None:
        """Stop the daemon (SIGTERM, as an operator does), the mirror and the sandbox."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        if self._log is not None:
            self._log.close()
        if self.mirror is not None:
            self.mirror.close()
            self.mirror = None
        self.box.stop()

    def __enter__(self) -> StreamRig:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def hook_url(self) -> str:
        """Where the CRM posts its deliveries (webhook CRMs)."""
        return f"http://127.0.0.1:{self.webhook_port}/hooks/{self.crm}"

    def _register(self) -> dict[str, Any]:
        """Register the stream in the CRM; the source settings it needs."""
        admin = self.box.admin
        if self.crm == "salesforce":
            admin("cdc_select", entities=list(self.scenario.objects))
            return {"pubsub_endpoint": admin("pubsub_endpoint")}
        if self.crm == "hubspot":
            from sandboxes.testing.hubspot_webhooks import HubSpotWebhooks

            hooks = HubSpotWebhooks(admin)
            hooks.register(self.hook_url, objects=list(self.scenario.objects))
            return {"client_secret": admin("client_secret")}
        key = secrets.token_urlsafe(24)
        admin("register_webhook", url=self.hook_url, tables=list(self.scenario.objects), key=key)
        return {"webhook_key": key}

    def _write_config(self, source: dict[str, Any]) -> None:
        daemon = {
            "sync_interval": self.sync_interval,
            "metrics_port": 0,
            "webhook_port": self.webhook_port,
            "log_format": "text",
            **self.daemon_settings,
        }
        sections = {
            "store": {"database": f"sqlite:///{self.folder / 'mirror.db'}"},
            "daemon": daemon,
            f"sources.{self.crm}": source,
        }
        lines = []
        for name, values in sections.items():
            lines.append(f"[{name}]")
            lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
            lines.append("")
        self.config_path.write_text("\n".join(lines), encoding="utf-8")

    def config(self) -> MirrorConfig:
        """The config the daemon reads."""
        return load_config(self.config_path)

    def _start_daemon(self) -> None:
        self._log = (self.folder / "daemon.log").open("wb")
        command = [sys.executable, "-m", "cli", "-c", str(self.config_path), "daemon"]
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT, env=dict(os.environ)
        )

    def daemon_log(self) -> str:
        """What the daemon has logged so far."""
        path = self.folder / "daemon.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def _wait_until_streaming(self, timeout: float = 60.0) -> None:
        """A change made in the CRM reaches the mirror through the stream (the daemon's first
        syncs done, the subscription open)."""
        record_id, _partner = self.records(1)[0]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the daemon exited:\n{self.daemon_log()[-4000:]}")
            applied = self.stream().applied
            value = f"warm-up {secrets.token_hex(4)}"
            self.crm_update(record_id, value)
            try:
                check = functools.partial(self._arrived, record_id, value, applied)
                wait_for(check, 3, "the warm-up")
                return
            except TimeoutError:
                continue
        raise TimeoutError(f"the stream never carried a change:\n{self.daemon_log()[-4000:]}")

    def _arrived(self, record_id: str, value: str, applied: int) -> bool:
        """The mirror holds ``value`` and the stream has applied more than ``applied``."""
        return self.row(record_id).get(self.target.field) == value and (
            self.stream().applied > applied
        )

    # --- the CRM, the mirror and the portal ---------------------------------------------

    def records(self, count: int) -> list[tuple[str, str]]:
        """``count`` (record id, partner id) pairs of the target object, from the mirror."""
        assert self.mirror is not None
        mirrored = self.mirror.store.mirrored(self.crm, self.target.object)
        t = mirrored.table
        query = select(t.c[mirrored.spec.key], t.c[self.target.partner_field]).where(
            t.c[self.target.partner_field].is_not(None), t.c._deleted.is_(False)
        )
        with self.mirror.store.engine.connect() as conn:
            pairs = [(str(i), str(p)) for i, p in conn.execute(query.limit(count))]
        if len(pairs) < count:
            raise RuntimeError(f"only {len(pairs)} partner records of {self.target.object}")
        return pairs

    def crm_update(self, record_id: str, value: str) -> None:
        """Edit the target field inside the CRM (a user's change, committed on return)."""
        self.crm_controls.update(self.target.object, record_id, {self.target.field: value})

    def crm_value(self, record_id: str) -> Any:
        """The target field's value in the CRM now."""
        record = self.crm_controls.call("get", self.target.object, record_id=record_id)
        return None if record is None else record.get(self.target.field)

    def row(self, record_id: str) -> dict[str, Any]:
        """The mirror's row of a target record (empty when absent)."""
        assert self.mirror is not None
        mirrored = self.mirror.store.mirrored(self.crm, self.target.object)
        t = mirrored.table
        with self.mirror.store.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c[mirrored.spec.key] == record_id)).first()
        return {} if row is None else dict(row._mapping)

    def stream(self) -> StreamStatus:
        """The source's stream status, as ``prm-mirror status`` shows it."""
        assert self.mirror is not None
        [status] = [s for s in self.mirror.stream_status() if s.source == self.crm]
        return status

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until the CRM has nothing left to deliver (webhooks queued, retried or in
        flight; for Salesforce, a moment for the bus to hand its events out)."""
        if self.crm == "hubspot":
            self.box.admin("webhook_wait", timeout=timeout)
        elif self.crm == "dynamics":
            self.box.admin("wait_for_webhooks", timeout=timeout)
        else:
            time.sleep(0.5)

    def calls(self) -> int:
        """The CRM-facing requests the sandbox has served so far."""
        return int(self.box.admin("call_count"))
