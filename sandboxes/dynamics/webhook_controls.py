"""The Dataverse sandbox's test controls for webhooks: quick registration, the delivery log,
the injected delivery faults and a merge made inside the CRM.

Each is a method of ``DynamicsSandbox`` and, like its other controls, reachable from another
process as ``POST /__sandbox/<name>`` (``sandboxes.testing.admin.AdminClient``). A real
registration goes through the Web API instead (``serviceendpoints`` and
``sdkmessageprocessingsteps``); ``register_webhook`` makes the same rows in one call.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sandboxes.dynamics.store import RowChange
from sandboxes.dynamics.values import normalize_guid
from sandboxes.dynamics.webhook_registry import (
    AUTH_TYPES,
    MERGE_TABLES,
    filter_id,
    message_id,
    settings_xml,
)
from sandboxes.dynamics.webhooks import DeliveryFaults
from sandboxes.kit.writelog import log_write

WEBHOOK_CONTROLS = (
    "register_webhook", "unregister_webhooks", "webhook_log", "webhook_jobs",
    "wait_for_webhooks", "lose_webhooks", "duplicate_webhooks", "reorder_webhooks",
    "release_webhooks", "wrong_webhook_key", "fail_webhooks", "delay_webhooks",
    "set_webhook_retries", "merge",
)  # fmt: skip
DEFAULT_MESSAGES = ("Create", "Update", "Delete")


class WebhookControls:
    """Mixed into ``DynamicsSandbox`` (``self.org`` is its organisation)."""

    org: Any

    def register_webhook(
        self,
        url: str,
        tables: list[str],
        key: str,
        auth_type: str = "WebhookKey",
        key_name: str = "x-prm-mirror-key",
        messages: list[str] | None = None,
        mode: int = 1,
        name: str = "prm-mirror",
    ) -> dict[str, Any]:
        """Register a webhook endpoint at ``url`` and a PostOperation step for each message
        (default Create, Update, Delete; Merge where the table supports it) of each table.

        ``auth_type`` is ``WebhookKey`` (``?code=<key>``), ``HttpHeader`` (header
        ``key_name: key``) or ``HttpQueryString`` (``?<key_name>=<key>``); ``mode`` 1 is
        asynchronous, 0 synchronous. Returns ``{"serviceendpointid", "steps"}``.
        """
        codes = {label: code for code, label in AUTH_TYPES.items()}
        if auth_type not in codes:
            raise ValueError(f"auth_type must be one of {sorted(codes)}")
        value = key if auth_type == "WebhookKey" else settings_xml({key_name: key})
        registry = self.org.webhooks.registry
        endpoint = {"name": name, "contract": 8, "url": url, "authtype": codes[auth_type],
                    "authvalue": value}  # fmt: skip
        endpoint_id = registry.add_endpoint(endpoint)
        steps = []
        for table in tables:
            logical = self.org.records.entity(table).name
            for message in messages or DEFAULT_MESSAGES:
                if message == "Merge" and logical not in MERGE_TABLES:
                    continue
                steps.append(registry.add_step({
                    "name": f"{name}: {message} of {logical}", "stage": 40, "mode": mode,
                    "sdkmessageid": message_id(message),
                    "sdkmessagefilterid": filter_id(message, logical),
                    "eventhandler": endpoint_id,
                }))  # fmt: skip
        return {"serviceendpointid": endpoint_id, "steps": steps}

    def unregister_webhooks(self) -> None:
        """Remove every webhook step and endpoint."""
        self.org.webhooks.registry.clear()

    def webhook_log(self) -> list[dict[str, Any]]:
        """Every post attempted (and every lost or injected one): job, step, message, entity,
        record id, mode, attempt, HTTP status, outcome, whether the key was wrong."""
        with self.org.webhooks._cond:
            return [dict(entry) for entry in self.org.webhooks.log]

    def webhook_jobs(self) -> dict[str, int]:
        """The system job of each asynchronous post by id, as its ``statuscode`` (10 Waiting,
        20 In Progress, 30 Succeeded, 31 Failed)."""
        with self.org.webhooks._cond:
            return dict(self.org.webhooks.jobs)

    def wait_for_webhooks(self, timeout: float = 10.0) -> bool:
        """Wait until no asynchronous post is queued, held back or in flight."""
        return bool(self.org.webhooks.wait_idle(timeout))

    def _fault(self, name: str, count: int) -> None:
        with self.org.webhooks._cond:
            setattr(self.org.webhooks.faults, name, count)

    def lose_webhooks(self, count: int = 1) -> None:
        """The next ``count`` posts are lost: never sent (their jobs say Succeeded)."""
        self._fault("lose", count)

    def duplicate_webhooks(self, count: int = 1) -> None:
        """The next ``count`` posts are sent twice."""
        self._fault("duplicate", count)

    def reorder_webhooks(self, count: int = 2) -> None:
        """The next ``count`` asynchronous posts are held back and sent in reverse order once
        the last of them is there (or on ``release_webhooks``)."""
        self._fault("reorder", count)

    def release_webhooks(self) -> None:
        """Send the posts held back by ``reorder_webhooks`` now."""
        self.org.webhooks.release_held()

    def wrong_webhook_key(self, count: int = 1) -> None:
        """The next ``count`` posts carry a wrong key."""
        self._fault("wrong_key", count)

    def fail_webhooks(self, count: int = 1, status: int = 503) -> None:
        """The next ``count`` post attempts fail with ``status`` without reaching the receiver
        (502/503/504 are tried once more at once, as Dataverse does)."""
        with self.org.webhooks._cond:
            self.org.webhooks.faults.fail = count
            self.org.webhooks.faults.fail_status = status

    def delay_webhooks(self, seconds: float) -> None:
        """Hold every asynchronous post ``seconds`` before sending it (0 ends the delay)."""
        with self.org.webhooks._cond:
            self.org.webhooks.faults.delay_seconds = float(seconds)

    def set_webhook_retries(self, delays: list[float], timeout: float | None = None) -> None:
        """The asynchronous service's retry schedule (seconds before each retry of a failed
        post) and, optionally, the post timeout (60 s by default)."""
        self.org.webhooks.retry_delays = tuple(float(d) for d in delays)
        if timeout is not None:
            self.org.webhooks.timeout = float(timeout)

    def clear_webhook_faults(self) -> None:
        """Forget every injected delivery fault."""
        with self.org.webhooks._cond:
            self.org.webhooks.faults = DeliveryFaults()

    def merge(self, table: str, target_id: str, subordinate_id: str) -> None:
        """Merge two rows inside the CRM as Dataverse's Merge does: the subordinate row is
        deactivated (``statecode`` 1, ``statuscode`` 2) and kept; ``Merge`` steps registered on
        ``table`` post with the survivor as ``PrimaryEntityId``."""
        records = self.org.records
        entity = records.entity(table)
        if entity.name not in MERGE_TABLES:
            raise ValueError(f"Dataverse does not merge {entity.name} rows")
        target, subordinate = normalize_guid(target_id), normalize_guid(subordinate_id)
        if target is None or subordinate is None or target == subordinate:
            raise ValueError("merge needs two different row guids")
        store = self.org.store
        with store.transaction():
            for guid in (target, subordinate):
                if store.fetch(entity, guid) is None:
                    raise KeyError(f"{entity.name} has no row {guid}")
            now = records.now()
            store.update(entity, subordinate, {"statecode": 1, "statuscode": 2,
                                               "modifiedon": now,
                                               "versionnumber": store.next_version()})  # fmt: skip
            moment = datetime.fromtimestamp(now, UTC).isoformat()
            log_write(store.conn, "merge", entity.name, subordinate, {"target": target}, moment)
            store.note_change(RowChange("merge", entity, subordinate, {}, now,
                                        {"target": target, "parenting_checks": False}))  # fmt: skip
