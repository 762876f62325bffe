"""The state of one Dataverse sandbox organisation: data, clock, identity, limits and faults.

``DataverseOrg`` bundles what every endpoint needs: the store and its records, the sandbox
clock, the Entra tenant that issues tokens, change-tracking settings (how many days a delta
token lives, and a floor below which every token is expired), the service-protection limiter,
injected faults and the call log.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

from sandboxes.dynamics.entra import EntraTenant
from sandboxes.dynamics.errors import REQUESTS_LIMIT, AadError, DataverseError, throttled
from sandboxes.dynamics.records import Records
from sandboxes.dynamics.schema import DataverseSchema
from sandboxes.dynamics.store import DataverseStore
from sandboxes.dynamics.webhooks import WebhookService
from sandboxes.kit.calllog import CallLog
from sandboxes.kit.clock import SandboxClock
from sandboxes.kit.faults import Fault, Faults

API_PREFIX = "/api/data/v"
SUPPORTED_VERSIONS = ("9.0", "9.1", "9.2")
MAX_PAGE_SIZE = 5000
EXECUTION_BUDGET_MS = 1_200_000
NOTIONAL_REQUEST_MS = 20


def fault_error(fault: Fault) -> DataverseError:
    """The Web API's error answer of an injected fault."""
    return DataverseError(fault.status, fault.code, fault.message, fault.headers())


def identity_error(fault: Fault) -> AadError:
    """The answer of an injected fault at an Entra ID endpoint (AADSTS90033: a transient
    error)."""
    error = fault.code or "temporarily_unavailable"
    return AadError(fault.status, error, 90033, fault.message, fault.headers())


@dataclass
class DataverseFaults(Faults):
    """The injected faults, with a queue of its own for the Entra ID endpoints."""

    identity: list[Fault] = field(default_factory=list)

    def queues(self) -> list[list[Fault]]:
        """Web API failures, Entra ID failures and dropped answers."""
        return [self.failures, self.identity, self.drops]


class ServiceProtection:
    """Dataverse's per-user sliding-window request limit (default 6,000 per 300 s)."""

    def __init__(self, limit: int = 6000, window_seconds: float = 300.0) -> None:
        """A limiter of ``limit`` requests per ``window_seconds`` of wall time."""
        self.limit = limit
        self.window = window_seconds
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def spend(self, requests: int = 1) -> None:
        """Count ``requests``; 429 with ``Retry-After`` when they do not fit in the window."""
        now = time.monotonic()
        with self._lock:
            while self._times and self._times[0] <= now - self.window:
                self._times.popleft()
            if len(self._times) + requests > self.limit:
                oldest = self._times[0] if self._times else now
                raise throttled(REQUESTS_LIMIT, max(1, math.ceil(oldest + self.window - now)))
            self._times.extend([now] * requests)

    def headers(self) -> dict[str, str]:
        """The informational ``x-ms-ratelimit-*`` headers."""
        with self._lock:
            used = len(self._times)
        remaining_ms = max(0, EXECUTION_BUDGET_MS - used * NOTIONAL_REQUEST_MS)
        return {
            "x-ms-ratelimit-burst-remaining-xrm-requests": str(max(0, self.limit - used)),
            "x-ms-ratelimit-time-remaining-xrm-requests": f"{remaining_ms:,.2f}",
        }


@dataclass
class DataverseOrg:
    """Everything one sandbox organisation holds."""

    store: DataverseStore
    clock: SandboxClock
    tenant: EntraTenant
    faults: DataverseFaults = field(default_factory=DataverseFaults)
    protection: ServiceProtection = field(default_factory=ServiceProtection)
    expire_change_tracking_days: int = 7
    delta_floor: int = 0
    base_url: str = ""
    calls: CallLog = field(default_factory=CallLog)
    webhooks: WebhookService = field(init=False)

    def __post_init__(self) -> None:
        """Start the event pipeline of the webhook registrations (``webhooks``)."""
        self.webhooks = WebhookService(self.store, self.identity)

    def identity(self) -> tuple[str, str]:
        """``(OrganizationId, organization name)`` as webhook posts carry them (the name is
        the organisation's host, as ``x-ms-dynamics-organization`` sends it)."""
        name = self.base_url.split("://", 1)[-1] or "sandbox"
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"dataverse-org:{self.tenant.tenant_id}")), name

    @property
    def schema(self) -> DataverseSchema:
        """The tables."""
        return self.store.schema

    @property
    def records(self) -> Records:
        """Row operations on the store."""
        return Records(self.store, self.clock)
