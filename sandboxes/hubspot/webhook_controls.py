"""The sandbox's webhook test controls: register a target and subscriptions in one call, set
the delivery timing, inject delivery faults, read the delivery log, wait for the queue.

Also reachable from another process as ``POST /__sandbox/<control>`` (``subscribe_webhooks``,
``set_webhook_timing``, ``webhook_fault``, ``webhook_deliveries``, ``webhook_pending``,
``webhook_wait``, ``clear_webhooks``; ``app_id``, ``developer_api_key`` and ``client_secret``
are read the same way).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from sandboxes.hubspot.portal import Portal
from sandboxes.hubspot.webhooks import KINDS, LEGACY_KINDS, LEGACY_OBJECTS

WEBHOOK_CONTROLS = (
    "subscribe_webhooks", "set_webhook_timing", "webhook_fault", "webhook_deliveries",
    "webhook_pending", "webhook_wait", "clear_webhooks",
)  # fmt: skip
WEBHOOK_PROPERTIES = ("app_id", "developer_api_key", "client_secret")
MIRRORED = ("contacts", "companies", "deals", "line_items")


class WebhookControls:
    """Webhook controls of a HubSpot sandbox (mixed into ``HubSpotSandbox``)."""

    @property
    def portal(self) -> Portal:
        """The running portal (the sandbox provides it)."""
        raise NotImplementedError

    @property
    def app_id(self) -> int:
        """The sandbox app's id (the ``{appId}`` of the Webhooks API)."""
        return self.portal.webhooks.app_id

    @property
    def developer_api_key(self) -> str:
        """The developer account's API key (``hapikey``) the Webhooks API takes."""
        return self.portal.webhooks.developer_api_key

    @property
    def client_secret(self) -> str:
        """The app's client secret, which signs every delivery."""
        return self.portal.webhooks.client_secret

    def subscribe_webhooks(
        self,
        target_url: str,
        objects: Sequence[str] = MIRRORED,
        properties: Sequence[str] | None = None,
        kinds: Sequence[str] = KINDS,
        max_concurrent_requests: int = 10,
    ) -> list[dict[str, Any]]:
        """Point the app's deliveries at ``target_url`` and replace its subscriptions with
        active ones: each of ``kinds`` for each of ``objects`` (the legacy ``deal.creation``
        form, ``object.*`` for custom objects), ``propertyChange`` once per property
        (those of ``properties`` the object has; default: every property of the object).
        Returns the subscriptions."""
        config = self.portal.webhooks
        now = self.portal.clock.now_ms()
        config.configure(target_url, max_concurrent_requests, now)
        for sub_id in list(config.subscriptions):
            config.unsubscribe(sub_id)
        made = []
        for name in objects:
            kind_type = self.portal.records.object_type(name)
            legacy = next((k for k, v in LEGACY_OBJECTS.items() if v == kind_type.name), None)
            scope = legacy or "object"
            allowed = LEGACY_KINDS[legacy] if legacy else KINDS
            for kind in kinds:
                if kind not in allowed:
                    continue
                base: dict[str, Any] = {"eventType": f"{scope}.{kind}", "active": True}
                if legacy is None:
                    base["objectTypeId"] = kind_type.object_type_id
                every = [p for p in properties or kind_type.properties if p in kind_type.properties]
                names: list[str | None] = list(every) if kind == "propertyChange" else [None]
                for prop in names:
                    body = {**base, "propertyName": prop} if prop else base
                    made.append(config.subscribe(body, now).to_json())
        return made

    def set_webhook_timing(
        self,
        time_scale: float | None = None,
        timeout: float | None = None,
        batch_window: float | None = None,
        jitter: float | None = None,
    ) -> dict[str, float]:
        """Change the delivery timing (``None`` keeps a value): ``time_scale`` real seconds
        per HubSpot second of the retry schedule, ``timeout`` real seconds for an answer,
        ``batch_window`` real seconds to gather a batch, ``jitter`` of each retry delay.
        Returns them all."""
        timing = self.portal.delivery.timing
        for name, value in (
            ("time_scale", time_scale),
            ("timeout", timeout),
            ("batch_window", batch_window),
            ("jitter", jitter),
        ):
            if value is not None:
                if value < 0:
                    raise ValueError(f"{name} must not be negative")
                setattr(timing, name, float(value))
        return asdict(timing)

    def webhook_fault(self, kind: str, count: int = 1, seconds: float = 0.0) -> None:
        """The next ``count`` delivery requests meet ``kind``: ``duplicate``, ``reorder``,
        ``lose``, ``bad_signature``, ``stale_timestamp`` or ``delay`` (by ``seconds``)."""
        delivery = self.portal.delivery
        with delivery._cond:
            delivery.faults.add(kind, count, seconds)

    def webhook_deliveries(self, after: int = 0) -> list[dict[str, Any]]:
        """The delivery log from entry ``after`` on: per request its ``batch``, ``attempt``,
        ``events`` (ids), ``outcome`` (``delivered``, ``failed``, ``refused``, ``gave_up``,
        ``lost``, ``held``, ``duplicate``), ``status`` and ``fault``."""
        delivery = self.portal.delivery
        with delivery._cond:
            return [dict(entry) for entry in delivery.log[after:]]

    def webhook_pending(self) -> int:
        """Events queued, waiting for a retry or under way."""
        return self.portal.delivery.pending()

    def webhook_wait(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event is delivered, given up or lost; ``False`` on
        timeout."""
        return self.portal.delivery.wait_idle(timeout)

    def clear_webhooks(self) -> int:
        """Remove the target and every subscription, forget queued events, delivery faults
        and the delivery log; returns how many events were forgotten."""
        config = self.portal.webhooks
        for sub_id in list(config.subscriptions):
            config.unsubscribe(sub_id)
        config.clear()
        delivery = self.portal.delivery
        with delivery._cond:
            delivery.faults.queue.clear()
            delivery.log.clear()
        return delivery.discard()
