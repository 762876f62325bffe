"""Driving the HubSpot sandbox's webhooks from tests and benchmarks, in process or through the
admin path of a sandbox served elsewhere.

``HubSpotWebhooks.of(sandbox)`` or ``HubSpotWebhooks.remote(base_url, admin_token)``, then:

- ``register(target_url, properties=None, objects=...)``: the app's target URL and active
  subscriptions for the mirrored objects (every property unless ``properties`` names some);
- ``timing(time_scale=..., timeout=..., batch_window=...)``: how fast retries run;
- ``inject(kind, count=1, seconds=0.0)``: ``duplicate``, ``reorder``, ``lose``,
  ``bad_signature``, ``stale_timestamp`` or ``delay`` for the next ``count`` requests;
- ``wait(timeout)``, ``pending()``, ``deliveries(after)``, ``clear()``;
- ``adapter_settings()``: what the adapter's settings need to verify the deliveries
  (``client_secret``) and to register subscriptions itself (``app_id``, ``developer_api_key``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sandboxes.hubspot.sandbox import HubSpotSandbox
from sandboxes.hubspot.webhook_controls import MIRRORED
from sandboxes.testing.admin import AdminClient

Call = Callable[..., Any]


class HubSpotWebhooks:
    """The webhook controls of one HubSpot sandbox, by control name."""

    def __init__(self, call: Call) -> None:
        """Controls run through ``call(control, **kwargs)``."""
        self._call = call

    @classmethod
    def of(cls, sandbox: HubSpotSandbox) -> HubSpotWebhooks:
        """The controls of a sandbox running in this process."""
        return cls(lambda name, **kwargs: sandbox._control(name, kwargs))

    @classmethod
    def remote(cls, base_url: str, admin_token: str) -> HubSpotWebhooks:
        """The controls of a sandbox served elsewhere, through its admin path."""
        return cls(AdminClient(base_url, admin_token).admin)

    def register(
        self,
        target_url: str,
        properties: Sequence[str] | None = None,
        objects: Sequence[str] = MIRRORED,
        max_concurrent_requests: int = 10,
    ) -> list[dict[str, Any]]:
        """Point deliveries at ``target_url`` with active subscriptions; returns them."""
        return list(
            self._call(
                "subscribe_webhooks",
                target_url=target_url,
                objects=list(objects),
                properties=None if properties is None else list(properties),
                max_concurrent_requests=max_concurrent_requests,
            )
        )

    def timing(self, **values: float) -> dict[str, float]:
        """Change ``time_scale``, ``timeout``, ``batch_window`` or ``jitter``."""
        return dict(self._call("set_webhook_timing", **values))

    def inject(self, kind: str, count: int = 1, seconds: float = 0.0) -> None:
        """Inject a delivery fault for the next ``count`` requests."""
        self._call("webhook_fault", kind=kind, count=count, seconds=seconds)

    def wait(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is queued or under way."""
        return bool(self._call("webhook_wait", timeout=timeout))

    def pending(self) -> int:
        """Events not yet delivered, given up or lost."""
        return int(self._call("webhook_pending"))

    def deliveries(self, after: int = 0) -> list[dict[str, Any]]:
        """The delivery log from entry ``after`` on."""
        return list(self._call("webhook_deliveries", after=after))

    def clear(self) -> int:
        """Remove the target, the subscriptions, queued events, faults and the log."""
        return int(self._call("clear_webhooks"))

    def adapter_settings(self) -> dict[str, Any]:
        """The HubSpot adapter settings the sandbox app needs."""
        return {
            "client_secret": self._call("client_secret"),
            "app_id": self._call("app_id"),
            "developer_api_key": self._call("developer_api_key"),
        }
