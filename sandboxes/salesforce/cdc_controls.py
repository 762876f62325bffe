"""The test controls of the sandbox's Change Data Capture, and the Pub/Sub API server's life.

The Pub/Sub API is served on its own port (``pubsub_endpoint``, ``127.0.0.1:PORT``), started and
stopped with the REST server. Which objects emit change events is the org's selection
(``cdc_select``; none by default, as in a new org). The settings (``cdc_configure``) are the
retention window, the per-transaction overflow threshold and the keepalive interval; the faults
are a gap event, duplicated, reordered and lost events, dropped subscriptions, refused
resubscriptions and a purge that puts every subscriber behind the retention window. Each is
also reachable as ``POST /__sandbox/<name>`` like every other control.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sandboxes.kit.lifecycle import SandboxLifecycle
from sandboxes.kit.server import SandboxServer
from sandboxes.salesforce.cdc import ChangeBus
from sandboxes.salesforce.ids import normalize_id
from sandboxes.salesforce.pubsub import PubSubServer

CDC_CONTROLS = (
    "cdc_select", "cdc_deselect", "cdc_selected", "cdc_configure", "cdc_inject_gap",
    "cdc_duplicate_next", "cdc_reorder_next", "cdc_lose_next", "cdc_drop_subscriptions",
    "cdc_expire_events", "cdc_fail_subscriptions", "cdc_events", "pubsub_endpoint",
)  # fmt: skip


class CdcControls(SandboxLifecycle):
    """Change Data Capture controls of a Salesforce sandbox (mixed in before the lifecycle)."""

    _pubsub: PubSubServer | None = None
    _pubsub_port: int = 0

    @property
    def _bus(self) -> ChangeBus:
        bus: ChangeBus = self._world.cdc
        return bus

    # -- lifecycle --------------------------------------------------------------------------

    def _new_server(self) -> SandboxServer:
        server = super()._new_server()
        if self._pubsub is None:
            self._pubsub = PubSubServer(self._world, self._pubsub_port)
            self._pubsub.start()
        return server

    def stop(self) -> None:
        """Stop the Pub/Sub API server, then the REST server."""
        if self._pubsub is not None:
            self._pubsub.stop()
            self._pubsub = None
        super().stop()

    def pubsub_endpoint(self) -> str:
        """``127.0.0.1:PORT`` of the Pub/Sub API (the adapter's ``pubsub_endpoint``)."""
        if self._pubsub is None:
            raise RuntimeError("the sandbox is not started")
        return f"127.0.0.1:{self._pubsub.port}"

    # -- selection and settings -------------------------------------------------------------

    def cdc_select(self, entities: list[str]) -> list[str]:
        """Select objects for Change Data Capture; returns the selection."""
        names = [self._world.records.sobject(name).name for name in entities]
        self._bus.selected.update(names)
        return sorted(self._bus.selected)

    def cdc_deselect(self, entities: list[str]) -> list[str]:
        """Take objects out of the selection (their channels refuse subscriptions)."""
        for name in entities:
            self._bus.selected.discard(self._world.records.sobject(name).name)
        return sorted(self._bus.selected)

    def cdc_selected(self) -> list[str]:
        """The selected objects."""
        return sorted(self._bus.selected)

    def cdc_configure(
        self,
        retention_hours: float | None = None,
        overflow_threshold: int | None = None,
        keepalive_seconds: float | None = None,
    ) -> dict[str, float]:
        """Change the retention window (default 72 h of sandbox clock), the number of record
        changes one transaction may make before the rest become GAP_OVERFLOW events (default
        100,000) and the keepalive interval (default 270 s); returns the settings."""
        bus = self._bus
        if retention_hours is not None:
            bus.retention = timedelta(hours=retention_hours)
        if overflow_threshold is not None:
            if overflow_threshold < 1:
                raise ValueError("overflow_threshold must be at least 1")
            bus.overflow_threshold = overflow_threshold
        if keepalive_seconds is not None:
            bus.keepalive_seconds = max(0.25, keepalive_seconds)
        return {
            "retention_hours": bus.retention.total_seconds() / 3600,
            "overflow_threshold": bus.overflow_threshold,
            "keepalive_seconds": bus.keepalive_seconds,
        }

    # -- faults -----------------------------------------------------------------------------

    def cdc_inject_gap(
        self, sobject: str, ids: list[str] | None = None, change_type: str = "GAP_UPDATE"
    ) -> int:
        """Publish a gap event (GAP_CREATE, GAP_UPDATE, GAP_DELETE, GAP_UNDELETE or
        GAP_OVERFLOW) for ``ids`` of ``sobject``; returns its replay id."""
        entity = self._world.records.sobject(sobject).name
        if entity not in self._bus.selected:
            raise ValueError(f"{entity} is not selected for Change Data Capture")
        record_ids = [normalize_id(i) or i for i in ids or ()]
        return self._bus.inject_gap(entity, record_ids, change_type)

    def cdc_duplicate_next(self, count: int = 1) -> None:
        """The next ``count`` events are each delivered twice (same replay id)."""
        self._bus.faults.duplicate += count

    def cdc_reorder_next(self, count: int = 1) -> None:
        """The next ``count`` events are each delivered after the event that follows them."""
        self._bus.faults.reorder += count

    def cdc_lose_next(self, count: int = 1) -> None:
        """The next ``count`` events are never delivered (their replay ids are skipped)."""
        self._bus.faults.lose += count

    def cdc_drop_subscriptions(self) -> None:
        """Every open Subscribe call ends with UNAVAILABLE; clients must resubscribe."""
        self._bus.drop_subscriptions()

    def cdc_fail_subscriptions(self, count: int = 1) -> None:
        """The next ``count`` Subscribe calls fail at once with UNAVAILABLE (the service is
        down: a client's reconnects fail)."""
        self._bus.faults.unavailable += count

    def cdc_expire_events(self) -> None:
        """Purge every stored event now: a subscriber resuming from any replay id it holds is
        past the retention window (its replay id is refused)."""
        self._bus.expire_all()

    def cdc_events(self, after: int = 0) -> list[dict[str, Any]]:
        """The stored events after replay id ``after``: replay id, header and field values."""
        with self._bus.condition:
            events = [event for event in self._bus.events if event.replay_id > after]
        return [
            {"replay_id": e.replay_id, "header": dict(e.header), "values": dict(e.values)}
            for e in events
        ]
